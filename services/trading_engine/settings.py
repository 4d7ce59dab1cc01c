"""trading-engine settings (``TRADING_ENGINE_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class TradingEngineSettings(ServiceSettings):
    #: Every field here is read from ``TRADING_ENGINE_<FIELD>``; document each one in README.md.
    pass

"""metatrader-connector settings (``METATRADER_CONNECTOR_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings import ServiceSettings


class ConnectorSettings(ServiceSettings):
    #: auto = the MetaTrader5 package if importable (Windows), else mt5linux if a host is set, else simulated.
    mode: Literal["auto", "metatrader5", "mt5linux", "simulated"] = "auto"
    mt5linux_host: str | None = None
    mt5linux_port: int = 18812
    #: Seed of the simulated terminal's market: same seed, same ticks.
    seed: int = 20240101
    symbols: Annotated[tuple[str, ...], NoDecode] = ("EURUSD", "GBPUSD", "XAUUSD", "BTCUSD")
    #: Folder of MT5 CSV tick exports (``<SYMBOL>.csv``) replayed instead of generated data.
    csv_dir: Path | None = None
    #: The simulated terminal's trading account: its starting balance (USD), and whether its orders,
    #: positions and deals are kept in ``<HATS_VAR_DIR>/metatrader-connector/trade-state.json`` so
    #: they survive a restart of the connector, as they would at a broker.
    sim_deposit: float = 100_000.0
    sim_keep_trades: bool = True
    #: The platform's MT5 account whose orders this terminal executes (the MT5 venue's link).
    #: Unset = no link: the connector serves market data only.
    venue_account: str | None = None
    #: Where the link goes: the gateway. Unset = the matrix's gateway port on this host.
    server_url: str | None = None
    #: OAuth2 token endpoint. Unset = ``<server_url>/oauth2/token``.
    token_url: str | None = None
    #: The link's OAuth2 client (scope ``venue``). Unset = the ``metatrader-connector`` entry of
    #: ``var/credentials.json``, written by the first ``hats up``.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: How often the terminal's orders, positions and deals are sent for reconciliation.
    snapshot_interval_s: float = 5.0

    @field_validator("symbols", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else value

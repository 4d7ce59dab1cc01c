"""performance-analytics settings (``PERFORMANCE_ANALYTICS_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class PerformanceAnalyticsSettings(ServiceSettings):
    #: Every field here is read from ``PERFORMANCE_ANALYTICS_<FIELD>``; document each one in README.md.
    pass

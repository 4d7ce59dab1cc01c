"""data-collector settings (``DATA_COLLECTOR_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.events import Timeframe
from shared.settings import ServiceSettings


class CollectorSettings(ServiceSettings):
    #: Where ticks come from: the local metatrader-connector. Unset = the matrix's port on this host.
    connector_url: str | None = None
    #: Where ticks go: the gateway (the one public door). Unset = the matrix's gateway port on this host.
    server_url: str | None = None
    #: OAuth2 token endpoint. Unset = ``<server_url>/oauth2/token``.
    token_url: str | None = None
    #: This collector's OAuth2 client. Unset = the ``data-collector`` entry of ``var/credentials.json``,
    #: written by the first ``hats up``.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    symbols: Annotated[tuple[str, ...], NoDecode] = ("EURUSD", "GBPUSD", "XAUUSD", "BTCUSD")
    poll_interval_ms: int = 250
    #: How far back to fetch on the very first start (later starts resume from the saved cursor).
    backfill_s: int = 300
    #: Ticks per request to the server.
    batch_size: int = 2000
    #: CSV (MT5 tick export) and Parquet files dropped here are ingested, then moved to ``done/``.
    #: Unset = ``var/collector/inbox``.
    inbox_dir: Path | None = None
    #: A silence longer than this between two ticks of a symbol is recorded as a gap.
    gap_threshold_s: int = 120
    #: Confirmed ticks are remembered this long to drop duplicates from overlapping sources.
    dedupe_window_s: int = 3600
    #: At most this many unconfirmed ticks on disk; when full, the sources stop taking ticks (the
    #: terminal and the inbox keep them) until deliveries are confirmed. ~200 bytes per tick.
    max_buffered_ticks: int = 5_000_000
    #: How often the server is asked how far it handled sent ticks, while some are unconfirmed.
    confirm_interval_s: float = 1.0
    #: First pause before a tick the server refused for now (its clock is behind ours) is sent
    #: again; doubles up to ``retry_max_s``.
    retry_first_s: float = 5.0
    retry_max_s: float = 60.0
    #: Bars per page of a backfill: asked of the connector, then sent to the server in one request
    #: (data-bridge takes at most ``DATA_BRIDGE_MAX_BARS_PER_REQUEST``, 10,000 by default).
    backfill_page_bars: int = Field(default=5000, ge=1, le=100_000)
    #: Days of bars (``history_timeframes``) backfilled from the terminal at every start, so models
    #: and indicators have history from the first minute; 0 = none. The server keeps what it has
    #: (a backfill adds only missing bars), so a restart costs a re-check, not duplicates.
    history_days: float = Field(default=7.0, ge=0, le=365)
    history_timeframes: Annotated[tuple[Timeframe, ...], NoDecode] = (Timeframe.M1, Timeframe.H1)

    @field_validator("history_timeframes", mode="before")
    @classmethod
    def _split_timeframes(cls, value: object) -> object:
        return tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else value

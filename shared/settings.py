"""Settings every process shares, from the environment (no prefix: these are the standard names).

An unset infrastructure URL means "use the embedded component"; see the README's
configuration table. Service-specific settings live next to each service, with
the service's own prefix (``DATA_BRIDGE_``, ``DATABASE_SERVICE_``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import ports

#: The prefix of a service's settings built outside the kit (tests): one no deployment sets, so such
#: settings hold their defaults and the values given, and nothing the environment happens to contain.
DETACHED_PREFIX = "HATS_DETACHED_SETTINGS_"


class ServiceSettings(BaseSettings):
    """Base of a service's own settings.

    The kit reads them from the environment under the prefix of the service's port-matrix
    entry (``data-bridge`` -> ``DATA_BRIDGE_``: ``ServiceDefinition.load_settings``), so the
    prefix is never written by hand. Aliased fields (``validation_alias``) keep their names.
    """

    model_config = SettingsConfigDict(env_prefix=DETACHED_PREFIX, extra="ignore", frozen=True)


class PoolSettings(ServiceSettings):
    """Mixin for a service's settings: the size of its PostgreSQL pool (kit dependency ``Postgres``)."""

    #: PostgreSQL connections the service keeps open at least / at most.
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=4, ge=1)


#: An operator-chosen client id (``HATS_ADMIN_CLIENT_ID``, ``<PREFIX>CLIENT_ID``).
OPERATOR_CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"
#: An operator-chosen client secret must be at least as strong as a generated one is long.
MIN_OPERATOR_SECRET_CHARS = 32


class SignalPathPolling(ServiceSettings):
    """Mixin for the settings of a service whose feeds carry a bar's signal (``shared.bus.pacing.signal_path_pacer``).

    The embedded broker holds each fetch for its whole wait (docs/intelligence.md, "Latency"): the
    feeds poll every ``burst_fetch_max_wait_ms`` from just before each multiple of ``bars_every_s``
    (wall clock: bars close on the minute) until ``bars_window_s`` after it, and for ``burst_s``
    after any record; then at the platform's ``KAFKA_FETCH_MAX_WAIT_MS`` until ``idle_after_s``
    without a record; then at ``idle_fetch_max_wait_ms``. A record outside those moments (a bar
    closing late) may wait up to the idle wait. ``bars_every_s`` 0: no schedule.
    """

    bars_every_s: float = Field(default=60.0, ge=0)
    bars_window_s: float = Field(default=3.0, ge=0)
    burst_s: float = Field(default=0.5, ge=0)
    burst_fetch_max_wait_ms: int = Field(default=2, ge=1, le=5000)
    idle_after_s: float = Field(default=2.0, gt=0)
    idle_fetch_max_wait_ms: int = Field(default=200, ge=1, le=5000)


class IdentitySettings(ServiceSettings):
    """Mixin for the settings of a service with its own OAuth2 client (kit dependency ``ServiceIdentity``).

    ``<PREFIX>CLIENT_ID`` / ``<PREFIX>CLIENT_SECRET`` choose the client (production: give the same
    two to user-service, which registers the client with that secret and writes no file); unset,
    user-service generates them into ``<HATS_VAR_DIR>/service-credentials/<service>.json``.
    """

    client_id: str | None = Field(default=None, pattern=OPERATOR_CLIENT_ID_PATTERN)
    client_secret: SecretStr | None = Field(default=None, min_length=MIN_OPERATOR_SECRET_CHARS)

    @model_validator(mode="after")
    def _both_or_neither(self) -> IdentitySettings:
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("set both CLIENT_ID and CLIENT_SECRET of the service, or neither")
        return self


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    #: ``local`` allows embedded infrastructure and development defaults; ``production`` refuses them.
    hats_env: Literal["local", "production"] = "local"
    #: Runtime data (embedded stores, buffers, logs, traces, pid files).
    hats_var_dir: Path = Path("var")
    #: Interface the services bind to. Loopback by default: 8001-8019 are internal.
    hats_bind_host: str = "127.0.0.1"
    #: Addresses (or networks) of the reverse proxies whose ``X-Forwarded-For``/``-Proto`` a
    #: service believes. Empty (the default) = none: the peer's address is the caller's, whatever
    #: a request claims (per-address limits, logs). Set it to the load balancer in front of the gateway.
    hats_trusted_proxies: tuple[str, ...] = ()
    #: The client tier's API key (``X-API-Key``): required on every request but ``/healthz`` when
    #: set, and required to bind the client tier off loopback (``shared.kit.client_key``).
    hats_client_api_key: SecretStr | None = None
    #: Host name of a service as the others reach it; ``{name}`` is the service's name. Unset =
    #: 127.0.0.1 (one host). ``{name}`` in docker compose, where each service is its own host.
    hats_service_host: str | None = None
    hats_log_level: str = "INFO"
    #: Added to every port of the matrix (services and the embedded broker). Zero in any real
    #: deployment; tests set it to run an isolated mesh beside a developer's ``make run``.
    hats_port_offset: int = 0
    #: External Kafka; unset = the embedded broker on 127.0.0.1:9092.
    kafka_bootstrap_servers: str | None = None
    #: How long the latency-critical consumer (the bar stage: tick -> bar) lets the
    #: broker hold a fetch that found no data. A real Kafka answers as soon as data arrives,
    #: so this only sets the idle poll rate there; the embedded Tansu polls its storage and
    #: answers no earlier than this, so it bounds each hop's latency. Storage consumers
    #: batch and keep the client default (500 ms).
    kafka_fetch_max_wait_ms: int = 10
    #: Longest a bulk publish may take, waiting for its turn per partition and for the broker's
    #: acks included; then it fails (an ingest request answers 503) and sends nothing more. It
    #: must stay below the gateway's ``API_GATEWAY_UPSTREAM_TIMEOUT_S`` (the gateway refuses to
    #: start otherwise), so a request the gateway gave up on stops publishing before the
    #: client's retry of it arrives (``check_publish_within``).
    kafka_publish_timeout_s: float = Field(5.0, gt=0)
    #: The supervisor warns (log and ``hats status``) when the embedded broker's resident memory
    #: passes this many MB, and again at each further half of it; 0 = never. Its memory storage
    #: never deletes records, so it only grows (docs/architecture.md, "Retention on the embedded broker").
    hats_broker_rss_warn_mb: int = Field(1024, ge=0)
    #: Opt-in bound: past this many MB the supervisor restarts ("rolls") the embedded broker, whose
    #: new log starts empty; 0 = never. What a roll loses and what survives it is in the same doc.
    hats_broker_rss_roll_mb: int = Field(0, ge=0)
    #: External PostgreSQL (``postgresql://...``); unset = embedded pgserver under var/postgres.
    database_url: SecretStr | None = None
    #: External ClickHouse (``clickhouse://user:pass@host:9000/db``); unset = chdb under var/clickhouse.
    clickhouse_url: SecretStr | None = None
    #: OTLP/HTTP endpoint (Jaeger: http://jaeger:4318); unset = spans go to var/traces/<service>.jsonl.
    otel_exporter_otlp_endpoint: str | None = None
    #: Root traces of HTTP reads (GET/HEAD) kept per second and service; every other trace is
    #: kept (``shared.kit.sampling``). ``OTEL_TRACES_SAMPLER``, when set, replaces this policy.
    hats_trace_reads_per_s: float = Field(50.0, ge=0)
    #: Share of the reads beyond that budget that are still traced (by trace id).
    hats_trace_read_ratio: float = Field(0.05, ge=0, le=1)

    #: ``iss`` of the platform's access tokens; unset = the gateway's URL in this environment.
    hats_token_issuer: str | None = None
    #: ``aud`` every service requires in an access token.
    hats_token_audience: str = "hats-api"

    @field_validator("hats_var_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # A plain property: ``model_copy(update=...)`` copies a cached value along, so a copy pointed at
    # another broker (the tests' ``own_infra``) kept answering the first one's address.
    @property
    def kafka_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.port_of('kafka')}"

    @property
    def token_issuer(self) -> str:
        return self.hats_token_issuer or self.url_of("api-gateway")

    def port_of(self, name: str) -> int:
        """The port a service (or the embedded broker) listens on in this environment."""
        return ports.service(name).port + self.hats_port_offset

    def url_of(self, name: str) -> str:
        """Base URL of a service as the other services reach it (see ``hats_service_host``)."""
        host = self.hats_service_host.format(name=name) if self.hats_service_host else "127.0.0.1"
        return f"http://{host}:{self.port_of(name)}"

    def check_publish_within(self, upstream_timeout_s: float) -> None:
        """Raise ``ValueError`` unless a publish gives up before a proxy waiting ``upstream_timeout_s`` does."""
        if self.kafka_publish_timeout_s >= upstream_timeout_s:
            raise ValueError(
                f"KAFKA_PUBLISH_TIMEOUT_S ({self.kafka_publish_timeout_s:g}) must be below the gateway's upstream "
                f"timeout ({upstream_timeout_s:g} s): a request the gateway gave up on would keep publishing"
            )

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url is None

    def require_external_in_production(self) -> None:
        """Fail fast: production must name every server instead of falling back to embedded ones."""
        if self.hats_env != "production":
            return
        missing = [
            name
            for name, embedded in (
                ("KAFKA_BOOTSTRAP_SERVERS", self.embedded_kafka),
                ("DATABASE_URL", self.embedded_postgres),
                ("CLICKHOUSE_URL", self.embedded_clickhouse),
            )
            if embedded
        ]
        if missing:
            raise RuntimeError(f"HATS_ENV=production requires {', '.join(missing)}")

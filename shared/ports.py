"""The port matrix: the one definition of every service, its group and its fixed port.

Everything else (the supervisor, ``hats ports``, the compose file check, the
README) reads this table; nothing else spells a port number out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Group(StrEnum):
    CORE = "core"
    AI = "ai"
    OPS = "ops"
    COMPLIANCE = "compliance"
    CLIENT = "client"
    INFRA = "infra"
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class Service:
    """One row of the matrix.

    ``module`` is where the service is declared (``package.service:SERVICE``, a
    ``shared.kit.service.ServiceDefinition``); ``None`` means the service is specified by
    the design but not built yet, so the supervisor leaves it out. The service's settings
    are read under ``env_prefix``, derived from ``name``.

    ``identity`` lists the scopes of the service's own OAuth2 client, the one it calls other
    services with (``shared.kit.deps.ServiceIdentity`` in its declaration, which must name the
    same scopes: the kit refuses to load it otherwise). user-service provisions one client per
    implemented row that has them, without importing the services' code.
    """

    name: str
    group: Group
    port: int
    job: str
    module: str | None = None
    extra_ports: tuple[int, ...] = ()
    identity: tuple[str, ...] = ()

    @property
    def implemented(self) -> bool:
        return self.module is not None

    @property
    def env_prefix(self) -> str:
        """Environment prefix of this service's settings, e.g. ``DATA_BRIDGE_``."""
        return self.name.upper().replace("-", "_") + "_"


SERVICES: tuple[Service, ...] = (
    Service(
        "api-gateway",
        Group.CORE,
        8000,
        "OAuth2 authorization server, authenticated routing, rate limits",
        module="services.api_gateway.service:SERVICE",
    ),
    Service(
        "data-bridge",
        Group.CORE,
        8001,
        "server edge for the client tier: ticks in, bars built and published",
        module="services.data_bridge.service:SERVICE",
    ),
    Service(
        "performance-analytics",
        Group.CORE,
        8002,
        "PnL, equity, risk/return metrics, per-model attribution",
        module="services.performance_analytics.service:SERVICE",
    ),
    Service(
        "ai-orchestration",
        Group.CORE,
        8003,
        "combines model outputs into signals (ensemble, fallbacks)",
        module="services.ai_orchestration.service:SERVICE",
    ),
    Service(
        "trading-engine",
        Group.CORE,
        8007,
        "order management, pre-trade risk, venues, positions",
        module="services.trading_engine.service:SERVICE",
    ),
    Service(
        "database-service",
        Group.CORE,
        8008,
        "owner of the stores: PostgreSQL (OLTP) + ClickHouse (time series)",
        module="services.database_service.service:SERVICE",
    ),
    Service(
        "user-service",
        Group.CORE,
        8009,
        "tenants, users, roles, OAuth2 clients",
        module="services.user_service.service:SERVICE",
    ),
    Service(
        "feature-engineering",
        Group.AI,
        8011,
        "streaming technical indicators and features",
        module="services.feature_engineering.service:SERVICE",
        identity=("market:read",),
    ),
    Service(
        "ml-supervised",
        Group.AI,
        8012,
        "XGBoost / LightGBM training, registry, inference",
        module="services.ml_supervised.service:SERVICE",
        identity=("market:read",),
    ),
    Service(
        "ml-deep-learning",
        Group.AI,
        8013,
        "LSTM / Transformer (torch) training and inference",
        module="services.ml_deep_learning.service:SERVICE",
        identity=("market:read",),
    ),
    Service(
        "pattern-validator",
        Group.AI,
        8014,
        "validates signals (patterns, regime, drift, duplicates)",
        module="services.pattern_validator.service:SERVICE",
    ),
    Service("telegram-service", Group.OPS, 8015, "notifications and guarded commands"),
    Service("backtesting-engine", Group.AI, 8016, "strategy validation on history, same code as live"),
    Service("compliance-monitor", Group.COMPLIANCE, 8017, "real-time surveillance and pre/post-trade controls"),
    Service("audit-trail", Group.COMPLIANCE, 8018, "tamper-evident, append-only event log"),
    Service("regulatory-reporting", Group.COMPLIANCE, 8019, "transaction reports, self-assessment, daily reports"),
    Service(
        "metatrader-connector",
        Group.CLIENT,
        9001,
        "MT5 terminal bridge (ticks, rates, orders, deals, positions)",
        module="client.metatrader_connector.service:SERVICE",
    ),
    Service(
        "data-collector",
        Group.CLIENT,
        9002,
        "multi-source aggregation, disk buffering, forwarding",
        module="client.data_collector.service:SERVICE",
    ),
    Service("market-monitor", Group.CLIENT, 9003, "local real-time analysis and dashboard"),
    Service("config-manager", Group.CLIENT, 9004, "local configuration and secrets"),
)

INFRASTRUCTURE: tuple[Service, ...] = (
    Service("kafka", Group.INFRA, 9092, "event streaming (KRaft; embedded: Tansu)"),
    Service("postgres", Group.INFRA, 5432, "OLTP store (embedded: pgserver on a unix socket)"),
    Service(
        "clickhouse",
        Group.INFRA,
        9000,
        "time series store (embedded: chdb inside database-service)",
        extra_ports=(8123,),
    ),
    Service("elasticsearch", Group.INFRA, 9200, "audit storage", extra_ports=(9300,)),
    Service("jaeger", Group.INFRA, 16686, "tracing UI", extra_ports=(14268, 4317, 4318)),
    Service("airflow", Group.INFRA, 8080, "workflow orchestration"),
    Service("prometheus", Group.INFRA, 9090, "metrics"),
    Service("grafana", Group.INFRA, 3000, "dashboards"),
)

#: Ports that no service may take (room for expansion, per the design).
RESERVED_PORTS: frozenset[int] = frozenset({8004, 8005, 8006, 8010})

#: Only the gateway is public; 8001-8019 are internal.
PUBLIC_PORT = 8000
INTERNAL_PORT_RANGE = range(8001, 8020)
FUTURE_PORTS_FROM = 8020

#: The gateway's routing table: ``/api/v1/<area>/...`` goes to the service named here, at
#: the same path (services serve their public API under ``/api/v1/<area>``). A new service
#: registers its area by adding a row.
ROUTES: dict[str, str] = {
    "market": "database-service",
    "ingest": "data-bridge",
    "users": "user-service",
    "features": "feature-engineering",
    "models": "ml-supervised",
    "predict": "ml-supervised",
    "orchestration": "ai-orchestration",
    "signals": "pattern-validator",
    "performance": "performance-analytics",
    "orders": "trading-engine",
    "fills": "trading-engine",
    "positions": "trading-engine",
    "accounts": "trading-engine",
    "risk": "trading-engine",
    "kill-switches": "trading-engine",
    "bots": "trading-engine",
    "venues": "trading-engine",
}

_BY_NAME = {s.name: s for s in SERVICES + INFRASTRUCTURE}


def service(name: str) -> Service:
    """Look a service or infrastructure component up by name (``KeyError`` if unknown)."""
    return _BY_NAME[name]


def implemented_services() -> tuple[Service, ...]:
    """Services that exist and are started by ``hats up``, server side first, client tier last."""
    return tuple(s for s in SERVICES if s.implemented)


def service_identities() -> dict[str, tuple[str, ...]]:
    """The scopes of each implemented service's own OAuth2 client, by service (``Service.identity``)."""
    return {s.name: s.identity for s in implemented_services() if s.identity}


def all_ports(entry: Service) -> tuple[int, ...]:
    return (entry.port, *entry.extra_ports)

"""The port matrix is the one source of truth, and everything else agrees with it."""

from pathlib import Path

import yaml

from shared import ports

ROOT = Path(__file__).resolve().parents[1]


def test_every_port_is_unique():
    used = [p for s in ports.SERVICES + ports.INFRASTRUCTURE for p in ports.all_ports(s)]
    assert len(used) == len(set(used)), sorted(p for p in used if used.count(p) > 1)


def test_reserved_ports_stay_free():
    used = {p for s in ports.SERVICES + ports.INFRASTRUCTURE for p in ports.all_ports(s)}
    assert {8004, 8005, 8006, 8010} == ports.RESERVED_PORTS
    assert not used & ports.RESERVED_PORTS


def test_the_design_matrix():
    expected = {
        "api-gateway": 8000,
        "data-bridge": 8001,
        "performance-analytics": 8002,
        "ai-orchestration": 8003,
        "trading-engine": 8007,
        "database-service": 8008,
        "user-service": 8009,
        "feature-engineering": 8011,
        "ml-supervised": 8012,
        "ml-deep-learning": 8013,
        "pattern-validator": 8014,
        "telegram-service": 8015,
        "backtesting-engine": 8016,
        "compliance-monitor": 8017,
        "audit-trail": 8018,
        "regulatory-reporting": 8019,
        "metatrader-connector": 9001,
        "data-collector": 9002,
        "market-monitor": 9003,
        "config-manager": 9004,
    }
    assert {s.name: s.port for s in ports.SERVICES} == expected
    internal = [s for s in ports.SERVICES if s.port != ports.PUBLIC_PORT and s.group is not ports.Group.CLIENT]
    assert all(s.port in ports.INTERNAL_PORT_RANGE for s in internal)


def test_compose_file_agrees_with_the_matrix():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, spec in compose["services"].items():
        entry = ports.service(name)  # every compose service is in the matrix
        # Most publish nothing (tests/test_compose.py says which may); what is published is the matrix's.
        published = {int(p.split(":")[-1]) for p in spec.get("ports", [])}
        assert published <= set(ports.all_ports(entry)), name
        if entry.group is not ports.Group.INFRA:
            assert entry.implemented, f"{name} is in compose but not built"
            assert spec["command"] == ["serve", name]
    for service in ports.implemented_services():
        assert service.name in compose["services"], f"{service.name} missing from docker-compose.yml"

"""The mesh's map is generated from the services' contracts and kept current; the contracts agree
with each other; a new service's scaffold runs on the template."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from shared import ports, topics
from shared.kit import meshdoc
from shared.kit.asyncapi import asyncapi_document
from shared.kit.service import implemented_definitions

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = implemented_definitions()


def test_events_md_and_the_mesh_diagram_match_the_contracts():
    assert meshdoc.stale(ROOT, DEFINITIONS) == [], "run `hats contract docs` and commit the result"


def test_every_implemented_service_is_declared_under_its_matrix_name():
    assert [d.name for d in DEFINITIONS] == [s.name for s in ports.implemented_services()]


def test_every_event_has_a_topic_of_its_own_and_every_consumed_event_a_producer():
    classes = meshdoc.event_classes()
    assert len({c.TOPIC for c in classes}) == len(classes)
    assert {c.TOPIC for c in classes} | {topics.DEAD_LETTERS, topics.BROKER_EPOCH} == set(topics.PARTITIONS)
    produced = {e for d in DEFINITIONS for e in d.effective_contract.produces}
    for d in DEFINITIONS:
        for consumes in d.effective_contract.consumes:
            assert consumes.event in produced, f"{d.name} consumes {consumes.topic}, which nobody produces"


def test_consumer_groups_belong_to_one_service_each():
    owners: dict[str, str] = {}
    for d in DEFINITIONS:
        for consumes in d.effective_contract.consumes:
            if consumes.group is not None:
                assert owners.setdefault(consumes.group, d.name) == d.name, consumes.group


def test_the_asyncapi_export_has_a_channel_per_declaration():
    for d in DEFINITIONS:
        document = asyncapi_document(d)
        contract = d.effective_contract
        assert document["asyncapi"].startswith("3.")
        addresses = sorted(ch["address"] for ch in document.get("channels", {}).values())
        expected = sorted([e.TOPIC for e in contract.produces] + [c.topic for c in contract.consumes])
        assert addresses == expected, d.name


def test_a_scaffolded_service_runs_on_the_template(tmp_path):
    tree = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.split():
        if (ROOT / name).exists():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", "new-service", "telegram-service"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert 'module="services.telegram_service.service:SERVICE"' in (tree / "shared/ports.py").read_text()
    again = subprocess.run(
        [sys.executable, "-m", "infra.cli", "new-service", "telegram-service"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "exists already" in again.stderr
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/services/telegram_service"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "services/telegram_service", "shared/ports.py"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout

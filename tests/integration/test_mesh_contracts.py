"""The running mesh is what the contracts say: every service reports its declared contract with
nothing unused, exports it as AsyncAPI, and serves its API docs without any other host."""

from __future__ import annotations

import httpx

from shared import ports
from shared.kit.service import implemented_definitions
from tests.docs_checks import assert_docs_work_offline


async def test_every_running_service_holds_to_its_declared_contract(mesh):
    async with httpx.AsyncClient(timeout=10.0) as client:
        for definition in implemented_definitions():
            base = mesh.url(definition.name)
            report = (await client.get(base + "/contract")).json()
            contract = definition.effective_contract
            assert report["unused"] == [], definition.name
            assert report["produces"] == sorted(e.TOPIC for e in contract.produces)
            assert [(c["topic"], c["group"]) for c in report["consumes"]] == [
                (c.topic, c.group) for c in contract.consumes
            ]
            assert report["calls"] == list(contract.calls)
            asyncapi = (await client.get(base + "/asyncapi.json")).json()
            assert asyncapi["info"]["title"] == definition.name


async def test_every_running_service_serves_its_docs_offline(mesh):
    for entry in ports.implemented_services():
        async with httpx.AsyncClient(base_url=mesh.url(entry.name), timeout=10.0) as client:
            await assert_docs_work_offline(client)

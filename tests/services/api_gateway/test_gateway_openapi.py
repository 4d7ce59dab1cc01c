"""The gateway's merged OpenAPI document: upstream APIs under the oauth2 scheme, no collisions,
tolerant of a service that is down (and picking it up when it comes back)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from edge_testkit import echo_upstream, edge_mesh, serve
from pydantic import BaseModel

from services.api_gateway.openapi_merge import MergedOpenAPI
from services.api_gateway.settings import GatewaySettings
from shared import ports
from shared.auth.scopes import CLIENT_SCOPES, INTERNAL
from tests.docs_checks import assert_docs_work_offline

RETRY_S = 0.3


class Item(BaseModel):
    """data-bridge's own, different ``Item``: must not overwrite database-service's."""

    sku: str
    price: float


@pytest.fixture(scope="module")
async def docs(infra_env):
    """The real gateway; every routed service up but user-service, down until a test serves it
    (a service's further areas, ml-supervised's ``predict``, trading-engine's ``fills``..., are
    served by the upstream of its first area: one port each)."""
    first_area: dict[str, str] = {}
    for area, service in ports.ROUTES.items():
        first_area.setdefault(service, area)
    up = tuple(area for service, area in first_area.items() if service != "user-service")
    async with edge_mesh(infra_env, GatewaySettings(), areas=up, item_models={"ingest": Item}) as mesh:
        merged = mesh.gateway.app.openapi.__self__  # the document install_merged_openapi gave the app
        assert isinstance(merged, MergedOpenAPI)
        merged.retry_after_s = RETRY_S  # shipped: 30 s
        yield mesh.url, merged, mesh


@pytest.fixture
async def http(docs):
    async with httpx.AsyncClient(base_url=docs[0], timeout=10.0) as client:
        yield client


def refs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "options", "head"):
                yield path, method, operation


async def test_merged_document_has_the_public_api_of_each_service(http):
    schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    assert "/api/v1/market/items" in paths and "/api/v1/ingest/items" in paths
    assert "/oauth2/token" in paths  # the gateway's own endpoints stay
    assert not any(p.startswith("/internal") for p in paths)  # only /api/v1/<area> is public
    assert not any(p.startswith("/api/v1/users") for p in paths)  # user-service is down


async def test_components_are_prefixed_per_service_without_collisions(http):
    schema = (await http.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    assert set(components["DatabaseService_Item"]["properties"]) == {"name", "quantity"}
    assert set(components["DataBridge_Item"]["properties"]) == {"sku", "price"}
    market_body = schema["paths"]["/api/v1/market/items"]["post"]["requestBody"]
    ingest_body = schema["paths"]["/api/v1/ingest/items"]["post"]["requestBody"]
    assert refs(market_body) == ["#/components/schemas/DatabaseService_Item"]
    assert refs(ingest_body) == ["#/components/schemas/DataBridge_Item"]
    for ref in refs(schema):  # every reference resolves
        kind, name = ref.split("/")[2:]
        assert name in schema["components"][kind], ref
    ids = [op["operationId"] for _, _, op in operations(schema)]
    assert len(ids) == len(set(ids))  # both services call theirs create_item
    # The upstreams' own bearer scheme is replaced by the gateway's oauth2 one.
    assert set(schema["components"]["securitySchemes"]) == {"oauth2"}


async def test_oauth2_client_credentials_scheme_on_every_merged_operation(http):
    schema = (await http.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["oauth2"]
    assert scheme["type"] == "oauth2"
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth2/token"
    assert set(flow["scopes"]) == set(CLIENT_SCOPES) and INTERNAL not in flow["scopes"]
    assert all(flow["scopes"].values())  # each with a description
    merged = [(p, op) for p, _, op in operations(schema) if p.startswith("/api/v1/")]
    assert merged
    for _, op in merged:
        assert op["security"] == [{"oauth2": []}]
        assert {"401", "429"} <= set(op["responses"])
    token_op = schema["paths"]["/oauth2/token"]["post"]
    assert "security" not in token_op  # the token endpoint authenticates clients itself


async def test_swagger_ui_is_set_up_for_client_credentials(http):
    page = (await http.get("/docs")).text
    assert "ui.initOAuth(" in page and '"scopeSeparator": " "' in page
    assert '"persistAuthorization": true' in page
    assert "url: '/openapi.json'" in page
    # Offline: the page, its assets, the merged document and the OAuth2 redirect page all from the gateway.
    refs = await assert_docs_work_offline(http)
    assert ("oauth2-redirect", "/docs/oauth2-redirect") in refs.urls


async def test_a_service_that_was_down_appears_after_the_retry_delay(docs, http):
    _, merged, mesh = docs
    first = (await http.get("/openapi.json")).json()
    assert "user-service" in first["info"].get("description", "")
    assert merged.missing == ["user-service"]
    async with serve(echo_upstream("user-service", "users", mesh.tokens.verifier()), mesh.sockets["users"]):
        await asyncio.sleep(RETRY_S + 0.1)
        schema = (await http.get("/openapi.json")).json()
        assert "/api/v1/users/items" in schema["paths"]
        assert "UserService_Item" in schema["components"]["schemas"]
        assert merged.missing == []
    # Down again: its last document is kept rather than dropping its API from the docs.
    await asyncio.sleep(RETRY_S + 0.1)
    again = (await http.get("/openapi.json")).json()
    assert "/api/v1/users/items" in again["paths"]

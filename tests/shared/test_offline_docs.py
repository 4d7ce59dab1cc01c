"""``/docs`` works without internet: Swagger UI's page references no other host and every asset
it references is served by the service itself (shared.kit.docs), for a service and the gateway."""

from __future__ import annotations

import re
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from services.api_gateway.openapi_merge import install_merged_openapi
from services.api_gateway.security import install_security
from shared.kit.app import build_app
from shared.kit.docs import install_docs
from tests.docs_checks import assert_docs_work_offline, assert_no_other_host, page_references

BASE = "http://service.test"


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture(scope="module")
def service() -> FastAPI:
    return build_app("data-bridge", routers=[])


@pytest.fixture(scope="module")
def gateway() -> FastAPI:
    """The gateway's docs set-up: security headers, merged OpenAPI (no upstreams) and OAuth2 init."""
    app = build_app("api-gateway", routers=[])
    install_security(app)
    install_merged_openapi(app, {}, lambda: cast(Any, None))  # no upstreams: never called
    return app


async def test_a_service_docs_page_loads_everything_from_the_service(service):
    async with client_of(service) as client:
        refs = await assert_docs_work_offline(client)
    assert ("openapi", "/openapi.json") in refs.urls
    assert ("oauth2-redirect", "/docs/oauth2-redirect") in refs.urls
    assets = [url for kind, url in refs.urls if kind in ("script", "stylesheet", "icon")]
    assert all(url.startswith("/docs/") for url in assets), assets


async def test_assets_are_cached_long_and_the_docs_routes_are_not_in_the_schema(service):
    async with client_of(service) as client:
        refs = page_references((await client.get("/docs")).text)
        for kind, url in refs.urls:
            if kind in ("script", "stylesheet", "icon"):
                response = await client.get(url)
                max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
                assert max_age and int(max_age[1]) >= 86_400 * 30, (url, response.headers["cache-control"])
                head = await client.head(url)
                assert head.status_code == 200 and head.headers["content-length"] == str(len(response.content))
        assert (await client.get("/docs/static/nothing.js")).status_code == 404
        schema = (await client.get("/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/docs")]


async def test_the_gateway_docs_page_with_merged_openapi_and_oauth2_init(gateway):
    async with client_of(gateway) as client:
        refs = await assert_docs_work_offline(client)
        page = await client.get("/docs")
        script = (await client.get(next(url for kind, url in refs.urls if kind == "script"))).content
    assert "ui.initOAuth(" in page.text and '"scopeSeparator": " "' in page.text
    assert '"persistAuthorization": true' in page.text and '"validatorUrl": null' in page.text
    # The policy names no other origin: everything comes from 'self'.
    csp = page.headers["content-security-policy"]
    assert_no_other_host(csp, "")
    assert "http" not in csp
    script_src = csp.split("script-src", 1)[1].split(";")[0]
    assert "'self'" in script_src and "'sha256-" in script_src and "unsafe-inline" not in script_src
    assert len(script) > 100_000  # the whole bundle came through the security middleware


async def test_install_docs_follows_the_apps_openapi_url():
    app = FastAPI(title="custom", openapi_url="/spec/openapi.json", docs_url=None, redoc_url=None)
    install_docs(app)
    async with client_of(app) as client:
        refs = await assert_docs_work_offline(client)
    assert ("openapi", "/spec/openapi.json") in refs.urls

    hidden = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_docs(hidden)
    async with client_of(hidden) as client:
        assert (await client.get("/docs")).status_code == 404

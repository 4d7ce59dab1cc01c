"""The collector's token handling against a real HTTP server speaking RFC 6749 / RFC 6750."""

from __future__ import annotations

import asyncio
import base64
import secrets

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from client.server_client import ServerClient
from shared.auth.client import ClientCredentials, NoCredentials, TokenRequestFailed, credentials_from_file
from tests.support import ServedApp

CLIENT = ClientCredentials("hc_collector", "s3cret")


class TokenServer(ServedApp):
    """A token endpoint (client credentials, optional refresh) and one protected ingest route."""

    def __init__(self, *, expires_in: int, refresh: bool = False) -> None:
        self.expires_in, self.refresh = expires_in, refresh
        self.valid: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.grants: list[str] = []
        super().__init__(
            Starlette(
                routes=[
                    Route("/oauth2/token", self._token, methods=["POST"]),
                    Route("/api/v1/ingest/ticks", self._ingest, methods=["POST"]),
                ]
            )
        )
        self.url = self.base_url

    async def _token(self, request: Request) -> JSONResponse:
        basic = base64.b64decode(request.headers.get("authorization", "Basic ").split(" ", 1)[1] or b"").decode()
        if basic != f"{CLIENT.client_id}:{CLIENT.client_secret}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        self.grants.append(str(form["grant_type"]))
        if form["grant_type"] == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            self.refresh_tokens.discard(str(form["refresh_token"]))  # rotation
        token = secrets.token_hex(8)
        self.valid.add(token)
        body: dict[str, str | int] = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        if self.refresh:
            refresh = body["refresh_token"] = secrets.token_hex(8)
            self.refresh_tokens.add(refresh)
        return JSONResponse(body)

    async def _ingest(self, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.valid:
            return JSONResponse(
                {"detail": "invalid token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="hats", error="invalid_token"'},
            )
        return JSONResponse({"accepted": 0, "rejected": []}, status_code=202)


async def _client(server: TokenServer, http: httpx.AsyncClient, tmp_path, credentials=CLIENT) -> ServerClient:
    return ServerClient(server.url, server.url + "/oauth2/token", credentials, tmp_path / "credentials.json", http)


async def test_the_token_is_fetched_once_and_reused_until_renewal(tmp_path):
    async with TokenServer(expires_in=900) as server, httpx.AsyncClient() as http:
        client = await _client(server, http, tmp_path)
        for _ in range(3):
            assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        assert server.grants == ["client_credentials"]


async def test_a_token_is_renewed_before_it_expires(tmp_path):
    async with TokenServer(expires_in=2) as server, httpx.AsyncClient() as http:
        client = await _client(server, http, tmp_path)
        assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        await asyncio.sleep(1.1)  # past half of its life: renewed before the server would refuse it
        assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        assert server.grants == ["client_credentials", "client_credentials"]


async def test_renewal_uses_the_refresh_token_when_one_was_issued(tmp_path):
    async with TokenServer(expires_in=2, refresh=True) as server, httpx.AsyncClient() as http:
        client = await _client(server, http, tmp_path)
        assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        await asyncio.sleep(1.1)
        assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        assert server.grants == ["client_credentials", "refresh_token"]


async def test_a_refused_token_is_replaced_and_the_request_retried_once(tmp_path):
    async with TokenServer(expires_in=900) as server, httpx.AsyncClient() as http:
        client = await _client(server, http, tmp_path)
        assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        server.valid.clear()  # revoked, or the gateway's keys changed
        assert (await client.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202
        assert server.grants == ["client_credentials", "client_credentials"]


async def test_wrong_or_missing_credentials_are_errors_the_forwarder_can_wait_out(tmp_path):
    async with TokenServer(expires_in=900) as server, httpx.AsyncClient() as http:
        wrong = await _client(server, http, tmp_path, ClientCredentials(CLIENT.client_id, "nope"))
        with pytest.raises(TokenRequestFailed):
            await wrong.post("/api/v1/ingest/ticks", {"ticks": []})
        missing = await _client(server, http, tmp_path, None)
        with pytest.raises(NoCredentials):
            await missing.post("/api/v1/ingest/ticks", {"ticks": []})
        # The bootstrap's file appears later (first `hats up`): the next attempt picks it up.
        (tmp_path / "credentials.json").write_text(
            '{"data-collector": {"client_id": "hc_collector", "client_secret": "s3cret"}}'
        )
        assert credentials_from_file(tmp_path / "credentials.json", "data-collector") == CLIENT
        assert (await missing.post("/api/v1/ingest/ticks", {"ticks": []})).status_code == 202

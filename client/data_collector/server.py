"""The collector's authenticated line to the server: OAuth2 client credentials, renewed by itself.

The client tier reaches the platform only through the gateway, with its own
client (scope ``market:write`` only). ``ClientCredentialsAuth`` is an httpx auth
flow: it fetches a token (RFC 6749 §4.4), renews it before it expires (with the
refresh token when the server issued one, else by asking again), and on a 401
(a revoked token, rotated keys) fetches a fresh token and retries once.

authlib's httpx client does the same, but its httpx support is deprecated in
favour of httpx2, which this project does not use; this is the small part we need.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

#: Renew this many seconds before the token expires (or at half its life if that is shorter).
RENEW_LEEWAY_S = 60


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str


class NoCredentials(Exception):
    """Neither the environment nor the credentials file names this collector's client."""


class TokenRequestFailed(Exception):
    """The token endpoint refused the client or did not answer with a token."""


def credentials_from_file(path: Path, entry: str = "data-collector") -> ClientCredentials | None:
    """The client written by user-service's bootstrap to ``var/credentials.json`` (mode 0600)."""
    try:
        data = json.loads(path.read_text())[entry]
        return ClientCredentials(data["client_id"], data["client_secret"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ClientCredentialsAuth(httpx.Auth):
    """httpx auth flow holding one client's access token (and refresh token, if issued)."""

    def __init__(self, token_url: str, credentials: ClientCredentials, token_http: httpx.AsyncClient) -> None:
        self._token_url = token_url
        self._credentials = credentials
        self._http = token_http
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0

    async def _token(self, *, force: bool = False) -> str:
        async with self._lock:  # one fetch for all concurrent requests
            if force or self._access is None or time.monotonic() >= self._renew_at:
                await self._fetch()
            assert self._access is not None
            return self._access

    async def _fetch(self) -> None:
        if self._refresh:
            form = {"grant_type": "refresh_token", "refresh_token": self._refresh}
            if await self._request(form):
                return
            self._refresh = None  # used, revoked or expired: start over with the credentials
        if not await self._request({"grant_type": "client_credentials"}):
            raise TokenRequestFailed("the token endpoint refused the client credentials")

    async def _request(self, form: dict[str, str]) -> bool:
        response = await self._http.post(
            self._token_url, data=form, auth=(self._credentials.client_id, self._credentials.client_secret)
        )
        if response.status_code != 200:
            log.warning(
                "token request (%s) refused: HTTP %d %s", form["grant_type"], response.status_code, response.text[:200]
            )
            return False
        body = response.json()
        lifetime = float(body.get("expires_in", 300))
        self._access = body["access_token"]
        self._refresh = body.get("refresh_token", self._refresh if form["grant_type"] == "refresh_token" else None)
        self._renew_at = time.monotonic() + max(lifetime / 2, lifetime - RENEW_LEEWAY_S)
        return True

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._token()}"
        response = yield request
        if response.status_code == 401:
            log.warning(
                "the server refused our token (%s); fetching a new one", response.headers.get("www-authenticate", "")
            )
            request.headers["Authorization"] = f"Bearer {await self._token(force=True)}"
            yield request


class ServerClient:
    """POSTs to the server through the gateway with a token it obtains and renews itself."""

    def __init__(
        self,
        base_url: str,
        token_url: str,
        credentials: ClientCredentials | None,
        credentials_file: Path,
        http: httpx.AsyncClient,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token_url = token_url
        self._configured = credentials
        self._file = credentials_file
        self._http = http
        self._auth: ClientCredentialsAuth | None = None

    def _authenticator(self) -> ClientCredentialsAuth:
        if self._auth is None:
            # Credentials may appear after start-up: user-service writes them on the first `hats up`.
            creds = self._configured or credentials_from_file(self._file)
            if creds is None:
                raise NoCredentials(
                    f"no client credentials: set DATA_COLLECTOR_CLIENT_ID/_SECRET or provide {self._file}"
                )
            self._auth = ClientCredentialsAuth(self._token_url, creds, self._http)
        return self._auth

    async def post(self, path: str, body: dict) -> httpx.Response:
        """POST ``body`` as JSON; raises ``httpx.HTTPError``, ``TokenRequestFailed`` or ``NoCredentials``."""
        return await self._http.post(self._base + path, json=body, auth=self._authenticator())

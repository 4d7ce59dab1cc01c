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
import email.utils
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: Renew this many seconds before the token expires (or at half its life if that is shorter).
RENEW_LEEWAY_S = 60
#: After refused credentials, the first pause before the same secret is tried again; it doubles
#: up to the maximum. The gateway locks a client id after 10 failures in 300 s: this stays at 2.
REFUSED_PAUSE_S = 150.0
MAX_REFUSED_PAUSE_S = 900.0
#: Pause after a 429 from the token endpoint that did not say how long (the gateway's lockout).
LOCKED_PAUSE_S = 300.0
#: A clock skew against the server beyond this is logged (the server refuses ticks > 60 s ahead).
SKEW_WARNING_S = 30.0


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str


class NoCredentials(Exception):
    """Neither the environment nor the credentials file names this collector's client."""


class TokenRequestFailed(Exception):
    """The token endpoint refused the client or did not answer with a token."""


class CredentialsRefused(TokenRequestFailed):
    """The token endpoint refused the client's credentials (``invalid_client``): a wrong or rotated secret.

    Asking again with the same secret only counts towards the gateway's lockout of the client id.
    """


class TokenEndpointLocked(TokenRequestFailed):
    """The token endpoint answered 429: the client id (or this host) is locked out for a while."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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

    @property
    def credentials(self) -> ClientCredentials:
        return self._credentials

    async def _request(self, form: dict[str, str]) -> bool:
        response = await self._http.post(
            self._token_url, data=form, auth=(self._credentials.client_id, self._credentials.client_secret)
        )
        if response.status_code == 429:
            retry_after = retry_after_s(response) or LOCKED_PAUSE_S
            raise TokenEndpointLocked(f"the token endpoint locked us out for {retry_after:.0f}s", retry_after)
        if response.status_code in (400, 401) and _oauth_error(response) == "invalid_client":
            raise CredentialsRefused(f"the token endpoint refused the client credentials: {response.text[:200]}")
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


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def retry_after_s(response: httpx.Response) -> float | None:
    """The seconds of a ``Retry-After`` header, if it has one in that form."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def server_time(response: httpx.Response) -> float | None:
    """The server's clock when it answered (its ``Date`` header, 1 s resolution), as a Unix time."""
    try:
        return email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


class ServerClient:
    """Requests to the server through the gateway with a token it obtains and renews itself.

    Refused credentials (a stale secret after a rotation) are not tried again until the
    credentials change (the environment's, else the credentials file, is read at every
    request) or a pause of minutes has passed: hammering the token endpoint with a wrong
    secret would lock the client id out for everyone. Every answer's ``Date`` header
    measures the clock skew against the server (``clock_skew_s``).
    """

    def __init__(
        self,
        base_url: str,
        token_url: str,
        credentials: ClientCredentials | None,
        credentials_file: Path,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token_url = token_url
        self._configured = credentials
        self._file = credentials_file
        self._http = http
        self._clock, self._wall_clock = clock, wall_clock
        self._auth: ClientCredentialsAuth | None = None
        self._refused: ClientCredentials | None = None
        self._refusals = 0
        self._paused_until = 0.0
        #: Why no token can be had right now (refused credentials, a lockout), for readiness.
        self.auth_problem: str | None = None
        #: The server's clock minus ours, in seconds, from the last answer's ``Date`` (None: not measured yet).
        self.clock_skew_s: float | None = None
        self._skew_logged = False

    def _credentials(self) -> ClientCredentials:
        # Read at every request: credentials may appear after start-up (user-service writes them on
        # the first `hats up`) or change (a rotated secret written to the file).
        from_file = credentials_from_file(self._file)
        creds = self._configured or from_file
        if creds is None:
            raise NoCredentials(f"no client credentials: set DATA_COLLECTOR_CLIENT_ID/_SECRET or provide {self._file}")
        if creds == self._refused and from_file is not None and from_file != self._refused:
            creds = from_file  # the configured secret was refused; the file has another one
        return creds

    def _authenticator(self) -> ClientCredentialsAuth:
        creds = self._credentials()
        waiting = self._clock() < self._paused_until
        if waiting and (self._refused is None or creds == self._refused):
            raise (CredentialsRefused if self._refused is not None else TokenRequestFailed)(self.auth_problem or "")
        if self._auth is None or self._auth.credentials != creds:
            self._auth = ClientCredentialsAuth(self._token_url, creds, self._http)
        return self._auth

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``body`` as JSON; raises ``httpx.HTTPError``, ``TokenRequestFailed`` or ``NoCredentials``."""
        return await self._request("POST", path, json=body, headers=headers)

    async def get(self, path: str) -> httpx.Response:
        """GET ``path``; raises as ``post``."""
        return await self._request("GET", path)

    async def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        auth = self._authenticator()
        try:
            response = await self._http.request(method, self._base + path, auth=auth, **options)
        except CredentialsRefused:
            self._refusals += 1
            pause = min(REFUSED_PAUSE_S * 2 ** (self._refusals - 1), MAX_REFUSED_PAUSE_S)
            self._refused, self._auth = auth.credentials, None
            self._paused_until = self._clock() + pause
            self.auth_problem = (
                f"the token endpoint refused the credentials of {auth.credentials.client_id} (a rotated secret?); "
                f"next attempt in {pause:.0f}s or as soon as the credentials change"
            )
            log.error("%s", self.auth_problem)
            raise
        except TokenEndpointLocked as exc:
            self._paused_until = self._clock() + exc.retry_after_s
            self.auth_problem = f"{exc}; next attempt in {exc.retry_after_s:.0f}s"
            log.error("%s", self.auth_problem)
            raise
        if self.auth_problem is not None:
            log.info("the token endpoint accepts our credentials again")
        self._refused, self._refusals, self._paused_until, self.auth_problem = None, 0, 0.0, None
        self._measure_skew(response)
        return response

    def _measure_skew(self, response: httpx.Response) -> None:
        server = server_time(response)
        if server is None:
            return
        self.clock_skew_s = server - self._wall_clock()
        if abs(self.clock_skew_s) > SKEW_WARNING_S and not self._skew_logged:
            self._skew_logged = True
            log.warning(
                "this host's clock is %.0fs %s the server's: ticks more than 60 s ahead of the server are refused "
                "until its clock catches up (they are retried, not dropped); synchronise the clocks (NTP)",
                abs(self.clock_skew_s),
                "behind" if self.clock_skew_s > 0 else "ahead of",
            )
        elif abs(self.clock_skew_s) <= SKEW_WARNING_S:
            self._skew_logged = False

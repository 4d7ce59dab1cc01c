"""The client side of OAuth2: one client's access token, obtained, renewed and attached by itself.

Every caller that acts with its own authority holds a ``ClientIdentity``: the client tier
(data-collector, through the gateway) and every server-side service that calls another
(``shared.kit.deps.ServiceIdentity``). It is an ``httpx.Auth``: it fetches a token with the
client-credentials grant (RFC 6749 §4.4), renews it before it expires (with the refresh token
when the server issued one, else by asking again), and on a 401 (a revoked token, rotated keys)
fetches a fresh one and retries the request once.

The credentials are read from their source whenever a token is fetched, so credentials that
appear after start-up (user-service writes them on its first start) or change (a rotated secret
written to the file) are picked up without a restart. Credentials the token endpoint refused are
not presented again for a pause that starts at 150 s and doubles up to 15 min, unless the source
has other credentials by then: asking again with a wrong secret only counts towards the gateway's
lockout of the client id (10 failures in 300 s). ``auth_problem`` says why no token can be had.

authlib's httpx client does the same, but its httpx support is deprecated in favour of httpx2,
which this project does not use; this is the small part we need. Nothing here logs a secret or
a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path

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
#: Where user-service writes each service's generated credentials, under ``HATS_VAR_DIR``.
SERVICE_CREDENTIALS_DIR = "service-credentials"


@dataclass(frozen=True)
class ClientCredentials:
    """A client id and its secret; the secret never appears in a repr (logs, tracebacks)."""

    client_id: str
    client_secret: str = field(repr=False)


class NoCredentials(httpx.HTTPError):
    """The credentials' source names no client (yet). An ``httpx.HTTPError``: the request could not
    be made, and a caller that retries on network errors retries on this too."""


class TokenRequestFailed(httpx.HTTPError):
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


def credentials_from_file(path: Path, entry: str | None = None) -> ClientCredentials | None:
    """The client in a JSON credentials file (``client_id``, ``client_secret``), at the top level or
    under ``entry`` (``var/credentials.json`` holds several); None if the file or either field is missing."""
    try:
        data = json.loads(path.read_text())
        if entry is not None:
            data = data[entry]
        return ClientCredentials(data["client_id"], data["client_secret"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def service_credentials_file(var_dir: Path, service: str) -> Path:
    """Where user-service writes the generated credentials of ``service`` (mode 0600)."""
    return var_dir / SERVICE_CREDENTIALS_DIR / f"{service}.json"


def retry_after_s(response: httpx.Response) -> float | None:
    """The seconds of a ``Retry-After`` header, if it has one in that form."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class _Tokens:
    """The tokens of one set of credentials: an access token, and a refresh token if one was issued."""

    def __init__(
        self, token_url: str, credentials: ClientCredentials, http: httpx.AsyncClient, clock: Callable[[], float]
    ) -> None:
        self.credentials = credentials
        self._token_url, self._http, self._clock = token_url, http, clock
        self.access: str | None = None
        self._refresh: str | None = None
        self.renew_at = 0.0

    @property
    def fresh(self) -> bool:
        return self.access is not None and self._clock() < self.renew_at

    async def fetch(self) -> None:
        if self._refresh:
            if await self._request({"grant_type": "refresh_token", "refresh_token": self._refresh}):
                return
            self._refresh = None  # used, revoked or expired: start over with the credentials
        if not await self._request({"grant_type": "client_credentials"}):
            raise TokenRequestFailed("the token endpoint did not issue a token (see the log)")

    async def _request(self, form: dict[str, str]) -> bool:
        # The credentials go as HTTP Basic on this request only: it overrides the client's own auth.
        response = await self._http.post(
            self._token_url, data=form, auth=(self.credentials.client_id, self.credentials.client_secret)
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
        self.access = body["access_token"]
        self._refresh = body.get("refresh_token", self._refresh if form["grant_type"] == "refresh_token" else None)
        self.renew_at = self._clock() + max(lifetime / 2, lifetime - RENEW_LEEWAY_S)
        return True


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


class ClientIdentity(httpx.Auth):
    """One OAuth2 client acting with its own token (see the module docstring).

    ``credentials`` returns the client's current credentials or raises ``NoCredentials``; it is
    called whenever a token must be fetched. ``applies_to`` limits the requests that carry the
    token (the services a service calls): a token never goes anywhere else.
    """

    def __init__(
        self,
        token_url: str,
        credentials: Callable[[], ClientCredentials],
        http: httpx.AsyncClient,
        *,
        applies_to: Callable[[httpx.URL], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._source = credentials
        self._http = http
        self._applies_to = applies_to
        self._clock = clock
        self._lock = asyncio.Lock()
        self._tokens: _Tokens | None = None
        self._refused: ClientCredentials | None = None
        self._refusals = 0
        self._paused_until = 0.0
        #: Why no token can be had right now (no credentials, refused credentials, a lockout), for readiness.
        self.auth_problem: str | None = None

    @property
    def refused(self) -> ClientCredentials | None:
        """The credentials the token endpoint refused last (until a token is issued again)."""
        return self._refused

    @property
    def has_token(self) -> bool:
        """Whether a token is held that is not due for renewal yet."""
        return self._tokens is not None and self._tokens.fresh

    def renew_in_s(self) -> float:
        """Seconds until the held token is due for renewal (0 if none is held)."""
        return max(0.0, self._tokens.renew_at - self._clock()) if self._tokens is not None else 0.0

    async def token(self, *, replacing: str | None = None) -> str:
        """The access token, fetched if none is held or it is due for renewal. ``replacing``: a token the
        server refused; a new one is fetched unless another request has replaced it already.

        Raises ``NoCredentials``, ``CredentialsRefused`` (also while the pause after a refusal lasts),
        ``TokenEndpointLocked``, ``TokenRequestFailed`` or ``httpx.HTTPError`` (token endpoint unreachable).
        """
        async with self._lock:  # one fetch for all concurrent requests
            tokens = self._tokens
            if tokens is not None and tokens.fresh and (replacing is None or tokens.access != replacing):
                assert tokens.access is not None
                return tokens.access
            return await self._fetch()

    async def _fetch(self) -> str:
        try:
            credentials = self._source()
        except NoCredentials as exc:
            self.auth_problem = str(exc)
            raise
        if self._clock() < self._paused_until and (self._refused is None or credentials == self._refused):
            if self._refused is not None:
                raise CredentialsRefused(self.auth_problem or "credentials refused")
            raise TokenEndpointLocked(self.auth_problem or "locked out", self._paused_until - self._clock())
        if self._tokens is None or self._tokens.credentials != credentials:
            self._tokens = _Tokens(self.token_url, credentials, self._http, self._clock)
        try:
            await self._tokens.fetch()
        except CredentialsRefused:
            self._refusals += 1
            pause = min(REFUSED_PAUSE_S * 2 ** (self._refusals - 1), MAX_REFUSED_PAUSE_S)
            self._refused, self._tokens = credentials, None
            self._paused_until = self._clock() + pause
            self.auth_problem = (
                f"the token endpoint refused the credentials of {credentials.client_id} (a rotated secret?); "
                f"next attempt in {pause:.0f}s or as soon as the credentials change"
            )
            log.error("%s", self.auth_problem)
            raise
        except TokenEndpointLocked as exc:
            self._paused_until = self._clock() + exc.retry_after_s
            self.auth_problem = f"{exc}; next attempt in {exc.retry_after_s:.0f}s"
            log.error("%s", self.auth_problem)
            raise
        except httpx.HTTPError as exc:
            self.auth_problem = f"no token: {type(exc).__name__}: {exc}"
            raise
        if self._refused is not None or self._paused_until:
            log.info("the token endpoint accepts our credentials (%s) again", credentials.client_id)
        self._refused, self._refusals, self._paused_until, self.auth_problem = None, 0, 0.0, None
        assert self._tokens.access is not None
        return self._tokens.access

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._applies_to is not None and not self._applies_to(request.url):
            yield request
            return
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            log.warning(
                "%s refused our token (%s); fetching a new one",
                request.url.host,
                response.headers.get("www-authenticate", ""),
            )
            request.headers["Authorization"] = f"Bearer {await self.token(replacing=token)}"
            yield request


__all__ = [
    "ClientCredentials",
    "ClientIdentity",
    "CredentialsRefused",
    "NoCredentials",
    "TokenEndpointLocked",
    "TokenRequestFailed",
    "credentials_from_file",
    "retry_after_s",
    "service_credentials_file",
]

"""Client authentication: reading the credentials (RFC 6749 §2.3.1) and checking them with user-service.

user-service owns the clients and their argon2id secret hashes; the gateway never sees
a hash. It asks ``POST /internal/v1/clients/authenticate`` with a short-lived token it
mints for itself (scope ``internal``), over one pooled HTTP client with hard timeouts,
so a slow or dead user-service costs a caller a bounded wait and a 503, never a hang.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from services.api_gateway.errors import invalid_client, invalid_request
from services.api_gateway.keys import KeyRing
from shared.auth import mint_access_token
from shared.auth.scopes import CLIENT_SCOPES, INTERNAL, PLATFORM_TENANT

log = logging.getLogger(__name__)

AUTHENTICATE_PATH = "/internal/v1/clients/authenticate"
#: Identity of the gateway's own service token.
SERVICE_SUBJECT = "service:api-gateway"
SERVICE_CLIENT_ID = "api-gateway"
#: Longest client_id / secret user-service accepts; anything longer is refused without asking it.
MAX_CLIENT_ID_CHARS = 128
MAX_SECRET_CHARS = 256


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What the caller presented; ``via_basic`` tells which method it used."""

    client_id: str
    client_secret: str
    via_basic: bool

    def __repr__(self) -> str:  # never log a secret
        return f"ClientCredentials(client_id={self.client_id!r}, via_basic={self.via_basic})"


@dataclass(frozen=True, slots=True)
class Client:
    """An authenticated client as user-service registered it."""

    client_id: str
    tenant: str
    scopes: frozenset[str]
    grant_types: frozenset[str]

    @property
    def subject(self) -> str:
        return f"client:{self.client_id}"

    @property
    def is_platform_admin(self) -> bool:
        return self.tenant == PLATFORM_TENANT and "admin" in self.scopes


class DirectoryUnavailable(Exception):
    """user-service could not answer (down, slow, or answered something unusable)."""


def read_credentials(authorization: str | None, form: dict[str, str]) -> ClientCredentials:
    """The client's credentials from HTTP Basic or from the ``client_id``/``client_secret`` form fields.

    RFC 6749 §2.3.1: Basic is the method every server must support, and its user and
    password are form-urlencoded *before* base64; the form fields are the alternative.
    Using both is refused (§2.3: one method per request). No credentials at all is
    ``invalid_client``: every client here is confidential.
    """
    form_secret = form.get("client_secret")
    basic = _parse_basic(authorization) if authorization else None
    if basic is not None:
        if form_secret is not None:
            raise invalid_request("use either HTTP Basic or client_secret in the body, not both")
        if "client_id" in form and form["client_id"] != basic.client_id:
            raise invalid_request("client_id in the body differs from the authenticated client")
        return basic
    if authorization:
        raise invalid_client("unsupported Authorization scheme; use HTTP Basic or the form fields")
    client_id = form.get("client_id")
    if client_id is None or form_secret is None:
        raise invalid_client("client authentication required")
    _check_length(client_id, form_secret)
    return ClientCredentials(client_id, form_secret, via_basic=False)


def _parse_basic(authorization: str) -> ClientCredentials | None:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_client("malformed HTTP Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed HTTP Basic credentials")
    client_id, secret = unquote_plus(user), unquote_plus(password)
    if not client_id or not secret:
        raise invalid_client("malformed HTTP Basic credentials")
    _check_length(client_id, secret)
    return ClientCredentials(client_id, secret, via_basic=True)


def _check_length(client_id: str, secret: str) -> None:
    if len(client_id) > MAX_CLIENT_ID_CHARS or len(secret) > MAX_SECRET_CHARS:
        raise invalid_client("client authentication failed")


class ServiceTokens:
    """The gateway's own access token for user-service, minted with its active key and cached.

    Re-minted once less than a fifth of its lifetime (at least 30 s) remains, so a token
    never expires in flight; ``invalidate`` forces a new one (user-service refused it).
    """

    def __init__(
        self, keyring: KeyRing, *, issuer: str, audience: str, ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._keyring, self._issuer, self._audience, self._ttl = keyring, issuer, audience, ttl_s
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        now = self._clock()
        if self._token is None or self._expires_at - now < max(30.0, self._ttl / 5):
            self._token, claims = mint_access_token(
                self._keyring.active.key,
                issuer=self._issuer,
                audience=self._audience,
                subject=SERVICE_SUBJECT,
                client_id=SERVICE_CLIENT_ID,
                tenant=PLATFORM_TENANT,
                scopes=frozenset({INTERNAL}),
                ttl_s=self._ttl,
                now=int(now),
            )
            self._expires_at = float(claims["exp"])
        return self._token

    def invalidate(self) -> None:
        self._token = None


class _AuthenticateAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    client_id: str
    tenant: str
    scopes: list[str]
    grant_types: list[str]


class ClientDirectory:
    """Checks client credentials with user-service's internal authenticate endpoint."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, tokens: ServiceTokens, *, timeout_s: float) -> None:
        self.url = base_url.rstrip("/") + AUTHENTICATE_PATH
        self._http = http
        self._tokens = tokens
        self._timeout_s = timeout_s

    async def authenticate(self, credentials: ClientCredentials) -> Client | None:
        """The client if the credentials are right, ``None`` if they are not.

        Raises ``DirectoryUnavailable`` when user-service cannot tell (unreachable, slow,
        5xx, refusing the gateway's own token). The whole exchange, including one retry
        with a fresh service token, is bounded by ``timeout_s``.
        """
        body = {"client_id": credentials.client_id, "client_secret": credentials.client_secret}
        try:
            async with asyncio.timeout(self._timeout_s):
                for attempt in (1, 2):
                    response = await self._http.post(
                        self.url, json=body, headers={"Authorization": f"Bearer {self._tokens.token()}"}
                    )
                    if response.status_code == 401 and _refuses_bearer(response):
                        # Our token, not the client's secret, was refused (e.g. a key user-service
                        # has not fetched yet): mint a fresh one and try once more.
                        self._tokens.invalidate()
                        if attempt == 1:
                            continue
                        raise DirectoryUnavailable("user-service refuses the gateway's service token")
                    break
        except (httpx.HTTPError, TimeoutError) as exc:
            raise DirectoryUnavailable(f"user-service unreachable: {type(exc).__name__}") from exc
        if response.status_code == 401:
            return None
        if response.status_code == 422:
            # Credentials outside user-service's bounds cannot be valid ones.
            log.warning("user-service rejected the shape of client %r's credentials", credentials.client_id)
            return None
        if response.status_code == 403:
            raise DirectoryUnavailable("user-service refuses the gateway's service token (403)")
        if response.status_code != 200:
            raise DirectoryUnavailable(f"user-service answered {response.status_code}")
        try:
            answer = _AuthenticateAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise DirectoryUnavailable("user-service answered an unexpected document") from exc
        if answer.client_id != credentials.client_id:
            raise DirectoryUnavailable("user-service answered for another client")
        # Only client scopes: ``internal`` is never granted to a client, whatever the registry says.
        return Client(
            client_id=answer.client_id,
            tenant=answer.tenant,
            scopes=frozenset(answer.scopes) & CLIENT_SCOPES,
            grant_types=frozenset(answer.grant_types),
        )


def _refuses_bearer(response: httpx.Response) -> bool:
    return response.headers.get("www-authenticate", "").lower().startswith("bearer")

"""OAuth2 error responses (RFC 6749 §5.2) and the no-store JSON every OAuth endpoint answers with.

The OAuth endpoints deliberately do not use the platform's problem+json: OAuth clients
parse ``{"error", "error_description"}`` and nothing else.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel

from shared.auth.bearer import REALM

#: RFC 6749 §5.1: token responses (and anything carrying token data) must never be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Sent with every 401: RFC 6749 §5.2 requires it when the client tried HTTP Basic, and
#: RFC 9110 §15.5.2 requires a challenge on any 401, so it is sent either way.
BASIC_CHALLENGE = f'Basic realm="{REALM}"'


class OAuthErrorResponse(BaseModel):
    """The body of an OAuth2 error (RFC 6749 §5.2), for the OpenAPI document."""

    error: str
    error_description: str


class OAuthError(Exception):
    """An RFC 6749 §5.2 error; raise it in an OAuth handler to answer with it.

    Codes used: ``invalid_request``, ``invalid_client`` (401), ``invalid_grant``,
    ``unauthorized_client``, ``unsupported_grant_type``, ``invalid_scope``, and
    ``temporarily_unavailable`` (503, or 429 when a client is locked out). The last one is
    defined for the authorization endpoint (RFC 6749 §4.1.2.1); the token endpoint has no
    code for "try again later", and reusing the registered one lets standard OAuth clients
    recognise a transient failure instead of an unknown error code.
    """

    def __init__(
        self, error: str, description: str, *, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> Response:
        return oauth_json(
            {"error": self.error, "error_description": self.description}, status=self.status, headers=self.headers
        )


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    return OAuthError("invalid_client", description, status=401, headers={"WWW-Authenticate": BASIC_CHALLENGE})


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def temporarily_unavailable(description: str, *, status: int = 503, retry_after_s: int = 5) -> OAuthError:
    return OAuthError(
        "temporarily_unavailable", description, status=status, headers={"Retry-After": str(max(1, retry_after_s))}
    )


def oauth_json(body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the no-store headers of RFC 6749 §5.1."""
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers={**NO_STORE, **(headers or {})}
    )

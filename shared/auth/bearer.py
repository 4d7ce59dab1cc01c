"""RFC 6750 plumbing shared by the services' FastAPI glue and the gateway's proxy.

Both read ``Authorization: Bearer <token>`` and refuse with the same challenges::

    401  Bearer realm="hats"                                        (no bearer token)
    401  Bearer realm="hats", error="invalid_token", error_description="token expired"
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.auth.principal import InvalidToken, VerifierNotReady

REALM = "hats"
#: ``WWW-Authenticate`` of a request without a bearer token (RFC 6750 §3).
CHALLENGE = f'Bearer realm="{REALM}"'
MISSING_TOKEN = "a bearer access token is required"
#: The 400 detail of a request with more than one ``Authorization`` header.
AMBIGUOUS_AUTHORIZATION = "more than one Authorization header"


class AmbiguousAuthorization(ValueError):
    """A request carries more than one ``Authorization`` header.

    Which one counts is not defined (RFC 9110 §5.3: it is not a list field), and two readers
    that pick differently (a proxy checks the last, a service uses the first) let a caller
    pass one token's check with another token. Such a request is refused (400), never read.
    """


def authorization_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The one ``Authorization`` value of ASGI raw headers (``None`` if absent).

    Raises :class:`AmbiguousAuthorization` if there is more than one.
    """
    found = None
    for name, value in headers:
        if name == b"authorization":
            if found is not None:
                raise AmbiguousAuthorization(AMBIGUOUS_AUTHORIZATION)
            found = value
    return found


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization`` header value if it is ``Bearer <token>`` (scheme in any case)."""
    scheme, _, token = (authorization or b"").partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token.decode("latin-1")


def refusal(exc: InvalidToken) -> tuple[int, str, dict[str, str]]:
    """The status, detail and headers for a refused token: 401 with its ``WWW-Authenticate``, or
    503 with ``Retry-After`` when the verifier is not ready (the token may well be valid)."""
    description = _quotable(exc.description)
    if isinstance(exc, VerifierNotReady):
        return 503, f"cannot verify access tokens yet: {description}", {"Retry-After": "1"}
    return (
        401,
        f"invalid access token: {description}",
        {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token", error_description="{description}"'},
    )


def _quotable(text: str) -> str:
    """``text`` restricted to what RFC 6750 allows inside ``error_description="..."``."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)

"""The one JOSE profile of the platform's access tokens: JWS ``EdDSA`` over Ed25519, typed ``at+jwt``."""

from __future__ import annotations

from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwa import EdDSAAlgorithm, JWSAlgModel
from joserfc.jwk import Key, OKPKey
from joserfc.jws import JWSRegistry

#: The only signature algorithm accepted or produced (docs/auth.md).
ALGORITHM = "EdDSA"
#: The only curve: ``EdDSA`` also covers Ed448, which the platform never issues.
CURVE = "Ed25519"
#: JWT ``typ`` of an access token (RFC 9068 §2.1), so no other JWT can pass for one.
TOKEN_TYPE = "at+jwt"
ACCEPTED_TYPES = frozenset({TOKEN_TYPE, "application/" + TOKEN_TYPE})
#: Header parameters an access token may carry; anything else (``jku``, ``x5u``, ``crit``,
#: ``b64``, embedded ``jwk``…) is a way to steer the verifier and is refused.
HEADER_PARAMETERS = frozenset({"alg", "kid", "typ"})

_EDDSA = EdDSAAlgorithm()


class _EdDSAOnly(JWSRegistry):
    """joserfc's JWS registry narrowed to ``EdDSA``.

    joserfc warns (``SecurityWarning``) on every use of ``EdDSA`` because RFC 9864
    deprecates the polymorphic name in favour of ``Ed25519``; the contract pins
    ``EdDSA`` and the key check below pins the curve, so the warning is noise here.
    """

    def get_alg(self, name: str) -> JWSAlgModel:
        if name != ALGORITHM:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return _EDDSA


#: Registry passed to every joserfc call: nothing but ``EdDSA`` can sign or verify.
REGISTRY = _EdDSAOnly(algorithms=[ALGORITHM])


def is_signing_key(key: Key) -> bool:
    """Whether ``key`` can verify the platform's tokens: an Ed25519 OKP key with a kid, meant for signatures."""
    return (
        isinstance(key, OKPKey)
        and key.curve_name == CURVE
        and bool(key.kid)
        and key.get("use") in (None, "sig")
        and key.get("alg") in (None, ALGORITHM)
    )

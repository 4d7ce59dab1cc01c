"""Strict reading of OAuth2 request bodies: ``application/x-www-form-urlencoded`` only (RFC 6749 §3.2).

Parsed here rather than by Starlette's form parser, which also accepts multipart and
silently keeps the last of repeated parameters; RFC 6749 §3.1/§3.2 wants repeated
parameters refused and empty ones treated as absent.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from services.api_gateway.errors import invalid_request

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
#: OAuth2 requests are a handful of short parameters; anything bigger is not one.
MAX_BODY_BYTES = 16 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The request's form parameters; ``invalid_request`` for any other body or a malformed one."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise invalid_request(f"the request body must be {FORM_MEDIA_TYPE}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise invalid_request("request body too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("malformed form body") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise invalid_request(f"parameter {name!r} repeated")
        form[name] = value
    # RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted."
    return {name: value for name, value in form.items() if value != ""}

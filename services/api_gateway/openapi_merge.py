"""The gateway's ``/docs`` shows the whole public API: its own OAuth2 endpoints plus the
``/api/v1/<area>`` operations of every service it routes to.

Each upstream's ``/openapi.json`` is fetched through the gateway's pooled client with a
short timeout. A service that is down is left out and asked again ~30 s later; one that
answered is re-read every few minutes (redeploys add endpoints), and kept if a re-read
fails. Only the paths of the areas the service owns in ``shared.ports.ROUTES`` are
taken; its components get a per-service prefix (``DatabaseService_Bar``) so two
services' ``HTTPValidationError`` never collide; every merged operation requires the
``oauth2`` scheme (client credentials at ``/oauth2/token``), which is what Swagger UI's
"Authorize" dialog offers.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.routing import Route

from shared import ports
from shared.auth import scopes as scope_names
from shared.kit.problems import PROBLEM_JSON, PROBLEM_SCHEMA

log = logging.getLogger(__name__)

SCHEME = "oauth2"
TOKEN_URL = "/oauth2/token"
#: What each client scope allows, shown in Swagger UI's "Authorize" dialog.
SCOPE_DESCRIPTIONS: dict[str, str] = {
    scope_names.MARKET_READ: "Read market data (ticks, bars, symbols)",
    scope_names.MARKET_WRITE: "Write market data (ingest ticks); granted by a platform admin only",
    scope_names.TRADE: "Place and manage orders; read positions",
    scope_names.COMPLIANCE: "Compliance reports and surveillance",
    scope_names.ADMIN: "Administer the tenant: users, clients, roles",
}
_COMPONENT_KINDS = (
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "links",
    "callbacks",
    "pathItems",
)
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: What the gateway itself may answer on every proxied operation, before or instead of the
#: service (all problem+json); a service's own answer of the same status keeps its description.
_GATEWAY_RESPONSES = {
    "400": "Malformed request: two Authorization headers, dot segments, an invalid Content-Length",
    "401": "No, invalid or expired access token (RFC 6750 challenge in WWW-Authenticate)",
    "413": "Request body larger than the gateway's limit",
    "429": "Rate limit of the client exceeded (see Retry-After)",
    "502": "The service is unreachable or broke off its answer",
    "504": "The service did not answer in time",
}

_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}

Http = aiohttp.ClientSession | Callable[[], aiohttp.ClientSession]


def service_upstreams(url_of: Callable[[str], str], routes: Mapping[str, str] = ports.ROUTES) -> dict[str, str]:
    """Service name -> base URL (``url_of(service)``) for every service that owns an area of ``routes``."""
    return {service: url_of(service) for service in dict.fromkeys(routes.values())}


def security_scheme() -> dict[str, Any]:
    """The ``oauth2`` client-credentials scheme with every client scope."""
    scopes = {s: SCOPE_DESCRIPTIONS.get(s, s) for s in sorted(scope_names.CLIENT_SCOPES)}
    return {
        "type": "oauth2",
        "description": "Client credentials: client_id and client_secret of an API client",
        "flows": {"clientCredentials": {"tokenUrl": TOKEN_URL, "scopes": scopes}},
    }


@dataclass
class _Upstream:
    service: str
    url: str
    areas: tuple[str, ...]
    doc: dict[str, Any] | None = None
    fetched_at: float = -float("inf")
    attempted_at: float = -float("inf")
    failing: bool = False


class MergedOpenAPI:
    """The gateway's merged OpenAPI document, rebuilt only when an upstream's document changes.

    ``upstreams`` maps a service name to its base URL; ``routes`` (area -> service) says
    which ``/api/v1/<area>`` paths each one contributes. ``http`` is an
    ``aiohttp.ClientSession`` or a callable returning one (the proxy's, opened later).
    ``base`` returns the gateway's own schema (its OAuth2 endpoints).
    """

    def __init__(
        self,
        base: Callable[[], dict[str, Any]],
        upstreams: Mapping[str, str],
        http: Http,
        *,
        routes: Mapping[str, str] = ports.ROUTES,
        fetch_timeout_s: float = 2.0,
        retry_after_s: float = 30.0,
        refresh_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base
        self._http = http
        self._upstreams = [
            _Upstream(service, url.rstrip("/"), tuple(a for a, s in routes.items() if s == service))
            for service, url in upstreams.items()
        ]
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_after_s = retry_after_s
        self.refresh_after_s = refresh_after_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._schema: dict[str, Any] | None = None

    @property
    def missing(self) -> list[str]:
        """Services whose document is not in the merged schema (down since start)."""
        return [u.service for u in self._upstreams if u.doc is None]

    async def refresh(self) -> None:
        """Fetch the documents that are due; never raises, never takes longer than the fetch timeout."""
        if not self._due():
            return
        async with self._lock:
            due = self._due()  # another request may have refreshed while we waited
            if not due:
                return
            changed = await asyncio.gather(*(self._fetch(u) for u in due))
            if any(changed):
                self._schema = None

    def _due(self) -> list[_Upstream]:
        now = self._clock()
        return [
            u
            for u in self._upstreams
            if (
                now - u.attempted_at >= self.retry_after_s
                if u.failing or u.doc is None
                else now - u.fetched_at >= self.refresh_after_s
            )
        ]

    async def _fetch(self, upstream: _Upstream) -> bool:
        upstream.attempted_at = self._clock()
        session = self._http() if callable(self._http) else self._http
        url = f"{upstream.url}/openapi.json"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=self.fetch_timeout_s)) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                doc = orjson.loads(await response.read())
            if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
                raise ValueError("not an OpenAPI document")
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            if not upstream.failing:
                log.warning(
                    "OpenAPI of %s unavailable (%s); its API is left out of /docs for now",
                    upstream.service,
                    exc or type(exc).__name__,
                )
            upstream.failing = True
            return False
        upstream.failing = False
        upstream.fetched_at = upstream.attempted_at
        if doc == upstream.doc:
            return False
        upstream.doc = doc
        return True

    def schema(self) -> dict[str, Any]:
        """The merged document (from the documents fetched so far); cached until one changes."""
        if self._schema is None:
            merged = copy.deepcopy(self._base())
            merged.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = security_scheme()
            for upstream in self._upstreams:
                if upstream.doc is not None:
                    merge_service(merged, upstream.service, upstream.doc, upstream.areas)
            if self.missing:
                note = "Not shown (service unavailable, retried shortly): " + ", ".join(self.missing) + "."
                info = merged.setdefault("info", {})
                info["description"] = (info.get("description", "") + "\n\n" + note).strip()
            self._schema = merged
        return self._schema


def merge_service(merged: dict[str, Any], service: str, doc: dict[str, Any], areas: tuple[str, ...]) -> None:
    """Merge the ``/api/v1/<area>`` paths of one service's ``doc`` into ``merged`` (in place)."""
    prefix = "".join(part.capitalize() for part in service.split("-")) + "_"
    roots = tuple(f"/api/v1/{area}" for area in areas)
    paths = {
        path: item
        for path, item in doc.get("paths", {}).items()
        if any(path == r or path.startswith(r + "/") for r in roots)
    }
    components = doc.get("components", {})
    renamed = lambda ref: _rename(ref, prefix)  # noqa: E731
    taken_ids = {
        op.get("operationId")
        for item in merged.get("paths", {}).values()
        for m, op in item.items()
        if m in _METHODS and isinstance(op, dict)
    }

    out_paths = merged.setdefault("paths", {})
    for path, item in paths.items():
        if path in out_paths:
            log.warning("%s: path %s already in the gateway's schema; skipped", service, path)
            continue
        item = _rewrite_refs(copy.deepcopy(item), renamed)
        for method, operation in item.items():
            if method not in _METHODS or not isinstance(operation, dict):
                continue
            operation["security"] = [{SCHEME: _required_scopes(operation, components)}]
            responses = operation.setdefault("responses", {})
            for status, description in _GATEWAY_RESPONSES.items():
                responses.setdefault(status, {"description": description, "content": _PROBLEM_CONTENT})
            op_id = operation.get("operationId")
            if op_id in taken_ids:
                operation["operationId"] = f"{prefix}{op_id}"
            taken_ids.add(operation.get("operationId"))
        out_paths[path] = item

    # Only the components the kept paths reach (transitively), under their new names.
    out_components = merged.setdefault("components", {})
    pending = _refs(paths)
    seen: set[tuple[str, str]] = set()
    while pending:
        kind, name = pending.pop()
        if (kind, name) in seen or kind not in _COMPONENT_KINDS:
            continue
        seen.add((kind, name))
        component = components.get(kind, {}).get(name)
        if component is None:
            continue
        pending |= _refs(component)
        out_components.setdefault(kind, {})[prefix + name] = _rewrite_refs(copy.deepcopy(component), renamed)

    known = {t.get("name") for t in merged.get("tags", [])}
    for tag in doc.get("tags", []):
        if tag.get("name") not in known:
            merged.setdefault("tags", []).append(tag)
            known.add(tag.get("name"))


def _required_scopes(operation: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """Scopes the upstream itself declared for the operation (oauth2/openIdConnect requirements)."""
    schemes = components.get("securitySchemes", {})
    out: set[str] = set()
    for requirement in operation.get("security", []) or []:
        for name, scopes in requirement.items():
            if schemes.get(name, {}).get("type") in ("oauth2", "openIdConnect"):
                out.update(scopes)
    return sorted(out)


def _rename(ref: str, prefix: str) -> str:
    parts = ref.split("/")
    if len(parts) == 4 and parts[0] == "#" and parts[1] == "components" and parts[2] in _COMPONENT_KINDS:
        return f"#/components/{parts[2]}/{prefix}{parts[3]}"
    return ref


def _rewrite_refs(node: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                node[key] = rename(value)
            else:
                _rewrite_refs(value, rename)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value, rename)
    return node


def _refs(node: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/"):
                parts = ref.split("/")
                if len(parts) == 4:
                    found.add((parts[2], parts[3]))
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


def install_merged_openapi(app: FastAPI, upstreams: Mapping[str, str], http: Http, **options: Any) -> MergedOpenAPI:
    """Serve the merged document at ``app.openapi_url`` and make ``app.openapi()`` return it.

    Call when the app is built (before it starts). ``upstreams``: service -> base URL
    (``service_upstreams()``); ``http``: the pooled ``aiohttp.ClientSession`` or a callable
    returning it (``lambda: proxy.session``); ``options`` go to :class:`MergedOpenAPI`.
    Also configures Swagger UI for the client-credentials flow: the "Authorize" dialog
    asks for client_id and client_secret and fetches a token from ``/oauth2/token``.
    """
    own = FastAPI.openapi.__get__(app)  # the gateway's own schema, FastAPI's cached generator
    merged = MergedOpenAPI(own, upstreams, http, **options)
    app.openapi = merged.schema  # type: ignore[method-assign]

    async def openapi_json(_request: Any) -> Response:
        await merged.refresh()
        return Response(orjson.dumps(merged.schema()), media_type="application/json")

    if app.openapi_url:
        # FastAPI's own route computes the schema synchronously; ours may fetch first.
        app.router.routes[:] = [
            r for r in app.router.routes if not (isinstance(r, Route) and r.path == app.openapi_url)
        ]
        app.add_route(app.openapi_url, openapi_json, include_in_schema=False)
    # ui.initOAuth(...) and the SwaggerUIBundle parameters of fastapi.openapi.docs.get_swagger_ui_html.
    # The dialog of a clientCredentials scheme asks for client_id/client_secret itself; scopes
    # are sent space-separated (RFC 6749 §3.3).
    app.swagger_ui_init_oauth = {"appName": app.title, "scopeSeparator": " "}
    app.swagger_ui_parameters = {
        **(app.swagger_ui_parameters or {}),
        "persistAuthorization": True,
        "validatorUrl": None,
    }
    return merged


__all__ = [
    "SCOPE_DESCRIPTIONS",
    "MergedOpenAPI",
    "install_merged_openapi",
    "merge_service",
    "security_scheme",
    "service_upstreams",
]

"""RFC 9457 problem details: every HTTP error of every service has this shape, never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ExceptionHandler

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    """Raise anywhere in a handler to answer with a problem+json document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    title: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: The OpenAPI schema of a problem document (RFC 9457 §3.1; members a response adds are allowed).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def document_problems(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document describe its 422 answers as they are sent: problem+json.

    FastAPI documents every validation error as ``application/json`` with its own
    ``HTTPValidationError`` body, and not at all the 400 of a body it cannot parse; the
    handlers below answer both as ``application/problem+json`` (found by fuzzing the
    gateway's merged document with schemathesis).
    """
    generate = app.openapi
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached after the first call: the rewrite is idempotent
        documented = False
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                responses = operation.get("responses", {})
                invalid = responses.get("422")
                if invalid is not None and PROBLEM_JSON not in invalid.get("content", {}):
                    invalid["content"] = problem
                    documented = True
                if "requestBody" in operation and "400" not in responses:
                    responses["400"] = {"description": "The body could not be parsed", "content": problem}
                    documented = True
        if documented:
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Problem) -> Response:
        return problem_response(
            exc.status,
            exc.detail,
            instance=request.url.path,
            title=exc.title,
            type_=exc.type,
            headers=exc.headers,
            **exc.extra,
        )

    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem_response(
            exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None)
        )

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        first: dict[str, Any] = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(
            422, f"{where}: {first['msg']}" if where else first["msg"], instance=request.url.path, errors=errors
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; see the service log", instance=request.url.path)

    # Starlette types a handler by the base exception; each of these gets only its own kind.
    app.add_exception_handler(Problem, cast(ExceptionHandler, on_problem))
    app.add_exception_handler(StarletteHTTPException, cast(ExceptionHandler, on_http))
    app.add_exception_handler(RequestValidationError, cast(ExceptionHandler, on_validation))
    app.add_exception_handler(Exception, on_unexpected)
    document_problems(app)

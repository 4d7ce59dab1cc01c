"""Swagger UI at ``/docs``, served entirely by the service itself, so it works offline.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from cdn.jsdelivr.net
and its favicon from fastapi.tiangolo.com: without internet (trading servers, CI) it is a
blank page. :func:`install_docs` serves the same page (FastAPI's ``get_swagger_ui_html``)
with those three URLs pointing below ``/docs/`` on the service, and serves the files there.

The files come from the ``fastapi-offline`` wheel (pinned in pyproject.toml), whose
``static`` directory holds Swagger UI's ``swagger-ui-bundle.js`` and ``swagger-ui.css``
(swagger-ui-dist 5.32.6 in 1.7.7: the major version FastAPI's CDN URLs ask for, ``@5``)
and FastAPI's favicon. Chosen because it is MIT, depends on nothing but FastAPI and keeps
its copy of swagger-ui-dist current. Only its files are used, not its ``FastAPIOffline``
factory: that replaces how the app is built, serves the files outside ``/docs/`` (where the
gateway's docs policy would not cover them) and drops ``swagger_ui_init_oauth`` (the
gateway's "Authorize"). The alternative, ``swagger-ui-bundle`` 1.1.0, ships Swagger UI
4.15.5 (2022) and pulls in Jinja2.

Wiring (in ``build_app``, with ``FastAPI(docs_url=None, ...)`` so FastAPI adds no CDN page)::

    install_docs(app)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse

from shared import compat

_PACKAGE = "fastapi-offline"
_STATIC = compat.swagger_ui_files()
#: Name under ``<path>/static/<version>/`` -> (file in the wheel, content type).
_ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "favicon.png": ("favicon.png", "image/png"),
}
#: The asset URLs carry the package version, so a browser may keep them for a year.
_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: Defaults under the app's own ``swagger_ui_parameters``: no request to validator.swagger.io.
_PARAMETERS = {"validatorUrl": None}


def install_docs(app: FastAPI, *, path: str = "/docs") -> None:
    """Serve Swagger UI for ``app`` at ``path`` with no request leaving the service.

    Adds, all left out of the OpenAPI document:

    * ``GET {path}``: the page, for the document at ``app.openapi_url``, with the app's
      ``swagger_ui_parameters`` and ``swagger_ui_init_oauth`` (read on each request, so
      what is set after this call, like the gateway's merged OpenAPI and OAuth2 client
      credentials, is used);
    * ``GET {path}/static/<version>/{swagger-ui-bundle.js,swagger-ui.css,favicon.png}``:
      the assets, with their content types and a year-long, immutable cache lifetime;
    * ``GET app.swagger_ui_oauth2_redirect_url`` (``/docs/oauth2-redirect`` by default):
      the page Swagger UI's OAuth2 flows return to.

    Build the app with ``docs_url=None`` so FastAPI does not add its CDN-based page.
    Nothing is served when ``app.openapi_url`` is ``None`` (no document, no docs).
    """
    if not app.openapi_url:
        return
    path = path.rstrip("/")
    static = f"{path}/static/{metadata.version(_PACKAGE)}"

    async def swagger_ui(request: Request) -> HTMLResponse:
        if not app.openapi_url:
            raise HTTPException(status_code=404)
        root = request.scope.get("root_path", "").rstrip("/")
        redirect = app.swagger_ui_oauth2_redirect_url
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{static}/swagger-ui.css",
            swagger_favicon_url=f"{root}{static}/favicon.png",
            oauth2_redirect_url=root + redirect if redirect else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters={**_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )

    app.add_route(path, swagger_ui, methods=["GET"], include_in_schema=False)
    for name, (file, media_type) in _ASSETS.items():
        app.add_route(f"{static}/{name}", _asset(_STATIC / file, media_type), methods=["GET"], include_in_schema=False)
    if app.swagger_ui_oauth2_redirect_url:

        async def oauth2_redirect(_request: Request) -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_route(app.swagger_ui_oauth2_redirect_url, oauth2_redirect, methods=["GET"], include_in_schema=False)


def _asset(file: Path, media_type: str) -> Callable[[Request], Awaitable[FileResponse]]:
    async def serve(_request: Request) -> FileResponse:
        return FileResponse(file, media_type=media_type, headers={"Cache-Control": _CACHE_CONTROL})

    return serve


__all__ = ["install_docs"]

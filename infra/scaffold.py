"""``hats new-service NAME``: the files of a new service on the kit's template.

NAME must be a port-matrix entry that is not built yet (``hats ports`` lists them). The
scaffold writes ``<tier>/<package>/`` (settings, state, routes, service declaration), a
test that starts it in-process, and points the matrix entry at the declaration. The
service then runs under ``hats up`` with health, readiness, metrics, docs and its
contract; what it does is yours to write (docs/services.md).
"""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from pathlib import Path

from shared import ports

_SETTINGS = '''"""{name} settings (``{prefix}*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class {cls}Settings(ServiceSettings):
    #: Every field here is read from ``{prefix}<FIELD>``; document each one in README.md.
    pass
'''

_STATE = '''"""What {name}'s routes and handlers share while it runs, reached as ``{cls}Dep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from {package}.settings import {cls}Settings
from shared.kit.service import state_of


@dataclass(frozen=True)
class {cls}:
    settings: {cls}Settings


#: ``service: {cls}Dep`` in a route's parameters gives the running service's state.
{cls}Dep = Annotated[{cls}, state_of({cls})]
'''

_ROUTES = '''"""{name}'s HTTP API (the gateway routes ``/api/v1/<area>`` by ``shared.ports.ROUTES``)."""

from __future__ import annotations

from fastapi import APIRouter

from {package}.state import {cls}Dep

router = APIRouter(prefix="/api/v1/{area}", tags=["{area}"])


@router.get("/about", operation_id="{snake}_about", summary="What this service is")
async def about(service: {cls}Dep) -> dict[str, str]:
    return {{"service": "{name}"}}
'''

_SERVICE = '''"""{name} ({port}): {job}."""

from __future__ import annotations

from {package}.routes import router
from {package}.settings import {cls}Settings
from {package}.state import {cls}
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract()


async def start(rt: Runtime[{cls}Settings, {cls}]) -> {cls}:
    """Wire the service: publishers and subscribers from rt.bus, pools from rt.postgres..., and
    rt.background(...) for loops. Everything declared in CONTRACT must be used here."""
    return {cls}(rt.settings)


SERVICE = ServiceDefinition(
    "{name}",
    settings={cls}Settings,
    contract=CONTRACT,
    uses=(),  # e.g. (Postgres(), Bus(), TokenAuth()) from shared.kit.deps
    routers=(router,),
    start=start,
)
'''

_TEST = '''"""{name} starts on the template: ready, its contract held, its API answering."""

from __future__ import annotations

import httpx

from {package}.service import SERVICE
from shared.settings import PlatformSettings


async def test_it_starts_and_answers(tmp_path):
    app = SERVICE.create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://{name}") as http:
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/contract")).json()["unused"] == []
            assert (await http.get("/api/v1/{area}/about")).json() == {{"service": "{name}"}}
'''


class ScaffoldError(RuntimeError):
    pass


def _matrix_entry_with_module(source: str, name: str, module: str) -> str:
    """``shared/ports.py``'s text with ``module=...`` added to NAME's ``Service(...)`` call."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "Service"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == name
        ):
            if any(k.arg == "module" for k in node.keywords):
                raise ScaffoldError(f"{name} already has a module")
            # ast's offsets count UTF-8 bytes within the line.
            raw = source.encode()
            lines = raw.splitlines(keepends=True)
            offset = sum(len(line) for line in lines[: (node.end_lineno or 1) - 1]) + (node.end_col_offset or 0)
            body = raw[: offset - 1].decode().rstrip().rstrip(",")
            return f'{body}, module="{module}")' + raw[offset:].decode()
    raise ScaffoldError(f"cannot find {name}'s entry in shared/ports.py")


def new_service(name: str, root: Path) -> list[Path]:
    """Write the new service's files under ``root`` (the repository); returns what was written."""
    try:
        entry = ports.service(name)
    except KeyError:
        raise ScaffoldError(f"{name} is not in the port matrix (shared/ports.py); add its row first") from None
    if entry.group in (ports.Group.INFRA, ports.Group.RESERVED):
        raise ScaffoldError(f"{name} is infrastructure, not a service")
    if entry.implemented:
        raise ScaffoldError(f"{name} exists already ({entry.module})")
    snake = name.replace("-", "_")
    tier = "client" if entry.group is ports.Group.CLIENT else "services"
    package = f"{tier}.{snake}"
    folder = root / tier / snake
    if folder.exists():
        raise ScaffoldError(f"{folder} exists already")
    values = {
        "name": name,
        "snake": snake,
        "package": package,
        "cls": "".join(part.capitalize() for part in snake.split("_")),
        "prefix": entry.env_prefix,
        "port": entry.port,
        "job": entry.job,
        "area": snake.split("_")[0] if tier == "services" else snake,
    }
    files = {
        folder / "__init__.py": "",
        folder / "settings.py": _SETTINGS,
        folder / "state.py": _STATE,
        folder / "routes.py": _ROUTES,
        folder / "service.py": _SERVICE,
        root / "tests" / tier / snake / f"test_{snake}.py": _TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    matrix = root / "shared" / "ports.py"
    matrix.write_text(_matrix_entry_with_module(matrix.read_text(), name, f"{package}.service:SERVICE"))
    written = [*files, matrix]
    # In the project's style, if its formatter is installed (it is, with the test extras).
    with contextlib.suppress(OSError):
        subprocess.run([sys.executable, "-m", "ruff", "format", "-q", *map(str, written)], check=False)
    return written


__all__ = ["ScaffoldError", "new_service"]

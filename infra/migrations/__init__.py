"""Schema migrations: ordered SQL files, applied once each, verified by checksum.

A small runner rather than Alembic: Alembic needs SQLAlchemy (we use asyncpg),
and nothing off the shelf migrates chdb, so one runner serves PostgreSQL and
ClickHouse with the same rules:

* files ``NNN_name.sql`` in one folder, applied in order, each exactly once;
* a migration that was applied and then edited is refused (checksum mismatch):
  a change is a new file, never an edit;
* re-running is a no-op, and concurrent runners serialise (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

POSTGRES_DIR = Path(__file__).parent / "postgres"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        """Split on ``;`` at line ends (our migrations hold no procedural bodies)."""
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", self.sql) if s.strip() and not _only_comments(s)]


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


class MigrationChanged(RuntimeError):
    pass


def discover(directory: Path) -> list[Migration]:
    files = sorted(p for p in directory.glob("*.sql") if re.match(r"^\d{3}_", p.name))
    return [Migration(p.stem, p) for p in files]


def check_applied(applied: dict[str, str], migration: Migration) -> bool:
    """True if already applied; raise if it was applied with different contents."""
    if migration.version not in applied:
        return False
    if applied[migration.version] != migration.checksum:
        raise MigrationChanged(
            f"migration {migration.version} was edited after being applied; add a new migration instead"
        )
    return True

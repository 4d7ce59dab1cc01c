"""Every repository path README.md and docs/ mention exists (a moved file takes its mentions along)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: First path segments that are the repository's (runtime paths such as var/ are not).
TOP_LEVEL = {
    p.name for p in ROOT.iterdir() if p.name not in {"var", ".venv", ".git"} and not p.name.startswith(".pytest")
}
#: A path-like word: segments of path characters joined by "/", or a top-level file name.
_CANDIDATE = re.compile(
    r"(?<![\w./<{$-])((?:\.?[\w.*-]+/)+[\w.*-]*|[\w.-]+\.(?:py|md|toml|yml|yaml|sql|txt))(?![\w/<{])"
)


def mentioned_paths(text: str) -> set[str]:
    found = set()
    for match in _CANDIDATE.finditer(text):
        path = match.group(1).rstrip(".")
        head = path.split("/", 1)[0]
        if head in TOP_LEVEL and "://" not in text[max(0, match.start() - 3) : match.start()]:
            found.add(path)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_mentioned_path_exists(document):
    missing = [p for p in sorted(mentioned_paths(document.read_text())) if not any(ROOT.glob(p.rstrip("/")))]
    assert not missing, f"{document.name} mentions paths that do not exist: {missing}"


def test_the_scan_finds_paths_and_misses_none_of_the_usual_forms():
    text = "see `shared/events.py`, services/*/service.py, docs/, tests/integration and README.md; not var/logs"
    assert mentioned_paths(text) == {
        "shared/events.py",
        "services/*/service.py",
        "docs/",
        "tests/integration",
        "README.md",
    }

"""The README's configuration table names every environment variable the settings classes read."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.kit.service import implemented_definitions
from shared.settings import PlatformSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()

#: Every settings class with the prefix it is read under: the platform's (none), and each
#: service's (from its port-matrix entry, as the kit reads it).
SETTINGS = [(PlatformSettings, ""), *((d.settings, d.entry.env_prefix) for d in implemented_definitions())]


@pytest.mark.parametrize(("settings", "prefix"), SETTINGS, ids=lambda v: getattr(v, "__name__", v))
def test_every_setting_is_in_the_readme(settings, prefix):
    names = [
        field.validation_alias if isinstance(field.validation_alias, str) else f"{prefix}{name}"
        for name, field in settings.model_fields.items()
    ]
    missing = [name.upper() for name in names if f"`{name}`".upper() not in README.upper()]
    assert not missing, f"not in README.md's configuration table: {missing}"

"""The README's configuration table names every environment variable the settings classes read."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.data_collector.settings import CollectorSettings
from client.metatrader_connector.settings import ConnectorSettings
from services.api_gateway.settings import GatewaySettings
from services.data_bridge.settings import DataBridgeSettings
from services.database_service.settings import DatabaseServiceSettings
from services.user_service.settings import UserServiceSettings
from shared.settings import PlatformSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize(
    "settings",
    [
        PlatformSettings,
        DataBridgeSettings,
        DatabaseServiceSettings,
        GatewaySettings,
        UserServiceSettings,
        CollectorSettings,
        ConnectorSettings,
    ],
    ids=lambda cls: cls.__name__,
)
def test_every_setting_is_in_the_readme(settings):
    prefix = settings.model_config.get("env_prefix", "")
    names = [
        field.validation_alias if isinstance(field.validation_alias, str) else f"{prefix}{name}"
        for name, field in settings.model_fields.items()
    ]
    missing = [name.upper() for name in names if f"`{name}`".upper() not in README.upper()]
    assert not missing, f"not in README.md's configuration table: {missing}"

"""ServiceIdentity in the kit: declared consistently with the port matrix, and tokens only to the services called."""

from __future__ import annotations

import httpx
import pytest

from shared.kit.contract import Contract
from shared.kit.deps import HttpClient, ServiceIdentity
from shared.kit.identity import Targets
from shared.kit.service import ServiceDefinition
from shared.settings import IdentitySettings, ServiceSettings


class Settings(IdentitySettings):
    pass


async def _start(rt):
    return object()


def _definition(name: str, scopes: tuple[str, ...], settings: type = Settings) -> ServiceDefinition:
    return ServiceDefinition(
        name, settings=settings, contract=Contract(), uses=(HttpClient(), ServiceIdentity(scopes=scopes)), start=_start
    )


def test_the_declaration_names_client_scopes_each_once():
    for scopes in ((), ("market:read", "market:read"), ("internal",), ("root",)):
        with pytest.raises(ValueError):
            ServiceIdentity(scopes=scopes)


def test_an_implemented_services_identity_must_match_its_row_and_settings_must_carry_credentials():
    # data-bridge is implemented and its row declares no identity: user-service would provision none.
    with pytest.raises(ValueError, match=r"shared/ports\.py"):
        _definition("data-bridge", ("market:read",))
    with pytest.raises(ValueError, match="IdentitySettings"):
        _definition("telegram-service", ("market:read",), settings=ServiceSettings)
    with pytest.raises(ValueError, match="needs HttpClient"):
        ServiceDefinition(
            "telegram-service",
            settings=Settings,
            contract=Contract(),
            uses=(ServiceIdentity(scopes=("market:read",)),),
            start=_start,
        )
    assert _definition("telegram-service", ("market:read",)).effective_contract.calls == ("api-gateway",)


def test_a_token_goes_only_to_the_origins_of_the_services_called():
    targets = Targets(["http://127.0.0.1:8008", "http://database-service:8008"])
    assert targets(httpx.URL("http://127.0.0.1:8008/api/v1/market/bars?symbol=X"))
    assert targets(httpx.URL("http://database-service:8008/x"))
    for elsewhere in (
        "http://127.0.0.1:8009/",
        "https://127.0.0.1:8008/",
        "http://example.com:8008/",
        "http://127.0.0.1/",
    ):
        assert not targets(httpx.URL(elsewhere))
    targets.allow("http://10.0.0.7:9000/base")  # an overridden URL of a called service
    assert targets(httpx.URL("http://10.0.0.7:9000/other"))

"""Request and response bodies of the admin and internal APIs.

Requests are strict (``extra="forbid"``): a misspelt field is a 422, not silently
ignored, which matters most for security-relevant fields like ``scopes``.
Responses never carry a secret hash; a client secret appears only in the
``...WithSecret`` answers of create and rotate, the one time it is shown.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.user_service.policy import GRANT_TYPES
from shared.auth.scopes import CLIENT_SCOPES, ROLE_SCOPES, TENANT_PATTERN

TenantId = Annotated[str, Field(pattern=TENANT_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known(values: list[str], allowed: frozenset[str], what: str) -> list[str]:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return sorted(set(values))  # a set in substance: duplicates collapse, order is canonical


class TenantCreate(_Strict):
    id: TenantId
    name: Name


class UserCreate(_Strict):
    username: Username
    display_name: Name
    roles: list[str] = Field(default_factory=list, max_length=16)
    tenant: TenantId | None = None

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        return _known(value, frozenset(ROLE_SCOPES), "roles")


class RolesUpdate(_Strict):
    roles: list[str] = Field(max_length=16)

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        return _known(value, frozenset(ROLE_SCOPES), "roles")


class ClientCreate(_Strict):
    name: Name
    scopes: list[str] = Field(min_length=1, max_length=16)
    grant_types: list[str] | None = Field(default=None, min_length=1, max_length=2)
    tenant: TenantId | None = None

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        # `internal` is not in CLIENT_SCOPES, so it is refused here like any unknown scope.
        return _known(value, CLIENT_SCOPES, "scopes")

    @field_validator("grant_types")
    @classmethod
    def _grant_types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known(value, GRANT_TYPES, "grant_types")


class ClientCredentials(_Strict):
    client_id: str = Field(min_length=1, max_length=128)
    # Bounded: argon2 accepts any length, and a megabyte "secret" should not be hashed.
    client_secret: str = Field(min_length=1, max_length=256)


class Tenant(BaseModel):
    id: str
    name: str
    disabled: bool
    created_at: dt.datetime


class User(BaseModel):
    id: uuid.UUID
    tenant: str
    username: str
    display_name: str
    roles: list[str]
    disabled: bool
    created_at: dt.datetime


class Client(BaseModel):
    client_id: str
    tenant: str
    name: str
    scopes: list[str]
    grant_types: list[str]
    disabled: bool
    created_at: dt.datetime
    secret_rotated_at: dt.datetime


class ClientWithSecret(Client):
    #: Shown exactly once: at creation and after a rotation. Only its hash is stored.
    client_secret: str


class RotatedSecret(BaseModel):
    client_id: str
    client_secret: str
    secret_rotated_at: dt.datetime


class AuthenticatedClient(BaseModel):
    client_id: str
    tenant: str
    scopes: list[str]
    grant_types: list[str]

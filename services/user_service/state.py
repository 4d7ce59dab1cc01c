"""What user-service's handlers share while it runs, reached as ``UserDirectory`` (a FastAPI dependency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.user_service.outbox import Outbox
from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher
from services.user_service.settings import UserServiceSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class Services:
    store: Store
    hasher: SecretHasher
    outbox: Outbox
    settings: UserServiceSettings


#: ``services: UserDirectory`` in a route's parameters gives the running service's parts.
UserDirectory = Annotated[Services, state_of(Services)]

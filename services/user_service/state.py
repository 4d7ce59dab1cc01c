"""What the handlers share, built once in the lifespan and kept at ``app.state.user_service``."""

from __future__ import annotations

from dataclasses import dataclass

from services.user_service.outbox import Outbox
from services.user_service.repository import Store
from services.user_service.secrets import SecretHasher


@dataclass(frozen=True)
class Services:
    store: Store
    hasher: SecretHasher
    outbox: Outbox

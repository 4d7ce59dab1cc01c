"""user-service settings (``USER_SERVICE_*``: the prefix comes from its port-matrix entry).

The bootstrap overrides keep their ``HATS_`` names."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.user_service.bootstrap import AdminOverride
from shared.settings import PoolSettings


class UserServiceSettings(PoolSettings):
    model_config = SettingsConfigDict(populate_by_name=True)

    #: PostgreSQL connections of the service's pool.
    pool_min_size: int = 1
    pool_max_size: int = 8
    #: Argon2id hashes computed at once. Each takes 64 MiB and ~0.1 s of a core by design,
    #: so an unbounded burst of authentications could exhaust memory; the rest queue.
    hash_concurrency: int = Field(default=4, ge=1)
    #: A client secret verified this recently is not run through argon2 again, seconds (0 = never).
    verified_secret_ttl_s: float = Field(default=300.0, ge=0)
    #: Enabled clients a tenant may have; creating one more is refused (409). Bounds what one
    #: tenant admin (or a stolen admin token) can register.
    max_clients_per_tenant: int = Field(default=1000, ge=1)
    #: The gateway's longest access-token lifetime plus its clock leeway, seconds
    #: (``API_GATEWAY_ACCESS_TOKEN_TTL_S`` + ``API_GATEWAY_CLOCK_LEEWAY_S``). A client's token
    #: revocation is kept this long; and when a client is disabled, re-keyed or has its tokens
    #: revoked, the clients it created or re-keyed this recently (what its live tokens could
    #: have done) are disabled with it.
    token_lifetime_s: float = Field(default=960.0, gt=0)
    #: How often unpublished directory events are retried, seconds.
    outbox_sweep_interval_s: float = Field(default=5.0, gt=0)
    #: An outbox row younger than this is still being published by the request that wrote it.
    outbox_grace_s: float = Field(default=10.0, ge=0)

    #: Operator-chosen id of the bootstrap admin client (with ``HATS_ADMIN_CLIENT_SECRET``).
    admin_client_id: str | None = Field(default=None, validation_alias="HATS_ADMIN_CLIENT_ID")
    #: Operator-chosen secret of the bootstrap admin client; never written to credentials.json.
    admin_client_secret: SecretStr | None = Field(default=None, validation_alias="HATS_ADMIN_CLIENT_SECRET")

    @model_validator(mode="after")
    def _override_is_usable(self) -> UserServiceSettings:
        # Checked with the settings, so a bad override stops the start before anything is touched.
        self.admin_override()
        return self

    def admin_override(self) -> AdminOverride | None:
        """The operator's choice of admin client, or ``None``; ``BootstrapError`` if half set or too weak."""
        secret = self.admin_client_secret
        return AdminOverride.from_settings(self.admin_client_id, None if secret is None else secret.get_secret_value())

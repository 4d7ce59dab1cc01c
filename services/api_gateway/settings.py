"""api-gateway settings (``API_GATEWAY_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from pydantic import model_validator

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Token lifetimes, signing-key rotation and brute-force limits of the authorisation server."""

    #: Lifetime of an access token (docs/auth.md: 15 min).
    access_token_ttl_s: int = 900
    #: Lifetime of each refresh token; every use rotates it, so this bounds an idle session.
    refresh_token_ttl_s: int = 30 * 86_400
    #: Lifetime of the token the gateway mints for itself to call user-service.
    service_token_ttl_s: int = 300
    #: Clock skew a verifier may allow past ``exp``; a retired key must outlive it.
    clock_leeway_s: int = 60

    #: A signing key older than this is replaced automatically (checked at start and periodically).
    key_max_age_days: float = 30.0
    #: How long a key stays published after it stopped signing. Must cover the longest
    #: token lifetime plus leeway, or tokens in flight would fail verification.
    key_retire_after_s: int = 1_800
    #: A new key is published this long before it signs (> the services' 5 s JWKS refetch interval).
    key_publish_ahead_s: float = 30.0
    #: How often the background housekeeping runs (key age, retirement, expired refresh tokens).
    housekeeping_interval_s: float = 600.0

    #: user-service base URL; unset = ``url_of("user-service")`` in this environment.
    user_service_url: str | None = None
    #: Upper bound of one client authentication round trip to user-service.
    user_service_timeout_s: float = 2.0

    #: Failed client authentications tolerated per client_id from one address within the window
    #: (never per client_id alone: anyone could lock any client out by its id)...
    auth_failures_per_client: int = 10
    #: ...and per remote address (higher: several clients may share a NAT).
    auth_failures_per_ip: int = 30
    #: Sliding window over which failures are counted.
    auth_failure_window_s: float = 300.0
    #: How long a client_id from that address, or the address, is refused (429) once over its limit.
    auth_lockout_s: float = 300.0
    #: Successful token requests (any grant) per client within ``token_request_window_s``; more is
    #: 429. Each token with a refresh token writes rows kept for a month.
    token_requests_per_client: int = 60
    token_request_window_s: float = 60.0
    #: How often revocations the bus did not acknowledge are published again, seconds.
    revocation_sweep_interval_s: float = 5.0
    #: Per-client sliding-window limit on /api/v1 requests (the seeds' RateLimiter, 0.9 margin).
    rate_limit_requests: int = 2_000
    rate_limit_window_s: float = 1.0
    #: Largest request body the gateway forwards (ingest batches of 10,000 ticks are ~1.5 MB).
    max_body_bytes: int = 4 * 1024 * 1024
    #: Longest wait for an upstream's answer before 504.
    upstream_timeout_s: float = 10.0
    #: Origins allowed by CORS; empty = CORS off (the default: the API is for machines).
    cors_origins: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _keys_outlive_tokens(self) -> GatewaySettings:
        longest = max(self.access_token_ttl_s, self.service_token_ttl_s) + self.clock_leeway_s
        if self.key_retire_after_s < longest:
            raise ValueError(
                f"API_GATEWAY_KEY_RETIRE_AFTER_S must be >= {longest} (longest token lifetime + clock leeway)"
            )
        if min(self.auth_failures_per_client, self.auth_failures_per_ip) < 1:
            raise ValueError("brute-force limits must allow at least one failure")
        return self

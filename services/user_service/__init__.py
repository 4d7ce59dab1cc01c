"""user-service (8009): tenants, users, role assignments and OAuth2 clients (docs/auth.md)."""

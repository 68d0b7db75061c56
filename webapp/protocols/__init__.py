"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""

# Each protocol module appends its blueprint here as it lands.
BLUEPRINTS = []

from .registry_auth import bp as registry_auth_bp  # noqa: E402

BLUEPRINTS.append(registry_auth_bp)

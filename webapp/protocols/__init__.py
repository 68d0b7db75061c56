"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""
from .ci import bp as ci_bp

# Each protocol module appends its blueprint here as it lands.
BLUEPRINTS = [ci_bp]

from .registry_auth import bp as registry_auth_bp  # noqa: E402

BLUEPRINTS.append(registry_auth_bp)

from .api_v4 import bp as api_v4_bp  # noqa: E402

BLUEPRINTS.append(api_v4_bp)

"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""

# Each protocol module appends its blueprint here as it lands.
BLUEPRINTS = []

from .api_v4 import bp as api_v4_bp  # noqa: E402

BLUEPRINTS.append(api_v4_bp)

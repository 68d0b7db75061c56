"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""

# Each protocol module appends its blueprint here as it lands.
BLUEPRINTS = []

from .packages import bp as packages_bp  # noqa: E402

BLUEPRINTS.append(packages_bp)

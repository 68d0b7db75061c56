"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""
from .ci import bp as ci_bp

# Each protocol module appends its blueprint here as it lands.
BLUEPRINTS = [ci_bp]

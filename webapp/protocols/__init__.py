"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""
from .git_http import bp as git_http_bp

# Each protocol module appends its blueprint here as it lands.
BLUEPRINTS = [git_http_bp]

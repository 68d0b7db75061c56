"""Machine-facing blueprints: each request authenticates itself, no CSRF, no sessions."""
from .git_http import bp as git_http_bp
from .ci import bp as ci_bp
from .registry_auth import bp as registry_auth_bp
from .api_v4 import bp as api_v4_bp
from .packages import bp as packages_bp
from .health import bp as health_bp
from .lfs import bp as lfs_bp

# Each protocol module adds its blueprint here as it lands.
BLUEPRINTS = [git_http_bp, lfs_bp, ci_bp, registry_auth_bp, packages_bp, api_v4_bp, health_bp]

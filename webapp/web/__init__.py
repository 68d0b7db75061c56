"""Browser-facing blueprints (HTML pages and HTMX partials)."""
from .auth import bp as auth_bp
from .ci_settings import bp as ci_settings_bp
from .container_registry import bp as container_registry_bp
from .lifecycle import bp as lifecycle_bp
from .packages import bp as packages_bp
from .pages import bp as pages_bp
from .settings import bp as settings_bp
from .user_settings import bp as user_settings_bp

# settings, packages and the registry before pages: their URLs are more specific than the catch-all
# project page.
BLUEPRINTS = [auth_bp, settings_bp, ci_settings_bp, lifecycle_bp, user_settings_bp, packages_bp,
              container_registry_bp, pages_bp]

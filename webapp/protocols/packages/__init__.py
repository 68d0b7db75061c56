"""Package registries at GitLab's URLs: one module per format (see common.py)."""
from .common import bp
from . import generic, maven, npm, pypi  # noqa: E402  (each adds its routes to bp)

# Each format's declaration: its package type, the credentials it accepts, its errors.
FORMATS = {module.FORMAT.package_type: module.FORMAT for module in (generic, maven, npm, pypi)}

__all__ = ["bp", "FORMATS"]

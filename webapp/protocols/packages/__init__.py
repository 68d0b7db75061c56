"""Package registries at GitLab's URLs: generic files, PyPI and npm."""
from .common import bp
from . import generic, npm, pypi  # noqa: F401,E402  (they add their routes to bp)

__all__ = ["bp"]

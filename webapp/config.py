"""Configuration: defaults, then the environment, then the mapping tests pass in."""
import os
import secrets
from pathlib import Path

DEFAULTS = {
    "EXTERNAL_URL": "http://127.0.0.1:5000",
    "DEPLOY_TOKEN_PREFIX": "gldt-",
    # A token's last use is written at most this often (seconds), so reads stay reads.
    "LAST_USED_INTERVAL": 60,
    "WTF_CSRF_TIME_LIMIT": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "PER_PAGE": 20,
    # Largest package file accepted, in bytes (checked while the upload streams).
    "MAX_PACKAGE_SIZE": 5 * 1024 ** 3,
}


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for postgres URLs given in the common short forms."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load(app, config=None):
    """Fill app.config from defaults, GATEHOUSE_* variables, DATABASE_URL and `config`."""
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("GATEHOUSE")
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if config:
        app.config.update(config)

    instance = Path(app.instance_path)
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", f"sqlite:///{instance / 'gatehouse.db'}")
    app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(
        app.config["SQLALCHEMY_DATABASE_URI"])
    app.config.setdefault("DATA_DIR", str(instance / "data"))
    app.config["EXTERNAL_URL"] = app.config["EXTERNAL_URL"].rstrip("/")
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(instance / "secret_key")


def _instance_secret(path: Path) -> str:
    """Read the session-signing key kept in instance/, creating it on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker won the race
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key

"""Configuration: defaults, then the environment, then the mapping tests pass in."""
import os
import secrets
from datetime import timedelta
from pathlib import Path

DEFAULTS = {
    "EXTERNAL_URL": "http://127.0.0.1:5000",
    "DEPLOY_TOKEN_PREFIX": "gldt-",
    # A token's last use is written at most this often (seconds), so reads stay reads.
    "LAST_USED_INTERVAL": 60,
    "WTF_CSRF_TIME_LIMIT": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # A browser session ends after this many seconds without a request (GitLab's
    # default, one week). "Remember me" keeps the cookie across browser restarts for as
    # long; otherwise it is a session cookie, gone when the browser closes.
    "SESSION_IDLE_TIMEOUT": 7 * 24 * 3600,
    # Flask-Login's own remember cookie is never set (see web/auth.py); if it were, it
    # would get the same flags as the session cookie.
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    # Extra create_engine() options; PostgreSQL's pool size and pre-ping are added below.
    "SQLALCHEMY_ENGINE_OPTIONS": {},
    # gunicorn's threads per worker (gunicorn.conf.py reads this default too). On
    # PostgreSQL each worker keeps as many connections in its pool: every thread may hold
    # one for a whole request, and with fewer the extra ones are opened and closed again
    # per request (a new server process each time).
    "THREADS": 8,
    "PER_PAGE": 20,
    # werkzeug's method string; tests use a cheap one, production keeps scrypt.
    "PASSWORD_HASH_METHOD": "scrypt",
    # Container registry token service (/jwt/auth); REGISTRY_KEY/CERT default to keys/ in DATA_DIR.
    "REGISTRY_URL": "127.0.0.1:5050",
    # Where Gatehouse itself reaches the registry's API (the project's registry page, tag
    # deletion); None means http://REGISTRY_URL.
    "REGISTRY_API_URL": None,
    "REGISTRY_SERVICE": "container_registry",
    "REGISTRY_ISSUER": "gatehouse-issuer",
    "REGISTRY_TOKEN_LIFETIME": 300,
    # Failed-authentication ban on every door (GitLab.com's numbers): this many
    # failures from one IP within FIND_TIME seconds ban it for BAN_TIME seconds.
    "AUTH_BAN_MAX_RETRY": 30,
    "AUTH_BAN_FIND_TIME": 180,
    "AUTH_BAN_TIME": 3600,
    # Account lock (GitLab's defaults): this many wrong passwords in a row lock the
    # account's password sign-in for LOCK_TIME seconds; tokens keep working.
    "ACCOUNT_LOCK_ATTEMPTS": 10,
    "ACCOUNT_LOCK_TIME": 600,
    # Shared counters live in Redis when this is set (redis://host:port/db), else in the DB.
    "REDIS_URL": None,
    "REDIS_PREFIX": "gatehouse:",
    # Seconds to wait for Redis before the ban falls back to the database counters.
    "REDIS_TIMEOUT": 0.5,
    # Expiry warnings (`flask notify`): days before expiry; SMTP URL (None: log instead).
    "EXPIRY_WARNING_DAYS": [30, 7, 1],
    "SMTP_URL": None,
    "SMTP_TIMEOUT": 30,
    "MAIL_FROM": "Gatehouse <gatehouse@localhost>",
    # Webhooks may target loopback and private addresses only when this is set (SSRF).
    "WEBHOOK_ALLOW_LOCAL": False,
    # Largest package file accepted, in bytes (checked while the upload streams).
    "MAX_PACKAGE_SIZE": 5 * 1024 ** 3,
    # Git LFS: the largest object accepted (bytes), and how long the transfer
    # authorization handed out in a batch answer stays valid (seconds).
    "MAX_LFS_OBJECT_SIZE": 5 * 1024 ** 3,
    "LFS_TRANSFER_LIFETIME": 900,
    "LOG_LEVEL": "INFO",
    # The longest a git push may take: `repositories gc` removes push quarantines idle longer.
    "PUSH_MAX_SECONDS": 3600,
    # gunicorn's keep-alive (gunicorn.conf.py reads GATEHOUSE_KEEPALIVE too); nginx closes
    # its idle upstream connections earlier, so gunicorn never closes one nginx reuses.
    "KEEPALIVE": 75,
    # gunicorn's worker timeout; nginx waits as long for an answer.
    "TIMEOUT": 600,
    # Seconds nginx waits between two reads of a request body or two writes of an answer.
    "BODY_TIMEOUT": 60,
    # nginx is in front (`make run`, production): package downloads are handed to it with
    # X-Accel-Redirect once authorized. Off when the app runs alone.
    "ACCEL_REDIRECT": False,
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
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # A connection the server (or anything between) has dropped is replaced when it
        # is checked out. SQLite gets no pre-ping: its connection is a file handle in this
        # process that nothing can drop, and the extra SELECT cost 6-11 % of the rate of
        # `/-/readiness` and `/jwt/auth` under gunicorn.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_size": int(app.config["THREADS"]), "pool_pre_ping": True,
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"]}
    app.config.setdefault("DATA_DIR", str(instance / "data"))
    app.config.setdefault("DEMO_CREDENTIALS_FILE", str(instance / "demo-credentials.txt"))
    app.config["EXTERNAL_URL"] = app.config["EXTERNAL_URL"].rstrip("/")
    # Served over https: cookies never travel over plain http.
    if app.config["EXTERNAL_URL"].lower().startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = app.config["REMEMBER_COOKIE_SECURE"] = True
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(
        seconds=int(app.config["SESSION_IDLE_TIMEOUT"]))
    # Read (and created) only when a recoverable secret is first encrypted or decrypted.
    app.config.setdefault("ENCRYPTION_KEY_FILE", str(instance / "encryption_key"))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(instance / "secret_key")


def _instance_secret(path: Path, make=lambda: secrets.token_hex(32)) -> str:
    """Read a key kept in instance/, creating it (0600) with `make()` on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = make()
    # Written whole under a private name, then linked into place: link() fails if the
    # file exists, so concurrent workers agree on one key and never read a half-file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another worker won the race
            return path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return key

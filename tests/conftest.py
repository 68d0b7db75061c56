"""Fixtures: a migrated database per test session, an app and a client per test.

The schema always comes from the Alembic migrations, never from create_all. On
PostgreSQL (DATABASE_URL=postgresql://...) a fresh database is created for the session
and dropped afterwards, so runs never share state.
"""
import os
import re
import signal
import uuid
from contextlib import contextmanager
from pathlib import Path
from datetime import date

import pytest
import sqlalchemy as sa

from webapp import create_app
from webapp.extensions import db as _db
from webapp.models import Group, Project, User
from webapp.services import accounts, deploy_tokens

from .support import ROOT, VENV_BIN, free_port, running

PASSWORD = "correct-horse-battery"
# The key for recoverable secrets (the CI deploy token), shared by the test app and the
# live server so both read what the other wrote; tests never touch instance/.
ENCRYPTION_KEY = "Z2F0ZWhvdXNlLXRlc3QtZW5jcnlwdGlvbi1rZXktMzI="  # base64 of 32 bytes


def _admin_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)


@contextmanager
def fresh_database(sqlite_dir: Path, prefix: str = "gatehouse_test"):
    """A database of its own: a file on SQLite, a new (then dropped) one on PostgreSQL."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        yield f"sqlite:///{sqlite_dir / 'gatehouse.db'}"
        return
    import psycopg
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin_url(base)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, tail = admin.rpartition("/")
    try:
        yield f"{head}/{name}" + ("?" + tail.split("?", 1)[1] if "?" in tail else "")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def migrated(database_url, tmp_path_factory):
    """Run every migration once for the session."""
    from flask_migrate import upgrade
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "x",
                      "DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    with app.app_context():
        upgrade()
        _db.engine.dispose()
    return database_url


@pytest.fixture
def app(migrated, tmp_path):
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": migrated,
        "DATA_DIR": str(tmp_path / "data"),
        "DEMO_CREDENTIALS_FILE": str(tmp_path / "demo-credentials.txt"),
        "EXTERNAL_URL": "http://gatehouse.test",
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",  # fast; scrypt is tested once
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "ENCRYPTION_KEY_FILE": str(tmp_path / "encryption_key"),
    })
    yield app
    with app.app_context():
        _db.session.remove()
        _truncate_all()
        _db.engine.dispose()


def _truncate_all() -> None:
    tables = [t.name for t in reversed(_db.metadata.sorted_tables)]
    with _db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                                 + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f'DELETE FROM "{table}"'))


@pytest.fixture
def ctx(app):
    """An application context for tests that call services directly."""
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


class Factory:
    """Rows for tests, made through the services so they obey the same rules."""

    def __init__(self, app):
        self.app = app
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def user(self, username=None, *, admin=False, password=PASSWORD) -> User:
        username = username or f"user{self._next()}"
        with self.app.app_context():
            user = accounts.create_user(username, f"{username}@example.com", password, admin=admin)
            return _detached(user)

    def group(self, full_path: str, **kw) -> Group:
        with self.app.app_context():
            parts = full_path.split("/")
            for i in range(1, len(parts)):
                if accounts.find_group("/".join(parts[:i])) is None:
                    accounts.create_group("/".join(parts[:i]))
            group = accounts.create_group(full_path, **kw)
            return _detached(group)

    def project(self, full_path: str, **kw) -> Project:
        with self.app.app_context():
            group_path = full_path.rpartition("/")[0]
            if accounts.find_group(group_path) is None:
                self.group(group_path)
            project = accounts.create_project(full_path, **kw)
            return _detached(project)

    def member(self, full_path: str, user, role: str) -> None:
        with self.app.app_context():
            accounts.add_member(full_path, user.username if hasattr(user, "username") else user, role)

    def token(self, full_path: str, scopes=("read_repository",), *, name="deploy",
              username=None, expires_at=None, revoked=False):
        """Create a deploy token; return (id, username, secret)."""
        with self.app.app_context():
            owner = accounts.find_target(full_path)
            if isinstance(expires_at, date) and not hasattr(expires_at, "hour"):
                expires_at = deploy_tokens.expiry_from_date(expires_at)
            now = None
            if expires_at is not None and expires_at <= deploy_tokens.utcnow():
                # An already-expired token: create it as of a moment before its expiry.
                from datetime import timedelta
                now = expires_at - timedelta(days=1)
            token, secret = deploy_tokens.create(owner, name=name, scopes=list(scopes),
                                                 username=username, expires_at=expires_at, now=now)
            if revoked:
                deploy_tokens.DEPLOY_TOKENS.revoke(owner, token.id)
            return token.id, token.username, secret


    def pat(self, user, scopes=("api",), *, name="api", expires_at=None, revoked=False) -> str:
        """Create a personal access token for a user (or username); return its secret."""
        from webapp.services import personal_access_tokens
        with self.app.app_context():
            owner = accounts.find_user(getattr(user, "username", user))
            now = None
            if expires_at is not None and expires_at <= deploy_tokens.utcnow():
                from datetime import timedelta
                now = expires_at - timedelta(days=1)
            token, secret = personal_access_tokens.PERSONAL_ACCESS_TOKENS.create(
                owner, name=name, scopes=list(scopes), expires_at=expires_at, now=now)
            if revoked:
                personal_access_tokens.PERSONAL_ACCESS_TOKENS.revoke(owner, token.id)
            return secret


def _detached(obj):
    """Keep the loaded columns usable after the session closes."""
    _db.session.refresh(obj)
    _db.session.expunge(obj)
    return obj


@pytest.fixture
def make(app):
    return Factory(app)


class AuthActions:
    """Sign in and out through the real form, CSRF token included."""

    def __init__(self, client):
        self.client = client

    def login(self, username, password=PASSWORD):
        page = self.client.get("/users/sign_in")
        return self.client.post("/users/sign_in", data={
            "username": username, "password": password,
            "csrf_token": csrf_from(page.get_data(as_text=True))})


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def form_fields(client, url: str) -> dict[str, str]:
    """The hidden fields a token panel's create form posts: CSRF and one-time tokens."""
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="form_token"[^>]*value="([^"]+)"', html)
    assert match, "no one-time form token in the page"
    return {"csrf_token": csrf_from(html), "form_token": match.group(1)}


@pytest.fixture
def auth(client):
    return AuthActions(client)


@contextmanager
def gunicorn(database_url: str, data_dir: Path, log_dir: Path, *, workers: int = 2, **settings):
    """Gatehouse under a real gunicorn on a free loopback port, sharing the test database.

    `settings` become GATEHOUSE_* variables (AUTH_BAN_TIME=2, REDIS_URL=...).
    """
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, GATEHOUSE_SECRET_KEY="live-test-secret",
               GATEHOUSE_DATA_DIR=str(data_dir), GATEHOUSE_EXTERNAL_URL=f"http://127.0.0.1:{port}",
               GATEHOUSE_ENCRYPTION_KEY=ENCRYPTION_KEY, PYTHONUNBUFFERED="1")
    env.pop("GATEHOUSE_REDIS_URL", None)
    env.update({f"GATEHOUSE_{key}": str(value) for key, value in settings.items()})
    log = log_dir / f"gunicorn-{port}.log"
    cmd = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
           "--no-control-socket", "--timeout", "300", "--config", str(ROOT / "gunicorn.conf.py"),
           "wsgi:app"]
    with running(cmd, port=port, env=env, log=log, stop_signal=signal.SIGINT) as proc:
        yield LiveServer(f"http://127.0.0.1:{port}", port, proc, log, data_dir)


@pytest.fixture
def live_server(migrated, tmp_path):
    """The app under gunicorn, with the same DATA_DIR as the `app` fixture."""
    with gunicorn(migrated, tmp_path / "data", tmp_path) as server:
        yield server


class LiveServer:
    def __init__(self, url, port, proc, log, data_dir):
        self.url, self.port, self.proc, self.log, self.data_dir = url, port, proc, log, data_dir

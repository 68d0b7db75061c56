"""One front door: every door runs the same chain (ban, lookup, accounting, record of use).

Each test runs against every door: git, /jwt/auth, packages, the REST API, /ci/variables
and the sign-in form, each with the credential it really accepts.
"""
import base64
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from webapp.extensions import db
from webapp.models import AuthFailure, User
from webapp.services import accounts, credentials

from .conftest import PASSWORD, csrf_from
from .support import free_port

PROJECT = "tanuki/p"
WRONG_TOKEN = "gldt-wrongwrongwrongwron"
TOKEN_TABLES = ("deploy_tokens", "personal_access_tokens", "runner_tokens", "users")


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@dataclass
class World:
    project_id: int
    deploy: tuple[str, str]  # username, secret (every deploy scope)
    pat: str
    runner: str


@pytest.fixture
def world(app, make, runner) -> World:
    make.user("alice")
    make.user("mallory")
    project = make.project(PROJECT)
    make.member(PROJECT, "alice", "maintainer")
    _, username, secret = make.token(PROJECT, ["read_repository", "read_registry",
                                               "read_package_registry"])
    pat = make.pat("alice")
    _, runner_secret = runner(PROJECT)
    return World(project.id, (username, secret), pat, runner_secret)


@pytest.fixture
def runner(app):
    from webapp.services import runners

    def create(full_path):
        with app.app_context():
            token, secret = runners.RUNNER_TOKENS.create(accounts.find_project(full_path))
            return token.id, secret
    return create


def _sign_in(app, ip, username, password):
    client = app.test_client()  # a fresh browser: a signed-in one is not asked again
    page = client.get("/users/sign_in", environ_base={"REMOTE_ADDR": ip})
    return client.post("/users/sign_in", data={
        "username": username, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))},
        environ_base={"REMOTE_ADDR": ip})


@dataclass
class Door:
    name: str
    # (app, client, world, ip, good) -> response; good=False sends wrong credentials
    call: Callable
    ok: int        # status of a good request
    refused: int   # status of a wrong one


def _git(app, client, w, ip, good):
    creds = basic(*w.deploy) if good else basic(w.deploy[0], WRONG_TOKEN)
    return client.get(f"/{PROJECT}.git/info/refs?service=git-upload-pack", headers=creds,
                      environ_base={"REMOTE_ADDR": ip})


def _registry(app, client, w, ip, good):
    creds = basic(*w.deploy) if good else basic(w.deploy[0], WRONG_TOKEN)
    return client.get(f"/jwt/auth?service=container_registry&scope=repository:{PROJECT}:pull",
                      headers=creds, environ_base={"REMOTE_ADDR": ip})


def _packages(app, client, w, ip, good):
    creds = basic(*w.deploy) if good else basic(w.deploy[0], WRONG_TOKEN)
    return client.get(f"/api/v4/projects/{w.project_id}/packages/pypi/simple/", headers=creds,
                      environ_base={"REMOTE_ADDR": ip})


def _npm_bearer(app, client, w, ip, good):
    token = w.deploy[1] if good else WRONG_TOKEN
    return client.get(f"/api/v4/projects/{w.project_id}/packages/npm/@tanuki%2fnothing",
                      headers={"Authorization": f"Bearer {token}"},
                      environ_base={"REMOTE_ADDR": ip})


def _api(app, client, w, ip, good):
    token = w.pat if good else "glpat-wrongwrongwrongwron"
    return client.get("/api/v4/user", headers={"PRIVATE-TOKEN": token},
                      environ_base={"REMOTE_ADDR": ip})


def _ci(app, client, w, ip, good):
    token = w.runner if good else "glrt-wrongwrongwrongwron"
    return client.get("/ci/variables", headers={"Authorization": f"Bearer {token}"},
                      environ_base={"REMOTE_ADDR": ip})


def _sign_in_door(app, client, w, ip, good):
    # Wrong guesses at an unknown name: guesses at alice would lock her account first.
    return _sign_in(app, ip, "alice" if good else "nobody-here", PASSWORD if good else "wrong")


DOORS = [
    Door("git", _git, 200, 401),
    Door("registry", _registry, 200, 401),
    Door("pypi", _packages, 200, 401),
    Door("npm-bearer", _npm_bearer, 404, 401),  # a good token, a package that is not there
    Door("api", _api, 200, 401),
    Door("ci", _ci, 200, 401),
    Door("sign-in", _sign_in_door, 302, 422),
]
BY_NAME = {door.name: door for door in DOORS}


@pytest.fixture
def small_ban(app):
    app.config.update(AUTH_BAN_MAX_RETRY=5, AUTH_BAN_FIND_TIME=60, AUTH_BAN_TIME=3600)
    return app


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_the_door_accepts_good_and_refuses_wrong_credentials(app, client, world, door):
    assert door.call(app, client, world, "198.51.100.1", True).status_code == door.ok
    assert door.call(app, client, world, "198.51.100.1", False).status_code == door.refused


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_the_31st_failure_is_refused_with_403_before_any_lookup(app, client, world, door):
    assert app.config["AUTH_BAN_MAX_RETRY"] == 30
    ip = "198.51.100.2"
    for attempt in range(30):
        assert door.call(app, client, world, ip, False).status_code == door.refused, attempt
    with app.app_context():
        statements = []

        def listener(conn, cursor, statement, *args):
            statements.append(statement.lower())
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            response = door.call(app, client, world, ip, True)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
    assert response.status_code == 403
    assert "Too many failed authentication attempts" in response.get_data(as_text=True)
    looked_up = [s for s in statements if any(f"from {t}" in s or f"from \"{t}\"" in s
                                              for t in TOKEN_TABLES)]
    assert looked_up == []
    assert any("auth_failures" in s for s in statements)  # the ban was what answered


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_a_ban_earned_at_one_door_holds_at_every_door(app, client, small_ban, world, door):
    ip = "198.51.100.3"
    for _ in range(5):
        _git(app, client, world, ip, False)
    assert door.call(app, client, world, ip, True).status_code == 403
    assert door.call(app, client, world, "198.51.100.4", True).status_code == door.ok


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
def test_good_logins_of_other_accounts_do_not_reset_the_count(app, client, small_ban, world,
                                                              door):
    ip = "198.51.100.5"
    for _ in range(4):
        assert door.call(app, client, world, ip, False).status_code == door.refused
        assert door.call(app, client, world, ip, True).status_code == door.ok
    assert door.call(app, client, world, ip, False).status_code == door.refused  # the 5th
    assert door.call(app, client, world, ip, True).status_code == 403


# ---------------------------------------------------------------- the account lock

def _git_as(client, ip, username, password):
    return client.get(f"/{PROJECT}.git/info/refs?service=git-upload-pack",
                      headers=basic(username, password), environ_base={"REMOTE_ADDR": ip})


def test_ten_wrong_passwords_lock_the_account_for_passwords_only(app, client, world):
    for n in range(10):  # from ten addresses: the lock is per account, not per IP
        assert _sign_in(app, f"198.51.100.{20 + n}", "alice", "wrong-password").status_code == 422
    locked = _sign_in(app, "198.51.100.40", "alice", PASSWORD)
    assert locked.status_code == 403
    assert "Your account is locked" in locked.get_data(as_text=True)
    refused = _git_as(client, "198.51.100.41", "alice", PASSWORD)
    assert refused.status_code == 403 and b"Your account is locked" in refused.data
    # Tokens are not affected, nor is anyone else's account.
    assert _api(app, client, world, "198.51.100.42", True).status_code == 200
    assert _git(app, client, world, "198.51.100.42", True).status_code == 200
    assert _sign_in(app, "198.51.100.43", "mallory", PASSWORD).status_code == 302


def test_basic_auth_passwords_count_towards_the_lock_too(app, client, world):
    for n in range(10):
        assert _git_as(client, f"198.51.100.{50 + n}", "alice", "wrong").status_code == 401
    assert _sign_in(app, "198.51.100.70", "alice", PASSWORD).status_code == 403


def test_the_lock_lifts_after_the_lock_time(app, client, world):
    app.config["ACCOUNT_LOCK_TIME"] = 600
    for n in range(10):
        _sign_in(app, f"198.51.100.{80 + n}", "alice", "wrong-password")
    with app.app_context():
        alice = accounts.find_user("alice")
        assert alice.locked_until is not None and alice.failed_attempts == 0
        # Ten minutes pass.
        db.session.execute(sa.update(User).where(User.id == alice.id).values(
            locked_until=alice.locked_until - timedelta(seconds=601)))
        db.session.commit()
    assert _sign_in(app, "198.51.100.99", "alice", PASSWORD).status_code == 302


def test_a_good_password_clears_the_accounts_count(app, client, world):
    for n in range(9):
        _sign_in(app, f"198.51.100.{100 + n}", "alice", "wrong-password")
    assert _sign_in(app, "198.51.100.110", "alice", PASSWORD).status_code == 302
    for n in range(9):
        _sign_in(app, f"198.51.100.{120 + n}", "alice", "wrong-password")
    assert _sign_in(app, "198.51.100.130", "alice", PASSWORD).status_code == 302


def test_an_unknown_user_costs_the_same_password_hash(app, world, monkeypatch):
    hashed = []
    real = credentials.check_password_hash

    def spy(pwhash, password):
        hashed.append(pwhash.split("$", 1)[0])
        return real(pwhash, password)
    monkeypatch.setattr(credentials, "check_password_hash", spy)
    door = credentials.Door("test", passwords=True)
    with app.app_context():
        with pytest.raises(credentials.Unauthenticated):
            credentials.authenticate(credentials.Credentials(username="nobody-at-all",
                                                             password="guess"), door, ip=None)
        alice_hash = accounts.find_user("alice").password_hash.split("$", 1)[0]
    # One hash, of the same method and cost as a real user's.
    assert hashed == [alice_hash]


# ---------------------------------------------------------------- Redis trouble

def test_redis_down_falls_back_to_the_database_and_logs_once(app, client, small_ban, world,
                                                             caplog, monkeypatch):
    from webapp.services import auth_ban
    monkeypatch.setattr(auth_ban, "_REDIS_STATE", auth_ban._RedisState())
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    ip = "198.51.100.140"
    with caplog.at_level(logging.WARNING, logger="webapp.services.auth_ban"):
        for _ in range(5):
            assert _git(app, client, world, ip, False).status_code == 401
        assert _git(app, client, world, ip, True).status_code == 403
    warnings = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    assert len(warnings) == 1
    with app.app_context():
        assert db.session.get(AuthFailure, ip).banned_until is not None


def test_a_hung_redis_is_waited_on_once_then_skipped(app, client, world, monkeypatch):
    from webapp.services import auth_ban
    monkeypatch.setattr(auth_ban, "_REDIS_STATE", auth_ban._RedisState())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():  # accepts connections and never answers
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        app.config.update(REDIS_URL=f"redis://127.0.0.1:{listener.getsockname()[1]}/0",
                          REDIS_TIMEOUT=0.3)
        for _ in range(5):
            assert _git(app, client, world, "198.51.100.150", True).status_code == 200
        assert len(accepted) == 1  # tried once, then the database stood in
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


# ---------------------------------------------------------------- what each door accepts

def test_a_job_token_is_refused_clearly_and_is_not_a_failed_login(app, client, small_ban, world):
    for _ in range(6):
        response = client.get(f"/api/v4/projects/{world.project_id}/packages/pypi/simple/",
                              headers={"Job-Token": "whatever"})
        assert response.status_code == 401
        assert "job tokens are not supported" in response.get_json()["error"]
    assert _packages(app, client, world, "127.0.0.1", True).status_code == 200


def test_the_api_refuses_basic_auth_and_deploy_tokens_with_401(client, world):
    for headers in (basic(*world.deploy), {"Deploy-Token": world.deploy[1]},
                    {"PRIVATE-TOKEN": world.deploy[1]}):
        response = client.get("/api/v4/user", headers=headers)
        assert response.status_code == 401 and response.get_json() == {"message": "401 Unauthorized"}


def test_a_deploy_token_reaches_packages_by_any_header(app, client, world):
    url = f"/api/v4/projects/{world.project_id}/packages/pypi/simple/"
    for headers in ({"Deploy-Token": world.deploy[1]},
                    {"Authorization": f"Bearer {world.deploy[1]}"}, basic(*world.deploy)):
        assert client.get(url, headers=headers).status_code == 200
    # A deploy token sent where only personal access tokens go is wrong credentials.
    assert client.get(url, headers={"Private-Token": world.deploy[1]}).status_code == 401


def test_a_token_use_is_recorded_by_the_chain_on_every_door(app, client, world):
    from webapp.models import DeployToken, PersonalAccessToken, RunnerToken
    _git(app, client, world, "198.51.100.160", True)
    _api(app, client, world, "198.51.100.161", True)
    _ci(app, client, world, "198.51.100.162", True)
    with app.app_context():
        assert db.session.scalar(sa.select(DeployToken.last_used_ip)) == "198.51.100.160"
        assert db.session.scalar(sa.select(PersonalAccessToken.last_used_ip)) == "198.51.100.161"
        assert db.session.scalar(sa.select(RunnerToken.last_used_ip)) == "198.51.100.162"


# ---------------------------------------------------------------- unknown routes

def test_an_unknown_api_route_is_404_whatever_the_credentials(client, world, make):
    admin = make.user("admin", admin=True)
    admin_pat = make.pat(admin)
    for headers in ({}, {"Deploy-Token": world.deploy[1]}, {"PRIVATE-TOKEN": admin_pat},
                    {"PRIVATE-TOKEN": "glpat-wrongwrongwrongwron"}):
        for method, url in (("get", f"/api/v4/projects/{world.project_id}/deploy_keys"),
                            ("put", f"/api/v4/projects/{world.project_id}/deploy_keys"),
                            ("get", "/api/v4/nothing/here")):
            response = getattr(client, method)(url, headers=headers)
            assert response.status_code == 404, (headers, method, url)
            assert response.get_json()["message"] == "404 Not Found"


def test_a_package_format_gitlab_has_and_gatehouse_does_not_says_so(client, world):
    response = client.put(
        f"/api/v4/projects/{world.project_id}/packages/conan/v1/conans/x/1.0/a/b/upload_urls",
        headers={"Deploy-Token": world.deploy[1]})
    assert response.status_code == 404
    assert response.get_json() == {"message": "404 Not Found",
                                   "error": "conan packages are not served by Gatehouse"}


def test_an_operator_unlocks_an_account_from_the_cli(app, world):
    for n in range(10):
        _sign_in(app, f"198.51.100.{170 + n}", "alice", "wrong-password")
    assert _sign_in(app, "198.51.100.190", "alice", PASSWORD).status_code == 403
    result = app.test_cli_runner().invoke(args=["users", "unlock", "alice"])
    assert result.exit_code == 0, result.output
    assert _sign_in(app, "198.51.100.191", "alice", PASSWORD).status_code == 302
    missing = app.test_cli_runner().invoke(args=["users", "unlock", "nobody"])
    assert missing.exit_code == 1 and "No user 'nobody'" in missing.output

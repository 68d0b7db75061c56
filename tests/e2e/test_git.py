"""The real `git` client against Gatehouse served by gunicorn on loopback.

Each test starts its own server (so it can set the ban numbers or the worker count)
sharing the test database and the test app's data directory, where `make.project`
creates the bare repositories.
"""
import os
import time
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

import pytest

from webapp.extensions import db
from webapp.models import AuthFailure, DeployToken

from ..conftest import PASSWORD, gunicorn
from ..support import peak_rss_mb, redis_server, require_binary
from .gitclient import seed


class Server:
    def __init__(self, url, port, proc, log):
        self.url, self.port, self.proc, self.log = url, port, proc, log

    def remote(self, full_path, username=None, password=None) -> str:
        """The clone URL, with credentials in it as the GitLab docs show."""
        host = self.url.split("://", 1)[1]
        creds = f"{username}:{password}@" if username is not None else ""
        return f"http://{creds}{host}/{full_path}.git"

    def statuses(self, count: int) -> list[str]:
        """The statuses of the first `count` git requests in the access log.

        gunicorn writes a log line after the response has gone out, so wait for it.
        """
        deadline = time.monotonic() + 10
        while True:
            lines = [line for line in self.log.read_text().splitlines() if '"git/' in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return [line.split('" ')[1].split()[0] for line in lines[:count]]
            time.sleep(0.05)


@pytest.fixture
def serve(app, migrated, tmp_path):
    """Start Gatehouse under gunicorn with extra GATEHOUSE_* settings: serve(WORKERS=1, ...)."""
    require_binary("git")
    with ExitStack() as stack:
        def start(workers=2, **settings) -> Server:
            live = stack.enter_context(gunicorn(migrated, Path(app.config["DATA_DIR"]), tmp_path,
                                                workers=workers, **settings))
            return Server(live.url, live.port, live.proc, live.log)
        yield start


@pytest.fixture
def redis_url(tmp_path):
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as url:
        yield url


def test_clone_with_a_read_repository_token(app, make, git, serve, tmp_path):
    make.project("tanuki/awesome_project")
    seed(git, app, "tanuki/awesome_project")
    token_id, username, secret = make.token("tanuki/awesome_project", ["read_repository"])
    server = serve()

    git("clone", server.remote("tanuki/awesome_project", username, secret),
                 str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "README.md").read_text() == "hello\n"
    # git asked anonymously first, was challenged, and retried with the token.
    assert server.statuses(2) == ["401", "200"]
    # The token's use is recorded (the panel's Last used column reads these).
    with app.app_context():
        token = db.session.get(DeployToken, token_id)
        assert token.last_used_at is not None
        assert token.last_used_ip == "127.0.0.1"


def test_git_speaks_protocol_v2_through_the_bridge(app, make, git, serve):
    make.project("tanuki/p")
    seed(git, app, "tanuki/p")
    _, username, secret = make.token("tanuki/p")
    server = serve(workers=1)
    result = git("-c", "protocol.version=2", "ls-remote", server.remote("tanuki/p", username, secret),
                 env={"GIT_TRACE_PACKET": "1"})
    assert "refs/heads/main" in result.stdout
    assert "< version 2" in result.stderr


def test_wrong_secret_or_wrong_username_is_refused(app, make, git, serve, tmp_path):
    make.project("tanuki/p")
    _, username, secret = make.token("tanuki/p")
    server = serve(workers=1)
    for user, password in [(username, secret[:-1] + ("x" if secret[-1] != "x" else "y")),
                           ("gitlab+deploy-token-999", secret)]:
        result = git("clone", server.remote("tanuki/p", user, password), str(tmp_path / "c"),
                     check=False)
        assert result.returncode != 0
        assert "remote: HTTP Basic: Access denied" in result.stderr
        assert "Authentication failed" in result.stderr
        assert not (tmp_path / "c").exists()
    assert server.statuses(4) == ["401"] * 4


def test_revoked_expired_scopeless_and_other_project_tokens_are_refused(
        app, make, git, serve, tmp_path):
    make.project("tanuki/p")
    make.project("tanuki/other")
    revoked = make.token("tanuki/p", revoked=True)
    expired = make.token("tanuki/p", expires_at=date.today() - timedelta(days=1))
    registry_only = make.token("tanuki/p", ["read_registry"])
    elsewhere = make.token("tanuki/other", ["read_repository"])
    server = serve(workers=1)

    def clone(token):
        _, username, secret = token
        return git("clone", server.remote("tanuki/p", username, secret), str(tmp_path / "c"),
                   check=False)

    for token in (revoked, expired):
        result = clone(token)
        assert result.returncode != 0 and "Authentication failed" in result.stderr
    result = clone(registry_only)
    assert result.returncode != 0
    assert "remote: This deploy token cannot read this repository" in result.stderr
    result = clone(elsewhere)
    assert result.returncode != 0
    assert "remote: The project you were looking for could not be found" in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_group_token_clones_a_project_two_subgroups_down(app, make, git, serve, tmp_path):
    make.project("tanuki/infra/deep/service")
    seed(git, app, "tanuki/infra/deep/service")
    _, username, secret = make.token("tanuki", ["read_repository"])
    server = serve(workers=1)
    git("clone", server.remote("tanuki/infra/deep/service", username, secret),
        str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "README.md").exists()


def test_a_public_project_clones_without_credentials(app, make, git, serve, tmp_path):
    make.project("tanuki/open", visibility="public")
    seed(git, app, "tanuki/open")
    server = serve(workers=1)
    git("clone", server.remote("tanuki/open"), str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "README.md").exists()


def test_a_developer_pushes_and_a_reporter_cannot(app, make, git, serve, tmp_path):
    make.project("tanuki/p")
    make.member("tanuki", make.user("dev"), "developer")
    make.member("tanuki", make.user("rep"), "reporter")
    server = serve(workers=1)
    work = git.work_tree()
    # Many branches make the clone's fetch request big enough for git to gzip it.
    for n in range(40):
        git("commit", "-q", "--allow-empty", "-m", f"change {n}", cwd=work)
        git("branch", f"feature-{n}", cwd=work)

    pushed = git("push", server.remote("tanuki/p", "dev", PASSWORD), "--all", cwd=work)
    assert "[new branch]      main -> main" in pushed.stderr
    refused = git("push", server.remote("tanuki/p", "rep", PASSWORD), "main:reporter-branch",
                  cwd=work, check=False)
    assert refused.returncode != 0
    assert "remote: You are not allowed to push code to this project." in refused.stderr

    result = git("clone", "--mirror", server.remote("tanuki/p", "rep", PASSWORD),
                 str(tmp_path / "mirror"), env={"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"})
    assert "Content-Encoding: gzip" in result.stderr
    branches = git("branch", "--list", cwd=tmp_path / "mirror").stdout.split()
    assert "feature-39" in branches and "main" in branches and "reporter-branch" not in branches


def test_a_deploy_token_cannot_push_and_git_says_why(app, make, git, serve):
    make.project("tanuki/p")
    seed(git, app, "tanuki/p")
    _, username, secret = make.token("tanuki/p", ["read_repository", "write_registry",
                                                  "write_package_registry"])
    server = serve(workers=1)
    work = git.work_tree("pusher")
    result = git("push", server.remote("tanuki/p", username, secret), "main:from-token",
                 cwd=work, check=False)
    assert result.returncode != 0
    assert "remote: You are not allowed to push code to this project: deploy tokens are read-only" \
        in result.stderr
    assert "403" in result.stderr


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_the_ban_trips_after_the_configured_failures_and_lifts_after_the_ban_time(
        app, make, git, serve, request, backend):
    make.project("tanuki/p")
    seed(git, app, "tanuki/p")
    _, username, secret = make.token("tanuki/p")
    settings = {"REDIS_URL": request.getfixturevalue("redis_url")} if backend == "redis" else {}
    # Two workers: the count must be shared between them to trip at exactly 3.
    server = serve(workers=2, AUTH_BAN_MAX_RETRY=3, AUTH_BAN_FIND_TIME=60, AUTH_BAN_TIME=2,
                   **settings)
    good = server.remote("tanuki/p", username, secret)
    bad = server.remote("tanuki/p", username, "gldt-wrongwrongwrongwron")

    for _ in range(3):
        result = git("ls-remote", bad, check=False)
        assert "HTTP Basic: Access denied" in result.stderr
    banned = git("ls-remote", good, check=False)
    assert banned.returncode != 0
    assert "remote: Too many failed authentication attempts from this IP" in banned.stderr
    with app.app_context():  # the counters are where the settings put them
        assert (db.session.get(AuthFailure, "127.0.0.1") is not None) == (backend == "database")

    deadline = time.monotonic() + 30
    while True:
        result = git("ls-remote", good, check=False)
        if result.returncode == 0:
            break
        assert "Too many failed authentication attempts" in result.stderr
        assert time.monotonic() < deadline, "the ban did not lift"
        time.sleep(0.2)
    assert "refs/heads/main" in result.stdout


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_a_100_mib_push_and_clone_stay_under_150_mb(app, make, git, serve, tmp_path):
    make.project("tanuki/big")
    make.member("tanuki", make.user("dev"), "developer")
    _, username, secret = make.token("tanuki/big")
    server = serve(workers=1)
    (worker,) = _children(server.proc.pid)

    # Random bytes do not compress: 100 MiB in, about 100 MiB over the wire each way.
    files = {f"blob{n}.bin": os.urandom(25 << 20) for n in range(4)}
    work = git.work_tree("big", files)
    del files
    git("push", "-q", server.remote("tanuki/big", "dev", PASSWORD), "main", cwd=work)
    git("clone", "-q", server.remote("tanuki/big", username, secret), str(tmp_path / "clone"))

    assert (tmp_path / "clone" / "blob3.bin").stat().st_size == 25 << 20
    assert (tmp_path / "clone" / "blob0.bin").read_bytes() == (work / "blob0.bin").read_bytes()
    # About 65 MB is the loaded app and 32 MiB the scrypt check of the pusher's password;
    # the 100 MiB stream itself must add next to nothing.
    peak = peak_rss_mb(worker)
    print(f"gunicorn worker peak RSS: {peak:.1f} MB")
    assert peak < 150

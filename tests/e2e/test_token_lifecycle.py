"""Token lifecycle with real clients: rotation without downtime, per-token address allowlists.

The server runs under gunicorn; git, curl and the runner's /ci/variables call are the
real programs. A client "from 127.0.0.2" really connects from that address: curl binds
it with `--interface`; git cannot bind a source address, so it talks to a TCP relay
that opens its connection to the server from 127.0.0.2 (all of 127.0.0.0/8 is loopback).
"""
import json
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from urllib.parse import quote

import pytest

from webapp.extensions import db
from webapp.models import AuthFailure
from webapp.services import accounts, deploy_tokens, runners

from ..support import require_binary
from .gitclient import seed
from .test_ci_variables import deploy_credentials, fetch_ci_variables

PROJECT = "tanuki/app"


def _remote(server_url: str, username: str, secret: str) -> str:
    host = server_url.split("://", 1)[1]
    return f"http://{quote(username, safe='')}:{secret}@{host}/{PROJECT}.git"


def _api(url: str, method: str, path: str, key: str, body: dict) -> dict:
    curl = require_binary("curl")
    out = subprocess.run(
        [curl, "--silent", "--show-error", "--fail-with-body", "--max-time", "30",
         "-X", method, "-H", f"PRIVATE-TOKEN: {key}", "-H", "Content-Type: application/json",
         "--data", json.dumps(body), f"{url}/api/v4{path}"],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def maintainer_key(make):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    return make.pat("maria")


def test_rotation_with_a_grace_period_keeps_both_secrets_cloning_then_only_the_new(
        app, make, git, live_server, maintainer_key, tmp_path):
    seed(git, app, PROJECT)
    token_id, username, old = make.token(PROJECT, ["read_repository"])
    ref = quote(PROJECT, safe="")

    started = time.monotonic()
    body = _api(live_server.url, "POST", f"/projects/{ref}/deploy_tokens/{token_id}/rotate",
                maintainer_key, {"grace_period": 5})
    new = body["token"]
    assert new != old and body["id"] == token_id and body["previous_token_expires_at"]

    # During the grace period both secrets clone (the old one first: its time is short).
    git("clone", "-q", _remote(live_server.url, username, old), str(tmp_path / "old"))
    git("clone", "-q", _remote(live_server.url, username, new), str(tmp_path / "new"))
    assert (tmp_path / "old" / "README.md").exists() and (tmp_path / "new" / "README.md").exists()

    # Then the old one is refused (poll, bounded), and the new one still clones.
    deadline = time.monotonic() + 30
    while True:
        refused = git("ls-remote", _remote(live_server.url, username, old), check=False)
        if refused.returncode != 0:
            break
        assert time.monotonic() < deadline, "the old secret still works 30 s after a 5 s grace"
        time.sleep(0.5)
    assert time.monotonic() - started >= 5, "the old secret stopped before its grace ended"
    # The refusal above may have come between ls-remote's two requests (the grace ending
    # after the ref advertisement: "RPC failed; HTTP 401"); now it is over, so git is
    # refused at its first request and says why.
    refused = git("ls-remote", _remote(live_server.url, username, old), check=False)
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr
    git("clone", "-q", _remote(live_server.url, username, new), str(tmp_path / "again"))


def test_rotated_ci_token_reaches_jobs_at_once(app, make, git, live_server, maintainer_key,
                                                tmp_path):
    seed(git, app, PROJECT)
    token_id, _, old = make.token(PROJECT, ["read_repository"], name="gitlab-deploy-token")
    with app.app_context():
        _, runner_token = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT), name="e2e")
    assert deploy_credentials(fetch_ci_variables(live_server.url, runner_token))[1] == old

    new = _api(live_server.url, "POST",
               f"/projects/{quote(PROJECT, safe='')}/deploy_tokens/{token_id}/rotate",
               maintainer_key, {"grace_period": 0})["token"]
    user, password = deploy_credentials(fetch_ci_variables(live_server.url, runner_token))
    assert password == new
    # What the job was handed works; the old secret, with no grace, does not.
    git("clone", "-q", _remote(live_server.url, user, password), str(tmp_path / "job"))
    refused = git("ls-remote", _remote(live_server.url, user, old), check=False)
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr


@contextmanager
def relay_from(source: str, target_port: int):
    """A TCP relay on a free port whose connections reach the server from `source`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def pipe(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port),
                                                source_address=(source, 0))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        listener.close()


def _curl_from(source: str, url: str, *headers: str, user: str = "") -> tuple[int, str]:
    curl = require_binary("curl")
    cmd = [curl, "--silent", "--max-time", "30", "--interface", source,
           "--write-out", "\n%{http_code}", *sum((["-H", h] for h in headers), [])]
    if user:
        cmd += ["--user", user]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    body, _, status = out.rpartition("\n")
    return int(status), body


def test_allowlisted_token_is_refused_from_another_address_on_git_registry_and_packages(
        app, make, git, live_server, tmp_path):
    project = make.project(PROJECT)
    seed(git, app, PROJECT)
    with app.app_context():
        token, secret = deploy_tokens.create(
            accounts.find_project(PROJECT), name="pinned", allowed_ips=["127.0.0.1"],
            scopes=["read_repository", "read_registry", "read_package_registry"])
        username = token.username
    jwt = f"/jwt/auth?service=container_registry&scope=repository:{PROJECT}:pull"
    pypi = f"/api/v4/projects/{project.id}/packages/pypi/simple/"

    # From 127.0.0.1: git clones, the registry signs a token, the package index answers.
    git("clone", "-q", _remote(live_server.url, username, secret), str(tmp_path / "ok"))
    status, body = _curl_from("127.0.0.1", live_server.url + jwt, user=f"{username}:{secret}")
    assert status == 200 and json.loads(body)["token"]
    status, _ = _curl_from("127.0.0.1", live_server.url + pypi, f"Deploy-Token: {secret}")
    assert status == 200

    # From 127.0.0.2: each door refuses, saying why.
    with relay_from("127.0.0.2", live_server.port) as port:
        remote = f"http://{quote(username, safe='')}:{secret}@127.0.0.1:{port}/{PROJECT}.git"
        refused = git("clone", "-q", remote, str(tmp_path / "refused"), check=False)
    assert refused.returncode != 0
    assert "remote: This deploy token is not allowed from this address (127.0.0.2)" \
        in refused.stderr
    assert not (tmp_path / "refused").exists()
    status, body = _curl_from("127.0.0.2", live_server.url + jwt, user=f"{username}:{secret}")
    assert status == 403 and "not allowed from this address (127.0.0.2)" in body
    status, body = _curl_from("127.0.0.2", live_server.url + pypi, f"Deploy-Token: {secret}")
    assert status == 403 and "not allowed from this address (127.0.0.2)" in body
    # Each refusal counted as a failed authentication from that address, none from ours.
    with app.app_context():
        assert db.session.get(AuthFailure, "127.0.0.2").failures == 3
        assert db.session.get(AuthFailure, "127.0.0.1") is None

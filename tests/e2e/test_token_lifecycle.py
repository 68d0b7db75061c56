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

from webapp.services import accounts, runners

from ..support import free_port, require_binary
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
    assert "Authentication failed" in refused.stderr
    assert time.monotonic() - started >= 5, "the old secret stopped before its grace ended"
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

"""As a runner would: fetch /ci/variables from the live server with curl, then use them.

`fetch_ci_variables` and `deploy_credentials` are meant for reuse: a job's `git clone`
or `skopeo login` takes CI_DEPLOY_USER / CI_DEPLOY_PASSWORD straight from them.
"""
import json
import subprocess
from urllib.parse import quote

import pytest

from webapp.services import accounts, deploy_tokens, runners

from ..support import require_binary
from .gitclient import seed

PROJECT = "tanuki/app"


def fetch_ci_variables(base_url: str, runner_token: str, *, dotenv: bool = False,
                       tmp_path=None) -> dict[str, str]:
    """GET /ci/variables with curl as a runner does; return KEY → value.

    With `dotenv`, ask for text/plain and read the values back by sourcing the file in
    bash, as a job script would.
    """
    curl = require_binary("curl")
    cmd = [curl, "--silent", "--show-error", "--fail", "--max-time", "30",
           "-H", f"Authorization: Bearer {runner_token}",
           "-H", f"Accept: {'text/plain' if dotenv else 'application/json'}",
           f"{base_url}/ci/variables"]
    body = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
    if not dotenv:
        return {v["key"]: v["value"] for v in json.loads(body)["variables"]}
    env_file = tmp_path / "ci.env"
    env_file.write_text(body)
    # `set -a` exports what the file sets; `env -0` lists it, NUL-separated.
    out = subprocess.run(
        [require_binary("bash"), "--noprofile", "--norc", "-c", 'set -a; . "$1"; env -0',
         "bash", str(env_file)], capture_output=True, check=True,
        env={"PATH": "/usr/bin:/bin"}).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith("CI_")}


def deploy_credentials(variables: dict[str, str]) -> tuple[str, str]:
    """(CI_DEPLOY_USER, CI_DEPLOY_PASSWORD) for `git clone` or `skopeo login`."""
    return variables["CI_DEPLOY_USER"], variables["CI_DEPLOY_PASSWORD"]


@pytest.fixture
def ci_project(make, app):
    """A project with a CI deploy token and a runner; returns (runner token, deploy secret)."""
    make.project(PROJECT)
    _, _, secret = make.token(PROJECT, ["read_repository", "read_registry"],
                              name="gitlab-deploy-token")
    with app.app_context():
        _, runner_token = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT), name="e2e")
    return runner_token, secret


def test_runner_fetches_variables_whose_credentials_authenticate(
        live_server, ci_project, app, tmp_path):
    runner_token, secret = ci_project
    variables = fetch_ci_variables(live_server.url, runner_token)
    assert variables["CI_SERVER_URL"] == live_server.url
    assert variables["CI_PROJECT_PATH"] == PROJECT
    assert variables["CI_REPOSITORY_URL"] == f"{live_server.url}/{PROJECT}.git"
    assert variables["CI_REGISTRY_IMAGE"] == f"{variables['CI_REGISTRY']}/{PROJECT}"

    user, password = deploy_credentials(variables)
    assert password == secret
    with app.app_context():
        token = deploy_tokens.find_active(user, password)
        assert token is not None and token.name == "gitlab-deploy-token"
        assert token.has_scope("read_repository") and token.has_scope("read_registry")

    # The dotenv form, sourced by bash, carries exactly the same values.
    assert fetch_ci_variables(live_server.url, runner_token, dotenv=True,
                              tmp_path=tmp_path) == variables


def test_live_server_refuses_and_never_logs_secrets(live_server, ci_project, make, app):
    runner_token, secret = ci_project
    curl = require_binary("curl")

    def status(*headers):
        out = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              *sum((["-H", h] for h in headers), []),
                              f"{live_server.url}/ci/variables"],
                             capture_output=True, text=True, check=True).stdout
        return int(out)

    assert status() == 401
    assert status("Authorization: Bearer glrt-unknownunknownunkno") == 401
    assert status(f"Authorization: Bearer {secret}") == 401  # a deploy token is no runner
    assert status(f"Authorization: Bearer {runner_token}") == 200
    with app.app_context():
        project = accounts.find_project(PROJECT)
        runners.RUNNER_TOKENS.revoke(project, runners.RUNNER_TOKENS.list_for(project)[0].id)
    assert status(f"Authorization: Bearer {runner_token}") == 401

    log = live_server.log.read_text()
    assert "/ci/variables" in log  # the requests were logged ...
    for value in (secret, runner_token, secret[5:], runner_token[5:]):
        assert value not in log  # ... and no credential with them
    assert "[FILTERED]" not in log  # not even one that had to be scrubbed


def test_a_job_clones_and_logs_in_to_the_registry_with_the_ci_pair(
        live_server, ci_project, app, git, skopeo, image):
    """What a job script does: git clone $CI_REPOSITORY_URL and docker login $CI_REGISTRY."""
    runner_token, _ = ci_project
    seed(git, app, PROJECT)
    variables = fetch_ci_variables(live_server.url, runner_token)
    user, password = deploy_credentials(variables)

    scheme, rest = variables["CI_REPOSITORY_URL"].split("://", 1)
    clone = git("clone", "-q", f"{scheme}://{quote(user, safe='')}:{password}@{rest}",
                str(git.home / "job-checkout"))
    assert clone.returncode == 0
    assert (git.home / "job-checkout" / "README.md").read_bytes() == b"hello\n"

    # The job's registry is the one the runner was told about; here it is the test's.
    ok = skopeo.login(user, password)
    assert ok.returncode == 0, ok.stderr
    layout, tag, _ = image
    pushed = skopeo.push(layout, tag, PROJECT, as_user=user)
    assert pushed.returncode != 0  # the CI token reads the registry; it does not write
    with app.app_context():
        assert deploy_tokens.find_active(user, password).last_used_at is not None


def test_after_revoke_the_job_gets_no_pair_and_the_old_one_is_dead(
        live_server, ci_project, app, git, make):
    runner_token, secret = ci_project
    seed(git, app, PROJECT)
    variables = fetch_ci_variables(live_server.url, runner_token)
    user, password = deploy_credentials(variables)
    with app.app_context():
        project = accounts.find_project(PROJECT)
        token = deploy_tokens.find_active(user, password)
        deploy_tokens.DEPLOY_TOKENS.revoke(project, token.id)
    assert "CI_DEPLOY_PASSWORD" not in fetch_ci_variables(live_server.url, runner_token)
    host = live_server.url.split("://", 1)[1]
    refused = git("clone", "-q", f"http://{quote(user, safe='')}:{password}@{host}/{PROJECT}.git",
                  str(git.home / "dead"), check=False)
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr

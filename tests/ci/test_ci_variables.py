"""GET /ci/variables: who gets which variables, in which format, and never a stranger's secret."""
import logging
import subprocess
from datetime import timedelta

import pytest

from webapp.models import utcnow
from webapp.services import accounts, ci, runners

from ..support import require_binary
from .conftest import as_dict

PROJECT = "tanuki/app"


@pytest.fixture
def project(make):
    return make.project(PROJECT)


def _unauthorized(response):
    assert response.status_code == 401
    assert response.get_json() == {"message": "401 Unauthorized"}
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_no_token_is_401(project, fetch):
    _unauthorized(fetch())


@pytest.mark.parametrize("header", [
    "Bearer glrt-AAAAAAAAAAAAAAAAAAAA",   # runner-shaped, unknown
    "Bearer ",                            # empty
    "Bearer not-even-a-token",
    "Basic cm9vdDpwYXNzd29yZA==",         # basic auth is not a runner credential
])
def test_unknown_token_is_401(project, runner, fetch, header):
    runner(PROJECT)
    _unauthorized(fetch(Authorization=header))


def test_a_deploy_token_is_not_a_runner_token(project, make, fetch):
    _, _, secret = make.token(PROJECT, name="gitlab-deploy-token")
    _unauthorized(fetch(secret))


def test_revoked_runner_token_is_401(project, runner, fetch, app):
    runner_id, secret = runner(PROJECT)
    assert fetch(secret).status_code == 200
    with app.app_context():
        runners.RUNNER_TOKENS.revoke(accounts.find_project(PROJECT), runner_id)
    _unauthorized(fetch(secret))


def test_runner_gets_its_projects_variables(project, runner, fetch, app):
    _, secret = runner(PROJECT)
    response = fetch(secret)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"
    variables = response.get_json()["variables"]
    assert all(set(v) == {"key", "value", "public", "masked"} for v in variables)
    assert as_dict(response) == {
        "CI_SERVER_URL": "http://gatehouse.test",
        "CI_PROJECT_ID": str(project.id),
        "CI_PROJECT_PATH": PROJECT,
        "CI_REPOSITORY_URL": f"http://gatehouse.test/{PROJECT}.git",
        "CI_REGISTRY": "127.0.0.1:5050",
        "CI_REGISTRY_IMAGE": f"127.0.0.1:5050/{PROJECT}",
    }
    assert all(v["public"] and not v["masked"] for v in variables)


def test_registry_image_follows_registry_url_and_is_lower_case(make, runner, fetch, app):
    make.project("Tanuki/My.App")
    _, secret = runner("Tanuki/My.App")
    app.config["REGISTRY_URL"] = "registry.example.com:5050"
    variables = as_dict(fetch(secret))
    assert variables["CI_REGISTRY"] == "registry.example.com:5050"
    assert variables["CI_REGISTRY_IMAGE"] == "registry.example.com:5050/tanuki/my.app"
    assert variables["CI_PROJECT_PATH"] == "Tanuki/My.App"


def test_deploy_token_pair_is_exposed_masked(project, make, runner, fetch):
    _, username, secret = make.token(PROJECT, ["read_repository", "read_registry"],
                                     name="gitlab-deploy-token")
    _, runner_secret = runner(PROJECT)
    variables = {v["key"]: v for v in fetch(runner_secret).get_json()["variables"]}
    assert variables["CI_DEPLOY_USER"] == {"key": "CI_DEPLOY_USER", "value": username,
                                           "public": True, "masked": False}
    assert variables["CI_DEPLOY_PASSWORD"] == {"key": "CI_DEPLOY_PASSWORD", "value": secret,
                                               "public": False, "masked": True}


def test_custom_username_is_the_deploy_user(project, make, runner, fetch):
    make.token(PROJECT, name="gitlab-deploy-token", username="ci-bot")
    _, runner_secret = runner(PROJECT)
    assert as_dict(fetch(runner_secret))["CI_DEPLOY_USER"] == "ci-bot"


def test_runner_of_another_project_never_gets_this_projects_secret(make, runner, fetch):
    make.project(PROJECT)
    other = make.project("tanuki/other")
    _, _, mine = make.token(PROJECT, name="gitlab-deploy-token")
    _, other_runner = runner("tanuki/other")

    response = fetch(other_runner)
    assert response.status_code == 200
    variables = as_dict(response)
    assert variables["CI_PROJECT_PATH"] == "tanuki/other"
    assert variables["CI_PROJECT_ID"] == str(other.id)
    assert "CI_DEPLOY_PASSWORD" not in variables
    assert mine not in response.get_data(as_text=True)
    assert mine not in fetch(other_runner, accept="text/plain").get_data(as_text=True)

    # With its own CI token the other project gets that one, still never this one.
    _, other_user, theirs = make.token("tanuki/other", name="gitlab-deploy-token")
    variables = as_dict(fetch(other_runner))
    assert (variables["CI_DEPLOY_USER"], variables["CI_DEPLOY_PASSWORD"]) == (other_user, theirs)
    assert mine not in fetch(other_runner).get_data(as_text=True)


def test_pair_disappears_when_the_token_is_revoked(project, make, runner, fetch, app):
    token_id, _, secret = make.token(PROJECT, name="gitlab-deploy-token")
    _, runner_secret = runner(PROJECT)
    assert as_dict(fetch(runner_secret))["CI_DEPLOY_PASSWORD"] == secret
    with app.app_context():
        from webapp.services import deploy_tokens
        deploy_tokens.DEPLOY_TOKENS.revoke(accounts.find_project(PROJECT), token_id)
    response = fetch(runner_secret)
    assert not {"CI_DEPLOY_USER", "CI_DEPLOY_PASSWORD"} & set(as_dict(response))
    assert secret not in response.get_data(as_text=True)


def test_expired_token_is_not_exposed(project, make, runner, fetch):
    _, _, secret = make.token(PROJECT, name="gitlab-deploy-token",
                              expires_at=utcnow() - timedelta(minutes=1))
    _, runner_secret = runner(PROJECT)
    response = fetch(runner_secret)
    assert "CI_DEPLOY_PASSWORD" not in as_dict(response)
    assert secret not in response.get_data(as_text=True)


def test_pair_stops_at_the_expiry_instant(project, make, app):
    expires = utcnow() + timedelta(days=2)
    make.token(PROJECT, name="gitlab-deploy-token", expires_at=expires)
    with app.app_context():
        target = accounts.find_project(PROJECT)
        before = ci.job_variables(target, external_url="x", registry="r",
                                  now=expires - timedelta(seconds=1))
        at = ci.job_variables(target, external_url="x", registry="r", now=expires)
    assert "CI_DEPLOY_PASSWORD" in {v["key"] for v in before}
    assert "CI_DEPLOY_PASSWORD" not in {v["key"] for v in at}


@pytest.mark.parametrize("name", ["gitlab-deploy-token2", "GitLab-Deploy-Token",
                                  "gitlab_deploy_token", "my-gitlab-deploy-token"])
def test_only_the_exact_name_is_exposed(project, make, runner, fetch, name):
    _, _, secret = make.token(PROJECT, name=name)
    _, runner_secret = runner(PROJECT)
    response = fetch(runner_secret)
    assert not {"CI_DEPLOY_USER", "CI_DEPLOY_PASSWORD"} & set(as_dict(response))
    assert secret not in response.get_data(as_text=True)


def test_group_token_of_that_name_is_not_exposed(project, make, runner, fetch):
    _, _, secret = make.token("tanuki", name="gitlab-deploy-token")
    _, runner_secret = runner(PROJECT)
    response = fetch(runner_secret)
    assert not {"CI_DEPLOY_USER", "CI_DEPLOY_PASSWORD"} & set(as_dict(response))
    assert secret not in response.get_data(as_text=True)


def test_newest_active_ci_token_wins(project, make, runner, fetch):
    make.token(PROJECT, name="gitlab-deploy-token", username="old")
    _, _, newest = make.token(PROJECT, name="gitlab-deploy-token", username="new")
    make.token(PROJECT, name="gitlab-deploy-token", username="newer-but-revoked", revoked=True)
    _, runner_secret = runner(PROJECT)
    variables = as_dict(fetch(runner_secret))
    assert (variables["CI_DEPLOY_USER"], variables["CI_DEPLOY_PASSWORD"]) == ("new", newest)


@pytest.mark.parametrize("accept, dotenv", [
    (None, False),
    ("*/*", False),
    ("application/json", False),
    ("text/plain", True),
    ("text/plain, application/json;q=0.5", True),
    ("application/json, text/plain;q=0.5", False),
])
def test_format_follows_accept(project, runner, fetch, accept, dotenv):
    _, secret = runner(PROJECT)
    response = fetch(secret, accept=accept)
    assert response.status_code == 200
    assert response.mimetype == ("text/plain" if dotenv else "application/json")
    assert "Accept" in response.headers["Vary"]
    assert response.headers["Cache-Control"] == "no-store"


def _source_in_bash(dotenv_text: str, keys: list[str], tmp_path) -> dict[str, str]:
    """Source the file in bash with `set -u` and read each variable back, NUL-separated."""
    bash = require_binary("bash")
    path = tmp_path / "ci.env"
    path.write_text(dotenv_text)
    script = 'set -eu; . "$1"; shift; for k in "$@"; do printf "%s\\0" "${!k}"; done'
    out = subprocess.run([bash, "--noprofile", "--norc", "-c", script, "bash", str(path), *keys],
                         capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    return dict(zip(keys, out.decode("utf-8").split("\0")[:-1]))


def test_dotenv_survives_quotes_spaces_and_dollars(project, make, runner, fetch, app, tmp_path):
    # The external URL is operator-controlled text: make it as hostile as text gets.
    app.config["EXTERNAL_URL"] = "http://h/it's \"a\" $HOME `id` $(id) \\n ${x} !! ;|&"
    app.config["REGISTRY_URL"] = "reg'''istry $PATH"
    make.token(PROJECT, name="gitlab-deploy-token")
    _, secret = runner(PROJECT)
    expected = as_dict(fetch(secret))
    text = fetch(secret, accept="text/plain").get_data(as_text=True)
    assert all(line.startswith(tuple(expected)) for line in text.splitlines())
    assert _source_in_bash(text, list(expected), tmp_path) == expected


@pytest.mark.parametrize("value", ["", "'", "''", "a'b", "'\\''", "x\ny", "tab\there", "\\",
                                   "$(touch /tmp/pwned)", "`x`", "ünïcödé", "#not a comment"])
def test_sh_quote_round_trips(value, tmp_path):
    text = ci.dotenv([{"key": "V", "value": value}])
    assert _source_in_bash(text, ["V"], tmp_path) == {"V": value}


def test_runner_contact_is_recorded(project, runner, fetch, app):
    runner_id, secret = runner(PROJECT)
    fetch(secret)
    with app.app_context():
        token = runners.RUNNER_TOKENS.get_for(accounts.find_project(PROJECT), runner_id)
        assert token.last_used_at is not None
        assert token.last_used_ip == "127.0.0.1"


def test_other_methods_and_paths_are_not_stored_either(project, client):
    for response in (client.post("/ci/variables"), client.get("/ci/nothing")):
        assert response.status_code in (404, 405)
        assert response.headers["Cache-Control"] == "no-store"


def test_secrets_never_reach_the_app_log(project, make, runner, fetch, app, caplog):
    caplog.set_level(logging.DEBUG)
    _, _, secret = make.token(PROJECT, name="gitlab-deploy-token")
    _, runner_secret = runner(PROJECT)
    fetch(runner_secret)
    fetch(runner_secret, accept="text/plain")
    fetch("glrt-wrongwrongwrongwrong")
    app.config["ENCRYPTION_KEY"] = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    assert fetch(runner_secret).status_code == 500  # the error path logs too
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "CI variables for tanuki/app served" in logged
    assert "cannot decrypt" in logged
    for value in (secret, runner_secret, secret[5:], runner_secret[5:]):
        assert value not in logged
    assert "[FILTERED]" not in logged  # not even scrubbed: never handed to a logger


def test_undecryptable_token_is_a_500_not_a_silent_omission(project, make, runner, fetch, app):
    make.token(PROJECT, name="gitlab-deploy-token")
    _, runner_secret = runner(PROJECT)
    app.config["ENCRYPTION_KEY"] = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    response = fetch(runner_secret)
    assert response.status_code == 500
    assert response.get_json() == {"message": "500 Internal Server Error"}
    assert response.headers["Cache-Control"] == "no-store"

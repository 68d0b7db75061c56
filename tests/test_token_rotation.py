"""Rotation: a new secret shown once, the previous one valid until its grace period ends.

One implementation for every kind (services/secret_tokens.py); the API, the CLI and the
panel only call it.
"""
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import AuditEvent, DeployToken, PersonalAccessToken, utcnow
from webapp.services import accounts, deploy_tokens, runners

from .conftest import csrf_from

PROJECT = "tanuki/awesome_project"
ENCODED = "tanuki%2Fawesome_project"


@pytest.fixture
def maintainer_key(make):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    return make.pat("maria")


def _rotate(client, key, token_id, kind="projects", ref=ENCODED, **body):
    return client.post(f"/api/v4/{kind}/{ref}/deploy_tokens/{token_id}/rotate",
                       headers={"PRIVATE-TOKEN": key}, json=body)


def _digest(app, token_id):
    with app.app_context():
        return db.session.get(DeployToken, token_id).token_digest


def _events(app, action):
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


def test_rotation_keeps_the_token_and_both_secrets_work_during_the_grace_period(
        app, client, make, maintainer_key):
    token_id, username, old = make.token(PROJECT, ["read_repository", "read_registry"],
                                         username="deployer")
    response = _rotate(client, maintainer_key, token_id, grace_period=600)
    assert response.status_code == 200
    body = response.get_json()
    new = body["token"]
    assert new.startswith("gldt-") and new != old
    assert (body["id"], body["username"], body["scopes"]) == (
        token_id, "deployer", ["read_repository", "read_registry"])
    assert body["previous_token_expires_at"] is not None
    with app.app_context():
        now = utcnow()
        assert deploy_tokens.find_active("deployer", old).id == token_id
        assert deploy_tokens.find_active("deployer", new).id == token_id
        after = now + timedelta(seconds=601)
        assert deploy_tokens.find_active("deployer", old, now=after) is None
        assert deploy_tokens.find_active("deployer", new, now=after).id == token_id
    [event] = _events(app, "deploy_token_rotated")
    assert event.target_id == token_id and event.actor_name == "maria"
    assert event.details["previous_valid_until"] is not None
    # The secret is never shown again.
    listed = client.get(f"/api/v4/projects/{ENCODED}/deploy_tokens",
                        headers={"PRIVATE-TOKEN": maintainer_key}).get_json()
    assert "token" not in listed[0] and listed[0]["previous_token_expires_at"]


def test_default_grace_period_is_a_day(app, client, make, maintainer_key):
    token_id, _, old = make.token(PROJECT)
    before = utcnow()
    _rotate(client, maintainer_key, token_id)
    with app.app_context():
        token = db.session.get(DeployToken, token_id)
        assert timedelta(hours=23, minutes=59) < token.previous_expires_at - before <= timedelta(
            hours=24, minutes=1)


def test_a_second_rotation_ends_the_first_grace_period_at_once(app, client, make, maintainer_key):
    token_id, username, first = make.token(PROJECT)
    second = _rotate(client, maintainer_key, token_id).get_json()["token"]
    third = _rotate(client, maintainer_key, token_id).get_json()["token"]
    with app.app_context():
        assert deploy_tokens.find_active(username, first) is None
        assert deploy_tokens.find_active(username, second).id == token_id
        assert deploy_tokens.find_active(username, third).id == token_id


def test_zero_grace_period_retires_the_old_secret_now(app, client, make, maintainer_key):
    token_id, username, old = make.token(PROJECT)
    body = _rotate(client, maintainer_key, token_id, grace_period=0).get_json()
    assert body["previous_token_expires_at"] is None
    with app.app_context():
        assert deploy_tokens.find_active(username, old) is None
        assert deploy_tokens.find_active(username, body["token"]) is not None


@pytest.mark.parametrize("grace", [-1, 604801, "soon", 1.5, True])
def test_grace_period_out_of_range_is_a_field_error_and_changes_nothing(
        app, client, make, maintainer_key, grace):
    token_id, _, _ = make.token(PROJECT)
    digest = _digest(app, token_id)
    response = _rotate(client, maintainer_key, token_id, grace_period=grace)
    assert response.status_code == 400
    assert "Grace period must be" in response.get_json()["message"]["grace_period"][0]
    assert _digest(app, token_id) == digest
    assert _events(app, "deploy_token_rotated") == []


def test_grace_period_as_a_form_string_and_a_new_expiry(app, client, make, maintainer_key):
    token_id, _, _ = make.token(PROJECT)
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}/rotate",
                           headers={"PRIVATE-TOKEN": maintainer_key},
                           data={"grace_period": "60", "expires_at": "2099-01-31"})
    assert response.status_code == 200
    assert response.get_json()["expires_at"] == "2099-01-31T00:00:00.000Z"


def test_expiry_in_the_past_is_refused(app, client, make, maintainer_key):
    token_id, _, _ = make.token(PROJECT)
    response = _rotate(client, maintainer_key, token_id, expires_at="2001-01-01")
    assert response.status_code == 400
    assert "expires_at" in response.get_json()["message"]


def test_revoked_token_cannot_be_rotated(app, client, make, maintainer_key):
    token_id, _, _ = make.token(PROJECT, revoked=True)
    response = _rotate(client, maintainer_key, token_id)
    assert response.status_code == 400
    assert "only an active token" in response.get_json()["message"]["token"][0]


def test_only_maintainers_rotate_and_unknown_ids_are_404(app, client, make, maintainer_key):
    token_id, _, _ = make.token(PROJECT)
    make.user("dev")
    make.member("tanuki", "dev", "developer")
    assert _rotate(client, make.pat("dev"), token_id).status_code == 403
    assert _rotate(client, maintainer_key, token_id + 100).status_code == 404


def test_group_tokens_rotate_too(app, client, make, maintainer_key):
    token_id, username, old = make.token("tanuki")
    response = _rotate(client, maintainer_key, token_id, kind="groups", ref="tanuki")
    assert response.status_code == 200
    with app.app_context():
        assert deploy_tokens.find_active(username, response.get_json()["token"]).id == token_id


def test_rotating_the_ci_token_hands_jobs_the_new_secret(app, client, make, maintainer_key):
    token_id, _, old = make.token(PROJECT, name="gitlab-deploy-token")
    new = _rotate(client, maintainer_key, token_id).get_json()["token"]
    with app.app_context():
        token = deploy_tokens.find_ci_token(accounts.find_project(PROJECT))
        assert deploy_tokens.reveal_ci_secret(token) == new


def test_personal_access_token_rotates_in_gitlabs_shape(app, client, make):
    make.user("alice")
    key = make.pat("alice")
    response = client.post("/api/v4/personal_access_tokens/self/rotate",
                           headers={"PRIVATE-TOKEN": key}, json={"expires_at": "2099-06-30"})
    assert response.status_code == 200
    body = response.get_json()
    assert {"id", "name", "revoked", "created_at", "scopes", "user_id", "last_used_at",
            "active", "expires_at", "token"} <= set(body)
    assert body["token"].startswith("glpat-") and body["expires_at"] == "2099-06-30"
    # The old secret works through the grace period, on the API itself.
    for secret in (key, body["token"]):
        assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 200
    assert _events(app, "personal_access_token_rotated")


def test_someone_elses_personal_access_token_is_404_but_admins_may(app, client, make):
    make.user("alice")
    make.user("mallory")
    make.user("root", admin=True)
    make.pat("alice")
    with app.app_context():
        alice_token = db.session.scalar(sa.select(PersonalAccessToken.id))
    url = f"/api/v4/personal_access_tokens/{alice_token}/rotate"
    assert client.post(url, headers={"PRIVATE-TOKEN": make.pat("mallory")}).status_code == 404
    assert client.post(url, headers={"PRIVATE-TOKEN": make.pat("root")}).status_code == 200


def test_runner_tokens_rotate_from_the_cli(app, make):
    make.project(PROJECT)
    with app.app_context():
        token, old = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT), name="ci")
        runner_id = token.id
    result = app.test_cli_runner().invoke(
        args=["runners", "rotate", PROJECT, str(runner_id), "--grace-period", "0"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["token"].startswith("glrt-") and body["previous_token_expires_at"] is None
    with app.app_context():
        assert runners.RUNNER_TOKENS.find_active(old) is None
        assert runners.RUNNER_TOKENS.find_active(body["token"]).id == runner_id


def test_cli_rotates_deploy_tokens_and_refuses_a_bad_grace_period(app, make):
    make.project(PROJECT)
    token_id, username, old = make.token(PROJECT)
    cli = app.test_cli_runner()
    bad = cli.invoke(args=["deploy-tokens", "rotate", PROJECT, str(token_id),
                           "--grace-period", "999999"])
    assert bad.exit_code == 1 and "Grace period must be between 0 and 604800" in bad.output
    result = cli.invoke(args=["deploy-tokens", "rotate", PROJECT, str(token_id)])
    assert result.exit_code == 0, result.output
    new = json.loads(result.output)["token"]
    with app.app_context():
        assert deploy_tokens.find_active(username, old) is not None
        assert deploy_tokens.find_active(username, new) is not None


def test_rotate_button_works_without_javascript(app, client, make, auth):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    auth.login("maria")
    token_id, username, old = make.token(PROJECT, name="deployer")
    settings = f"/{PROJECT}/-/settings/repository"
    page = client.get(settings).get_data(as_text=True)
    url = f"/{PROJECT}/-/deploy_tokens/{token_id}/rotate"
    assert f'action="{url}"' in page and ">Rotate</button>" in page
    # Without the CSRF token nothing happens.
    assert client.post(url).status_code == 400
    response = client.post(url, data={"csrf_token": csrf_from(page)})
    # The answer itself shows the new secret (never parked in a cookie), uncached.
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "Previous secret valid until" in html
    new = re.search(r'id="deploy-tokens-secret-2" readonly value="([^"]+)"', html).group(1)
    with app.app_context():
        assert deploy_tokens.find_active(username, new).id == token_id
        assert deploy_tokens.find_active(username, old).id == token_id


def test_the_api_answer_with_a_rotated_secret_is_never_cached(client, make):
    make.project(PROJECT)
    admin = make.user("root", admin=True)
    key = make.pat(admin)
    token_id, _, _ = make.token(PROJECT, name="deployer")
    response = client.post(f"/api/v4/projects/{PROJECT.replace('/', '%2F')}/deploy_tokens/"
                           f"{token_id}/rotate", headers={"PRIVATE-TOKEN": key})
    assert response.status_code == 200 and "token" in response.get_json()
    assert response.headers["Cache-Control"] == "no-store"

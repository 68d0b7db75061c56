"""The Deploy tokens panel through the test client, CSRF enabled."""
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import DeployToken, utcnow

from .conftest import csrf_from, form_fields

SETTINGS = "/tanuki/awesome_project/-/settings/repository"
CREATE = SETTINGS + "/deploy_token/create"
GROUP_SETTINGS = "/groups/tanuki/-/settings/repository"


@pytest.fixture
def maintainer(make, auth):
    make.project("tanuki/awesome_project")
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    auth.login("maria")
    return user


def token_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(DeployToken.id)))


def form_data(client, url=SETTINGS, **fields):
    return {**form_fields(client, url), "name": "ci", **fields}


def htmx_headers(client, url=SETTINGS):
    token = csrf_from(client.get(url).get_data(as_text=True))
    return {"HX-Request": "true", "X-CSRFToken": token}


def secret_in(html: str) -> str:
    match = re.search(r'id="deploy-tokens-secret-2" readonly value="([^"]+)"', html)
    assert match, "no reveal panel"
    return match.group(1)


def test_panel_uses_gitlabs_words(client, maintainer):
    html = client.get(SETTINGS).get_data(as_text=True)
    for words in ("Deploy tokens", "Expand", "Collapse", "Name", "Expiration date (optional)",
                  "Username (optional)", "Create deploy token", "Active deploy tokens (0)",
                  "Deploy tokens allow access to packages, your repository, and registry images.",
                  "Allows read-access to the repository through git clone",
                  "Allows write access to the package registry."):
        assert words in html
    for scope in ("read_repository", "read_registry", "write_registry",
                  "read_package_registry", "write_package_registry"):
        assert f'name="{scope}"' in html
    assert "No active deploy tokens." in html


def test_create_without_javascript_reveals_the_secret_once(app, client, maintainer):
    shown = client.post(CREATE, data=form_data(client, read_repository="y", username="bot"))
    # The answer is the page with the secret: no redirect, so no secret waits in a cookie.
    assert shown.status_code == 201
    assert shown.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in shown.headers or "gldt-" not in shown.headers["Set-Cookie"]
    page = shown.get_data(as_text=True)
    assert "Your new deploy token" in page
    assert "Use this token as a password. Save it. This password can not be recovered." in page
    secret = secret_in(page)
    assert secret.startswith("gldt-")
    assert 'value="bot"' in page
    again = client.get(SETTINGS).get_data(as_text=True)
    assert secret not in again and "Your new deploy token" not in again
    assert "Active deploy tokens (1)" in again
    with app.app_context():
        row = db.session.scalar(sa.select(DeployToken))
        assert row.token_digest != secret and row.scopes == ["read_repository"]


def test_create_with_htmx_swaps_the_partial_with_the_reveal(client, maintainer):
    response = client.post(CREATE, data=form_data(client, read_registry="y"),
                           headers=htmx_headers(client))
    html = response.get_data(as_text=True)
    assert response.status_code == 201
    assert "HX-Request" in response.headers["Vary"]
    assert html.lstrip().startswith('<section id="deploy-tokens"')
    assert "<html" not in html
    assert secret_in(html).startswith("gldt-")
    assert "Active deploy tokens (1)" in html
    assert "Your new deploy token" not in client.get(SETTINGS).get_data(as_text=True)


def test_full_page_for_history_restore(client, maintainer):
    html = client.get(SETTINGS, headers={"HX-Request": "true",
                                         "HX-History-Restore-Request": "true"}).get_data(as_text=True)
    assert "<html" in html


def test_post_without_csrf_token_is_refused_and_creates_nothing(app, client, maintainer):
    response = client.post(CREATE, data={"name": "ci", "read_repository": "y"})
    assert response.status_code == 400
    assert "This form has expired. Reload the page." in response.get_data(as_text=True)
    response = client.post(CREATE, data={"name": "ci", "read_repository": "y"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert token_count(app) == 0


@pytest.mark.parametrize("fields, message", [
    ({"name": "", "read_repository": "y"}, "Name can&#39;t be blank"),
    ({"name": "x" * 256, "read_repository": "y"}, "Name is too long (maximum is 255 characters)"),
    ({"read_repository": "y", "username": "has space"},
     "Username can contain only letters, digits, &#39;_&#39;, &#39;-&#39;, &#39;+&#39;, and &#39;.&#39;"),
    ({"read_repository": "y", "username": "u" * 256}, "Username is too long (maximum is 255 characters)"),
    ({}, "Scopes can&#39;t be blank: select at least one scope"),
    ({"read_repository": "y", "expires_at": "2020-01-01"}, "Expiration date must be in the future"),
    ({"read_repository": "y", "expires_at": utcnow().date().isoformat()},
     "Expiration date must be in the future"),
    ({"read_repository": "y", "expires_at": "31/12/2030"},
     "Expiration date is not a valid date (use YYYY-MM-DD)"),
])
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_invalid_input_shows_its_message_and_creates_nothing(app, client, maintainer, fields, message, htmx):
    headers = htmx_headers(client) if htmx else {}
    data = form_data(client, **fields)
    response = client.post(CREATE, data=data, headers=headers)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html
    assert 'class="field-error"' in html and 'aria-invalid="true"' in html
    assert "<details open" in html  # the section stays expanded to show the error
    assert 'class="add-token" open' in html  # and so does the form
    assert html.count(" autofocus") == 1  # the first invalid field takes the focus
    assert token_count(app) == 0


def test_bad_date_is_reported_with_the_other_errors(client, maintainer):
    html = client.post(CREATE, data=form_data(client, name="", expires_at="soon")).get_data(as_text=True)
    assert "Name can&#39;t be blank" in html
    assert "Scopes can&#39;t be blank" in html
    assert "not a valid date" in html


def test_valid_input_survives_a_failed_submit(client, maintainer):
    html = client.post(CREATE, data=form_data(client, name="keep-me", username="bad name",
                                              read_registry="y")).get_data(as_text=True)
    assert 'value="keep-me"' in html
    assert re.search(r'name="read_registry"[^>]*checked|checked[^>]*name="read_registry"', html)


def test_revoke_without_javascript_confirms_first(app, client, make, maintainer):
    token_id, _, _ = make.token("tanuki/awesome_project", name="old-ci")
    url = f"/tanuki/awesome_project/-/deploy_tokens/{token_id}/revoke"
    confirm = client.get(url + "?page=1").get_data(as_text=True)
    assert "Revoke old-ci?" in confirm
    assert "You are about to revoke <strong>old-ci</strong>" in confirm
    assert "with the scopes read_repository" in confirm and "This action cannot be undone." in confirm
    assert "Cancel" in confirm
    with app.app_context():
        assert not db.session.get(DeployToken, token_id).revoked
    response = client.post(url, data={"csrf_token": csrf_from(confirm)})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Revoked deploy token old-ci." in page
    assert "Active deploy tokens (0)" in page
    assert "Inactive deploy tokens (1)" in page
    with app.app_context():
        assert db.session.get(DeployToken, token_id).revoked


def test_revoke_with_htmx_asks_and_swaps(app, client, make, maintainer):
    token_id, username, _ = make.token("tanuki/awesome_project", name="old-ci")
    page = client.get(SETTINGS).get_data(as_text=True)
    url = f"/tanuki/awesome_project/-/deploy_tokens/{token_id}/revoke"
    # The in-page dialog learns the token's name, username and scopes from the button.
    assert f'data-revoke="{url}"' in page and 'data-name="old-ci"' in page
    assert f'data-username="{username}"' in page and 'data-scopes="read_repository"' in page
    assert '<dialog id="deploy-tokens-revoke-dialog"' in page
    response = client.post(url, headers=htmx_headers(client))
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="deploy-tokens"')
    assert "Active deploy tokens (0)" in html and "Inactive deploy tokens (1)" in html
    assert "Revoked deploy token old-ci." in html
    assert "Revoked deploy token old-ci." in response.headers["HX-Trigger"]
    assert re.search(r'<h3 id="deploy-tokens-active"[^>]* autofocus', html)


def test_revoke_needs_csrf(app, client, make, maintainer):
    token_id, _, _ = make.token("tanuki/awesome_project")
    response = client.post(f"/tanuki/awesome_project/-/deploy_tokens/{token_id}/revoke")
    assert response.status_code == 400
    with app.app_context():
        assert not db.session.get(DeployToken, token_id).revoked


def test_cannot_revoke_another_projects_token_through_this_one(app, client, make, maintainer):
    make.project("tanuki/other")
    token_id, _, _ = make.token("tanuki/other")
    url = f"/tanuki/awesome_project/-/deploy_tokens/{token_id}/revoke"
    assert client.post(url, headers=htmx_headers(client)).status_code == 404
    with app.app_context():
        assert not db.session.get(DeployToken, token_id).revoked


def test_table_shows_expiry_scopes_and_last_use(app, client, make, maintainer):
    soon = utcnow().date() + timedelta(days=3)
    later = utcnow().date() + timedelta(days=40)
    make.token("tanuki/awesome_project", ["read_registry", "write_registry"], name="soon",
               expires_at=soon)
    used_id, _, _ = make.token("tanuki/awesome_project", name="later", expires_at=later)
    make.token("tanuki/awesome_project", name="forever")
    with app.app_context():
        from webapp.services import deploy_tokens
        deploy_tokens.DEPLOY_TOKENS.touch(used_id, "203.0.113.9")
    html = client.get(SETTINGS).get_data(as_text=True)
    row = lambda name: html[html.index(f'<span class="token-name">{name}'):].split("</tr>")[0]
    assert 'class="expires-soon"' in row("soon") and f'title="{soon.isoformat()} 00:00 UTC"' in row("soon")
    assert re.search(r">in 2 days</time>", row("soon"))  # relative, rounded down
    assert "expires-soon" not in row("later") and later.isoformat() in row("later")
    assert "Never" in row("forever")
    assert "read_registry" in row("soon") and "write_registry" in row("soon")
    assert "from 203.0.113.9" in row("later") and ">just now</time>" in row("later")
    assert row("forever").count("Never") == 2  # expires, last used


def test_expired_tokens_move_to_the_inactive_list(client, make, maintainer):
    make.token("tanuki/awesome_project", name="lapsed", expires_at=utcnow().date() - timedelta(days=1))
    html = client.get(SETTINGS).get_data(as_text=True)
    assert "Active deploy tokens (0)" in html
    assert "Inactive deploy tokens (1)" in html and "Expired" in html


def test_long_list_pages(client, make, maintainer):
    for i in range(23):
        make.token("tanuki/awesome_project", name=f"token-{i:02d}")
    first = client.get(SETTINGS).get_data(as_text=True)
    assert "Active deploy tokens (23)" in first and "Page 1 of 2" in first
    assert "token-22" in first and "token-02" not in first  # newest first
    second = client.get(SETTINGS + "?page=2").get_data(as_text=True)
    assert "token-02" in second and "token-22" not in second


def test_gitlab_deploy_token_is_marked_as_exposed_to_ci(client, make, maintainer):
    make.token("tanuki/awesome_project", name="gitlab-deploy-token")
    make.token("tanuki/awesome_project", name="gitlab-deploy-token-2")
    html = client.get(SETTINGS).get_data(as_text=True)
    assert html.count("Exposed to CI jobs as CI_DEPLOY_USER / CI_DEPLOY_PASSWORD") == 1


def test_group_panel_creates_group_tokens_and_warns_about_ci(app, client, maintainer):
    html = client.get(GROUP_SETTINGS).get_data(as_text=True)
    assert "is <strong>not</strong> exposed to CI jobs" in html
    response = client.post("/groups/tanuki/-/settings/repository/deploy_token/create",
                           data=form_data(client, GROUP_SETTINGS, read_repository="y"))
    assert response.status_code == 201
    with app.app_context():
        token = db.session.scalar(sa.select(DeployToken))
        assert token.group_id is not None and token.project_id is None


@pytest.mark.parametrize("role", ["guest", "reporter", "developer"])
def test_below_maintainer_gets_404_on_settings(client, make, auth, role):
    make.project("tanuki/awesome_project")
    user = make.user()
    make.member("tanuki", user, role)
    auth.login(user.username)
    assert client.get(SETTINGS).status_code == 404
    assert client.get(GROUP_SETTINGS).status_code == 404
    assert client.post(CREATE, data={"name": "x", "read_repository": "y"},
                       headers=htmx_headers(client, "/")).status_code == 404


def test_settings_of_an_unknown_project_look_like_a_hidden_one(client, make, auth):
    make.project("tanuki/awesome_project")
    user = make.user()
    auth.login(user.username)
    hidden = client.get(SETTINGS)
    unknown = client.get("/tanuki/nope/-/settings/repository")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.get_data() == unknown.get_data()


def test_anonymous_is_sent_to_sign_in(client, make):
    make.project("tanuki/awesome_project")
    response = client.get(SETTINGS)
    assert response.status_code == 302
    assert "/users/sign_in" in response.headers["Location"]


def test_admin_reaches_any_settings(client, make, auth):
    make.project("tanuki/awesome_project")
    admin = make.user(admin=True)
    auth.login(admin.username)
    assert client.get(SETTINGS).status_code == 200

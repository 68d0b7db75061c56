"""The one token panel, for deploy, runner and personal access tokens: secrets never in a
cookie or cache, one token per form however often it is sent, and a list that holds 100."""
import base64
import json
import re
import zlib
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import DeployToken, PersonalAccessToken, RunnerToken, utcnow
from webapp.services import accounts, deploy_tokens

from .conftest import csrf_from, form_fields

PROJECT = "tanuki/awesome_project"
SETTINGS = f"/{PROJECT}/-/settings/repository"


class Kind:
    def __init__(self, page, create, model, prefix, data):
        self.page, self.create, self.model, self.prefix, self.data = page, create, model, prefix, data


KINDS = {
    "deploy": Kind(SETTINGS, SETTINGS + "/deploy_token/create", DeployToken, "gldt-",
                   {"name": "ci", "read_repository": "y"}),
    "group-deploy": Kind("/groups/tanuki/-/settings/repository",
                         "/groups/tanuki/-/settings/repository/deploy_token/create", DeployToken,
                         "gldt-", {"name": "ci", "read_repository": "y"}),
    "runner": Kind(f"/{PROJECT}/-/settings/ci_cd", f"/{PROJECT}/-/settings/ci_cd/runners",
                   RunnerToken, "glrt-", {"description": "box"}),
    "personal": Kind("/-/user_settings/personal_access_tokens",
                     "/-/user_settings/personal_access_tokens", PersonalAccessToken, "glpat-",
                     {"name": "ci", "api": "y"}),
}


@pytest.fixture
def maria(make, auth):
    make.project(PROJECT)
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    auth.login("maria")
    return user


@pytest.fixture(params=list(KINDS))
def kind(request):
    return KINDS[request.param]


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(model.id)))


def secrets_in(html: str, prefix: str) -> set[str]:
    return set(re.findall(re.escape(prefix) + r"[A-Za-z0-9_-]{20}", html))


def session_contents(app, client) -> str:
    cookie = client.get_cookie("session")
    if cookie is None:
        return ""
    serializer = app.session_interface.get_signing_serializer(app)
    return json.dumps(serializer.loads(cookie.value))


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_a_new_secret_is_never_in_a_cookie_and_never_cached(app, client, maria, kind, htmx):
    data = {**form_fields(client, kind.page), **kind.data}
    headers = {"HX-Request": "true", "X-CSRFToken": data["csrf_token"]} if htmx else {}
    response = client.post(kind.create, data=data, headers=headers)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    (secret,) = secrets_in(response.get_data(as_text=True), kind.prefix)
    for header in response.headers.getlist("Set-Cookie"):
        assert secret not in header
        for morsel in SimpleCookie(header).values():
            raw = morsel.value.lstrip(".").split(".")[0]
            decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            if morsel.value.startswith("."):
                decoded = zlib.decompress(decoded)
            assert secret.encode() not in decoded
    assert secret not in session_contents(app, client)
    again = client.get(kind.page)
    assert secret not in again.get_data(as_text=True)
    assert again.headers["Cache-Control"] == "no-store"


def test_a_double_submit_creates_one_token_and_shows_it(app, client, maria, kind):
    data = {**form_fields(client, kind.page), **kind.data}
    first = client.post(kind.create, data=data)
    second = client.post(kind.create, data=data)  # the browser shows only this answer
    assert first.status_code == 201 and second.status_code == 200
    assert count(app, kind.model) == 1
    shown = secrets_in(second.get_data(as_text=True), kind.prefix)
    assert shown == secrets_in(first.get_data(as_text=True), kind.prefix) and len(shown) == 1
    assert second.headers["Cache-Control"] == "no-store"
    third = client.post(kind.create, data=data)  # a reload much later: no secret again
    assert third.status_code == 409
    html = third.get_data(as_text=True)
    assert "This form was already sent" in html and not secrets_in(html, kind.prefix)
    assert count(app, kind.model) == 1


def test_a_refused_form_can_be_corrected_and_sent_again(app, client, maria):
    fields = form_fields(client, SETTINGS)
    refused = client.post(SETTINGS + "/deploy_token/create", data={**fields, "name": ""})
    assert refused.status_code == 422
    fixed = client.post(SETTINGS + "/deploy_token/create",
                        data={**fields, "name": "ci", "read_repository": "y"})
    assert fixed.status_code == 201 and count(app, DeployToken) == 1


@pytest.mark.parametrize("form_token", ["", "forged", "eyJ1IjoyfQ.x.y"])
def test_a_forged_or_missing_form_token_is_refused(app, client, maria, form_token):
    fields = form_fields(client, SETTINGS)
    response = client.post(SETTINGS + "/deploy_token/create", data={
        **fields, "form_token": form_token, "name": "ci", "read_repository": "y"})
    assert response.status_code == 400
    assert "This form has expired. Reload the page." in response.get_data(as_text=True)
    assert count(app, DeployToken) == 0


def test_another_users_form_token_is_refused(app, client, maria, make):
    fields = form_fields(client, SETTINGS)
    make.user("bob")
    make.member("tanuki", "bob", "maintainer")
    other = app.test_client()
    page = other.get("/users/sign_in").get_data(as_text=True)
    other.post("/users/sign_in", data={"username": "bob", "password": "correct-horse-battery",
                                       "csrf_token": csrf_from(page)})
    mine = form_fields(other, SETTINGS)
    response = other.post(SETTINGS + "/deploy_token/create", data={
        **mine, "form_token": fields["form_token"], "name": "ci", "read_repository": "y"})
    assert response.status_code == 400 and count(app, DeployToken) == 0


def test_the_count_shows_in_the_header_and_the_form_waits_behind_add_token(client, make, maria):
    empty = client.get(SETTINGS).get_data(as_text=True)
    assert 'class="add-token" open' in empty  # nothing yet: the form is open at once
    make.token(PROJECT, name="a")
    make.token(PROJECT, name="b")
    html = client.get(SETTINGS).get_data(as_text=True)
    assert re.search(r'<h2 id="deploy-tokens-title">Deploy tokens <span class="count">2<', html)
    assert "<details  data-section>" in html  # collapsed, yet the count is in its summary
    assert 'class="add-token" >' in html and "Add token" in html
    # The list comes before the form's content would push it down: form collapsed.
    assert html.index('class="add-token"') < html.index("Active deploy tokens (2)")


@pytest.fixture
def hundred(app, make, maria):
    """100 active tokens: token-000 … token-099, the later the newer; some expire, some used."""
    with app.app_context():
        owner = accounts.find_project(PROJECT)
        now = utcnow()
        for i in range(100):
            token, _ = deploy_tokens.create(
                owner, name=f"token-{i:03d}", scopes=["read_repository"],
                username=f"bot-{i:03d}" if i % 10 == 0 else None,
                expires_at=now + timedelta(days=200 - i) if i % 2 else None)
            if i % 3 == 0:
                deploy_tokens.DEPLOY_TOKENS.touch(token.id, "192.0.2.1", now=now - timedelta(minutes=i))
    return 100


def names(html: str) -> list[str]:
    return re.findall(r'<span class="token-name">(token-\d+)</span>', html)


def test_a_hundred_tokens_page_by_url(client, hundred):
    first = client.get(SETTINGS).get_data(as_text=True)
    assert "Active deploy tokens (100)" in first and "Page 1 of 5" in first
    assert names(first)[:2] == ["token-099", "token-098"] and len(names(first)) == 20
    third = client.get(SETTINGS + "?page=3").get_data(as_text=True)
    assert names(third)[0] == "token-059" and "Page 3 of 5" in third
    assert f'href="{SETTINGS}?page=4#deploy-tokens"' in third
    assert f'hx-get="{SETTINGS}?page=4"' in third and 'hx-push-url="true"' in third
    assert "<details open" in third
    assert names(client.get(SETTINGS + "?page=99").get_data(as_text=True))[0] == "token-019"
    assert "Page 1 of 5" in client.get(SETTINGS + "?page=-4").get_data(as_text=True)
    assert "Page 1 of 5" in client.get(SETTINGS + "?page=x").get_data(as_text=True)


def test_search_by_name_or_username(client, hundred):
    by_name = client.get(SETTINGS + "?q=token-04").get_data(as_text=True)
    assert sorted(names(by_name)) == [f"token-04{i}" for i in range(10)]
    assert "10 matching “token-04”" in by_name and "Active deploy tokens (100)" in by_name
    by_username = client.get(SETTINGS + "?q=BOT-05").get_data(as_text=True)
    assert names(by_username) == ["token-050"]
    default = client.get(SETTINGS + "?q=gitlab%2Bdeploy-token").get_data(as_text=True)
    assert len(names(default)) == 20 and "90 matching" in default
    nothing = client.get(SETTINGS + "?q=%3Cscript%3E").get_data(as_text=True)
    assert "No active deploy tokens match “&lt;script&gt;”." in nothing


def test_sort_by_expiry_and_last_use(client, hundred):
    expires = names(client.get(SETTINGS + "?sort=expires").get_data(as_text=True))
    assert expires[:3] == ["token-099", "token-097", "token-095"]  # soonest first
    last = client.get(SETTINGS + "?sort=expires&page=5").get_data(as_text=True)
    assert "token-000" in names(last)  # never expires: last
    used = names(client.get(SETTINGS + "?sort=last_used").get_data(as_text=True))
    assert used[:3] == ["token-000", "token-003", "token-006"]  # most recent first
    unknown = names(client.get(SETTINGS + "?sort=name;drop").get_data(as_text=True))
    assert unknown[0] == "token-099"  # an unknown sort is the default


def test_revoke_on_page_three_stays_on_page_three(app, client, hundred):
    html = client.get(SETTINGS + "?page=3&sort=expires").get_data(as_text=True)
    url = re.findall(r'data-revoke="([^"]+)"', html)[0].replace("&amp;", "&")
    assert url.endswith("?sort=expires&page=3")
    csrf = csrf_from(html)
    swapped = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": csrf})
    assert "Page 3 of 5" in swapped.get_data(as_text=True)
    assert "Active deploy tokens (99)" in swapped.get_data(as_text=True)
    # Without JavaScript: the confirmation page, then back to the same page of the list.
    second = re.findall(r'data-revoke="([^"]+)"', html)[1].replace("&amp;", "&")
    confirm = client.get(second)
    assert confirm.headers["Cache-Control"] == "no-store"
    response = client.post(second, data={"csrf_token": csrf_from(confirm.get_data(as_text=True))})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{SETTINGS}?sort=expires&page=3#deploy-tokens"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Revoked deploy token" in page and "Page 3 of 5" in page and "<details open" in page

"""Personal access tokens: the service, the settings page (CSRF on) and the CLI."""
from html import unescape
import re
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import AuditEvent, PersonalAccessToken
from webapp.services import accounts, personal_access_tokens as pats
from webapp.services.errors import Invalid

from webapp.protocols.api_v4 import DOOR as API_DOOR

from .conftest import csrf_from, form_fields
from .support import resolve

PAGE = "/-/user_settings/personal_access_tokens"
SECRET_RE = re.compile(r"glpat-[A-Za-z0-9_-]{20}[0-9A-Za-z]{6}")


# ---------------------------------------------------------------- service

def test_secret_is_glpat_and_only_its_digest_is_stored(ctx, make):
    make.user("alice")
    token, secret = pats.PERSONAL_ACCESS_TOKENS.create(accounts.find_user("alice"), name="ci", scopes=["api"])
    assert SECRET_RE.fullmatch(secret)
    row = db.session.get(PersonalAccessToken, token.id)
    stored = [str(getattr(row, c.key)) for c in PersonalAccessToken.__table__.columns]
    assert not any(secret in value or secret[6:] in value for value in stored)
    assert pats.PERSONAL_ACCESS_TOKENS.find_active(secret).id == token.id


def test_secrets_are_unique(ctx, make):
    user = make.user("alice")
    user = accounts.find_user("alice")
    secrets_ = {pats.PERSONAL_ACCESS_TOKENS.create(user, name=f"t{i}", scopes=["read_api"])[1] for i in range(20)}
    assert len(secrets_) == 20


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "", "scopes": ["api"]}, "name"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": ["read_repository"]}, "scopes"),
    ({"name": "x", "scopes": ["api"], "expires_at": datetime(2020, 1, 1, tzinfo=timezone.utc)},
     "expires_at"),
])
def test_invalid_input_names_the_field_and_creates_nothing(ctx, make, kwargs, field):
    make.user("alice")
    with pytest.raises(Invalid) as error:
        pats.PERSONAL_ACCESS_TOKENS.create(accounts.find_user("alice"), **kwargs)
    assert field in error.value.errors
    assert db.session.scalar(sa.select(sa.func.count(PersonalAccessToken.id))) == 0


def test_principal_carries_user_admin_flag_and_scopes(ctx, make):
    make.user("root", admin=True)
    _, secret = pats.PERSONAL_ACCESS_TOKENS.create(accounts.find_user("root"), name="x", scopes=["read_api", "api"])
    principal = resolve(API_DOOR, secret=secret)
    assert principal.kind == "personal_access_token"
    assert principal.user_id == accounts.find_user("root").id and principal.is_admin
    assert principal.scopes == frozenset({"api", "read_api"})
    assert resolve(API_DOOR, secret=secret + "x") is None
    assert resolve(API_DOOR, secret="") is None


def test_expired_and_revoked_tokens_do_not_resolve(ctx, make):
    make.user("alice")
    alice = accounts.find_user("alice")
    now = datetime.now(timezone.utc)
    expiring, secret = pats.PERSONAL_ACCESS_TOKENS.create(alice, name="x", scopes=["api"], expires_at=now + timedelta(hours=1))
    assert pats.PERSONAL_ACCESS_TOKENS.find_active(secret, now=now) is not None
    # It stops working at its expiry, not a moment later.
    assert pats.PERSONAL_ACCESS_TOKENS.find_active(secret, now=expiring.expires_at) is None
    revoked, secret2 = pats.PERSONAL_ACCESS_TOKENS.create(alice, name="y", scopes=["api"])
    pats.PERSONAL_ACCESS_TOKENS.revoke(alice, revoked.id)
    assert pats.PERSONAL_ACCESS_TOKENS.find_active(secret2) is None


def test_a_user_cannot_revoke_another_users_token(ctx, make):
    make.user("alice"), make.user("bob")
    token, _ = pats.PERSONAL_ACCESS_TOKENS.create(accounts.find_user("alice"), name="x", scopes=["api"])
    from webapp.services.errors import NotFound
    with pytest.raises(NotFound):
        pats.PERSONAL_ACCESS_TOKENS.revoke(accounts.find_user("bob"), token.id)


# ---------------------------------------------------------------- the page

@pytest.fixture
def alice(make, auth):
    make.user("alice")
    auth.login("alice")
    return "alice"


def _csrf(client) -> str:
    return csrf_from(client.get(PAGE).get_data(as_text=True))


def test_page_needs_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/users/sign_in" in response.headers["Location"]


def test_top_bar_links_to_the_page(client, alice):
    html = client.get("/").get_data(as_text=True)
    assert f'href="{PAGE}"' in html


def test_create_without_javascript_shows_the_token_once(client, alice, app):
    response = client.post(PAGE, data={**form_fields(client, PAGE), "name": "terraform",
                                       "api": "y", "expires_at": "2031-01-31"})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    secret = SECRET_RE.search(html).group(0)
    assert "Your new personal access token" in html and "terraform" in html
    assert 'title="2031-01-31 00:00 UTC"' in html
    assert SECRET_RE.search(client.get(PAGE).get_data(as_text=True)) is None
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).get_json()["username"] == "alice"
    with app.app_context():
        token = pats.PERSONAL_ACCESS_TOKENS.find_active(secret)
        assert token.scopes == ["api"]
        assert token.expires_at == datetime(2031, 1, 31, tzinfo=timezone.utc)
        assert db.session.scalar(sa.select(AuditEvent.action).where(
            AuditEvent.target_id == token.id)) == "personal_access_token_created"


def test_create_with_htmx_returns_the_panel_with_the_token(client, alice):
    fields = form_fields(client, PAGE)
    response = client.post(PAGE, data={"name": "ci", "read_api": "y", "form_token": fields["form_token"]},
                           headers={"HX-Request": "true", "X-CSRFToken": fields["csrf_token"]})
    assert response.status_code == 201
    panel = response.get_data(as_text=True)
    assert panel.lstrip().startswith('<section id="personal-access-tokens"')
    assert "<html" not in panel and SECRET_RE.search(panel)
    assert "HX-Request" in response.headers["Vary"]
    assert "Active personal access tokens (1)" in panel


@pytest.mark.parametrize("data, message", [
    ({"name": "", "api": "y"}, "Name can't be blank"),
    ({"name": "x"}, "Scopes can't be blank"),
    ({"name": "x", "api": "y", "expires_at": "2020-01-01"}, "must be in the future"),
    ({"name": "x", "api": "y", "expires_at": date.today().isoformat()}, "must be in the future"),
    ({"name": "x", "api": "y", "expires_at": "31/01/2031"}, "not a valid date"),
])
def test_invalid_form_is_422_with_the_error_and_creates_nothing(client, alice, app, data, message):
    response = client.post(PAGE, data={**form_fields(client, PAGE), **data})
    assert response.status_code == 422
    assert message in unescape(response.get_data(as_text=True))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PersonalAccessToken.id))) == 0


def test_post_without_csrf_token_is_refused(client, alice, app):
    response = client.post(PAGE, data={"name": "x", "api": "y"})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PersonalAccessToken.id))) == 0


def test_revoke_asks_for_confirmation_then_the_token_stops_working(client, alice, make):
    secret = make.pat("alice", name="old")
    html = client.get(PAGE).get_data(as_text=True)
    url = re.search(r'action="(/-/user_settings/personal_access_tokens/\d+/revoke)"', html).group(1)
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "You are about to revoke <strong>old</strong>, with the scopes api." in confirm.get_data(as_text=True)
    response = client.post(url, data={"csrf_token": csrf_from(confirm.get_data(as_text=True))})
    assert response.status_code == 302
    page = client.get(PAGE).get_data(as_text=True)
    assert "Revoked personal access token old." in page
    assert "Active personal access tokens (0)" in page and "Inactive personal access tokens (1)" in page
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 401


def test_revoke_with_htmx_returns_the_panel(client, alice, make):
    make.pat("alice", name="old")
    csrf = _csrf(client)
    url = re.search(r'data-revoke="(/-/user_settings/personal_access_tokens/\d+/revoke)"',
                    client.get(PAGE).get_data(as_text=True)).group(1)
    response = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": csrf})
    assert response.status_code == 200
    assert "Revoked personal access token old." in response.get_data(as_text=True)


def test_someone_elses_token_is_404(client, alice, make, app):
    make.user("bob")
    make.pat("bob", name="bobs")
    with app.app_context():
        token_id = db.session.scalar(sa.select(PersonalAccessToken.id))
    url = f"{PAGE}/{token_id}/revoke"
    assert client.get(url).status_code == 404
    assert client.post(url, data={"csrf_token": _csrf(client)}).status_code == 404
    with app.app_context():
        assert not db.session.get(PersonalAccessToken, token_id).revoked


def test_page_lists_only_my_tokens(client, alice, make):
    make.user("bob")
    make.pat("bob", name="bobs-token")
    make.pat("alice", name="alices-token")
    html = client.get(PAGE).get_data(as_text=True)
    assert "alices-token" in html and "bobs-token" not in html


# ---------------------------------------------------------------- the CLI

def test_cli_prints_a_working_token(app, make, client):
    make.user("alice")
    result = app.test_cli_runner().invoke(args=[
        "users", "token", "alice", "--name", "ci", "--scopes", "api", "--expires-at", "2031-06-01"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    assert SECRET_RE.fullmatch(secret)
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).get_json()["username"] == "alice"
    with app.app_context():
        token = pats.PERSONAL_ACCESS_TOKENS.find_active(secret)
        assert token.expires_at == datetime(2031, 6, 1, tzinfo=timezone.utc) and token.name == "ci"


@pytest.mark.parametrize("args, message", [
    (["nobody", "--name", "x", "--scopes", "api"], "No user 'nobody'"),
    (["alice", "--name", "x", "--scopes", "sudo"], "Unknown scope: sudo"),
    (["alice", "--name", "x", "--scopes", "api", "--expires-at", "soon"], "is not a date"),
    (["alice", "--name", "x", "--scopes", "api", "--expires-at", "2001-01-01"], "must be in the future"),
])
def test_cli_errors_exit_1_with_one_line(app, make, args, message):
    make.user("alice")
    result = app.test_cli_runner().invoke(args=["users", "token", *args])
    assert result.exit_code == 1 and message in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PersonalAccessToken.id))) == 0

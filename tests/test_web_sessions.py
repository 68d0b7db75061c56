"""Browser sessions end when they should, cookies carry the right flags, and every HTML
page tells the browser what it may run and frame."""
import re
import time
from http.cookies import SimpleCookie

import pytest

from webapp import create_app
from webapp.extensions import db
from webapp.services import accounts

from .conftest import PASSWORD, csrf_from

SETTINGS = "/tanuki/awesome_project/-/settings/repository"


@pytest.fixture
def maria(make):
    make.project("tanuki/awesome_project")
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    return user


def set_cookies(response) -> dict[str, str]:
    """Each Set-Cookie header by cookie name (the whole header line)."""
    return {SimpleCookie(h).popitem()[0]: h for h in response.headers.getlist("Set-Cookie")}


def login(client, username="maria", remember=False):
    page = client.get("/users/sign_in")
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page.get_data(as_text=True))}
    if remember:
        data["remember_me"] = "y"
    response = client.post("/users/sign_in", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def sign_out(client):
    html = client.get("/").get_data(as_text=True)
    return client.post("/users/sign_out", data={"csrf_token": csrf_from(html)})


def test_session_cookie_flags_and_no_remember_cookie(client, maria):
    response = login(client, remember=True)
    cookies = set_cookies(response)
    assert "remember_token" not in cookies
    session = cookies["session"]
    assert "HttpOnly" in session and "SameSite=Lax" in session
    assert "Expires=" in session  # remembered: outlives the browser, up to the idle timeout
    assert "Secure" not in session  # served over http in the tests


def test_without_remember_me_the_cookie_dies_with_the_browser(client, maria):
    session = set_cookies(login(client))["session"]
    assert "Expires=" not in session and "Max-Age" not in session


def test_cookies_are_secure_when_the_site_is_https(app, maria):
    https = create_app({**app.config, "EXTERNAL_URL": "https://gatehouse.example"})
    client = https.test_client()
    session = set_cookies(login(client, remember=True))["session"]
    assert "Secure" in session


def test_every_login_gets_its_own_cookie(app, maria):
    first, second = app.test_client(), app.test_client()
    login(first, remember=True)
    login(second, remember=True)
    assert session_cookie(first) != session_cookie(second)


@pytest.mark.parametrize("remember", [False, True])
def test_a_copied_cookie_is_refused_after_sign_out(app, client, maria, remember):
    login(client, remember=remember)
    stolen = session_cookie(client)
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get(SETTINGS).status_code == 200
    assert sign_out(client).status_code == 302
    after = thief.get(SETTINGS)
    assert after.status_code == 302 and "/users/sign_in" in after.headers["Location"]
    assert "Sign out" not in thief.get("/").get_data(as_text=True)


def test_sign_out_ends_the_users_other_sessions_too(app, maria):
    laptop, phone = app.test_client(), app.test_client()
    login(laptop)
    login(phone, remember=True)
    sign_out(phone)
    assert laptop.get(SETTINGS).status_code == 302


def test_a_password_change_ends_every_session(app, client, maria):
    login(client, remember=True)
    with app.app_context():
        user = accounts.find_user("maria")
        user.set_password("a-new-password-123", "pbkdf2:sha256:1000")
        db.session.commit()
    assert client.get(SETTINGS).status_code == 302


def test_an_idle_session_ends(app, client, maria):
    login(client, remember=True)
    with client.session_transaction() as session:
        session["seen"] = int(time.time()) - app.config["SESSION_IDLE_TIMEOUT"] - 1
    response = client.get(SETTINGS)
    assert response.status_code == 302 and "/users/sign_in" in response.headers["Location"]
    assert "Your session has expired" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_an_active_session_is_kept_alive(app, client, maria):
    login(client)
    almost = int(time.time()) - app.config["SESSION_IDLE_TIMEOUT"] + 120
    with client.session_transaction() as session:
        session["seen"] = almost
    assert client.get(SETTINGS).status_code == 200
    with client.session_transaction() as session:
        assert session["seen"] > almost


def test_session_id_from_before_sign_in_is_not_kept(client, maria):
    client.get("/users/sign_in")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    login(client)
    with client.session_transaction() as session:
        assert "planted" not in session


# htmx and expired sessions ------------------------------------------------------------

def test_htmx_request_after_sign_out_elsewhere_redirects_the_whole_tab(app, client, make, maria):
    token_id, _, _ = make.token("tanuki/awesome_project", name="old")
    login(client)
    csrf = csrf_from(client.get(SETTINGS).get_data(as_text=True))
    other = app.test_client()
    login(other)
    sign_out(other)
    response = client.post(f"/tanuki/awesome_project/-/deploy_tokens/{token_id}/revoke", headers={
        "HX-Request": "true", "X-CSRFToken": csrf, "HX-Target": "deploy-tokens",
        "HX-Current-URL": f"http://localhost{SETTINGS}?page=2"})
    assert response.headers["HX-Redirect"] == "/users/sign_in?next=" + \
        "/tanuki/awesome_project/-/settings/repository?page%3D2"
    assert "<html" not in response.get_data(as_text=True)
    page = client.get(response.headers["HX-Redirect"]).get_data(as_text=True)
    assert "Your session has expired. Sign in again to continue." in page
    assert page.count('class="topbar"') == 1


def test_htmx_request_without_any_cookie_redirects_to_sign_in(app, client, make, maria):
    fresh = app.test_client()
    response = fresh.post(SETTINGS + "/deploy_token/create", data={"name": "x"}, headers={
        "HX-Request": "true", "HX-Current-URL": f"http://localhost{SETTINGS}"})
    assert response.headers["HX-Redirect"].startswith("/users/sign_in?next=")
    assert "<html" not in response.get_data(as_text=True)


def test_plain_post_after_sign_out_comes_back_to_the_page_not_the_post_url(app, client, make, maria):
    token_id, _, _ = make.token("tanuki/awesome_project", name="old")
    login(client)
    url = f"/tanuki/awesome_project/-/deploy_tokens/{token_id}/revoke"
    csrf = csrf_from(client.get(url).get_data(as_text=True))
    with app.app_context():
        accounts.end_sessions(accounts.find_user("maria"))
    response = client.post(url, data={"csrf_token": csrf},
                           headers={"Referer": f"http://localhost{url}"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/users/sign_in?next={url}"


def test_failed_csrf_under_htmx_says_so_in_the_panel(app, client, maria):
    login(client)
    response = client.post(SETTINGS + "/deploy_token/create", data={"name": "x"}, headers={
        "HX-Request": "true", "X-CSRFToken": "forged", "HX-Target": "deploy-tokens"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form has expired. Reload the page." in html and "<html" not in html
    assert response.headers["HX-Retarget"] == "#deploy-tokens [data-alerts]"


def test_errors_under_htmx_are_fragments(client, maria):
    login(client)
    response = client.get("/tanuki/nope/-/settings/repository", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert "<html" not in response.get_data(as_text=True)
    assert response.headers["HX-Retarget"] == "#page-alerts"


def test_sign_in_form_with_an_expired_token_asks_again(client, maria):
    response = client.post("/users/sign_in", data={"username": "maria", "password": PASSWORD})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form has expired. Reload the page." in html
    assert 'value="maria"' in html and csrf_from(html)


# Headers on every page -------------------------------------------------------------------

PAGES_ANONYMOUS = ["/", "/users/sign_in", "/groups/nope", "/tanuki/awesome_project"]
PAGES_SIGNED_IN = ["/", SETTINGS, "/groups/tanuki/-/settings/repository",
                   "/tanuki/awesome_project/-/settings/ci_cd", "/tanuki/awesome_project",
                   "/tanuki/awesome_project/-/packages", "/-/user_settings/personal_access_tokens",
                   "/groups/tanuki", "/nope/nothing"]


def _assert_protected(response):
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    html = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"


def test_security_headers_on_every_html_page(app, client, maria):
    for url in PAGES_ANONYMOUS:
        _assert_protected(client.get(url))
    login(client)
    for url in PAGES_SIGNED_IN:
        _assert_protected(client.get(url))


def test_nosniff_on_machine_answers_too(client):
    response = client.get("/api/v4/version")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# What anonymous visitors can learn -------------------------------------------------------

def test_private_group_probes_answer_as_missing_ones(client, make):
    make.project("tanuki2/secret")
    for hidden, missing in (("/tanuki2", "/nope2"), ("/groups/tanuki2", "/groups/nope2"),
                            ("/tanuki2/secret", "/tanuki2/nope")):
        a, b = client.get(hidden), client.get(missing)
        assert a.status_code == b.status_code == 404, hidden
        # Identical but for the sign-in link's `next`, which names the path asked for.
        assert a.get_data(as_text=True).replace(hidden, missing) == b.get_data(as_text=True)
        assert "Location" not in a.headers


def test_visible_group_paths_still_lead_to_the_group(client, make):
    make.project("tanuki/website", visibility="public")
    assert client.get("/tanuki").headers["Location"] == "/groups/tanuki"

"""People in Chromium use the token panels: create, read, find, page and revoke tokens,
with and without JavaScript, on a desktop and a phone, after their session ended elsewhere."""
import re
import time
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import DeployToken, utcnow
from webapp.services import accounts, deploy_tokens

from .browser import DESKTOP, PHONE, no_horizontal_overflow, screenshot, sign_in
from .browser import browser  # noqa: F401  (a fixture)

PROJECT = "tanuki/awesome_project"
SETTINGS = f"/{PROJECT}/-/settings/repository"
ACTIVE_ROWS = "table[aria-labelledby=deploy-tokens-active] tbody tr"


@contextmanager
def writes_held(app):
    """Hold the database's writes, as a busy server would: requests queue at their first write."""
    with app.app_context():
        with db.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("LOCK TABLE form_submissions IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback()


@pytest.fixture
def maria(make):
    make.project(PROJECT)
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    return user


def page_for(browser, live_server, *, viewport=DESKTOP, javascript=True, errors=None):
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
    page = context.new_page()
    if errors is not None:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def focused(page) -> str:
    return page.evaluate("document.activeElement && (document.activeElement.id || document.activeElement.tagName)")


def focus_lands_on(page, element_id: str, timeout: float = 5.0) -> bool:
    """Whether focus reaches the element: htmx moves it once the swap has settled.

    Polled from Python: the page's CSP (no eval) refuses Playwright's wait_for_function.
    """
    deadline = time.monotonic() + timeout
    while focused(page) != element_id:
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(50)
    return True


def make_tokens(app, n: int) -> None:
    with app.app_context():
        owner = accounts.find_project(PROJECT)
        now = utcnow()
        for i in range(n):
            from datetime import timedelta
            token, _ = deploy_tokens.create(
                owner, name=f"token-{i:03d}", scopes=["read_repository", "read_registry"],
                username=f"deploy-bot-{i:03d}" if i % 4 == 0 else None,
                expires_at=now + timedelta(days=3 + i) if i % 2 else None)
            if i % 3 == 0:
                deploy_tokens.DEPLOY_TOKENS.touch(token.id, "192.0.2.10", now=now - timedelta(minutes=5 + i))


def active_count(app) -> int:
    with app.app_context():
        return len(deploy_tokens.DEPLOY_TOKENS.list_for(accounts.find_project(PROJECT), active=True))


def test_maintainer_creates_reads_and_revokes_a_token(app, maria, live_server, browser):
    errors = []
    page = page_for(browser, live_server, errors=errors)
    base = live_server.url
    sign_in(page, base, "maria")
    page.goto(f"{base}{SETTINGS}")
    page.get_by_text("Expand").click()
    page.get_by_label("Name", exact=True).fill("ci-pipeline")
    page.get_by_label("Username (optional)").fill("ci-bot")
    page.get_by_label("read_repository", exact=True).check()
    page.get_by_label("read_registry", exact=True).check()
    page.get_by_role("button", name="Create deploy token").click()

    reveal = page.locator("#deploy-tokens-new")
    reveal.wait_for()
    assert focus_lands_on(page, "deploy-tokens-new")  # focus moves to the new secret
    assert "This password can not be recovered." in reveal.inner_text()
    assert page.input_value("#deploy-tokens-secret-1") == "ci-bot"
    secret = page.input_value("#deploy-tokens-secret-2")
    assert secret.startswith("gldt-") and page.url.endswith(SETTINGS)
    page.locator("#announcer", has_text="Created deploy token ci-pipeline.").wait_for(state="attached")
    with app.app_context():
        assert deploy_tokens.find_active("ci-bot", secret).scopes == ["read_repository", "read_registry"]

    row = page.locator("tr", has_text="ci-pipeline")
    assert "Never" in row.inner_text()
    assert page.get_by_text("Active deploy tokens (1)").is_visible()

    # Revoke asks in a dialog in the page that names the token, its username and scopes.
    row.get_by_role("button", name="Revoke").click()
    dialog = page.locator("#deploy-tokens-revoke-dialog")
    dialog.wait_for()
    text = dialog.inner_text()
    assert "Revoke ci-pipeline?" in text and "ci-bot" in text
    assert "read_repository, read_registry" in text and "This action cannot be undone." in text
    assert focused(page) == "BUTTON" and page.evaluate("document.activeElement.value") == "cancel"
    dialog.get_by_role("button", name="Revoke ci-pipeline").click()
    page.get_by_text("Active deploy tokens (0)").wait_for()
    assert page.locator("#deploy-tokens .alerts").inner_text() == "Revoked deploy token ci-pipeline."
    assert focus_lands_on(page, "deploy-tokens-active")  # focus to the list after a revoke
    page.locator("#announcer", has_text="Revoked deploy token ci-pipeline.").wait_for(state="attached")
    with app.app_context():
        assert deploy_tokens.find_active("ci-bot", secret) is None

    page.reload()
    assert secret not in page.content()
    # Secrets stay out of the browser's storage (htmx history cache is off).
    assert secret not in page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert not errors, errors


def test_cancelled_revoke_keeps_the_token_and_returns_focus(app, make, maria, live_server, browser):
    _, username, secret = make.token(PROJECT, name="keep")
    page = page_for(browser, live_server)
    sign_in(page, live_server.url, "maria")
    page.goto(f"{live_server.url}{SETTINGS}#deploy-tokens")
    assert page.locator("#deploy-tokens > details").get_attribute("open") is not None  # anchor opens it
    button = page.locator("tr", has_text="keep").get_by_role("button", name="Revoke")
    button.click()
    page.locator("#deploy-tokens-revoke-dialog").get_by_role("button", name="Cancel").click()
    assert page.get_by_text("Active deploy tokens (1)").is_visible()
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Revoke keep"
    with app.app_context():
        assert deploy_tokens.find_active(username, secret) is not None


def test_errors_focus_the_first_invalid_field_and_mark_every_one(maria, live_server, browser):
    page = page_for(browser, live_server)
    sign_in(page, live_server.url, "maria")
    page.goto(f"{live_server.url}{SETTINGS}")
    page.get_by_text("Expand").click()
    page.get_by_label("Username (optional)").fill("maria")  # a person's username
    page.get_by_role("button", name="Create deploy token").click()
    page.locator("#deploy-tokens-name-error").wait_for()
    assert focus_lands_on(page, "deploy-tokens-name")
    assert page.locator("#deploy-tokens-name-error").inner_text() == "Name can't be blank"
    for field, error in (("#deploy-tokens-name", "deploy-tokens-name-error"),
                         ("#deploy-tokens-username", "deploy-tokens-username-error"),
                         ("#deploy-tokens-scope-read_repository", "deploy-tokens-scopes-error")):
        assert page.get_attribute(field, "aria-invalid") == "true", field
        assert error in page.get_attribute(field, "aria-describedby"), field
    assert "taken by a user" in page.locator("#deploy-tokens-username-error").inner_text()
    assert page.get_by_text("Active deploy tokens (0)").is_visible()


def test_signed_out_in_another_tab_then_revoke_lands_on_sign_in(app, make, maria, live_server, browser):
    make.token(PROJECT, name="old")
    base = live_server.url
    first = page_for(browser, live_server)
    sign_in(first, base, "maria")
    first.goto(f"{base}{SETTINGS}?page=1")  # a list state in the URL opens the section
    second = page_for(browser, live_server)
    sign_in(second, base, "maria")
    second.get_by_role("button", name="Sign out").click()
    second.wait_for_url(f"{base}/users/sign_in")

    first.locator("tr", has_text="old").get_by_role("button", name="Revoke").click()
    first.locator("#deploy-tokens-revoke-dialog").get_by_role("button", name="Revoke old").click()
    first.wait_for_url(re.compile(r"/users/sign_in\?next="))
    assert first.get_by_text("Your session has expired. Sign in again to continue.").is_visible()
    assert first.locator("header.topbar").count() == 1  # a page, not a page in a panel
    assert active_count(app) == 1  # nothing was revoked
    first.fill("#username", "maria")
    first.fill("#password", "correct-horse-battery")
    first.click("button:has-text('Sign in')")
    first.wait_for_url(f"{base}{SETTINGS}?page=1")  # back where the user was, no 405
    assert first.get_by_text("Active deploy tokens (1)").count() == 1


def test_create_after_the_cookie_is_gone_goes_to_sign_in(maria, live_server, browser):
    base = live_server.url
    page = page_for(browser, live_server)
    sign_in(page, base, "maria")
    page.goto(f"{base}{SETTINGS}")
    page.get_by_text("Expand").click()
    page.context.clear_cookies()
    page.get_by_label("Name", exact=True).fill("x")
    page.get_by_role("button", name="Create deploy token").click()
    page.wait_for_url(re.compile(r"/users/sign_in"))
    assert page.get_by_text("Your session has expired").is_visible()


def test_without_javascript_a_double_submit_creates_one_token_and_shows_it(app, maria, live_server, browser):
    base = live_server.url
    page = page_for(browser, live_server, javascript=False)
    sign_in(page, base, "maria")
    page.goto(f"{base}{SETTINGS}")
    page.locator("#deploy-tokens > details > summary").click()
    page.get_by_label("Name", exact=True).fill("twice")
    page.get_by_label("read_repository", exact=True).check()
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    button = page.get_by_role("button", name="Create deploy token")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    # Two real clicks while the server is slow to answer the first: the browser sends the
    # form twice and shows only the second answer.
    with writes_held(app):
        with page.expect_request(lambda r: r.method == "POST"):
            page.mouse.click(box["x"] + 5, box["y"] + 5)
        with page.expect_request(lambda r: r.method == "POST"):
            page.mouse.click(box["x"] + 5, box["y"] + 5)
    page.locator("#deploy-tokens-new").wait_for()
    assert len(posts) == 2, posts
    with app.app_context():
        tokens = db.session.scalars(sa.select(DeployToken).where(DeployToken.name == "twice")).all()
        assert len(tokens) == 1
        secret = page.input_value("#deploy-tokens-secret-2")
        assert deploy_tokens.find_active(tokens[0].username, secret) is not None
    # The answer is the page itself: no secret waits in a cookie for a redirect.
    for cookie in page.context.cookies():
        assert secret not in cookie["value"]
    page.reload()  # sends the form a third time: still one token, and the secret is not shown again
    assert "This form was already sent" in page.inner_text("#deploy-tokens")
    assert secret not in page.content()
    with app.app_context():
        assert len(db.session.scalars(sa.select(DeployToken).where(DeployToken.name == "twice")).all()) == 1


def test_without_javascript_revoke_confirms_on_a_page_and_keeps_the_list_page(app, maria, live_server, browser):
    make_tokens(app, 45)
    base = live_server.url
    page = page_for(browser, live_server, javascript=False)
    sign_in(page, base, "maria")
    page.goto(f"{base}{SETTINGS}?page=3#deploy-tokens")
    page.locator("tr", has_text="token-004").get_by_role("button", name="Revoke").click()
    assert "You are about to revoke token-004" in page.inner_text("main")
    page.get_by_role("button", name="Revoke token-004").click()
    page.wait_for_url(re.compile(r"page=3"))
    assert page.locator("#deploy-tokens .alerts").inner_text() == "Revoked deploy token token-004."
    assert page.get_by_text("Page 3 of 3").is_visible()


def test_a_hundred_tokens_search_sort_page_and_revoke_on_page_three(app, maria, live_server, browser):
    make_tokens(app, 100)
    base = live_server.url
    page = page_for(browser, live_server)
    sign_in(page, base, "maria")
    page.goto(f"{base}{SETTINGS}")
    assert page.locator("#deploy-tokens-title").inner_text().startswith("Deploy tokens 100")
    page.get_by_text("Expand").click()

    page.get_by_role("link", name="Next").click()
    page.wait_for_url(f"{base}{SETTINGS}?page=2")
    page.get_by_role("link", name="Next").click()
    page.wait_for_url(f"{base}{SETTINGS}?page=3")
    assert page.get_by_text("Page 3 of 5").is_visible()
    assert focus_lands_on(page, "deploy-tokens-active")
    first_row = page.locator(ACTIVE_ROWS).first.inner_text()
    name = re.search(r"token-\d+", first_row).group(0)
    page.locator("tr", has_text=name).get_by_role("button", name="Revoke").click()
    page.locator("#deploy-tokens-revoke-dialog").get_by_role("button", name=f"Revoke {name}").click()
    page.get_by_text("Active deploy tokens (99)").wait_for()
    assert page.get_by_text("Page 3 of 5").is_visible() and page.url.endswith("?page=3")
    assert active_count(app) == 99

    page.go_back()  # history works: the URL is the state
    page.wait_for_url(f"{base}{SETTINGS}?page=2")
    page.get_by_text("Page 2 of 5").wait_for()

    page.get_by_label("Sort by").select_option("expires")
    page.wait_for_url(re.compile(r"sort=expires"))
    assert "token-001" in page.locator(ACTIVE_ROWS).first.inner_text()  # soonest
    page.get_by_label("Search").fill("deploy-bot-00")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"q=deploy-bot-00"))
    rows = page.locator(ACTIVE_ROWS)
    assert rows.count() == 3  # deploy-bot-000, -004, -008
    page.reload()
    assert page.locator(ACTIVE_ROWS).count() == 3  # the search is in the URL


@pytest.mark.parametrize("n", [0, 3, 100])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_panel_layout_and_screenshots(app, maria, live_server, browser, n, viewport):
    make_tokens(app, n)
    page = page_for(browser, live_server, viewport=viewport)
    sign_in(page, live_server.url, "maria")
    page.goto(f"{live_server.url}{SETTINGS}#deploy-tokens")
    page.locator("#deploy-tokens > details[open]").wait_for()
    no_horizontal_overflow(page)
    if n:
        cell = page.locator(ACTIVE_ROWS).first.locator("code.username")
        if cell.count():
            # The username is whole on one line at desktop width.
            assert viewport is PHONE or cell.evaluate("e => e.getClientRects().length") == 1
    screenshot(page, f"deploy-tokens-{n}-tokens-{viewport['width']}.png")


def test_no_page_scrolls_sideways_on_a_phone(app, make, maria, live_server, browser):
    make_tokens(app, 5)
    page = page_for(browser, live_server, viewport=PHONE)
    base = live_server.url
    page.goto(f"{base}/users/sign_in")
    no_horizontal_overflow(page)
    sign_in(page, base, "maria")
    for url in ("/", f"/{PROJECT}", f"/{PROJECT}/-/packages", f"{SETTINGS}#deploy-tokens",
                "/groups/tanuki/-/settings/repository#deploy-tokens",
                f"/{PROJECT}/-/settings/ci_cd#runners", "/-/user_settings/personal_access_tokens",
                "/groups/tanuki"):
        page.goto(base + url)
        no_horizontal_overflow(page)
    page.goto(f"{base}{SETTINGS}")
    page.locator("#deploy-tokens > details > summary").click()
    page.get_by_text("Add token").click()
    page.get_by_label("Name", exact=True).fill("phone")
    page.get_by_label("read_repository", exact=True).check()
    page.get_by_role("button", name="Create deploy token").click()
    page.locator("#deploy-tokens-new").wait_for()
    no_horizontal_overflow(page)
    screenshot(page, "deploy-tokens-new-secret-390.png")

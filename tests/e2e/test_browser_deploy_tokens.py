"""A person in Chromium creates, reads and revokes a deploy token."""
import os

import pytest

from webapp.services import deploy_tokens

from ..conftest import PASSWORD
from ..support import require_binary

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser(tmp_path, monkeypatch):
    executable = require_binary("chromium", "apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def sign_in(page, base, username):
    page.goto(f"{base}/users/sign_in")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/")


def test_maintainer_creates_reads_and_revokes_a_token(app, make, live_server, browser, tmp_path):
    make.project("tanuki/awesome_project")
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    base = live_server.url

    page = browser.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    sign_in(page, base, "maria")
    page.goto(f"{base}/tanuki/awesome_project/-/settings/repository")

    page.get_by_text("Expand").click()
    page.get_by_label("Name", exact=True).fill("ci-pipeline")
    page.get_by_label("Username (optional)").fill("ci-bot")
    page.get_by_label("read_repository", exact=True).check()
    page.get_by_label("read_registry", exact=True).check()
    page.get_by_role("button", name="Create deploy token").click()

    reveal = page.locator("#new-deploy-token")
    reveal.wait_for()
    assert "Use this token as a password. Save it. This password can not be recovered." in reveal.inner_text()
    assert page.input_value("#deploy-token-user") == "ci-bot"
    secret = page.input_value("#deploy-token-token")
    assert secret.startswith("gldt-")
    assert page.url.endswith("/-/settings/repository")  # swapped in place by htmx
    with app.app_context():
        token = deploy_tokens.find_active("ci-bot", secret)
        assert token is not None and token.scopes == ["read_repository", "read_registry"]

    row = page.locator("tr", has_text="ci-pipeline")
    assert "Never" in row.inner_text()
    assert page.get_by_text("Active deploy tokens (1)").is_visible()
    page.screenshot(path=str(tmp_path / "deploy-tokens-panel.png"), full_page=True)

    dialogs = []

    def confirm(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    row.get_by_role("button", name="Revoke").click()
    page.get_by_text("Active deploy tokens (0)").wait_for()
    assert dialogs and dialogs[0].startswith("Revoke ci-pipeline?")
    assert page.get_by_text("Revoked deploy token ci-pipeline.").is_visible()
    with app.app_context():
        assert deploy_tokens.find_active("ci-bot", secret) is None

    page.reload()
    assert secret not in page.content()
    page.screenshot(path=str(tmp_path / "deploy-tokens-after-revoke.png"), full_page=True)
    assert os.path.getsize(tmp_path / "deploy-tokens-panel.png") > 10_000
    assert not console_errors, console_errors


def test_validation_errors_show_next_to_their_fields(make, live_server, browser):
    make.project("tanuki/awesome_project")
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    page = browser.new_page()
    sign_in(page, live_server.url, "maria")
    page.goto(f"{live_server.url}/tanuki/awesome_project/-/settings/repository")
    page.get_by_text("Expand").click()
    page.get_by_role("button", name="Create deploy token").click()
    page.locator("#deploy_token_name-error").wait_for()
    assert page.locator("#deploy_token_name-error").inner_text() == "Name can't be blank"
    assert "select at least one scope" in page.locator("#deploy_token_scopes-error").inner_text()
    assert page.get_by_text("Active deploy tokens (0)").is_visible()


def test_cancelled_revoke_keeps_the_token(app, make, live_server, browser):
    make.project("tanuki/awesome_project")
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    _, username, secret = make.token("tanuki/awesome_project", name="keep")
    page = browser.new_page()
    sign_in(page, live_server.url, "maria")
    page.goto(f"{live_server.url}/tanuki/awesome_project/-/settings/repository")
    page.get_by_text("Expand").click()
    page.once("dialog", lambda d: d.dismiss())
    page.locator("tr", has_text="keep").get_by_role("button", name="Revoke").click()
    assert page.get_by_text("Active deploy tokens (1)").is_visible()
    with app.app_context():
        assert deploy_tokens.find_active(username, secret) is not None

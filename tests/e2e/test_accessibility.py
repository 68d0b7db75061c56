"""axe-core finds no violations on any page, signed in or out, in every state of the panels."""
import pytest

from .browser import DESKTOP, PHONE, axe_violations, sign_in
from .browser import axe_script, browser  # noqa: F401  (fixtures)

PROJECT = "tanuki/awesome_project"
SETTINGS = f"/{PROJECT}/-/settings/repository"


@pytest.fixture
def world(make):
    make.project(PROJECT)
    make.project("tanuki/website", visibility="public")
    user = make.user("maria")
    make.member("tanuki", user, "maintainer")
    for i in range(3):
        make.token(PROJECT, ["read_repository", "read_registry"], name=f"token-{i}")
    make.token(PROJECT, name="gitlab-deploy-token")
    make.token(PROJECT, name="old", revoked=True)
    make.pat("maria", name="terraform")
    return user


def check(page, axe_js, found: dict, label: str) -> None:
    problems = axe_violations(page, axe_js)
    if problems:
        found[label] = problems


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_no_axe_violations_anywhere(world, live_server, browser, axe_script, viewport):
    base = live_server.url
    # axe is injected as a script tag: this context alone ignores the page's CSP to allow it.
    page = browser.new_context(viewport=viewport, bypass_csp=True).new_page()
    found: dict[str, list[str]] = {}

    for url in ("/users/sign_in", "/", "/tanuki/website", "/groups/tanuki", "/nope/nothing"):
        page.goto(base + url)
        check(page, axe_script, found, f"signed out {url}")
    page.goto(f"{base}/users/sign_in")
    page.fill("#username", "maria")
    page.fill("#password", "wrong-password")
    page.click("button:has-text('Sign in')")
    check(page, axe_script, found, "sign-in with an error")

    sign_in(page, base, "maria")
    for url in ("/", "/groups/tanuki", f"/{PROJECT}", f"/{PROJECT}/-/packages",
                "/groups/tanuki/-/settings/repository", SETTINGS, f"/{PROJECT}/-/settings/ci_cd",
                "/-/user_settings/personal_access_tokens", "/nope/nothing"):
        page.goto(base + url)
        check(page, axe_script, found, url)

    # The deploy tokens panel, state by state.
    page.goto(f"{base}{SETTINGS}#deploy-tokens")
    page.locator("#deploy-tokens > details[open]").wait_for()
    page.locator("#deploy-tokens .inactive > summary").click()
    check(page, axe_script, found, "panel open with tokens and inactive ones")
    page.get_by_text("Add token").click()
    page.get_by_role("button", name="Create deploy token").click()
    page.locator("#deploy-tokens-name-error").wait_for()
    check(page, axe_script, found, "panel with errors")
    page.get_by_label("Name", exact=True).fill("new")
    page.get_by_label("read_repository", exact=True).check()
    page.get_by_role("button", name="Create deploy token").click()
    page.locator("#deploy-tokens-new").wait_for()
    check(page, axe_script, found, "panel with a new secret")
    page.get_by_role("button", name="Revoke token-1", exact=True).click()
    page.locator("#deploy-tokens-revoke-dialog").wait_for()
    check(page, axe_script, found, "revoke dialog")
    page.locator("#deploy-tokens-revoke-dialog").get_by_role("button", name="Revoke token-1").click()
    page.locator("#deploy-tokens .alerts", has_text="Revoked").wait_for()
    check(page, axe_script, found, "panel after a revoke")
    page.get_by_label("Search").fill("zzz")
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("No active deploy tokens match").wait_for()
    check(page, axe_script, found, "search without results")

    page.goto(f"{base}/{PROJECT}/-/settings/ci_cd#runners")  # no runners yet: the form is open
    page.get_by_role("button", name="Create runner token").click()
    page.locator("#runners-new").wait_for()
    check(page, axe_script, found, "runner token created")

    page.goto(f"{base}/-/user_settings/personal_access_tokens")
    revoke_url = page.locator("[data-revoke]").first.get_attribute("data-revoke")
    page.goto(base + revoke_url)
    check(page, axe_script, found, "revoke confirmation page")

    assert not found, "\n".join(f"{where}:\n  " + "\n  ".join(p) for where, p in found.items())

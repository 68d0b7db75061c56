"""Chromium through Playwright, and axe-core from npm, for the browser tests.

axe-core is installed from the npm registry into tests/e2e/.axe/ (git-ignored) the first
time a test needs it; a missing npm or a failed install skips locally and fails under CI.
Screenshots go to tests/e2e/output/ (git-ignored).
"""
import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import PASSWORD
from ..support import in_ci, require_binary

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
AXE_VERSION = "4.14.1"
AXE_DIR = HERE / ".axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


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


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe.min.js at the pinned version, installed from npm on first use."""
    package = AXE_DIR / "node_modules" / "axe-core" / "package.json"
    if AXE_JS.exists() and f'"version": "{AXE_VERSION}"' in package.read_text():
        return AXE_JS
    npm = require_binary("npm", "apt-get install npm")
    AXE_DIR.mkdir(exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR),
         f"axe-core@{AXE_VERSION}"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not AXE_JS.exists():
        reason = f"npm could not install axe-core {AXE_VERSION}: {result.stderr[-500:]}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return AXE_JS


def axe_violations(page, axe_js: Path) -> list[str]:
    """Run axe-core (WCAG 2.x A and AA, best practices) on the page; one line per problem."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_js))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return {passes: r.passes.length, version: r.testEngine.version,
                violations: r.violations.map(v => `${v.id}: ${v.help} — ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)};
    }""")
    # axe really ran: it checked rules and passed some (colour contrast, labels, landmarks…).
    assert result["version"] == AXE_VERSION and result["passes"] > 5, result
    return result["violations"]


def sign_in(page, base, username, password=PASSWORD):
    page.goto(f"{base}/users/sign_in")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/")


def screenshot(page, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=True)
    assert os.path.getsize(path) > 5_000
    return path


def no_horizontal_overflow(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{page.url} is {widths[0]} px wide in a {widths[1]} px window"

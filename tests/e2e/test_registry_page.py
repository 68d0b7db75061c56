"""The project's Container registry page and GitLab's registry API, on the real registry."""
import json
import os
from pathlib import Path

import pytest
import requests

from ..conftest import AuthActions, csrf_from, gunicorn
from ..support import free_port, require_binary
from .containers import Skopeo, docker_registry, registry_config, write_image
from .test_browser_deploy_tokens import browser, sign_in  # noqa: F401  (the fixture)


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def stack(app, migrated, tmp_path):
    """Gatehouse under gunicorn and the registry, each knowing where the other is."""
    binary = require_binary("docker-registry", "apt-get install docker-registry")
    skopeo_binary = require_binary("skopeo", "apt-get install skopeo")
    port = free_port()
    registry = f"127.0.0.1:{port}"
    data = Path(app.config["DATA_DIR"])
    app.config["REGISTRY_URL"] = registry  # the test app (page, API via test client) too
    with gunicorn(migrated, data, tmp_path, workers=1, REGISTRY_URL=registry) as live:
        env = dict(os.environ, GATEHOUSE_DATA_DIR=str(data), GATEHOUSE_EXTERNAL_URL=live.url,
                   GATEHOUSE_SECRET_KEY="live-test-secret")
        with docker_registry(binary, registry_config(env, registry), tmp_path / "registry", port):
            yield live, Skopeo(skopeo_binary, tmp_path / "skopeo", registry)


def test_two_tags_listed_one_deleted_by_a_maintainer_the_other_still_pulls(
        app, make, client, auth, stack, tmp_path):
    live, skopeo = stack
    project = make.project("tanuki/awesome_project")
    make.member("tanuki/awesome_project", make.user("maintainer"), "maintainer")
    make.member("tanuki/awesome_project", make.user("dev"), "developer")
    _, rw, rw_secret = make.token("tanuki/awesome_project", ["read_registry", "write_registry"])
    ok(skopeo.login(rw, rw_secret))
    one, two = tmp_path / "one", tmp_path / "two"
    digest_one = write_image(one, "v1", {"a.txt": b"first image\n"})
    digest_two = write_image(two, "v2", {"b.txt": b"second image\n"})
    name = "tanuki/awesome_project/app"
    ok(skopeo.push(one, "v1", f"{name}:v1", as_user=rw))
    ok(skopeo.push(one, "v1", f"{name}:v1-copy", as_user=rw))  # same digest as v1
    ok(skopeo.push(two, "v2", f"{name}:v2", as_user=rw))

    api = f"{live.url}/api/v4/projects/{project.id}/registry/repositories"
    maintainer = {"PRIVATE-TOKEN": make.pat("maintainer")}
    repos = requests.get(api, headers=maintainer, params={"tags": "true"}, timeout=30).json()
    assert [(r["name"], r["path"]) for r in repos] == [("app", name)]
    assert [t["name"] for t in repos[0]["tags"]] == ["v1", "v1-copy", "v2"]
    repo_id = repos[0]["id"]
    tags = requests.get(f"{api}/{repo_id}/tags", headers=maintainer, timeout=30).json()
    assert tags[2] == {"name": "v2", "path": f"{name}:v2",
                       "location": f"{skopeo.registry}/{name}:v2"}
    detail = requests.get(f"{api}/{repo_id}/tags/v2", headers=maintainer, timeout=30).json()
    assert detail["digest"] == digest_two and detail["total_size"] > 0

    # The page lists them too, with digests, for anyone who may pull.
    auth.login("dev")
    page = client.get("/tanuki/awesome_project/container_registry").get_data(as_text=True)
    assert name in page and digest_one[7:19] in page and digest_two[7:19] in page
    assert "Delete" not in page  # developers do not delete

    # A developer and a deploy token cannot delete; a maintainer can.
    developer = {"PRIVATE-TOKEN": make.pat("dev")}
    assert requests.delete(f"{api}/{repo_id}/tags/v1", headers=developer, timeout=30
                           ).status_code == 403
    assert requests.delete(f"{api}/{repo_id}/tags/v1", auth=(rw, rw_secret), timeout=30
                           ).status_code == 401
    deleted = requests.delete(f"{api}/{repo_id}/tags/v1", headers=maintainer, timeout=30)
    assert deleted.status_code == 200, deleted.text

    assert "manifest unknown" in skopeo.inspect(f"{name}:v1", as_user=rw).stderr.lower()
    assert json.loads(ok(skopeo.inspect(f"{name}:v1-copy", as_user=rw)).stdout)["Digest"] \
        == digest_one
    ok(skopeo.pull(f"{name}:v2", tmp_path / "pulled", "v2", as_user=rw))

    # The maintainer deletes v2 from the page, after confirming.
    client = app.test_client()
    AuthActions(client).login("maintainer")
    listing = client.get("/tanuki/awesome_project/container_registry").get_data(as_text=True)
    assert "hx-confirm=\"Delete tag v2?" in listing
    confirm_url = f"/tanuki/awesome_project/container_registry/{repo_id}/tags/v2/delete"
    confirm = client.get(confirm_url)
    assert confirm.status_code == 200 and "Delete tag v2?" in confirm.get_data(as_text=True)
    done = client.post(confirm_url, data={"csrf_token": csrf_from(confirm.get_data(as_text=True))})
    assert done.status_code == 302
    after = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Deleted tag v2" in after and "v1-copy" in after
    assert "manifest unknown" in skopeo.inspect(f"{name}:v2", as_user=rw).stderr.lower()
    ok(skopeo.inspect(f"{name}:v1-copy", as_user=rw))
    assert [t["name"] for t in requests.get(f"{api}/{repo_id}/tags", headers=maintainer,
                                            timeout=30).json()] == ["v1-copy"]


def test_a_maintainer_deletes_a_tag_in_the_browser_after_the_dialog(
        app, make, stack, browser, tmp_path):
    live, skopeo = stack
    make.project("tanuki/web")
    make.member("tanuki/web", make.user("maria"), "maintainer")
    _, rw, rw_secret = make.token("tanuki/web", ["read_registry", "write_registry"])
    ok(skopeo.login(rw, rw_secret))
    for tag, text in (("v1", b"one\n"), ("v2", b"two\n")):
        write_image(tmp_path / tag, tag, {"f.txt": text})
        ok(skopeo.push(tmp_path / tag, tag, f"tanuki/web:{tag}", as_user=rw))

    page = browser.new_page()
    sign_in(page, live.url, "maria")
    page.goto(f"{live.url}/tanuki/web")
    page.get_by_role("link", name="Images and tags").click()
    rows = page.locator("#container-registry-list tbody tr")
    assert rows.count() == 2

    dialogs = []

    def answer(dialog, accept):
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    rows.nth(0).get_by_role("button", name="Delete").click()
    assert dialogs[0].startswith("Delete tag v1?")
    assert rows.count() == 2  # cancelled: nothing sent

    page.once("dialog", lambda d: answer(d, True))
    rows.nth(0).get_by_role("button", name="Delete").click()
    page.get_by_text("Deleted tag v1 of tanuki/web.").wait_for()
    assert rows.count() == 1 and "v2" in rows.nth(0).inner_text()
    assert "manifest unknown" in skopeo.inspect("tanuki/web:v1", as_user=rw).stderr.lower()
    ok(skopeo.inspect("tanuki/web:v2", as_user=rw))

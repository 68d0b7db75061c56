"""The Packages page: Maven coordinates and snippets, npm deprecations, the delete button."""
import base64
import hashlib
import json
from pathlib import Path

from webapp.extensions import db
from webapp.models import Package, PackageFile

from .conftest import csrf_from


def publish_npm(client, project_id, secret, name="widget", version="1.0.0", tarball=b"npm bytes"):
    body = {"name": name, "versions": {version: {"name": name, "version": version}},
            "_attachments": {f"{name}-{version}.tgz": {"data": base64.b64encode(tarball).decode(),
                                                       "length": len(tarball)}}}
    assert client.put(f"/api/v4/projects/{project_id}/packages/npm/{name}", data=json.dumps(body),
                      headers={"Authorization": f"Bearer {secret}",
                               "Content-Type": "application/json"}).status_code == 201


def test_page_shows_maven_coordinates_snippets_and_npm_deprecations(client, auth, make):
    project = make.project("tanuki/awesome_project")
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    path = f"/api/v4/projects/{project.id}/packages/maven/com/example/hello/1.0.0/hello-1.0.0.jar"
    assert client.put(path, data=b"jar", headers={"Deploy-Token": secret}).status_code == 200
    publish_npm(client, project.id, secret)
    meta = client.get(f"/api/v4/projects/{project.id}/packages/npm/widget",
                      headers={"Authorization": f"Bearer {secret}"}).json
    meta["versions"]["1.0.0"]["deprecated"] = "use widget 2"
    client.put(f"/api/v4/projects/{project.id}/packages/npm/widget", json=meta,
               headers={"Authorization": f"Bearer {secret}"})
    reporter = make.user("rep")
    make.member("tanuki", reporter, "reporter")
    auth.login("rep")
    html = client.get("/tanuki/awesome_project/-/packages").get_data(as_text=True)
    assert "com.example:hello:1.0.0" in html
    assert "&lt;groupId&gt;com.example&lt;/groupId&gt;" in html
    assert "&lt;artifactId&gt;hello&lt;/artifactId&gt;" in html
    assert f"http://gatehouse.test/api/v4/projects/{project.id}/packages/maven" in html
    assert "&lt;name&gt;Deploy-Token&lt;/name&gt;" in html
    assert "Deprecated" in html and "use widget 2" in html
    assert ">Delete</button>" not in html  # reporters do not delete
    refused = client.post("/tanuki/awesome_project/-/packages/1/delete",
                          data={"csrf_token": csrf_from(html)})
    assert refused.status_code == 403


def test_maintainers_delete_a_version_and_its_unshared_file(app, client, auth, make):
    project = make.project("tanuki/awesome_project")
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    publish_npm(client, project.id, secret, "kept", tarball=b"shared")
    publish_npm(client, project.id, secret, "shared", tarball=b"shared")
    publish_npm(client, project.id, secret, "alone", tarball=b"alone")
    boss = make.user("boss")
    make.member("tanuki", boss, "maintainer")
    auth.login("boss")
    page = client.get("/tanuki/awesome_project/-/packages")
    html = page.get_data(as_text=True)
    assert ">Delete</button>" in html
    with app.app_context():
        ids = {p.name: p.id for p in db.session.query(Package)}
    confirm = client.get(f"/tanuki/awesome_project/-/packages/{ids['alone']}/delete")
    assert confirm.status_code == 200 and "Delete alone 1.0.0?" in confirm.get_data(as_text=True)
    token = csrf_from(html)
    done = client.post(f"/tanuki/awesome_project/-/packages/{ids['alone']}/delete",
                       data={"csrf_token": token})
    assert done.status_code == 302
    swapped = client.post(f"/tanuki/awesome_project/-/packages/{ids['shared']}/delete",
                          headers={"HX-Request": "true", "X-CSRFToken": token})
    assert swapped.status_code == 200 and 'id="packages"' in swapped.get_data(as_text=True)
    assert "<html" not in swapped.get_data(as_text=True)
    with app.app_context():
        assert [p.name for p in db.session.query(Package)] == ["kept"]
        assert db.session.query(PackageFile).count() == 1
    root = Path(app.config["DATA_DIR"]) / "packages" / "sha256"
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == [hashlib.sha256(b"shared").hexdigest()]
    assert client.post(f"/tanuki/awesome_project/-/packages/{ids['alone']}/delete",
                       data={"csrf_token": token}).status_code == 404

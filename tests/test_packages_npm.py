"""npm beyond publish and install: unpublish, deprecate, group and instance levels, the
small endpoints npm calls (ping, whoami, audit), and the streaming publish reader."""
import base64
import hashlib
import io
import json
from pathlib import Path

import pytest

from webapp.extensions import db
from webapp.models import Package, PackageFile


def document(name, version, tarball=b"tarball bytes", tags=None, order=("versions", "_attachments")):
    file_name = f"{name.rpartition('/')[2]}-{version}.tgz"
    parts = {
        "name": name, "dist-tags": tags or {"latest": version},
        "versions": {version: {"name": name, "version": version,
                               "dist": {"shasum": hashlib.sha1(tarball).hexdigest()}}},
        "_attachments": {f"{name}-{version}.tgz": {
            "data": base64.b64encode(tarball).decode(), "length": len(tarball)}},
    }
    ordered = {k: parts[k] for k in ("name", "dist-tags", *order)}
    return json.dumps(ordered).encode(), file_name


@pytest.fixture
def project(make):
    return make.project("tanuki/awesome_project")


@pytest.fixture
def npm(client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    base = f"/api/v4/projects/{project.id}/packages/npm"

    class Npm:
        bearer = {"Authorization": f"Bearer {secret}"}

        def publish(self, name, version, tarball=None, **kw):
            body, _ = document(name, version, tarball or f"{name}@{version}".encode(), **kw)
            return client.put(f"{base}/{name.replace('/', '%2f')}", data=body, headers={
                **self.bearer, "Content-Type": "application/json"})

        def get(self, path, **kw):
            return client.get(f"{base}/{path}", headers=self.bearer, **kw)

    n = Npm()
    n.base, n.username = base, username
    return n


def counts(app):
    with app.app_context():
        return db.session.query(Package).count(), db.session.query(PackageFile).count()


def stored(app):
    root = Path(app.config["DATA_DIR"]) / "packages" / "sha256"
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_unpublish_one_version_as_npm_does_removes_rows_and_file(app, client, npm):
    for version in ("1.0.0", "1.1.0"):
        assert npm.publish("@tanuki/pkg", version).status_code == 201
    meta = npm.get("@tanuki%2fpkg?write=true").json
    assert meta["_rev"] and meta["_rev"] != "undefined"
    # npm PUTs the document without the version, with `latest` moved back...
    del meta["versions"]["1.1.0"]
    meta["dist-tags"]["latest"] = "1.0.0"
    put = client.put(f"{npm.base}/@tanuki%2fpkg/-rev/{meta['_rev']}", json=meta, headers=npm.bearer)
    assert put.status_code == 200, put.get_data(as_text=True)
    # ...then DELETEs the tarball at its own URL plus /-rev/.
    rev = npm.get("@tanuki%2fpkg?write=true").json["_rev"]
    tarball = f"{npm.base}/@tanuki/pkg/-/@tanuki/pkg-1.1.0.tgz/-rev/{rev}"
    assert client.delete(tarball, headers=npm.bearer).status_code == 404  # already gone
    after = npm.get("@tanuki%2fpkg").json
    assert list(after["versions"]) == ["1.0.0"] and after["dist-tags"] == {"latest": "1.0.0"}
    assert counts(app) == (1, 1)
    assert stored(app) == [hashlib.sha256(b"@tanuki/pkg@1.0.0").hexdigest()]


def test_unpublish_the_whole_package_and_a_tarball_directly(app, client, npm):
    assert npm.publish("@tanuki/pkg", "1.0.0").status_code == 201
    assert npm.publish("@tanuki/other", "2.0.0").status_code == 201
    rev = npm.get("@tanuki%2fpkg?write=true").json["_rev"]
    assert client.delete(f"{npm.base}/@tanuki%2fpkg/-rev/{rev}", headers=npm.bearer).status_code == 200
    assert npm.get("@tanuki%2fpkg").status_code == 404
    gone = client.delete(f"{npm.base}/@tanuki/other/-/@tanuki/other-2.0.0.tgz/-rev/1",
                         headers=npm.bearer)
    assert gone.status_code == 200
    assert counts(app) == (0, 0) and stored(app) == []


def test_a_file_another_package_uses_stays(app, client, npm):
    same = b"identical bytes"
    assert npm.publish("first", "1.0.0", tarball=same).status_code == 201
    assert npm.publish("second", "1.0.0", tarball=same).status_code == 201
    assert client.delete(f"{npm.base}/first/-rev/1", headers=npm.bearer).status_code == 200
    assert stored(app) == [hashlib.sha256(same).hexdigest()]
    assert npm.get("second/-/second-1.0.0.tgz").data == same


def test_unpublish_needs_maintainer_or_a_write_token(client, make, project, npm):
    assert npm.publish("pkg", "1.0.0").status_code == 201
    developer = make.user("dev")
    make.member("tanuki/awesome_project", developer, "developer")
    pat = make.pat(developer, ["api"])
    refused = client.delete(f"{npm.base}/pkg/-rev/1", headers={"Authorization": f"Bearer {pat}"})
    assert refused.status_code == 403
    maintainer = make.user("boss")
    make.member("tanuki/awesome_project", maintainer, "maintainer")
    pat = make.pat(maintainer, ["api"])
    assert client.delete(f"{npm.base}/pkg/-rev/1",
                         headers={"Authorization": f"Bearer {pat}"}).status_code == 200


def test_deprecate_and_undeprecate(client, npm):
    for version in ("1.0.0", "1.1.0"):
        npm.publish("pkg", version)
    meta = npm.get("pkg?write=true").json
    meta["versions"]["1.0.0"]["deprecated"] = "use 1.1.0"
    put = client.put(f"{npm.base}/pkg", json=meta, headers=npm.bearer)
    assert put.status_code == 200, put.get_data(as_text=True)
    versions = npm.get("pkg").json["versions"]
    assert versions["1.0.0"]["deprecated"] == "use 1.1.0" and "deprecated" not in versions["1.1.0"]
    meta = npm.get("pkg?write=true").json
    meta["versions"]["1.0.0"]["deprecated"] = ""
    assert client.put(f"{npm.base}/pkg", json=meta, headers=npm.bearer).status_code == 200
    assert "deprecated" not in npm.get("pkg").json["versions"]["1.0.0"]


def test_a_republished_version_is_refused_before_its_tarball_is_read(app, client, npm):
    assert npm.publish("pkg", "1.0.0").status_code == 201
    body, _ = document("pkg", "1.0.0", tarball=b"x" * 3_000_000)

    stream = io.BytesIO(body)
    refused = client.put(f"{npm.base}/pkg", input_stream=stream, headers={
        **npm.bearer, "Content-Type": "application/json", "Content-Length": str(len(body))})
    assert refused.status_code == 403
    assert stream.tell() < len(body) // 2, "the tarball was read before the refusal"
    assert counts(app) == (1, 1)
    assert not list((Path(app.config["DATA_DIR"]) / "packages" / "tmp").iterdir())


@pytest.mark.parametrize("body, status", [
    (b'{"name": "pkg", "versions": ' + b"[" * 200 + b"]" * 200 + b"}", 400),
    (b'{"name": "pkg", "versions": {"1.0.0": {}}, "_attachments": {"pkg-1.0.0.tgz": '
     b'{"data": "not base64!!"}}}', 400),
    (b'{"name": "other", "versions": {}}', 400),
    (b"not json", 400),
    ('{"name": "pkg", "versions": {"1.0.0": {"dist": {"shasum": "\u00e9"}}}, "_attachments": '
     '{"pkg-1.0.0.tgz": {"data": "YWJj"}}}'.encode(), 400),
])
def test_bad_publish_documents_are_400_and_leave_nothing(app, client, npm, body, status):
    response = client.put(f"{npm.base}/pkg", data=body, headers={
        **npm.bearer, "Content-Type": "application/json"})
    assert response.status_code == status, response.get_data(as_text=True)
    assert "error" in response.json
    assert counts(app) == (0, 0) and stored(app) == []


def test_tarball_first_documents_are_accepted(npm):
    assert npm.publish("pkg", "1.0.0", order=("_attachments", "versions")).status_code == 201
    assert npm.publish("pkg", "1.0.0", order=("_attachments", "versions")).status_code == 403


def test_ping_whoami_and_audit(client, make, npm):
    assert npm.get("-/ping?write=true").json == {}
    assert npm.get("-/whoami").json == {"username": npm.username}
    bulk = client.post(f"{npm.base}/-/npm/v1/security/advisories/bulk",
                       data='{"pkg": ["1.0.0"]}', headers=npm.bearer)
    assert bulk.status_code == 200 and bulk.json == {}
    quick = client.post(f"{npm.base}/-/npm/v1/security/audits/quick", data="{}", headers=npm.bearer)
    assert quick.status_code == 200 and quick.json["advisories"] == {}
    assert client.get(f"{npm.base}/-/whoami").status_code == 401


def test_group_and_instance_levels_install_and_refuse_writes(client, make, npm):
    assert npm.publish("@tanuki/pkg", "1.0.0").status_code == 201
    hidden = make.project("elsewhere/secret")
    _, _, other = make.token("elsewhere/secret", ["write_package_registry"], name="o")
    body, _ = document("@elsewhere/hidden", "1.0.0")
    assert client.put(f"/api/v4/projects/{hidden.id}/packages/npm/@elsewhere%2fhidden", data=body,
                      headers={"Authorization": f"Bearer {other}",
                               "Content-Type": "application/json"}).status_code == 201
    _, _, group = make.token("tanuki", ["read_package_registry"], name="g")
    auth = {"Authorization": f"Bearer {group}"}
    for base in ("/api/v4/groups/tanuki/-/packages/npm", "/api/v4/packages/npm"):
        meta = client.get(f"{base}/@tanuki%2fpkg", headers=auth)
        assert meta.status_code == 200, (base, meta.get_data(as_text=True))
        tarball = meta.json["versions"]["1.0.0"]["dist"]["tarball"]
        level = "/api/v4/groups/" if "groups" in base else base + "/"
        assert tarball.startswith(f"http://gatehouse.test{level}")
        got = client.get(tarball.replace("http://gatehouse.test", ""), headers=auth)
        assert got.status_code == 200 and got.data == b"@tanuki/pkg@1.0.0"
        assert client.get(f"{base}/@elsewhere%2fhidden", headers=auth).status_code == 404
        refused = client.put(f"{base}/@tanuki%2fpkg", data=body, headers=auth)
        assert refused.status_code == 405 and "project level" in refused.json["error"]
    assert client.get("/api/v4/packages/npm/unscoped", headers=auth).status_code == 404
    assert client.get("/api/v4/packages/npm/@tanuki%2fpkg").status_code == 401

"""Package registries through the Flask client: policy rows, storage, PyPI, npm, the page."""
import base64
import hashlib
import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from webapp.extensions import db
from webapp.models import Package, PackageFile, utcnow

GENERIC = "/api/v4/projects/{ref}/packages/generic/{name}/{version}/{file}"


def generic_url(ref, name="tool", version="1.0.0", file="tool.bin"):
    return GENERIC.format(ref=ref, name=name, version=version, file=file)


def basic(username, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def rows(app):
    with app.app_context():
        return db.session.query(PackageFile).count(), db.session.query(Package).count()


def stored_files(app):
    root = Path(app.config["DATA_DIR"]) / "packages"
    return sorted(p.name for p in root.rglob("*") if p.is_file())


@pytest.fixture
def project(make):
    return make.project("tanuki/awesome_project")


# Generic packages

def test_generic_upload_and_download_with_deploy_token_header(app, client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    body = b"hello package\n" * 100
    put = client.put(generic_url(project.id), data=body, headers={"Deploy-Token": secret})
    assert put.status_code == 201, put.get_data(as_text=True)
    assert put.json == {"message": "201 Created"}

    got = client.get(generic_url(project.id), headers={"Deploy-Token": secret})
    assert got.status_code == 200
    assert got.data == body
    digest = hashlib.sha256(body).hexdigest()
    assert got.headers["ETag"] == f'"{digest}"'
    assert got.headers["Content-Length"] == str(len(body))
    assert "attachment" in got.headers["Content-Disposition"]
    assert "tool.bin" in got.headers["Content-Disposition"]
    # Stored once, at its content address, with nothing left in tmp.
    path = Path(app.config["DATA_DIR"]) / "packages" / "sha256" / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == body
    assert stored_files(app) == [digest]

    again = client.get(generic_url(project.id), headers={"Deploy-Token": secret,
                                                         "If-None-Match": f'"{digest}"'})
    assert again.status_code == 304


def test_generic_upload_can_answer_with_the_stored_file(client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    put = client.put(generic_url(project.id) + "?select=package_file", data=b"abc",
                     headers={"Deploy-Token": secret})
    assert put.status_code == 201
    assert put.json["file_sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert put.json["size"] == 3 and put.json["file_name"] == "tool.bin"


def test_generic_accepts_the_url_encoded_full_path(client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    url = generic_url("tanuki%2Fawesome_project")
    assert client.put(url, data=b"x", headers=basic(username, secret)).status_code == 201
    assert client.get(generic_url(project.id), headers=basic(username, secret)).data == b"x"
    assert client.get(url, headers=basic(username, secret)).data == b"x"


def test_reuploading_a_file_keeps_both_and_serves_the_newest(app, client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    headers = {"Deploy-Token": secret}
    assert client.put(generic_url(project.id), data=b"old", headers=headers).status_code == 201
    assert client.put(generic_url(project.id), data=b"new", headers=headers).status_code == 201
    assert client.get(generic_url(project.id), headers=headers).data == b"new"
    assert rows(app) == (2, 1)


def test_invalid_generic_coordinates_are_refused(app, client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    response = client.put(generic_url(project.id, version="..evil"), data=b"x",
                          headers={"Deploy-Token": secret})
    assert response.status_code == 400
    assert "package_version is invalid" in response.json["error"]
    assert rows(app) == (0, 0) and stored_files(app) == []


def test_a_file_over_the_size_limit_gets_413_and_leaves_nothing(app, client, make, project):
    app.config["MAX_PACKAGE_SIZE"] = 1000
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    response = client.put(generic_url(project.id), data=b"x" * 1001,
                          headers={"Deploy-Token": secret})
    assert response.status_code == 413
    assert rows(app) == (0, 0) and stored_files(app) == []

    # Without a Content-Length the limit is enforced while streaming.
    response = client.put(generic_url(project.id), input_stream=io.BytesIO(b"y" * 5000),
                          headers={"Deploy-Token": secret, "Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert rows(app) == (0, 0) and stored_files(app) == []


def test_missing_file_is_404(client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["read_package_registry"])
    response = client.get(generic_url(project.id), headers={"Deploy-Token": secret})
    assert response.status_code == 404


# The policy table, through the generic endpoints

@pytest.mark.parametrize("scopes, method, status", [
    (["read_package_registry"], "GET", 200),
    (["read_package_registry"], "PUT", 403),
    (["write_package_registry"], "GET", 200),
    (["write_package_registry"], "PUT", 201),
    (["read_repository", "read_registry"], "GET", 403),
])
def test_deploy_token_scopes(client, make, project, scopes, method, status):
    _, _, writer = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    assert client.put(generic_url(project.id), data=b"x", headers={"Deploy-Token": writer}).status_code == 201
    _, username, secret = make.token("tanuki/awesome_project", scopes, name="t")
    response = client.open(generic_url(project.id), method=method, data=b"y" if method == "PUT" else None,
                           headers=basic(username, secret))
    assert response.status_code == status


def test_refused_credentials(client, make, project):
    make.project("tanuki/other")
    url = generic_url(project.id)
    _, user, revoked = make.token("tanuki/awesome_project", ["write_package_registry"], revoked=True)
    _, _, expired = make.token("tanuki/awesome_project", ["write_package_registry"],
                               expires_at=utcnow() - timedelta(hours=1))
    _, _, other = make.token("tanuki/other", ["write_package_registry"])
    _, good_user, good = make.token("tanuki/awesome_project", ["write_package_registry"])

    none = client.put(url, data=b"x")
    assert none.status_code == 401
    assert none.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert client.put(url, data=b"x", headers={"Deploy-Token": revoked}).status_code == 401
    assert client.put(url, data=b"x", headers={"Deploy-Token": expired}).status_code == 401
    assert client.put(url, data=b"x", headers={"Deploy-Token": other}).status_code == 404
    assert client.put(url, data=b"x", headers=basic("someone-else", good)).status_code == 401
    assert client.put(url, data=b"x", headers={"Authorization": "Bearer " + good}).status_code == 201
    assert client.put(url, data=b"x", headers=basic(good_user, good)).status_code == 201
    # Unknown projects answer like projects the caller cannot see.
    assert client.get(generic_url(99999), headers={"Deploy-Token": good}).status_code == 404
    assert client.get(generic_url(99999)).status_code == 401


def test_personal_access_tokens_read_with_read_api_and_write_with_api(client, make, project):
    dev = make.user("dev")
    make.member("tanuki", dev, "developer")
    writer, reader = make.pat(dev, ("api",)), make.pat(dev, ("read_api",), name="ro")
    assert client.put(generic_url(project.id), data=b"x",
                      headers={"Private-Token": writer}).status_code == 201
    assert client.put(generic_url(project.id), data=b"y",
                      headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    assert client.get(generic_url(project.id),
                      headers={"Private-Token": reader}).data == b"x"
    outsider = make.pat(make.user("outsider"))
    assert client.get(generic_url(project.id),
                      headers={"Private-Token": outsider}).status_code == 404
    revoked = make.pat(dev, ("api",), name="gone", revoked=True)
    assert client.get(generic_url(project.id),
                      headers={"Private-Token": revoked}).status_code == 401


def test_group_token_reaches_projects_below_its_group(client, make):
    project = make.project("tanuki/infra/deploy")
    make.project("other/thing")
    _, _, secret = make.token("tanuki", ["write_package_registry"])
    assert client.put(generic_url(project.id), data=b"x", headers={"Deploy-Token": secret}).status_code == 201
    assert client.put(generic_url("other%2Fthing"), data=b"x",
                      headers={"Deploy-Token": secret}).status_code == 404


def test_users_by_role_and_public_projects(client, make, project):
    public = make.project("tanuki/website", visibility="public")
    reporter, developer = make.user("rep"), make.user("dev")
    make.member("tanuki", reporter, "reporter")
    make.member("tanuki", developer, "developer")
    from tests.conftest import PASSWORD
    assert client.put(generic_url(project.id), data=b"x",
                      headers=basic("rep", PASSWORD)).status_code == 403
    assert client.put(generic_url(project.id), data=b"x",
                      headers=basic("dev", PASSWORD)).status_code == 201
    assert client.get(generic_url(project.id), headers=basic("rep", PASSWORD)).status_code == 200
    assert client.put(generic_url(public.id), data=b"p", headers=basic("dev", PASSWORD)).status_code == 201
    assert client.get(generic_url(public.id)).data == b"p"
    assert client.put(generic_url(public.id), data=b"p").status_code == 401


def test_token_use_is_recorded(app, client, make, project):
    token_id, _, secret = make.token("tanuki/awesome_project", ["read_package_registry"])
    client.get(generic_url(project.id), headers={"Deploy-Token": secret})
    with app.app_context():
        from webapp.models import DeployToken
        assert db.session.get(DeployToken, token_id).last_used_at is not None


# PyPI

def multipart(fields, file_name, content, boundary="gatehouse-boundary"):
    out = io.BytesIO()
    for key, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                  f"{value}\r\n".encode())
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
              f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())
    out.write(content + f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def pypi_upload(client, project_id, headers, *, name="my-pkg", version="1.0", content=b"wheel",
                file_name="my_pkg-1.0-py3-none-any.whl", sha256=None, requires=">=3.8"):
    fields = {":action": "file_upload", "protocol_version": "1", "name": name,
              "version": version, "filetype": "bdist_wheel", "requires_python": requires,
              "sha256_digest": sha256 or hashlib.sha256(content).hexdigest()}
    body, content_type = multipart(fields, file_name, content)
    return client.post(f"/api/v4/projects/{project_id}/packages/pypi", data=body,
                       headers={**headers, "Content-Type": content_type})


def test_pypi_upload_and_simple_index(app, client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = basic(username, secret)
    response = pypi_upload(client, project.id, auth, name="My_Pkg")
    assert response.status_code == 201, response.get_data(as_text=True)

    index = client.get(f"/api/v4/projects/{project.id}/packages/pypi/simple/", headers=auth)
    assert index.status_code == 200 and 'href="my-pkg/"' in index.get_data(as_text=True)
    links = client.get(f"/api/v4/projects/{project.id}/packages/pypi/simple/my-pkg/", headers=auth)
    html = links.get_data(as_text=True)
    digest = hashlib.sha256(b"wheel").hexdigest()
    assert links.headers["Content-Type"].startswith("text/html")
    assert f"#sha256={digest}" in html
    assert 'data-requires-python="&gt;=3.8"' in html
    href = html.split('href="')[1].split("#")[0]
    assert href.startswith("http://gatehouse.test/api/v4/projects/")
    download = client.get(href.replace("http://gatehouse.test", ""), headers=auth)
    assert download.data == b"wheel"

    redirect = client.get(f"/api/v4/projects/{project.id}/packages/pypi/simple/My_Pkg/", headers=auth)
    assert redirect.status_code == 301
    assert redirect.headers["Location"].endswith("/packages/pypi/simple/my-pkg/")


def test_pypi_digest_mismatch_leaves_nothing(app, client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    response = pypi_upload(client, project.id, basic(username, secret), sha256="0" * 64)
    assert response.status_code == 400
    assert "sha256_digest does not match" in response.json["error"]
    assert rows(app) == (0, 0) and stored_files(app) == []


def test_pypi_duplicate_file_name_is_a_clear_400(app, client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = basic(username, secret)
    assert pypi_upload(client, project.id, auth).status_code == 201
    again = pypi_upload(client, project.id, auth, content=b"other bytes")
    assert again.status_code == 400
    assert "File name has already been taken" in again.json["error"]
    assert rows(app) == (1, 1)
    assert stored_files(app) == [hashlib.sha256(b"wheel").hexdigest()]


def test_pypi_read_only_token_cannot_upload(client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["read_package_registry"])
    assert pypi_upload(client, project.id, basic(username, secret)).status_code == 403


def test_group_index_covers_subgroups_and_only_readable_projects(client, make):
    a = make.project("tanuki/a")
    b = make.project("tanuki/infra/b")
    c = make.project("elsewhere/c")
    _, wu, ws = make.token("tanuki", ["write_package_registry"])
    _, eu, es = make.token("elsewhere", ["write_package_registry"])
    assert pypi_upload(client, a.id, basic(wu, ws), name="alpha",
                       file_name="alpha-1.0-py3-none-any.whl").status_code == 201
    assert pypi_upload(client, b.id, basic(wu, ws), name="beta",
                       file_name="beta-1.0-py3-none-any.whl").status_code == 201
    assert pypi_upload(client, c.id, basic(eu, es), name="gamma",
                       file_name="gamma-1.0-py3-none-any.whl").status_code == 201
    _, ru, rs = make.token("tanuki", ["read_package_registry"])
    index = client.get("/api/v4/groups/tanuki/-/packages/pypi/simple/", headers=basic(ru, rs))
    html = index.get_data(as_text=True)
    assert index.status_code == 200
    assert "alpha" in html and "beta" in html and "gamma" not in html
    links = client.get("/api/v4/groups/tanuki/-/packages/pypi/simple/beta/", headers=basic(ru, rs))
    assert f"/api/v4/projects/{b.id}/packages/pypi/files/" in links.get_data(as_text=True)
    assert client.get("/api/v4/groups/elsewhere/-/packages/pypi/simple/",
                      headers=basic(ru, rs)).status_code == 404
    assert client.get("/api/v4/groups/tanuki/-/packages/pypi/simple/").status_code == 401


# npm

def npm_document(name, version, tarball=b"fake tarball bytes", tags=None, shasum=None):
    file_name = f"{name.rpartition('/')[2]}-{version}.tgz"
    return {
        "_id": name, "name": name, "dist-tags": tags or {"latest": version},
        "versions": {version: {"name": name, "version": version, "description": "demo",
                               "dist": {"shasum": shasum or hashlib.sha1(tarball).hexdigest(),
                                        "integrity": "sha512-" + base64.b64encode(
                                            hashlib.sha512(tarball).digest()).decode(),
                                        "tarball": f"http://x/{name}/-/{file_name}"}}},
        "_attachments": {f"{name}-{version}.tgz": {
            "content_type": "application/octet-stream",
            "data": base64.b64encode(tarball).decode(), "length": len(tarball)}},
    }


def test_npm_publish_metadata_tarball_and_republish(app, client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    bearer = {"Authorization": f"Bearer {secret}"}
    base = f"/api/v4/projects/{project.id}/packages/npm"
    put = client.put(f"{base}/@tanuki%2fwidget", json=npm_document("@tanuki/widget", "1.0.0"),
                     headers=bearer)
    assert put.status_code == 201, put.get_data(as_text=True)

    meta = client.get(f"{base}/@tanuki%2fwidget", headers=bearer)
    assert meta.status_code == 200
    doc = meta.json
    assert doc["dist-tags"] == {"latest": "1.0.0"}
    dist = doc["versions"]["1.0.0"]["dist"]
    assert dist["shasum"] == hashlib.sha1(b"fake tarball bytes").hexdigest()
    assert dist["integrity"] == "sha512-" + base64.b64encode(
        hashlib.sha512(b"fake tarball bytes").digest()).decode()
    assert dist["tarball"] == (f"http://gatehouse.test{base}/@tanuki/widget/-/@tanuki/"
                               "widget-1.0.0.tgz")
    tarball = client.get(dist["tarball"].replace("http://gatehouse.test", ""), headers=bearer)
    assert tarball.status_code == 200 and tarball.data == b"fake tarball bytes"

    again = client.put(f"{base}/@tanuki%2fwidget", json=npm_document("@tanuki/widget", "1.0.0"),
                       headers=bearer)
    assert again.status_code == 403
    assert "previously published version 1.0.0" in again.json["error"]
    assert rows(app) == (1, 1)


def test_npm_dist_tags(client, make, project):
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    bearer = {"Authorization": f"Bearer {secret}"}
    base = f"/api/v4/projects/{project.id}/packages/npm"
    for version in ("1.0.0", "2.0.0-beta.1"):
        tags = {"latest": version} if version == "1.0.0" else {"beta": version}
        assert client.put(f"{base}/plain-pkg", json=npm_document("plain-pkg", version, tags=tags,
                                                                 tarball=version.encode()),
                          headers=bearer).status_code == 201
    assert client.get(f"{base}/-/package/plain-pkg/dist-tags", headers=bearer).json == {
        "beta": "2.0.0-beta.1", "latest": "1.0.0"}
    assert client.put(f"{base}/-/package/plain-pkg/dist-tags/stable", data='"1.0.0"',
                      headers=bearer).status_code == 204
    assert client.delete(f"{base}/-/package/plain-pkg/dist-tags/beta", headers=bearer).status_code == 204
    assert client.get(f"{base}/plain-pkg", headers=bearer).json["dist-tags"] == {
        "latest": "1.0.0", "stable": "1.0.0"}


def test_npm_bad_shasum_and_read_only_token(app, client, make, project):
    _, _, writer = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    _, _, reader = make.token("tanuki/awesome_project", ["read_package_registry"], name="r")
    base = f"/api/v4/projects/{project.id}/packages/npm"
    bad = client.put(f"{base}/pkg", json=npm_document("pkg", "1.0.0", shasum="0" * 40),
                     headers={"Authorization": f"Bearer {writer}"})
    assert bad.status_code == 400
    assert client.put(f"{base}/pkg", json=npm_document("pkg", "1.0.0"),
                      headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    assert client.get(f"{base}/pkg", headers={"Authorization": f"Bearer {reader}"}).status_code == 404
    assert rows(app) == (0, 0) and stored_files(app) == []


# Storage

def test_gc_removes_abandoned_temp_files_at_once_and_unreferenced_content(app, client, make,
                                                                          project):
    from webapp.services import package_storage

    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    client.put(generic_url(project.id), data=b"kept", headers={"Deploy-Token": secret})
    root = Path(app.config["DATA_DIR"]) / "packages"
    abandoned = root / "tmp" / "upload-crashed-1234-abcd"
    abandoned.write_bytes(b"x")  # nobody holds its lock: its writer is gone, however young
    two_days_ago = time.time() - 2 * 86400
    orphan = root / "sha256" / "ff" / "ff" / ("ff" * 32)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"z")
    os.utime(orphan, (two_days_ago, two_days_ago))
    with app.app_context():
        in_flight = package_storage.Upload.start()
        in_flight.write(b"still arriving")

    result = app.test_cli_runner().invoke(args=["packages", "gc"])
    assert result.exit_code == 0, result.output
    assert "Removed 1 temp file(s), 0 spool file(s) and 1 unreferenced file(s)" in result.output
    assert not abandoned.exists() and not orphan.exists()
    assert in_flight.path.exists(), "a live upload's temp file must survive gc"
    with app.app_context():
        in_flight.discard()
    assert client.get(generic_url(project.id), headers={"Deploy-Token": secret}).data == b"kept"
    assert list((root / "tmp").iterdir()) == []


def test_gc_removes_spool_files_only_once_nothing_can_still_use_them(app):
    """nginx's spool files carry no lock: age says when no body or answer is in flight."""
    spool = Path(app.config["DATA_DIR"]) / "packages" / "spool"
    spool.mkdir(parents=True)
    body_timeout, timeout = app.config["BODY_TIMEOUT"], app.config["TIMEOUT"]
    stale, young = spool / "0000000001", spool / "0000000002"
    stale.write_bytes(b"crashed")
    young.write_bytes(b"arriving")
    before = time.time() - body_timeout - timeout - 61
    os.utime(stale, (before, before))

    result = app.test_cli_runner().invoke(args=["packages", "gc"])
    assert result.exit_code == 0, result.output
    assert "1 spool file(s)" in result.output
    assert not stale.exists() and young.exists()
    # `make run` at start, before its nginx runs: every spool file is a leftover.
    result = app.test_cli_runner().invoke(args=["packages", "gc", "--spool-age", "0"])
    assert "1 spool file(s)" in result.output and not young.exists()


# The Packages page

def test_packages_page_lists_files_and_install_commands(app, client, auth, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    client.put(generic_url(project.id), data=b"abc", headers={"Deploy-Token": secret})
    pypi_upload(client, project.id, basic(username, secret))
    reporter = make.user("rep")
    make.member("tanuki/awesome_project", reporter, "reporter")
    auth.login("rep")
    page = client.get("/tanuki/awesome_project/-/packages")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "tool.bin" in html and hashlib.sha256(b"abc").hexdigest() in html
    assert "my_pkg-1.0-py3-none-any.whl" in html
    assert (f"--index-url http://&lt;username&gt;:&lt;deploy_token&gt;@gatehouse.test/api/v4/"
            f"projects/{project.id}/packages/pypi/simple") in html
    assert "Deploy-Token: &lt;deploy_token&gt;" in html
    project_page = client.get("/tanuki/awesome_project").get_data(as_text=True)
    assert "/tanuki/awesome_project/-/packages" in project_page


def test_packages_page_empty_state_and_pages(app, client, auth, make, project):
    app.config["PER_PAGE"] = 2
    user = make.user("dev")
    make.member("tanuki", user, "developer")
    auth.login("dev")
    assert "There are no packages yet." in client.get(
        "/tanuki/awesome_project/-/packages").get_data(as_text=True)
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    for n in range(5):
        client.put(generic_url(project.id, version=f"1.0.{n}"), data=b"x",
                   headers={"Deploy-Token": secret})
    first = client.get("/tanuki/awesome_project/-/packages").get_data(as_text=True)
    assert "Page 1 of 3" in first and "1.0.4" in first and "1.0.0" not in first
    last = client.get("/tanuki/awesome_project/-/packages?page=3", headers={"HX-Request": "true"})
    assert "1.0.0" in last.get_data(as_text=True) and "<html" not in last.get_data(as_text=True)


def test_packages_page_is_hidden_from_guests_and_strangers(client, auth, make, project):
    guest = make.user("guest")
    make.member("tanuki", guest, "guest")
    assert client.get("/tanuki/awesome_project/-/packages").status_code == 404
    auth.login("guest")
    assert client.get("/tanuki/awesome_project/-/packages").status_code == 404
    assert "/-/packages" not in client.get("/tanuki/awesome_project").get_data(as_text=True)



def test_a_failed_commit_leaves_no_row_and_no_file(app, make, project, monkeypatch):
    from webapp.services import accounts, package_storage, packages

    with app.app_context():
        target = accounts.find_project(project.full_path)
        upload = package_storage.receive(io.BytesIO(b"doomed"), length=6)

        def broken_commit():
            raise RuntimeError("database went away")

        monkeypatch.setattr(db.session, "commit", broken_commit)
        with pytest.raises(RuntimeError):
            packages.add_file(target, "generic", "tool", "1.0.0", upload, file_name="tool.bin")
        monkeypatch.undo()
    assert rows(app) == (0, 0)
    assert stored_files(app) == []


def test_pypi_upload_needs_a_multipart_form_with_content(app, client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    url = f"/api/v4/projects/{project.id}/packages/pypi"
    not_a_form = client.post(url, data=b"{}", headers={**basic(username, secret),
                                                       "Content-Type": "application/json"})
    assert not_a_form.status_code == 400 and "multipart/form-data" in not_a_form.json["error"]
    body = (b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\npkg\r\n--b--\r\n')
    no_file = client.post(url, data=body, headers={**basic(username, secret),
                                                   "Content-Type": "multipart/form-data; boundary=b"})
    assert no_file.status_code == 400 and "content is missing" in no_file.json["error"]
    bad_name = pypi_upload(client, project.id, basic(username, secret), file_name="../../evil.whl")
    assert bad_name.status_code == 400
    assert rows(app) == (0, 0) and stored_files(app) == []


def test_project_and_group_refs_with_unencoded_slashes_are_taken_as_meant(client, make):
    project = make.project("tanuki/infra/deploy")
    _, username, secret = make.token("tanuki/infra", ["write_package_registry"])
    url = generic_url("tanuki/infra/deploy")
    assert client.put(url, data=b"x", headers=basic(username, secret)).status_code == 201
    assert client.get(generic_url(project.id), headers=basic(username, secret)).data == b"x"
    assert pypi_upload(client, "tanuki%2Finfra%2Fdeploy", basic(username, secret)).status_code == 201
    html = client.get("/api/v4/groups/tanuki/infra/-/packages/pypi/simple/",
                      headers=basic(username, secret)).get_data(as_text=True)
    assert "my-pkg" in html


def test_pypi_form_with_long_metadata_and_many_classifiers(app, client, make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    content = b"sdist bytes"
    fields = [(":action", "file_upload"), ("name", "long-pkg"), ("version", "2.0"),
              ("md5_digest", hashlib.md5(content).hexdigest()),
              ("description", "README " * 100_000)]
    fields += [("classifiers", f"Topic :: Thing {n}") for n in range(200)]
    boundary = "b0und"
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields)
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
             f'filename="long_pkg-2.0.tar.gz"\r\n\r\n').encode() + content
    body += f"\r\n--{boundary}--\r\n".encode()
    response = client.post(f"/api/v4/projects/{project.id}/packages/pypi", data=body,
                           headers={**basic(username, secret),
                                    "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 201, response.get_data(as_text=True)
    with app.app_context():
        row = db.session.query(PackageFile).one()
        assert row.file_md5 == hashlib.md5(content).hexdigest()


def test_group_index_for_a_member_with_a_password(client, make):
    from tests.conftest import PASSWORD
    project = make.project("tanuki/infra/lib")
    _, wu, ws = make.token("tanuki/infra/lib", ["write_package_registry"])
    assert pypi_upload(client, project.id, basic(wu, ws)).status_code == 201
    reporter = make.user("rep")
    make.user("stranger")
    make.member("tanuki", reporter, "reporter")
    url = "/api/v4/groups/tanuki/-/packages/pypi/simple/my-pkg/"
    assert "my_pkg-1.0-py3-none-any.whl" in client.get(
        url, headers=basic("rep", PASSWORD)).get_data(as_text=True)
    assert client.get(url, headers=basic("stranger", PASSWORD)).status_code == 404
    assert client.get(url, headers=basic("rep", "wrong-password")).status_code == 401


def test_a_spooled_body_is_adopted_by_rename_or_removed_when_it_fails_a_check(app):
    """What the app does with the file nginx wrote: hash, fsync, rename; or drop it."""
    from webapp.services import package_storage

    spool = Path(app.config["DATA_DIR"]) / "packages" / "spool"
    spool.mkdir(parents=True)
    body = b"spooled by nginx" * 1000
    with app.app_context():
        kept = spool / "0000000001"
        kept.write_bytes(body)
        upload = package_storage.adopt(kept, length=len(body), algorithms=("md5", "sha1"))
        assert upload.digests == {"sha256": hashlib.sha256(body).hexdigest(),
                                  "md5": hashlib.md5(body).hexdigest(),
                                  "sha1": hashlib.sha1(body).hexdigest()}
        target = upload.store()
        assert target.read_bytes() == body and not kept.exists()

        short = spool / "0000000002"
        short.write_bytes(body)
        with pytest.raises(package_storage.Incomplete):
            package_storage.adopt(short, length=len(body) + 1)
        big = spool / "0000000003"
        big.write_bytes(body)
        with pytest.raises(package_storage.TooLarge):
            package_storage.adopt(big, length=None, limit=len(body) - 1)
    assert list(spool.iterdir()) == []


# A body too large or cut short: each format answers in its own shape and keeps nothing

def _cut_short(client, method, path, body, headers):
    """The client announces more than it sends (a dropped connection, as WSGI sees it)."""
    return client.open(path, method=method, input_stream=io.BytesIO(body), headers=headers,
                       environ_overrides={"CONTENT_LENGTH": str(len(body) + 100)})


def _chunked(client, method, path, body, headers):
    return client.open(path, method=method, input_stream=io.BytesIO(body),
                       headers={**headers, "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


@pytest.mark.parametrize("fmt", ["generic", "maven", "pypi"])
def test_a_body_too_large_or_cut_short_is_answered_in_the_formats_shape(app, client, make,
                                                                        project, fmt):
    app.config["MAX_PACKAGE_SIZE"] = 1000
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    headers = {"Deploy-Token": secret}
    if fmt == "generic":
        method, path, small, big = "PUT", generic_url(project.id), b"x" * 10, b"y" * 5000
    elif fmt == "maven":
        method, path = "PUT", f"/api/v4/projects/{project.id}/packages/maven/org/ex/a/1.0/a-1.0.jar"
        small, big = b"x" * 10, b"y" * 5000
    else:
        method, path = "POST", f"/api/v4/projects/{project.id}/packages/pypi"
        small, content_type = multipart({"name": "p", "version": "1"}, "p-1.whl", b"x" * 10)
        big, _ = multipart({"name": "p", "version": "1"}, "p-1.whl", b"y" * 5000)
        headers["Content-Type"] = content_type

    cut = _cut_short(client, method, path, small, headers)
    too_large = _chunked(client, method, path, big, headers)

    assert cut.status_code == 400 and too_large.status_code == 413
    assert too_large.headers["Connection"] == "close"
    if fmt == "maven":  # mvn shows only the status line: the reason is there, in plain text
        assert cut.status.startswith("400 upload incomplete: the client stopped sending")
        assert too_large.status.startswith("413 File is too large (maximum is 1000 bytes)")
        assert cut.mimetype == too_large.mimetype == "text/plain"
    else:
        assert cut.json["error"].startswith("upload incomplete: the client stopped sending")
        assert too_large.json == {"message": "413 Payload Too Large",
                                  "error": "File is too large (maximum is 1000 bytes)"}
    assert rows(app) == (0, 0) and stored_files(app) == []
    assert not any((Path(app.config["DATA_DIR"]) / "packages" / "tmp").glob("*"))

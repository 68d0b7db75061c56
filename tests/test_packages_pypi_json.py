"""PEP 691: the simple index as JSON or HTML by content negotiation."""
import base64
import hashlib

PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
              "text/html; q=0.01")


def basic(username, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def upload(client, project_id, auth, name="demo", version="1.0", content=b"wheel bytes"):
    return client.post(f"/api/v4/projects/{project_id}/packages/pypi", headers=auth, data={
        ":action": "file_upload", "name": name, "version": version, "requires_python": ">=3.8",
        "content": (__import__("io").BytesIO(content), f"{name}-{version}-py3-none-any.whl")},
        content_type="multipart/form-data")


def test_json_and_html_by_accept_for_project_and_group(client, make):
    project = make.project("tanuki/awesome_project")
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = basic(username, secret)
    assert upload(client, project.id, auth).status_code == 201
    _, gname, gsecret = make.token("tanuki", ["read_package_registry"], name="group")
    for base, auth in ((f"/api/v4/projects/{project.id}/packages/pypi/simple", auth),
                       ("/api/v4/groups/tanuki/-/packages/pypi/simple", basic(gname, gsecret))):
        index = client.get(f"{base}/", headers={**auth, "Accept": PIP_ACCEPT})
        assert index.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        assert "Accept" in index.headers["Vary"]
        assert index.json == {"meta": {"api-version": "1.0"}, "projects": [{"name": "demo"}]}
        page = client.get(f"{base}/demo/", headers={**auth, "Accept": PIP_ACCEPT}).json
        assert page["name"] == "demo" and page["meta"] == {"api-version": "1.0"}
        [entry] = page["files"]
        assert entry["filename"] == "demo-1.0-py3-none-any.whl"
        assert entry["hashes"] == {"sha256": hashlib.sha256(b"wheel bytes").hexdigest()}
        assert entry["requires-python"] == ">=3.8"
        assert client.get(entry["url"].replace("http://gatehouse.test", ""),
                          headers=auth).data == b"wheel bytes"
        for accept in (None, "text/html", "*/*",
                       "application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.v1+json;q=0.5"):
            headers = {**auth, **({"Accept": accept} if accept else {})}
            html = client.get(f"{base}/demo/", headers=headers)
            assert html.mimetype == "text/html", accept
            assert "demo-1.0-py3-none-any.whl" in html.get_data(as_text=True)


def _wheel(metadata: bytes, name="demo", version="2.0") -> bytes:
    """A wheel's zip, with its METADATA (content beside it does not matter here)."""
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return buffer.getvalue()


def test_a_wheels_core_metadata_is_announced_and_served(client, make):
    """PEP 658/714: pip resolves from `<wheel URL>.metadata` without the wheel."""
    project = make.project("tanuki/awesome_project")
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = basic(username, secret)
    metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 2.0\nRequires-Dist: attrs\n"
    assert upload(client, project.id, auth, version="2.0", content=_wheel(metadata)).status_code == 201
    assert upload(client, project.id, auth, version="1.0").status_code == 201  # not a zip
    base = f"/api/v4/projects/{project.id}/packages/pypi/simple/demo/"
    files = {f["filename"]: f for f in client.get(base, headers={**auth, "Accept": PIP_ACCEPT}).json["files"]}
    digest = hashlib.sha256(metadata).hexdigest()
    wheel = files["demo-2.0-py3-none-any.whl"]
    assert wheel["core-metadata"] == wheel["dist-info-metadata"] == {"sha256": digest}
    assert "core-metadata" not in files["demo-1.0-py3-none-any.whl"]
    served = client.get(wheel["url"].replace("http://gatehouse.test", "") + ".metadata", headers=auth)
    assert served.status_code == 200 and served.data == metadata
    broken = files["demo-1.0-py3-none-any.whl"]["url"].replace("http://gatehouse.test", "")
    assert client.get(broken + ".metadata", headers=auth).status_code == 404
    assert client.get(wheel["url"].replace("http://gatehouse.test", "") + ".metadata").status_code == 401
    html = client.get(base, headers=auth).get_data(as_text=True)
    assert f'data-core-metadata="sha256={digest}"' in html
    assert f'data-dist-info-metadata="sha256={digest}"' in html

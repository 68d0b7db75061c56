"""No pooled database connection is checked out while a package body streams.

SQLAlchemy's pool events count checkouts and checkins; the request body is a probe
that notes that count each time the view reads from it, and a download is read the
same way while it streams.
"""
import base64
import hashlib
import io
import json

import pytest
import sqlalchemy as sa

from webapp.extensions import db


class PoolWatch:
    def __init__(self, engine):
        self.engine, self.out = engine, 0
        sa.event.listen(engine.pool, "checkout", self._checkout)
        sa.event.listen(engine.pool, "checkin", self._checkin)

    def _checkout(self, *args):
        self.out += 1

    def _checkin(self, *args):
        self.out -= 1

    def close(self):
        sa.event.remove(self.engine.pool, "checkout", self._checkout)
        sa.event.remove(self.engine.pool, "checkin", self._checkin)


class ProbeBody(io.BytesIO):
    """A request body that records how many connections were out at every read."""

    def __init__(self, data: bytes, watch: PoolWatch):
        super().__init__(data)
        self.watch, self.seen = watch, []

    def read(self, size=-1):
        self.seen.append(self.watch.out)
        return super().read(size)

    def read1(self, size=-1):
        self.seen.append(self.watch.out)
        return super().read1(size)

    def readinto(self, buffer):
        self.seen.append(self.watch.out)
        return super().readinto(buffer)


@pytest.fixture
def watch(app):
    with app.app_context():
        engine = db.engine
    watch = PoolWatch(engine)
    yield watch
    watch.close()


def send(client, method, path, data, headers, watch, content_type="application/octet-stream"):
    body = ProbeBody(data, watch)
    response = client.open(path, method=method, input_stream=body,
                           headers={**headers, "Content-Length": str(len(data)),
                                    "Content-Type": content_type})
    return response, body.seen


def multipart(fields, file_name, content):
    boundary = "gatehouse-probe"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def npm_document(name, version, tarball):
    return json.dumps({
        "name": name, "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version}},
        "_attachments": {f"{name}-{version}.tgz": {
            "data": base64.b64encode(tarball).decode(), "length": len(tarball)}}}).encode()


def test_uploads_read_their_body_with_no_connection_checked_out(client, make, watch):
    project = make.project("tanuki/awesome_project")
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = {"Deploy-Token": secret}
    payload = b"0123456789abcdef" * 4096
    wheel_body, wheel_type = multipart(
        {":action": "file_upload", "name": "demo", "version": "1.0",
         "sha256_digest": hashlib.sha256(payload).hexdigest()}, "demo-1.0-py3-none-any.whl", payload)
    cases = {
        "generic": ("PUT", f"/api/v4/projects/{project.id}/packages/generic/app/1.0/app.bin",
                    payload, "application/octet-stream", 201),
        "maven": ("PUT", f"/api/v4/projects/{project.id}/packages/maven/com/example/app/1.0/app-1.0.jar",
                  payload, "application/octet-stream", 200),
        "pypi": ("POST", f"/api/v4/projects/{project.id}/packages/pypi", wheel_body, wheel_type, 201),
        "npm": ("PUT", f"/api/v4/projects/{project.id}/packages/npm/widget",
                npm_document("widget", "1.0.0", payload), "application/json", 201),
    }
    for case, (method, path, data, content_type, status) in cases.items():
        response, seen = send(client, method, path, data, auth, watch, content_type)
        assert response.status_code == status, (case, response.get_data(as_text=True))
        assert seen and set(seen) == {0}, f"{case}: connections out while reading: {seen}"


def test_downloads_stream_with_no_connection_checked_out(client, make, watch):
    project = make.project("tanuki/awesome_project")
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = {"Deploy-Token": secret}
    for path in (f"/api/v4/projects/{project.id}/packages/generic/app/1.0/app.bin",
                 f"/api/v4/projects/{project.id}/packages/maven/com/example/app/1.0/app-1.0.jar"):
        assert client.put(path, data=b"x" * 100_000, headers=auth).status_code in (200, 201)
        response = client.get(path, headers=auth, buffered=False)
        assert response.status_code == 200
        seen = []
        for chunk in response.response:
            seen.append(watch.out)
        response.close()
        assert seen and set(seen) == {0}, f"{path}: connections out while streaming: {seen}"

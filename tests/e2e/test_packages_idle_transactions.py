"""A slow upload on PostgreSQL with `idle_in_transaction_session_timeout` still succeeds.

The server's sessions are killed after one second idle inside a transaction. Each upload
sends its body in three pieces with pauses longer than that: had the door kept the
transaction of its credential and project reads open while the body arrived, the final
write would fail with a 500.
"""
import base64
import hashlib
import http.client
import json
import time

import pytest

from ..conftest import gunicorn

TIMEOUT_MS = 1000
PAUSE = 1.5  # seconds between pieces: longer than the server's idle timeout


@pytest.fixture
def strict_server(migrated, tmp_path):
    if not migrated.startswith("postgres"):
        pytest.skip("idle_in_transaction_session_timeout is PostgreSQL's")
    sep = "&" if "?" in migrated else "?"
    url = (f"{migrated}{sep}options=-c%20idle_in_transaction_session_timeout%3D{TIMEOUT_MS}")
    with gunicorn(url, tmp_path / "data", tmp_path, workers=1) as server:
        yield server


def slow_request(port, method, path, headers, body: bytes, pieces=3):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest(method, path)
    for key, value in {**headers, "Content-Length": str(len(body))}.items():
        conn.putheader(key, value)
    conn.endheaders()
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        if start:
            time.sleep(PAUSE)
        conn.send(body[start:start + step])
    response = conn.getresponse()
    text = response.read().decode("utf-8", "replace")
    conn.close()
    return response.status, text


def test_slow_uploads_outlive_the_idle_transaction_timeout(strict_server, make):
    project = make.project("tanuki/awesome_project")
    _, _, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    auth = {"Deploy-Token": secret}
    base = f"/api/v4/projects/{project.id}/packages"
    # A first request records the token's use, so later requests have nothing to commit
    # before the body: only the door's own transaction handling is left to test.
    warm = http.client.HTTPConnection("127.0.0.1", strict_server.port, timeout=30)
    warm.request("GET", f"{base}/generic/none/1.0/none.bin", headers=auth)
    assert warm.getresponse().status == 404
    warm.close()

    payload = bytes(range(256)) * 2048
    tarball = b"\x1f\x8b npm tarball " * 1000
    npm = json.dumps({
        "name": "widget", "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": "widget", "version": "1.0.0"}},
        "_attachments": {"widget-1.0.0.tgz": {"data": base64.b64encode(tarball).decode(),
                                              "length": len(tarball)}}}).encode()
    cases = {
        "generic": ("PUT", f"{base}/generic/app/1.0/app.bin", payload, 201),
        "maven": ("PUT", f"{base}/maven/com/example/app/1.0/app-1.0.jar", payload, 200),
        "npm": ("PUT", f"{base}/npm/widget", npm, 201),
    }
    for case, (method, path, body, status) in cases.items():
        got, text = slow_request(strict_server.port, method, path,
                                 {**auth, "Content-Type": "application/octet-stream"}, body)
        assert got == status, f"{case}: {got} {text}"

    check = http.client.HTTPConnection("127.0.0.1", strict_server.port, timeout=30)
    check.request("GET", f"{base}/generic/app/1.0/app.bin", headers=auth)
    response = check.getresponse()
    assert hashlib.sha256(response.read()).hexdigest() == hashlib.sha256(payload).hexdigest()
    check.close()

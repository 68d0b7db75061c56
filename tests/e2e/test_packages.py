"""The package registries with the real clients (twine, pip, npm, curl) against gunicorn."""
import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp.models import utcnow

from ..conftest import gunicorn
from ..support import VENV_BIN, peak_rss_mb, require_binary

GENERIC = "{url}/api/v4/projects/{ref}/packages/generic/{name}/{version}/{file}"


def count_rows(url: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM package_files")).scalar()
    finally:
        engine.dispose()


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def wait_until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, **kw)


def write_wheel(directory: Path, name="demo_pkg", version="0.1.0") -> Path:
    """A minimal, valid pure-Python wheel, written by hand (no network, no build backend)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n',
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\n"
                                  f"Version: {version}\nSummary: Gatehouse test package\n"
                                  "Requires-Python: >=3.8\n"),
        f"{dist_info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: gatehouse-tests\n"
                               "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def client_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_", "NPM_", "npm_"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", NO_COLOR="1")
    return env


def twine_upload(live_server, project_id, username, secret, wheel, env):
    pypirc = wheel.parent / "pypirc"
    pypirc.write_text("")
    return run([str(VENV_BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
                "--config-file", str(pypirc),
                "--repository-url", f"{live_server.url}/api/v4/projects/{project_id}/packages/pypi",
                "--username", username, "--password", secret, str(wheel)], env=env)


def pip_install(index_url, target, env, spec="demo-pkg"):
    return run([sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir",
                "--disable-pip-version-check", "--no-deps", "--target", str(target),
                "--index-url", index_url, spec], env=env)


def with_credentials(url: str, username: str, secret: str) -> str:
    from urllib.parse import quote
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(username, safe='')}:{quote(secret, safe='')}@{rest}"


def test_twine_uploads_and_pip_installs_with_deploy_tokens(live_server, make, tmp_path):
    require_binary("twine")
    project = make.project("tanuki/infra/awesome_project")
    _, wuser, wsecret = make.token("tanuki/infra/awesome_project", ["write_package_registry"], name="w")
    _, ruser, rsecret = make.token("tanuki/infra/awesome_project", ["read_package_registry"], name="r")
    _, guser, gsecret = make.token("tanuki", ["read_package_registry"], name="group")
    env = client_env(tmp_path)
    wheel = write_wheel(tmp_path)

    upload = twine_upload(live_server, project.id, wuser, wsecret, wheel, env)
    assert upload.returncode == 0, upload.stdout + upload.stderr

    # A read-only token cannot upload, and the same file name is refused a second time.
    refused = twine_upload(live_server, project.id, ruser, rsecret, wheel, env)
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
    duplicate = twine_upload(live_server, project.id, wuser, wsecret, wheel, env)
    assert duplicate.returncode != 0 and "400" in duplicate.stdout + duplicate.stderr

    index = f"{live_server.url}/api/v4/projects/{project.id}/packages/pypi/simple"
    target = tmp_path / "site"
    installed = pip_install(with_credentials(index, ruser, rsecret), target, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (target / "demo_pkg" / "__init__.py").read_text() == 'VERSION = "0.1.0"\n'

    # The group-wide index covers projects in subgroups.
    group_index = f"{live_server.url}/api/v4/groups/tanuki/-/packages/pypi/simple"
    target2 = tmp_path / "site2"
    installed = pip_install(with_credentials(group_index, guser, gsecret), target2, env,
                            spec="Demo_Pkg==0.1.0")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (target2 / "demo_pkg" / "__init__.py").exists()

    # A wrong token installs nothing (pip only says "no matching distribution").
    target3 = tmp_path / "site3"
    failed = pip_install(with_credentials(index, ruser, "gldt-wrongwrongwrongwron"), target3, env)
    assert failed.returncode != 0 and not (target3 / "demo_pkg").exists()
    assert " 401 " in live_server.log.read_text()


def test_a_sha256_mismatch_leaves_nothing(live_server, make, migrated, tmp_path):
    import requests
    project = make.project("tanuki/awesome_project")
    _, user, secret = make.token("tanuki/awesome_project", ["write_package_registry"])
    wheel = write_wheel(tmp_path)
    response = requests.post(
        f"{live_server.url}/api/v4/projects/{project.id}/packages/pypi",
        auth=(user, secret), timeout=30,
        data={":action": "file_upload", "protocol_version": "1", "name": "demo-pkg",
              "version": "0.1.0", "sha256_digest": "ab" * 32},
        files={"content": (wheel.name, wheel.read_bytes())})
    assert response.status_code == 400
    assert "sha256_digest does not match" in response.json()["error"]
    assert count_rows(migrated) == 0
    assert files_under(live_server.data_dir / "packages") == []


def npm_cmd(args, cwd, tmp_path, env):
    npmrc = tmp_path / "npmrc"
    return run(["npm", *args, "--userconfig", str(npmrc), "--cache", str(tmp_path / "npm-cache"),
                "--globalconfig", str(tmp_path / "npm-global"), "--fetch-retries=0",
                "--no-audit", "--no-fund", "--no-update-notifier"], cwd=cwd, env=env)


def write_npmrc(tmp_path, live_server, project_id, secret):
    registry = f"{live_server.url}/api/v4/projects/{project_id}/packages/npm/"
    (tmp_path / "npmrc").write_text(
        f"@tanuki:registry={registry}\n"
        f"//127.0.0.1:{live_server.port}/api/v4/projects/{project_id}/packages/npm/:_authToken={secret}\n")
    (tmp_path / "npm-global").write_text("")


def test_npm_publishes_and_installs_a_scoped_package(live_server, make, tmp_path):
    require_binary("npm")
    project = make.project("tanuki/awesome_project")
    _, _, wsecret = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    _, _, rsecret = make.token("tanuki/awesome_project", ["read_package_registry"], name="r")
    env = client_env(tmp_path)
    package = tmp_path / "widget"
    package.mkdir()
    (package / "package.json").write_text(json.dumps(
        {"name": "@tanuki/widget", "version": "1.0.0", "main": "index.js", "license": "MIT",
         "description": "Gatehouse npm test"}))
    (package / "index.js").write_text("module.exports = 'hello from the widget';\n")

    write_npmrc(tmp_path, live_server, project.id, rsecret)
    refused = npm_cmd(["publish"], package, tmp_path, env)
    assert refused.returncode != 0 and "403" in refused.stderr

    write_npmrc(tmp_path, live_server, project.id, wsecret)
    published = npm_cmd(["publish"], package, tmp_path, env)
    assert published.returncode == 0, published.stdout + published.stderr
    again = npm_cmd(["publish"], package, tmp_path, env)
    # npm 11 reads the metadata first and refuses by itself; the server refuses as well.
    assert again.returncode != 0 and "previously published versions: 1.0.0" in again.stderr
    import requests
    tarball = b"any other tarball"
    forced = requests.put(
        f"{live_server.url}/api/v4/projects/{project.id}/packages/npm/@tanuki%2fwidget",
        headers={"Authorization": f"Bearer {wsecret}"}, timeout=30, json={
            "name": "@tanuki/widget", "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {"name": "@tanuki/widget", "version": "1.0.0"}},
            "_attachments": {"@tanuki/widget-1.0.0.tgz": {
                "data": base64.b64encode(tarball).decode(), "length": len(tarball)}}})
    assert forced.status_code == 403
    assert "previously published version 1.0.0" in forced.json()["error"]

    tagged = npm_cmd(["dist-tag", "add", "@tanuki/widget@1.0.0", "stable"], package, tmp_path, env)
    assert tagged.returncode == 0, tagged.stderr

    write_npmrc(tmp_path, live_server, project.id, rsecret)
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "version": "0.0.0", "private": True}))
    installed = npm_cmd(["install", "@tanuki/widget@stable"], app, tmp_path, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (app / "node_modules" / "@tanuki" / "widget" / "index.js").read_text().startswith(
        "module.exports")
    lock = json.loads((app / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@tanuki/widget"]
    assert entry["resolved"].startswith(f"{live_server.url}/api/v4/projects/{project.id}/packages/npm/")
    assert entry["integrity"].startswith("sha512-")


def curl(*args) -> subprocess.CompletedProcess:
    return run(["curl", "--silent", "--show-error", "--output", "/dev/null",
                "--write-out", "%{http_code}", *args])


def test_curl_uploads_and_downloads_generic_files(live_server, make, tmp_path):
    require_binary("curl")
    project = make.project("tanuki/awesome_project")
    make.project("tanuki/other")
    _, wuser, wsecret = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    _, ruser, rsecret = make.token("tanuki/awesome_project", ["read_package_registry"], name="r")
    _, _, revoked = make.token("tanuki/awesome_project", ["write_package_registry"], name="x",
                               revoked=True)
    _, _, expired = make.token("tanuki/awesome_project", ["write_package_registry"], name="e",
                               expires_at=utcnow() - timedelta(minutes=5))
    _, _, other = make.token("tanuki/other", ["write_package_registry"], name="o")
    payload = tmp_path / "app.tar.gz"
    payload.write_bytes(os.urandom(300_000))
    url = GENERIC.format(url=live_server.url, ref=project.id, name="app", version="1.2.3",
                         file="app.tar.gz")
    encoded = GENERIC.format(url=live_server.url, ref="tanuki%2Fawesome_project", name="app",
                             version="1.2.3", file="app.tar.gz")

    up = curl("--header", f"Deploy-Token: {wsecret}", "--upload-file", str(payload), url)
    assert up.stdout == "201", up.stderr
    for source in (url, encoded):
        out = tmp_path / "download"
        down = run(["curl", "--fail", "--silent", "--show-error", "--header",
                    f"Deploy-Token: {rsecret}", "--output", str(out), source])
        assert down.returncode == 0, down.stderr
        assert out.read_bytes() == payload.read_bytes()
    head = run(["curl", "--fail", "-sS", "--head", "--user", f"{ruser}:{rsecret}", encoded])
    headers = head.stdout.lower()
    assert f'etag: "{hashlib.sha256(payload.read_bytes()).hexdigest()}"' in headers
    assert "content-length: 300000" in headers
    assert 'content-disposition: attachment; filename=app.tar.gz' in headers

    refusals = {
        "read-only token writing": (["--header", f"Deploy-Token: {rsecret}"], "403"),
        "revoked": (["--header", f"Deploy-Token: {revoked}"], "401"),
        "expired": (["--header", f"Deploy-Token: {expired}"], "401"),
        "other project": (["--header", f"Deploy-Token: {other}"], "404"),
        "wrong username": (["--user", f"not-{wuser}:{wsecret}"], "401"),
        "no credentials": ([], "401"),
    }
    for case, (args, status) in refusals.items():
        result = curl(*args, "--upload-file", str(payload), encoded)
        assert result.stdout == status, f"{case}: got {result.stdout}"
    anonymous = run(["curl", "-sS", "--include", "--output", "-", url])
    assert "www-authenticate: basic realm=" in anonymous.stdout.lower()


# Big files: memory stays flat, aborted uploads leave nothing.

@pytest.fixture
def one_worker(migrated, tmp_path):
    """A dedicated single-worker gunicorn, so the worker's peak memory is this test's."""
    with gunicorn(migrated, tmp_path / "data", tmp_path, workers=1) as server:
        yield server.port, server.proc, server.data_dir


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


BLOCK = bytes(range(256)) * 4096  # 1 MiB, generated rather than read from a file


def blocks(total):
    sent = 0
    while sent < total:
        piece = BLOCK[: min(len(BLOCK), total - sent)]
        sent += len(piece)
        yield piece


def send_streaming(port, method, path, headers, parts):
    """Send a body made of `parts` (bytes or generators) with its Content-Length."""
    length = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest(method, path)
    for key, value in {**headers, "Content-Length": str(length)}.items():
        conn.putheader(key, value)
    conn.endheaders()
    for part in parts:
        for piece in ([part] if isinstance(part, bytes) else part[0]):
            conn.send(piece)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def put_streaming(port, path, headers, total):
    """PUT `total` generated bytes; return (status, their sha256)."""
    digest = hashlib.sha256()
    for piece in blocks(total):
        digest.update(piece)
    status, _ = send_streaming(port, "PUT", path, headers, [(blocks(total), total)])
    return status, digest.hexdigest()


def test_one_gib_upload_and_download_keep_memory_flat(one_worker, make, tmp_path):
    port, master, data = one_worker
    project = make.project("tanuki/big")
    _, _, secret = make.token("tanuki/big", ["write_package_registry"])
    path = f"/api/v4/projects/{project.id}/packages/generic/big/1.0.0/big.bin"
    total = 1024 ** 3
    status, sent_digest = put_streaming(port, path, {"Deploy-Token": secret}, total)
    assert status == 201

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("GET", path, headers={"Deploy-Token": secret})
    response = conn.getresponse()
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == total
    digest, received = hashlib.sha256(), 0
    while chunk := response.read(1024 * 1024):
        digest.update(chunk)
        received += len(chunk)
    conn.close()
    assert received == total and digest.hexdigest() == sent_digest

    peak = peak_rss_mb(worker_pid(master.pid))
    print(f"worker peak RSS {peak:.1f} MB")
    assert peak < 150, f"worker peak RSS {peak:.0f} MB"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_client_that_disconnects_halfway_leaves_no_row_and_no_file(one_worker, make, migrated,
                                                                     framing):
    port, _, data = one_worker
    project = make.project("tanuki/flaky")
    _, _, secret = make.token("tanuki/flaky", ["write_package_registry"])
    path = f"/api/v4/projects/{project.id}/packages/generic/flaky/1.0.0/half.bin"
    tmp = data / "packages" / "tmp"
    length = (f"Content-Length: {64 * 1024 * 1024}" if framing == "content-length"
              else "Transfer-Encoding: chunked")
    piece = b"\0" * (1024 * 1024)
    if framing == "chunked":
        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nDeploy-Token: {secret}\r\n"
                      f"{length}\r\n\r\n").encode())
        for _ in range(8):
            sock.sendall(piece)
        wait_until(lambda: files_under(tmp), what="the upload to start")
    wait_until(lambda: not files_under(tmp), what="the temp file to go")
    assert count_rows(migrated) == 0
    assert files_under(data / "packages") == []

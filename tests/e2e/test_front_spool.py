"""Uploads behind nginx: authorized before a byte of the body is read, spooled to disk, adopted."""
import hashlib
import hmac
import os
import socket
import time

import pytest
import requests

from ..conftest import gunicorn
from .front import nginx
from .test_maven import GROUP_ID, Maven, library, m2_repository  # noqa: F401  (the fixture)

GENERIC = "/api/v4/projects/{ref}/packages/generic/{name}/1.0.0/{file}"
SECRET_KEY = "live-test-secret"  # what tests/conftest.py gives every gunicorn


@pytest.fixture
def backend(migrated, tmp_path):
    with gunicorn(migrated, tmp_path / "data", tmp_path, workers=1, TRUSTED_PROXIES=1,
                  ACCEL_REDIRECT="true", LOG_LEVEL="INFO", AUTH_BAN_MAX_RETRY=4) as server:
        yield server


@pytest.fixture
def front(backend, tmp_path):
    with nginx(backend.data_dir, tmp_path / "nginx", [f"127.0.0.1:{backend.port}"]) as server:
        yield server


def spool_files(backend) -> list:
    folder = backend.data_dir / "packages" / "spool"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def stored_files(backend) -> list:
    folder = backend.data_dir / "packages" / "sha256"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def crit_lines(front) -> list[str]:
    log = front.runtime / "error.log"
    return [line for line in log.read_text().splitlines() if "[crit]" in line or "[alert]" in line]


def answer(response) -> tuple:
    return (response.status_code, response.content, response.headers.get("Content-Type"),
            response.headers.get("WWW-Authenticate"))


def test_an_upload_through_the_front_is_spooled_and_adopted_not_read_by_the_app(
        front, backend, make):
    project = make.project("tanuki/spool")
    _, _, secret = make.token("tanuki/spool", ["write_package_registry", "read_package_registry"])
    body = os.urandom(3 * 1024 * 1024 + 7)
    url = front.url + GENERIC.format(ref=project.id, name="tool", file="tool.bin")
    put = requests.put(url, data=body, headers={"Deploy-Token": secret}, timeout=60)
    assert put.status_code == 201, put.text

    got = requests.get(url, headers={"Deploy-Token": secret}, timeout=60)
    assert got.status_code == 200 and got.content == body
    sha = hashlib.sha256(body).hexdigest()
    assert [p.name for p in stored_files(backend)] == [sha]
    # The app adopted nginx's file: it never streamed the body from its socket.
    assert "adopting spooled upload" in backend.log.read_text()
    assert not any((backend.data_dir / "packages" / "tmp").glob("*"))
    assert spool_files(backend) == []  # renamed into place; nginx's clean found nothing
    # The same bytes again: the spool file is dropped, the content stays shared.
    again = front.url + GENERIC.format(ref=project.id, name="tool", file="copy.bin")
    assert requests.put(again, data=body, headers={"Deploy-Token": secret}, timeout=60).status_code == 201
    assert [p.name for p in stored_files(backend)] == [sha] and spool_files(backend) == []
    assert crit_lines(front) == []


def test_refusals_through_the_front_are_the_apps_own_answers(front, backend, make):
    project = make.project("tanuki/refusals")
    _, _, writer = make.token("tanuki/refusals", ["write_package_registry"], name="w")
    _, _, reader = make.token("tanuki/refusals", ["read_package_registry"], name="r")
    cases = {
        "no credentials": (project.id, "tool", {}),
        "wrong token": (project.id, "tool", {"Deploy-Token": "gldt-" + "x" * 20}),
        "read-only token": (project.id, "tool", {"Deploy-Token": reader}),
        "unknown project": (999_999, "tool", {"Deploy-Token": writer}),
        "bad package name": (project.id, "-bad", {"Deploy-Token": writer}),
    }
    expected = {"no credentials": 401, "wrong token": 401, "read-only token": 403,
                "unknown project": 404, "bad package name": 400}
    for case, (ref, name, headers) in cases.items():
        path = GENERIC.format(ref=ref, name=name, file="f.bin")
        alone = requests.put(backend.url + path, data=b"body", headers=headers, timeout=30)
        fronted = requests.put(front.url + path, data=b"body", headers=headers, timeout=30)
        assert alone.status_code == expected[case], (case, alone.text)
        assert answer(fronted) == answer(alone), case
        assert fronted.headers["Cache-Control"] == alone.headers.get("Cache-Control", "no-store")
    assert requests.put(backend.url + GENERIC.format(ref=project.id, name="tool", file="f.bin"),
                        headers={}, timeout=30).headers["WWW-Authenticate"].startswith("Basic")
    assert spool_files(backend) == [] and stored_files(backend) == []


def test_failed_logins_through_the_front_count_once_towards_the_ban(front, backend, make):
    project = make.project("tanuki/ban")
    path = GENERIC.format(ref=project.id, name="tool", file="f.bin")
    wrong = {"Deploy-Token": "gldt-" + "y" * 20}
    # AUTH_BAN_MAX_RETRY=4: four failures are answered 401, the fifth request is banned.
    for attempt in range(4):
        refused = requests.put(front.url + path, data=b"body", headers=wrong, timeout=30)
        assert refused.status_code == 401, (attempt, refused.text)
    banned = requests.put(front.url + path, data=b"body", headers=wrong, timeout=30)
    alone = requests.put(backend.url + path, data=b"body", headers=wrong, timeout=30)
    assert banned.status_code == 403
    assert answer(banned) == answer(alone)


def test_a_refused_upload_is_answered_before_nginx_asks_for_the_body(front, backend, make):
    """`Expect: 100-continue` (curl's for big bodies) is answered only once authorized."""
    project = make.project("tanuki/expect")
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
        sock.sendall((f"PUT {GENERIC.format(ref=project.id, name='tool', file='big.bin')} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nContent-Length: {100 * 1024 * 1024}\r\n"
                      "Expect: 100-continue\r\n\r\n").encode())
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 401"), head
    assert "100 Continue" not in head
    # nginx's own page is the body here (see services/nginx.py); status and challenge are the app's.
    assert 'WWW-Authenticate: Basic realm="Gatehouse"' in head and "Cache-Control: no-store" in head
    assert spool_files(backend) == []


def test_an_authorized_upload_gets_its_continue_and_is_stored(front, backend, make):
    project = make.project("tanuki/continue")
    _, _, secret = make.token("tanuki/continue", ["write_package_registry"])
    body = b"z" * 1000
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
        sock.sendall((f"PUT {GENERIC.format(ref=project.id, name='tool', file='c.bin')} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nDeploy-Token: {secret}\r\nContent-Length: {len(body)}\r\n"
                      "Expect: 100-continue\r\nConnection: close\r\n\r\n").encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert b"HTTP/1.1 201" in rest
    assert [p.name for p in stored_files(backend)] == [hashlib.sha256(body).hexdigest()]


def test_an_upload_cut_off_mid_body_leaves_no_spool_file_and_no_row(front, backend, make):
    project = make.project("tanuki/cut")
    _, _, secret = make.token("tanuki/cut", ["write_package_registry", "read_package_registry"])
    path = GENERIC.format(ref=project.id, name="tool", file="cut.bin")
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=30)
    sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nDeploy-Token: {secret}\r\n"
                  f"Content-Length: {8 * 1024 * 1024}\r\n\r\n").encode())
    sock.sendall(b"a" * (4 * 1024 * 1024))
    deadline = time.monotonic() + 30
    while not spool_files(backend):  # nginx writes the body to the spool as it arrives
        assert time.monotonic() < deadline, "nginx never spooled the body"
        time.sleep(0.05)
    sock.close()
    deadline = time.monotonic() + 30
    while spool_files(backend):
        assert time.monotonic() < deadline, "nginx left the cut-off body in the spool"
        time.sleep(0.05)
    assert stored_files(backend) == []
    got = requests.get(backend.url + path, headers={"Deploy-Token": secret}, timeout=30)
    assert got.status_code == 404
    assert "adopting spooled upload" not in backend.log.read_text()


def test_spool_headers_straight_to_gunicorn_are_refused(backend, make, tmp_path):
    project = make.project("tanuki/forged")
    _, _, secret = make.token("tanuki/forged", ["write_package_registry", "read_package_registry"])
    spool = backend.data_dir / "packages" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    other = spool / "0000000042"  # someone else's upload in flight
    other.write_bytes(b"another upload")
    link = spool / "0000000043"
    link.symlink_to("/etc/passwd")
    real = hmac.new(SECRET_KEY.encode(), b"gatehouse nginx upload spool", hashlib.sha256).hexdigest()
    forged = [
        {"X-Gatehouse-Spool-File": "/etc/passwd"},
        {"X-Gatehouse-Spool-File": str(other)},
        {"X-Gatehouse-Spool-File": str(other), "X-Gatehouse-Front": "guess"},
        {"X-Gatehouse-Authorize-Only": "1"},
        # Even with the secret (a leaked config), only regular files in the spool folder.
        {"X-Gatehouse-Spool-File": "/etc/passwd", "X-Gatehouse-Front": real},
        {"X-Gatehouse-Spool-File": str(spool / ".." / "spool" / other.name), "X-Gatehouse-Front": real},
        {"X-Gatehouse-Spool-File": str(link), "X-Gatehouse-Front": real},
    ]
    for n, headers in enumerate(forged):
        path = GENERIC.format(ref=project.id, name="tool", file=f"f{n}.bin")
        put = requests.put(backend.url + path, data=b"", timeout=30,
                           headers={"Deploy-Token": secret, **headers})
        assert put.status_code == 403, (headers, put.status_code, put.text)
        assert requests.get(backend.url + path, headers={"Deploy-Token": secret},
                            timeout=30).status_code == 404
    assert stored_files(backend) == []
    assert other.read_bytes() == b"another upload"
    assert real not in backend.log.read_text()


def test_mvn_deploys_through_the_front(front, backend, make, m2_repository, tmp_path):
    """Maven PUTs each artifact, its checksums and its metadata: all spooled, all accepted."""
    project = make.project("tanuki/maven-front")
    _, _, secret = make.token("tanuki/maven-front", ["write_package_registry",
                                                     "read_package_registry"])
    maven = Maven(m2_repository, tmp_path / "maven-home")
    maven.forget(GROUP_ID)
    url = f"{front.url}/api/v4/projects/{project.id}/packages/maven"
    settings = maven.header_settings("front", "Deploy-Token", secret)
    built = library(tmp_path / "rel", "1.0.0", "release", url)
    deployed = maven.run(built, settings, "deploy")
    assert deployed.returncode == 0, deployed.stdout[-4000:]
    jar = requests.get(f"{url}/org/gatehouse/e2e/hello/1.0.0/hello-1.0.0.jar",
                       headers={"Deploy-Token": secret}, timeout=30)
    assert jar.status_code == 200
    assert jar.content == (built / "target" / "hello-1.0.0.jar").read_bytes()
    sha1 = requests.get(f"{url}/org/gatehouse/e2e/hello/1.0.0/hello-1.0.0.jar.sha1",
                        headers={"Deploy-Token": secret}, timeout=30)
    assert sha1.text.strip() == hashlib.sha1(jar.content).hexdigest()
    assert "adopting spooled upload" in backend.log.read_text()
    assert spool_files(backend) == [] and crit_lines(front) == []

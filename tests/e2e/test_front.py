"""nginx in front of gunicorn, as `make run` and production run Gatehouse."""
import http.client
import socket
import threading
import time

import pytest
import requests
import sqlalchemy as sa

from ..conftest import gunicorn
from ..support import free_port
from .front import nginx
from .test_lfs import lfs_git  # noqa: F401  (the fixture)

SLOW_CLIENTS = 16
GENERIC = "/api/v4/projects/{ref}/packages/generic/tool/1.0.0/{file}"


@pytest.fixture
def small_backend(migrated, tmp_path):
    """One gunicorn worker with 4 threads: few enough that 16 slow clients are too many."""
    with gunicorn(migrated, tmp_path / "data", tmp_path, workers=1, THREADS=4,
                  TRUSTED_PROXIES=1, ACCEL_REDIRECT="true") as server:
        yield server


@pytest.fixture
def front(small_backend, tmp_path):
    with nginx(small_backend.data_dir, tmp_path / "nginx",
               [f"127.0.0.1:{small_backend.port}"]) as server:
        yield server


class SlowClients:
    """Connections that send a sign-in POST's headers, then its body one byte a second.

    Bounded: a fixed number of loopback connections, closed when the block ends.
    """

    def __init__(self, port: int, count: int = SLOW_CLIENTS):
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._drip, daemon=True)

    def __enter__(self):
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(b"POST /users/sign_in HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 100000\r\n\r\nu")
            self.sockets.append(sock)
        self.thread.start()
        return self

    def _drip(self):
        while not self.stop.wait(1.0):
            for sock in self.sockets:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def sign_in_page(url: str, timeout: float) -> int:
    return requests.get(f"{url}/users/sign_in", timeout=timeout).status_code


def test_slow_bodies_never_reach_a_worker_behind_nginx(front):
    with SlowClients(front.port):
        # Sixteen bodies in flight, four threads behind nginx: every one still free.
        for _ in range(5):
            assert sign_in_page(front.url, timeout=30) == 200


def test_gunicorn_alone_is_exhausted_by_slow_bodies(small_backend):
    """Why production needs nginx: each slow body holds one of gunicorn's threads.

    With 4 threads and 16 connections dripping a body, the sign-in page gets no answer
    while they last (and would not for as long as they keep sending).
    """
    assert sign_in_page(small_backend.url, timeout=30) == 200
    with SlowClients(small_backend.port):
        with pytest.raises(requests.exceptions.ReadTimeout):
            sign_in_page(small_backend.url, timeout=3)
    assert sign_in_page(small_backend.url, timeout=30) == 200


def test_downloads_are_served_by_nginx_after_the_app_authorized_them(front, small_backend,
                                                                   make, migrated):
    project = make.project("tanuki/front")
    token_id, _, secret = make.token("tanuki/front", ["write_package_registry"])
    body = bytes(range(256)) * 40_000
    url = front.url + GENERIC.format(ref=project.id, file="tool.bin")
    put = requests.put(url, data=body, headers={"Deploy-Token": secret}, timeout=60)
    assert put.status_code == 201, put.text

    got = requests.get(url, headers={"Deploy-Token": secret}, timeout=60)
    assert got.status_code == 200 and got.content == body
    assert "X-Accel-Redirect" not in got.headers
    assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''tool.bin"
    ranged = requests.get(url, headers={"Deploy-Token": secret, "Range": "bytes=10-19"}, timeout=60)
    assert ranged.status_code == 206 and ranged.content == body[10:20]

    # Without credentials the app refuses, and nginx never opens the file.
    assert requests.get(url, timeout=60).status_code == 401
    # The internal location is not reachable from outside.
    sha = __import__("hashlib").sha256(body).hexdigest()
    inside = requests.get(f"{front.url}/-/accel/packages/{sha[:2]}/{sha[2:4]}/{sha}", timeout=60)
    assert inside.status_code == 404


def test_the_app_sees_the_one_address_nginx_saw(front, make, migrated):
    """X-Forwarded-For from the client is replaced, so a spoofed address never counts."""
    project = make.project("tanuki/xff")
    token_id, _, secret = make.token("tanuki/xff", ["read_package_registry"])
    url = front.url + GENERIC.format(ref=project.id, file="missing.bin")
    requests.get(url, headers={"Deploy-Token": secret, "X-Forwarded-For": "203.0.113.9"},
                 timeout=30)
    engine = sa.create_engine(migrated.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            ip = conn.execute(sa.text("SELECT last_used_ip FROM deploy_tokens WHERE id = :id"),
                              {"id": token_id}).scalar()
    finally:
        engine.dispose()
    assert ip == "127.0.0.1"


def test_nginx_answers_its_own_api_errors_in_json(front, tmp_path, small_backend):
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    conn.putrequest("POST", "/api/v4/projects/1/deploy_tokens")
    conn.putheader("Content-Length", str(11 * 1024 * 1024))
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/json"
    assert response.read() == b'{"message":"413 Request Entity Too Large"}\n'
    conn.close()

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: nginx answers 502 itself
    with nginx(small_backend.data_dir, tmp_path / "nginx-dead", [dead]) as lonely:
        api = requests.get(f"{lonely.url}/api/v4/version", timeout=30)
        assert api.status_code == 502 and api.json() == {"message": "502 Bad Gateway"}
        assert api.headers["Retry-After"] == "5"
        page = requests.get(f"{lonely.url}/users/sign_in", timeout=30)
        assert page.status_code == 502 and "html" in page.headers["Content-Type"]


def test_uploads_are_spooled_by_nginx_before_the_app_sees_them(front, small_backend, make):
    """A raw-file upload never holds a worker while it arrives: nginx writes it to disk."""
    project = make.project("tanuki/stream")
    _, _, secret = make.token("tanuki/stream", ["write_package_registry"])
    packages = small_backend.data_dir / "packages"
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=60)
    conn.putrequest("PUT", GENERIC.format(ref=project.id, file="big.bin"))
    conn.putheader("Deploy-Token", secret)
    conn.putheader("Content-Length", str(8 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"a" * (4 * 1024 * 1024))
    deadline = time.monotonic() + 30
    while not any((packages / "spool").glob("*")):
        assert time.monotonic() < deadline, "nginx never spooled the upload"
        time.sleep(0.05)
    assert not any((packages / "tmp").glob("*")), "the app must not be reading the body"
    conn.send(b"a" * (4 * 1024 * 1024))
    assert conn.getresponse().status == 201
    conn.close()


def test_nginx_reuses_upstream_connections_for_less_time_than_gunicorn_keeps_them(app, tmp_path):
    """The race that dropped keep-alive requests: gunicorn must never close first."""
    import re
    import runpy
    import subprocess

    from ..support import ROOT, require_binary

    binary = require_binary("nginx", "apt-get install nginx")
    result = app.test_cli_runner().invoke(args=[
        "nginx", "config", "--listen", "127.0.0.1:1", "--upstream", "unix:/tmp/g.sock",
        "--runtime-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = result.output
    upstream_idle = int(re.search(r"upstream gatehouse \{[^}]*keepalive_timeout (\d+)s;",
                                  config).group(1))
    gunicorn_keepalive = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["keepalive"]
    assert upstream_idle < gunicorn_keepalive == app.config["KEEPALIVE"]
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config
    (tmp_path / "nginx.conf").write_text(config)
    checked = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                              "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_git_lfs_objects_stream_through_nginx_both_ways(migrated, make, lfs_git, tmp_path):
    """Bigger than the 10 MiB nginx buffers for browser bodies: LFS has its own location.

    The batch answer's transfer URLs are built from EXTERNAL_URL, which is the front's.
    """
    import hashlib
    import os

    from ..conftest import PASSWORD
    from .test_lfs import _lfs_work_tree, _sha256, _url
    port = free_port()
    with gunicorn(migrated, tmp_path / "data", tmp_path, workers=1, TRUSTED_PROXIES=1,
                  ACCEL_REDIRECT="true", EXTERNAL_URL=f"http://127.0.0.1:{port}",
                  LOG_LEVEL="INFO") as backend, \
            nginx(backend.data_dir, tmp_path / "nginx", [f"127.0.0.1:{backend.port}"],
                  port=port) as front:
        make.project("tanuki/front-lfs")
        make.member("tanuki/front-lfs", make.user("lfsdev"), "developer")
        big = os.urandom(24 * 1024 * 1024)
        work = _lfs_work_tree(lfs_git, "front-lfs", {"model.bin": big})
        lfs_git("push", _url(front, "tanuki/front-lfs", "lfsdev", PASSWORD), "main", cwd=work)
        _, username, secret = make.token("tanuki/front-lfs", ["read_repository"])
        clone = tmp_path / "clone"
        lfs_git("clone", _url(front, "tanuki/front-lfs", username, secret), str(clone))
        assert _sha256(clone / "model.bin") == hashlib.sha256(big).hexdigest()
        # nginx, not the worker, sent the object: its access log has the 24 MiB answer.
        log = tmp_path / "nginx" / "access.log"
        assert log.exists() and "gitlab-lfs/objects" in log.read_text()
        # The object went up through the spool: nginx wrote it, the app adopted it.
        assert "adopting spooled upload" in backend.log.read_text()
        assert not any((backend.data_dir / "packages" / "spool").glob("*"))

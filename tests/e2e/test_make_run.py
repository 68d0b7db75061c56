"""`make run` (scripts/run.sh) says what is wrong, and stops quickly."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import ENCRYPTION_KEY
from ..support import ROOT, VENV_BIN, free_port, require_binary


@pytest.fixture
def run_env(tmp_path):
    require_binary("nginx", "apt-get install nginx")
    db = f"sqlite:///{tmp_path / 'run.db'}"
    env = dict(os.environ, DATABASE_URL=db, GATEHOUSE_DATA_DIR=str(tmp_path / "data"),
               GATEHOUSE_SECRET_KEY="run-test-secret", GATEHOUSE_ENCRYPTION_KEY=ENCRYPTION_KEY,
               GATEHOUSE_DEMO_CREDENTIALS_FILE=str(tmp_path / "demo.txt"),
               GATEHOUSE_RUN_DIR=str(tmp_path / "run"),
               GATEHOUSE_LISTEN=f"127.0.0.1:{free_port()}",
               GATEHOUSE_REGISTRY_URL=f"127.0.0.1:{free_port()}", GATEHOUSE_WORKERS="1",
               PYTHONUNBUFFERED="1")
    for key in ("GATEHOUSE_EXTERNAL_URL", "GATEHOUSE_BIND", "GATEHOUSE_REDIS_URL"):
        env.pop(key, None)
    subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env=env,
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    # A registry that cannot start (as a broken config or a missing certificate would).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker-registry"
    fake.write_text("#!/bin/sh\necho 'configuration error: storage driver exploded' >&2\nexit 1\n")
    fake.chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def start(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([str(ROOT / "scripts" / "run.sh")], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        assert proc.poll() is None, f"run.sh exited {proc.returncode}:\n{output}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in:\n{log.read_text()}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failed_registry_is_reported_and_ctrl_c_stops_everything(run_env, tmp_path):
    log = tmp_path / "run.out"
    proc = start(run_env, log)
    try:
        banner = wait_for_text(log, "Stop with Ctrl-C.", proc)
        listen = run_env["GATEHOUSE_LISTEN"]
        assert f"Gatehouse:  http://{listen}" in banner
        assert f"nginx on {listen}" in banner
        assert "docker-registry failed to start" in banner
        assert "storage driver exploded" in banner

        # The app keeps serving; a browser holds keep-alive connections open.
        host, port = listen.split(":")
        browsers = []
        for _ in range(3):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"GET /users/sign_in HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            browsers.append(sock)
        idle = socket.create_connection((host, int(port)), timeout=30)  # open, never sent
        browsers.append(idle)

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_alive(proc.pid):
            assert time.monotonic() < deadline, "something outlived Ctrl-C"
            time.sleep(0.1)
        output = log.read_text()
        assert "SIGKILL" not in output and "Killed" not in output
        for sock in browsers:
            sock.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_busy_port_names_the_variable_and_exits_before_the_banner(run_env, tmp_path):
    host, port = run_env["GATEHOUSE_LISTEN"].split(":")
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        result = subprocess.run([str(ROOT / "scripts" / "run.sh")], env=run_env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "GATEHOUSE_LISTEN" in result.stderr and "already in use" in result.stderr
    assert "Gatehouse:" not in result.stdout

"""Helpers shared by the unit, web and end-to-end tests."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, hint: str = "") -> str:
    """Return the path of a program the test needs; skip without it, but fail in CI."""
    path = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    if path:
        return path
    reason = f"{name} is not installed{': ' + hint if hint else ''}"
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing real client is a failure, not a skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0,
                  log: Path | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            detail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening:\n{detail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


@contextmanager
def running(cmd: list[str], *, port: int, env: dict, log: Path, cwd: Path = ROOT,
            stop_signal: int = signal.SIGTERM):
    """Start a server process, wait for its port, and stop it afterwards.

    gunicorn takes SIGINT as "quit now"; SIGTERM makes it wait for idle keep-alive
    connections, which costs seconds per test.
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for_port(port, proc, log=log)
        yield proc
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


@contextmanager
def redis_server(tmp_dir: Path):
    """A private, throwaway redis-server on a free loopback port; yields its URL."""
    binary = require_binary("redis-server")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", str(tmp_dir)]
    with running(cmd, port=port, env=dict(os.environ), log=tmp_dir / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


def resolve(door, *, secret=None, username=None, password=None, ip=None):
    """The Principal the one authentication chain makes of these credentials, or None."""
    from webapp.services import credentials
    from webapp.services.errors import DomainError
    try:
        principal = credentials.authenticate(
            credentials.Credentials(username=username, password=password, secret=secret),
            door, ip=ip)
    except DomainError:
        return None
    return None if principal.is_anonymous else principal

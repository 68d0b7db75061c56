"""Debian's nginx in front of one or more gunicorns, configured by `flask nginx config`."""
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

from ..conftest import ENCRYPTION_KEY
from ..support import ROOT, VENV_BIN, free_port, require_binary, running


def nginx_config(data_dir: Path, runtime: Path, port: int, upstreams: list[str], **settings) -> str:
    """The config the app prints for these settings (the same command operators run)."""
    env = dict(os.environ, GATEHOUSE_DATA_DIR=str(data_dir), GATEHOUSE_SECRET_KEY="live-test-secret",
               GATEHOUSE_ENCRYPTION_KEY=ENCRYPTION_KEY)
    env.update({f"GATEHOUSE_{key}": str(value) for key, value in settings.items()})
    cmd = [str(VENV_BIN / "flask"), "--app", "wsgi", "nginx", "config", "--listen",
           f"127.0.0.1:{port}", "--runtime-dir", str(runtime), "--workers", "1"]
    if os.geteuid() == 0:
        cmd += ["--user", "root"]  # the workers read the test's private data dir
    for upstream in upstreams:
        cmd += ["--upstream", upstream]
    return subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True,
                          text=True, timeout=60).stdout


class Front:
    def __init__(self, url: str, port: int, runtime: Path, proc):
        self.url, self.port, self.runtime, self.proc = url, port, runtime, proc


@contextmanager
def nginx(data_dir: Path, runtime: Path, upstreams: list[str], *, port: int | None = None,
          **settings):
    """nginx on a free loopback port (or `port`), in front of `upstreams`."""
    binary = require_binary("nginx", "apt-get install nginx")
    port = port or free_port()
    runtime.mkdir(parents=True, exist_ok=True)
    conf = runtime / "nginx.conf"
    conf.write_text(nginx_config(data_dir, runtime, port, upstreams, **settings))
    cmd = [binary, "-p", str(runtime), "-c", str(conf), "-e", str(runtime / "error.log"),
           "-g", "daemon off;"]
    with running(cmd, port=port, env=dict(os.environ), log=runtime / "nginx.out",
                 stop_signal=signal.SIGTERM) as proc:
        yield Front(f"http://127.0.0.1:{port}", port, runtime, proc)

"""What a crash leaves behind is removed by the next gc, at once."""
import http.client
import os
import signal
import time
from pathlib import Path

import pytest

from ..conftest import gunicorn

GENERIC = "/api/v4/projects/{ref}/packages/generic/tool/1.0.0/{file}"


@pytest.fixture
def one_worker(migrated, tmp_path):
    with gunicorn(migrated, tmp_path / "data", tmp_path, workers=1) as server:
        yield server


def gone(pid: int) -> bool:
    # Reaped by gunicorn's master: only then have all its threads, and their files, gone
    # (a zombie leader can outlive threads still finishing a write).
    return not Path(f"/proc/{pid}").exists()


def test_a_worker_killed_mid_upload_leaves_nothing_after_the_next_gc(app, one_worker, make):
    project = make.project("tanuki/crash")
    _, _, secret = make.token("tanuki/crash", ["write_package_registry"])
    tmp = Path(app.config["DATA_DIR"]) / "packages" / "tmp"
    conn = http.client.HTTPConnection("127.0.0.1", one_worker.port, timeout=60)
    conn.putrequest("PUT", GENERIC.format(ref=project.id, file="big.bin"))
    conn.putheader("Deploy-Token", secret)
    conn.putheader("Content-Length", str(200 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"a" * (8 * 1024 * 1024))
    deadline = time.monotonic() + 60
    while not (tmp.is_dir() and any(p.stat().st_size for p in tmp.iterdir())):
        assert time.monotonic() < deadline, "the upload never reached its temp file"
        time.sleep(0.05)
    (leftover,) = tmp.iterdir()
    writer = int(leftover.name.split("-")[-2])  # upload-<host>-<pid>-<random>
    os.kill(writer, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not gone(writer):
        assert time.monotonic() < deadline, "the killed worker did not exit"
        time.sleep(0.05)
    conn.close()
    assert leftover.exists(), "the crash left its temp file (what gc is for)"

    result = app.test_cli_runner().invoke(args=["packages", "gc"])
    assert result.exit_code == 0, result.output
    assert "Removed 1 temp file(s)" in result.output
    assert list(tmp.iterdir()) == []
    stored = Path(app.config["DATA_DIR"]) / "packages" / "sha256"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def test_repositories_gc_removes_abandoned_push_quarantines_only(app, make):
    make.project("tanuki/pushed")
    repo = Path(app.config["DATA_DIR"]) / "repositories" / "tanuki" / "pushed.git"
    abandoned = repo / "objects" / "tmp_objdir-incoming-dead"
    live = repo / "objects" / "tmp_objdir-incoming-live"
    for quarantine in (abandoned, live):
        (quarantine / "pack").mkdir(parents=True)
        (quarantine / "pack" / "tmp_pack_x").write_bytes(b"PACK")
    old = time.time() - app.config["PUSH_MAX_SECONDS"] - 60
    for path in (abandoned, abandoned / "pack", abandoned / "pack" / "tmp_pack_x"):
        os.utime(path, (old, old))
    # A long push: its folder is old, but it still writes into it.
    os.utime(live, (old, old))
    staged = repo.parent / ".tmp-0123.git"
    staged.mkdir()
    os.utime(staged, (old, old))

    result = app.test_cli_runner().invoke(args=["repositories", "gc"])
    assert result.exit_code == 0, result.output
    assert "Removed 1 abandoned push quarantine(s) and 1 half-created" in result.output
    assert not abandoned.exists() and live.exists() and not staged.exists()
    assert (repo / "HEAD").exists()

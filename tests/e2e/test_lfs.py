"""The real `git-lfs` (Debian's) against Gatehouse under gunicorn."""
import hashlib
import http.client
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import LfsObject, LfsObjectProject
from webapp.services import package_storage

from ..conftest import PASSWORD
from ..support import peak_rss_mb, require_binary
from .test_git import Server, serve  # noqa: F401  (the fixture)
from .test_packages import blocks, put_streaming, worker_pid

MIB = 1024 * 1024


@pytest.fixture
def lfs_git(git):
    require_binary("git-lfs", "apt-get install git-lfs")
    git("lfs", "install", "--skip-repo")  # the filters, in the test's own global config
    return git


def _url(server: Server, path: str, username: str, secret: str) -> str:
    host = server.url.split("://", 1)[1]
    return f"http://{username}:{secret}@{host}/{path}"


def _lfs_work_tree(git, name: str, files: dict[str, bytes]) -> Path:
    path = git.home / name
    git("init", "-q", str(path))
    git("lfs", "track", "*.bin", cwd=path)
    for filename, content in files.items():
        (path / filename).write_bytes(content)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "assets", cwd=path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_developer_pushes_50_mib_and_project_and_group_tokens_clone_it(
        app, make, lfs_git, serve, tmp_path):
    git = lfs_git
    make.project("tanuki/assets")
    make.member("tanuki/assets", make.user("dev"), "developer")
    server = serve(workers=1)
    big = os.urandom(50 * MIB)
    oid = hashlib.sha256(big).hexdigest()
    work = _lfs_work_tree(git, "assets", {"model.bin": big, "README.md": b"assets\n"})

    pushed = git("push", _url(server, "tanuki/assets", "dev", PASSWORD), "main", cwd=work)
    assert "[new branch]      main -> main" in pushed.stderr
    with app.app_context():
        assert _sha256(package_storage.content_path(oid)) == oid
        row = db.session.scalar(sa.select(LfsObject).where(LfsObject.oid == oid))
        assert row.size == 50 * MIB

    for owner, name in (("tanuki/assets", "project"), ("tanuki", "group")):
        _, username, secret = make.token(owner, ["read_repository"], name=name)
        clone = tmp_path / f"clone-{name}"
        git("clone", _url(server, "tanuki/assets", username, secret), str(clone))
        assert _sha256(clone / "model.bin") == oid  # the content, not the pointer

    # Pushing again sends nothing: the server already holds the object.
    (work / "README.md").write_text("changed\n")
    git("commit", "-q", "-am", "readme", cwd=work)
    git("push", _url(server, "tanuki/assets", "dev", PASSWORD), "main", cwd=work)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LfsObjectProject)) == 1


def test_tokens_that_may_not_read_or_push_get_git_lfs_to_say_why(
        app, make, lfs_git, serve, tmp_path):
    git = lfs_git
    make.project("tanuki/assets")
    make.member("tanuki/assets", make.user("dev"), "developer")
    server = serve(workers=1)
    work = _lfs_work_tree(git, "assets", {"model.bin": os.urandom(MIB)})
    git("push", _url(server, "tanuki/assets", "dev", PASSWORD), "main", cwd=work)

    _, reader, reader_secret = make.token("tanuki/assets", ["read_repository"])
    clone = tmp_path / "pointers"
    git("clone", _url(server, "tanuki/assets", reader, reader_secret), str(clone),
        env={"GIT_LFS_SKIP_SMUDGE": "1"})
    assert (clone / "model.bin").read_bytes().startswith(b"version https://git-lfs")

    # A token without read_repository (git itself would refuse it too): LFS says why.
    _, registry_only, registry_secret = make.token("tanuki/assets", ["read_registry"], name="r")
    git("config", "lfs.url",
        _url(server, "tanuki/assets.git/info/lfs", registry_only, registry_secret), cwd=clone)
    refused = git("lfs", "pull", cwd=clone, check=False)
    assert refused.returncode != 0
    assert "This deploy token cannot read this repository" in refused.stderr
    assert (clone / "model.bin").read_bytes().startswith(b"version https://git-lfs")

    # A deploy token cannot upload objects.
    git("config", "lfs.url", _url(server, "tanuki/assets.git/info/lfs", reader, reader_secret),
        cwd=clone)
    pushed = git("lfs", "push", "--all", "origin", cwd=clone, check=False)
    assert pushed.returncode != 0
    assert "deploy tokens are read-only" in pushed.stderr
    git("config", "--unset", "lfs.url", cwd=clone)
    pulled = git("lfs", "pull", cwd=clone)
    assert pulled.returncode == 0
    assert not (clone / "model.bin").read_bytes().startswith(b"version https://git-lfs")


def test_locks_as_git_lfs_uses_them(app, make, lfs_git, serve, tmp_path):
    git = lfs_git
    make.project("tanuki/game")
    make.member("tanuki/game", make.user("alice"), "developer")
    make.member("tanuki/game", make.user("bob"), "developer")
    make.member("tanuki/game", make.user("maintainer"), "maintainer")
    server = serve(workers=1)
    work = _lfs_work_tree(git, "game", {"level.bin": b"level one\n"})
    git("push", _url(server, "tanuki/game", "alice", PASSWORD), "main", cwd=work)

    alice, bob = tmp_path / "alice", tmp_path / "bob"
    git("clone", _url(server, "tanuki/game", "alice", PASSWORD), str(alice))
    git("clone", _url(server, "tanuki/game", "bob", PASSWORD), str(bob))

    assert "Locked level.bin" in git("lfs", "lock", "level.bin", cwd=alice).stdout
    listed = git("lfs", "locks", "--json", cwd=bob).stdout
    locks = json.loads(listed)
    assert [(lock["path"], lock["owner"]["name"]) for lock in locks] == [("level.bin", "alice")]

    taken = git("lfs", "lock", "level.bin", cwd=bob, check=False)
    assert taken.returncode != 0 and "already created lock" in taken.stderr

    # Bob's push touching Alice's locked file is stopped by git-lfs's lock verification
    # (git-lfs only warns until locksverify is on, as it suggests on the first push).
    git("config", "lfs.locksverify", "true", cwd=bob)
    (bob / "level.bin").write_bytes(b"bob's level\n")
    git("commit", "-q", "-am", "bob edits", cwd=bob)
    blocked = git("push", "origin", "main", cwd=bob, check=False)
    assert blocked.returncode != 0
    assert "Cannot update locked files." in blocked.stderr
    assert "Unable to push locked files:\n* level.bin - alice" in blocked.stdout

    # Alice's own lock does not stop her.
    (alice / "level.bin").write_bytes(b"alice's level\n")
    git("commit", "-q", "-am", "alice edits", cwd=alice)
    git("push", "origin", "main", cwd=alice)

    refused = git("lfs", "unlock", "level.bin", "--force", cwd=bob, check=False)
    assert refused.returncode != 0 and "Maintainer" in refused.stderr
    maint = tmp_path / "maint"
    git("clone", _url(server, "tanuki/game", "maintainer", PASSWORD), str(maint))
    assert "Unlocked level.bin" in git("lfs", "unlock", "level.bin", "--force", cwd=maint).stdout
    assert json.loads(git("lfs", "locks", "--json", cwd=alice).stdout) == []


def test_a_1_gib_object_streams_with_flat_memory(app, make, serve, tmp_path):
    make.project("tanuki/huge")
    make.member("tanuki/huge", make.user("dev"), "developer")
    server = serve(workers=1)
    total = 1024 ** 3
    digest = hashlib.sha256()
    for piece in blocks(total):
        digest.update(piece)
    oid = digest.hexdigest()

    def batch(operation):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        import base64
        auth = base64.b64encode(f"dev:{PASSWORD}".encode()).decode()
        conn.request("POST", "/tanuki/huge.git/info/lfs/objects/batch", body=json.dumps(
            {"operation": operation, "objects": [{"oid": oid, "size": total}]}),
            headers={"Authorization": f"Basic {auth}",
                     "Content-Type": "application/vnd.git-lfs+json"})
        answer = json.loads(conn.getresponse().read())
        conn.close()
        return answer["objects"][0]["actions"][operation]

    upload = batch("upload")
    path = upload["href"].split(server.url, 1)[1]
    status, _ = put_streaming(server.port, path, upload["header"], total)
    assert status == 200

    download = batch("download")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    conn.request("GET", download["href"].split(server.url, 1)[1], headers=download["header"])
    response = conn.getresponse()
    assert response.status == 200
    received, check = 0, hashlib.sha256()
    while chunk := response.read(MIB):
        check.update(chunk)
        received += len(chunk)
    conn.close()
    assert received == total and check.hexdigest() == oid

    peak = peak_rss_mb(worker_pid(server.proc.pid))
    print(f"worker peak RSS {peak:.1f} MB")
    assert peak < 150, f"worker peak RSS {peak:.0f} MB"

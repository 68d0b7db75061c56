"""The real `git` client with GitLab's URL forms and a partial clone."""
import os
from pathlib import Path

import pytest

from .gitclient import seed
from .test_git import Server, serve  # noqa: F401  (the fixture)


def _url(server: Server, path: str, username: str, secret: str) -> str:
    host = server.url.split("://", 1)[1]
    return f"http://{username}:{secret}@{host}/{path}"


@pytest.mark.parametrize("suffix", [".git", "", "/", ".git/"])
def test_a_deploy_token_clones_with_or_without_dot_git(app, make, git, serve, tmp_path, suffix):
    make.project("tanuki/awesome_project")
    seed(git, app, "tanuki/awesome_project")
    _, username, secret = make.token("tanuki/awesome_project", ["read_repository"])
    server = serve(workers=1)
    git("clone", _url(server, f"tanuki/awesome_project{suffix}", username, secret),
        str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "README.md").read_text() == "hello\n"


def test_a_developer_pushes_to_the_url_without_dot_git(app, make, git, serve):
    make.project("tanuki/p")
    make.member("tanuki/p", make.user("dev"), "developer")
    server = serve(workers=1)
    work = git.work_tree()
    git("push", _url(server, "tanuki/p", "dev", "correct-horse-battery"), "main", cwd=work)
    heads = git("ls-remote", _url(server, "tanuki/p", "dev", "correct-horse-battery")).stdout
    assert "refs/heads/main" in heads


def _pack_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / ".git" / "objects" / "pack").glob("*.pack"))


def test_a_partial_clone_skips_blobs_and_fetches_them_later_with_the_same_token(
        app, make, git, serve, tmp_path):
    make.project("tanuki/big")
    old, new = os.urandom(2 << 20), os.urandom(2 << 20)
    work = git.work_tree("big", {"data.bin": old})
    (work / "data.bin").write_bytes(new)
    git("commit", "-q", "-am", "replace the data", cwd=work)
    old_blob = git("rev-parse", "HEAD~1:data.bin", cwd=work).stdout.strip()
    git("push", "-q", str(Path(app.config["DATA_DIR"]) / "repositories" / "tanuki/big.git"),
        "main", cwd=work)
    _, username, secret = make.token("tanuki/big", ["read_repository"])
    server = serve(workers=1)
    url = _url(server, "tanuki/big", username, secret)

    git("clone", "-q", url, str(tmp_path / "full"))
    partial = git("clone", "--filter=blob:none", url, str(tmp_path / "partial"))
    assert "filtering not recognized by server" not in partial.stderr
    clone = tmp_path / "partial"
    assert (clone / "data.bin").read_bytes() == new  # checkout fetched what it needed
    missing = git("rev-list", "--objects", "--missing=print", "--all", cwd=clone).stdout
    assert f"?{old_blob}" in missing.split()
    full_bytes, partial_bytes = _pack_bytes(tmp_path / "full"), _pack_bytes(clone)
    print(f"full clone packs {full_bytes} B, partial clone packs {partial_bytes} B")
    assert full_bytes > 4 << 20
    assert partial_bytes < full_bytes - (1 << 20)

    # An older commit's blob arrives on demand, through the credentials in the remote URL.
    git("checkout", "-q", "HEAD~1", cwd=clone)
    assert (clone / "data.bin").read_bytes() == old
    missing = git("rev-list", "--objects", "--missing=print", "--all", cwd=clone).stdout
    assert f"?{old_blob}" not in missing.split()


@pytest.mark.parametrize("spec, kept, left", [("blob:limit=1k", "small.txt", "big.bin"),
                                               ("tree:0", None, None)])
def test_other_filters_are_served(app, make, git, serve, tmp_path, spec, kept, left):
    make.project("tanuki/f")
    work = git.work_tree("f", {"small.txt": b"small\n", "big.bin": os.urandom(4096)})
    git("push", "-q", str(Path(app.config["DATA_DIR"]) / "repositories" / "tanuki/f.git"),
        "main", cwd=work)
    blobs = {name: git("rev-parse", f"HEAD:{name}", cwd=work).stdout.strip()
             for name in ("small.txt", "big.bin")}
    _, username, secret = make.token("tanuki/f", ["read_repository"])
    server = serve(workers=1)
    result = git("clone", "--no-checkout", f"--filter={spec}",
                 _url(server, "tanuki/f", username, secret), str(tmp_path / "c"))
    assert "filtering not recognized" not in result.stderr
    missing = git("rev-list", "--objects", "--missing=print", "--all", cwd=tmp_path / "c"
                  ).stdout.split()
    if kept:
        assert f"?{blobs[kept]}" not in missing
        assert f"?{blobs[left]}" in missing
    else:
        tree = git("rev-parse", "HEAD^{tree}", cwd=work).stdout.strip()
        assert f"?{tree}" in missing  # not even the root tree came

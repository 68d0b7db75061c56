"""Bare git repositories on disk: DATA_DIR/repositories/<project full path>.git."""
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

from flask import current_app

from .errors import Invalid

DEFAULT_BRANCH = "main"


def root() -> Path:
    """The folder that holds every project's repository (GIT_PROJECT_ROOT)."""
    return Path(current_app.config["DATA_DIR"]).resolve() / "repositories"


def path_for(full_path: str) -> Path:
    """Where a project's bare repository lives."""
    return root() / f"{full_path.strip('/')}.git"


def git_environment() -> dict:
    """A minimal environment for server-side git: no user or system config applies."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "LANG": "C"}


def config_environment(settings: dict[str, str]) -> dict[str, str]:
    """git configuration for a child process, as GIT_CONFIG_COUNT/KEY_n/VALUE_n variables."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for n, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    return env


class Staged:
    """A bare repository initialised under a temporary name beside its final place.

    `publish()` renames it into place; `discard()` removes whatever this object created,
    so a failed project creation leaves no directory behind.
    """

    def __init__(self, full_path: str):
        self.final = path_for(full_path)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.final.parent / f".tmp-{uuid.uuid4().hex}.git"
        self.published = False
        try:
            subprocess.run(
                ["git", "-c", f"init.defaultBranch={DEFAULT_BRANCH}", "init", "--bare",
                 "--quiet", str(self.temp)],
                check=True, env=git_environment(), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, timeout=60)
        except Exception:
            shutil.rmtree(self.temp, ignore_errors=True)
            raise

    def publish(self) -> Path:
        if self.final.exists():
            raise Invalid({"path": [f"A repository already exists on disk at {self.final.name}"]})
        # Same folder, so the rename is atomic: the repository appears whole or not at all.
        os.rename(self.temp, self.final)
        self.published = True
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.final if self.published else self.temp, ignore_errors=True)
        self.published = False


def ensure(full_path: str) -> Path:
    """Return the project's repository, creating it if the project predates repositories."""
    final = path_for(full_path)
    if final.is_dir():
        return final
    staged = Staged(full_path)
    try:
        return staged.publish()
    except (Invalid, OSError):  # another worker created it first
        staged.discard()
        return final


def _newest_change(path: Path) -> float:
    """The latest mtime of a directory or anything inside it (a live push keeps writing)."""
    newest = path.stat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                pass
    return newest


def gc(*, now: Optional[float] = None, max_age: Optional[int] = None) -> dict[str, int]:
    """Remove what killed pushes and project creations left behind.

    git receives a push into `objects/tmp_objdir-incoming-*` and moves the objects in only
    once the push is accepted; a killed push leaves that quarantine behind. One in which
    nothing changed for longer than the longest push (PUSH_MAX_SECONDS) is abandoned.
    """
    now = now or time.time()
    max_age = int(current_app.config["PUSH_MAX_SECONDS"]) if max_age is None else max_age
    removed = {"quarantines": 0, "staged": 0}
    base = root()
    if not base.is_dir():
        return removed
    candidates = [("quarantines", p) for p in base.glob("**/*.git/objects/tmp_objdir-incoming-*")]
    candidates += [("staged", p) for p in base.glob("**/.tmp-*.git")]
    for kind, path in candidates:
        try:
            if now - _newest_change(path) <= max_age:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed[kind] += 1
    return removed

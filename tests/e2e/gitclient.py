"""The real git client for end-to-end tests, isolated from this machine's configuration."""
import os
import subprocess
from pathlib import Path


class Git:
    """The git client, isolated from this machine's configuration."""

    def __init__(self, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        config = home / "gitconfig"
        config.write_text("[user]\n\tname = Test\n\temail = test@example.com\n"
                          "[init]\n\tdefaultBranch = main\n"
                          # Store, don't deflate: random test data does not compress anyway.
                          "[core]\n\tcompression = 0\n")
        self.home = home
        self.env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_GLOBAL": str(config),
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LANG": "C"}

    def __call__(self, *args, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=cwd, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stderr}")
        return result

    def work_tree(self, name="work", files=None) -> Path:
        """A fresh repository with one commit holding `files` (name → bytes)."""
        path = self.home / name
        self("init", "-q", str(path))
        for filename, content in (files or {"README.md": b"hello\n"}).items():
            (path / filename).write_bytes(content)
        self("add", "-A", cwd=path)
        self("commit", "-q", "-m", "first", cwd=path)
        return path


def seed(git: Git, app, full_path: str) -> None:
    """Put a commit into the project's bare repository straight on disk."""
    work = git.work_tree(f"seed-{full_path.replace('/', '-')}")
    bare = Path(app.config["DATA_DIR"]) / "repositories" / f"{full_path}.git"
    git("push", "-q", str(bare), "main", cwd=work)

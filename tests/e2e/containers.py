"""Container helpers for tests and benchmarks: a hand-written OCI image, skopeo, the registry."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path

from ..support import ROOT, VENV_BIN, running


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_image(layout: Path, tag: str, files: dict[str, bytes]) -> str:
    """Write an image whose one layer holds `files`; return the manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            archive.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()
    layer = _blob(layout, gzip.compress(tar.getvalue(), compresslevel=1, mtime=0))
    config = _blob(layout, json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode()
    entry = _blob(layout, manifest)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {
        "schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **entry,
        "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))
    return entry["digest"]


class Skopeo:
    """skopeo isolated from this machine: its own HOME, policy, registries.conf, authfiles."""

    def __init__(self, binary: str, home: Path, registry: str):
        self.binary, self.home, self.registry = binary, home, registry
        home.mkdir(parents=True, exist_ok=True)
        (home / "policy.json").write_text(json.dumps(
            {"default": [{"type": "insecureAcceptAnything"}]}))
        (home / "registries.conf").write_text("")
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "XDG_RUNTIME_DIR": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                    "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
                    "REGISTRY_AUTH_FILE": str(home / "no-auth.json")}

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, "--policy", str(self.home / "policy.json"), *args],
                              input=stdin, env=self.env, capture_output=True, text=True,
                              timeout=300)

    def authfile(self, name: str) -> str:
        return str(self.home / f"auth-{name}.json")

    def login(self, username: str, password: str) -> subprocess.CompletedProcess:
        """`skopeo login` into an authfile of its own (see `authfile(username)`)."""
        return self.run("login", "--authfile", self.authfile(username), "--tls-verify=false",
                        "--username", username, "--password-stdin", self.registry,
                        stdin=password)

    def ref(self, name: str) -> str:
        return f"docker://{self.registry}/{name}"

    def push(self, layout: Path, tag: str, name: str, as_user: str = None):
        auth = ["--dest-authfile", self.authfile(as_user)] if as_user else ["--dest-no-creds"]
        return self.run("copy", "--dest-tls-verify=false", *auth, f"oci:{layout}:{tag}",
                        self.ref(name))

    def pull(self, name: str, layout: Path, tag: str, as_user: str = None):
        auth = ["--src-authfile", self.authfile(as_user)] if as_user else ["--src-no-creds"]
        return self.run("copy", "--src-tls-verify=false", *auth, self.ref(name),
                        f"oci:{layout}:{tag}")

    def inspect(self, name: str, as_user: str = None):
        auth = ["--authfile", self.authfile(as_user)] if as_user else ["--no-creds"]
        return self.run("inspect", "--tls-verify=false", *auth, self.ref(name))


def registry_config(env: dict, listen: str) -> str:
    """The config `flask registry config` prints for these settings."""
    result = subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", "registry", "config",
                             "--listen", listen], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True)
    return result.stdout


@contextmanager
def docker_registry(binary: str, config_text: str, folder: Path, port: int):
    """Run `docker-registry serve` with this config (listening on `port`) until exit."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(config_text)
    # distribution reads REGISTRY_* variables as config overrides: pass none of ours on.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with running([binary, "serve", str(config)], port=port, env=env,
                 log=folder / "registry.log") as proc:
        yield proc

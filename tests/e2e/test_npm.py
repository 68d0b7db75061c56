"""The real npm against gunicorn: unpublish, deprecate, group and instance installs, ping,
whoami and audit; and the memory of a 100 MB publish."""
import base64
import hashlib
import http.client
import json

import sqlalchemy as sa

from ..support import peak_rss_mb, require_binary
from .test_packages import client_env, files_under, npm_cmd, one_worker, worker_pid  # noqa: F401


def package_dir(root, name, version, text):
    folder = root / f"{name.replace('/', '_')}-{version}"
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps(
        {"name": name, "version": version, "main": "index.js", "license": "MIT"}))
    (folder / "index.js").write_text(f"module.exports = {json.dumps(text)};\n")
    return folder


def npmrc(tmp_path, registry_url, port, secret):
    path = registry_url.split(f":{port}", 1)[1]
    (tmp_path / "npmrc").write_text(
        f"registry={registry_url}\n@tanuki:registry={registry_url}\n"
        f"//127.0.0.1:{port}{path}:_authToken={secret}\n")
    (tmp_path / "npm-global").write_text("")


def versions_in_db(url, name):
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.text(
                "SELECT version FROM packages WHERE name = :n"), {"n": name}).scalars())
    finally:
        engine.dispose()


def test_npm_unpublish_deprecate_levels_ping_whoami_audit(live_server, make, migrated, tmp_path):
    require_binary("npm")
    project = make.project("tanuki/awesome_project")
    _, wuser, wsecret = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    _, _, gsecret = make.token("tanuki", ["read_package_registry"], name="g")
    env = client_env(tmp_path)
    port = live_server.port
    project_registry = f"{live_server.url}/api/v4/projects/{project.id}/packages/npm/"
    npmrc(tmp_path, project_registry, port, wsecret)

    for version in ("1.0.0", "1.1.0"):
        folder = package_dir(tmp_path, "@tanuki/pkg", version, f"pkg {version}")
        published = npm_cmd(["publish"], folder, tmp_path, env)
        assert published.returncode == 0, published.stderr
    folder = package_dir(tmp_path, "@tanuki/gone", "0.1.0", "gone")
    assert npm_cmd(["publish"], folder, tmp_path, env).returncode == 0

    assert npm_cmd(["ping"], tmp_path, tmp_path, env).returncode == 0
    who = npm_cmd(["whoami"], tmp_path, tmp_path, env)
    assert who.returncode == 0 and who.stdout.strip() == wuser, who.stderr

    # deprecate shows in npm view; undeprecate clears it
    dep = npm_cmd(["deprecate", "@tanuki/pkg@1.0.0", "use 1.1.0 instead"], tmp_path, tmp_path, env)
    assert dep.returncode == 0, dep.stderr
    view = npm_cmd(["view", "@tanuki/pkg@1.0.0", "deprecated"], tmp_path, tmp_path, env)
    assert view.stdout.strip() == "use 1.1.0 instead", view.stdout + view.stderr

    # unpublish one version, then a whole package: both really gone from the database
    one = npm_cmd(["unpublish", "@tanuki/pkg@1.1.0"], tmp_path, tmp_path, env)
    assert one.returncode == 0, one.stderr
    assert versions_in_db(migrated, "@tanuki/pkg") == ["1.0.0"]
    whole = npm_cmd(["unpublish", "@tanuki/gone", "--force"], tmp_path, tmp_path, env)
    assert whole.returncode == 0, whole.stderr
    assert versions_in_db(migrated, "@tanuki/gone") == []
    view = npm_cmd(["view", "@tanuki/pkg", "versions", "--json"], tmp_path, tmp_path, env)
    assert json.loads(view.stdout) in (["1.0.0"], "1.0.0")

    # install through the group and the instance registries, with a group token; audit passes
    for level in (f"{live_server.url}/api/v4/groups/tanuki/-/packages/npm/",
                  f"{live_server.url}/api/v4/packages/npm/"):
        npmrc(tmp_path, level, port, gsecret)
        app = tmp_path / ("app-" + str(abs(hash(level))))
        app.mkdir()
        (app / "package.json").write_text(json.dumps({"name": "app", "version": "0.0.0",
                                                      "private": True}))
        installed = npm_cmd(["install", "@tanuki/pkg@1.0.0"], app, tmp_path, env)
        assert installed.returncode == 0, level + installed.stderr
        assert (app / "node_modules/@tanuki/pkg/index.js").read_text() == 'module.exports = "pkg 1.0.0";\n'
        audit = npm_cmd(["audit", "--audit-level=low"], app, tmp_path, env)
        assert audit.returncode == 0, level + audit.stdout + audit.stderr
    log = live_server.log.read_text()
    assert '/-/npm/v1/security/advisories/bulk HTTP/1.1" 200' in log
    assert f'"PUT /api/v4/projects/{project.id}/packages/npm/@tanuki/pkg/-rev/' in log


def test_a_100_mb_npm_publish_keeps_the_worker_flat(one_worker, make, tmp_path):
    port, master, data = one_worker
    project = make.project("tanuki/big")
    _, _, secret = make.token("tanuki/big", ["write_package_registry"])
    block = bytes(range(256)) * 4095  # a multiple of 3: blocks encode independently
    count = 100 * 1024 * 1024 // len(block) + 1
    sha1, sha512 = hashlib.sha1(), hashlib.sha512()
    for _ in range(count):
        sha1.update(block)
        sha512.update(block)
    size = len(block) * count
    encoded = base64.b64encode(block)
    head = json.dumps({
        "name": "big", "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": "big", "version": "1.0.0", "dist": {
            "shasum": sha1.hexdigest(),
            "integrity": "sha512-" + base64.b64encode(sha512.digest()).decode()}}},
        "_attachments": {"big-1.0.0.tgz": {"length": size, "data": "@@"}}}).encode()
    before, after = head.split(b"@@")
    length = len(before) + len(encoded) * count + len(after)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("PUT", f"/api/v4/projects/{project.id}/packages/npm/big")
    for key, value in {"Authorization": f"Bearer {secret}", "Content-Type": "application/json",
                       "Content-Length": str(length)}.items():
        conn.putheader(key, value)
    conn.endheaders()
    conn.send(before)
    for _ in range(count):
        conn.send(encoded)
    conn.send(after)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 201, body
    assert size >= 100 * 1024 * 1024

    peak = peak_rss_mb(worker_pid(master.pid))
    print(f"worker peak RSS after a {size / 1e6:.0f} MB npm publish: {peak:.1f} MB")
    assert peak < 150, f"worker peak RSS {peak:.0f} MB"
    assert files_under(data / "packages" / "tmp") == []

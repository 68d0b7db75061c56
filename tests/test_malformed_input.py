"""Input no client should send gets a 4xx with a message at every door, never a 500.

Runs on SQLite and on PostgreSQL (which refuses a NUL byte outright, so a NUL that
reached a query would be a 500 there). The test app propagates exceptions, so an
unhandled one fails the test by itself; the log is checked for tracebacks too.
"""
import base64
import logging
import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Package, PackageFile

from .conftest import csrf_from
from .support import in_ci

PROJECT = "tanuki/p"


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def nested(depth: int) -> bytes:
    return b'{"name": "@tanuki/pkg", "versions": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def world(app, make):
    make.user("admin", admin=True)
    project = make.project(PROJECT)
    _, username, secret = make.token(PROJECT, ["read_repository", "read_registry",
                                               "write_package_registry"])
    return {"id": project.id, "deploy": (username, secret), "admin": make.pat("admin")}


# (name, method, url, keyword arguments for the test client) — `{id}`, `{admin}`,
# `{user}` and `{secret}` are filled in from the world.
CASES = [
    ("page: NUL in the path", "get", "/tanuki/p%00", {}),
    ("page: control character in the path", "get", "/tanuki/p%1b[31m", {}),
    ("git: NUL in the path", "get", "/tanuki/p%00.git/info/refs?service=git-upload-pack", {}),
    ("git: NUL in the username", "get", "/tanuki/p.git/info/refs?service=git-upload-pack",
     {"headers": basic("root\x00", "x")}),
    ("git: control character in the password", "get",
     "/tanuki/p.git/info/refs?service=git-upload-pack", {"headers": basic("root", "pa\x01ss")}),
    ("git: bidirectional override in the username", "get",
     "/tanuki/p.git/info/refs?service=git-upload-pack", {"headers": basic("root\u202e", "x")}),
    ("registry: NUL in the scope", "get",
     "/jwt/auth?service=container_registry&scope=repository:tanuki/p%00:pull", {}),
    ("registry: NUL in the username", "get", "/jwt/auth?service=container_registry",
     {"headers": basic("gitlab+deploy-token-1\x00", "x")}),
    ("api: NUL in :id", "get", "/api/v4/projects/1%00", {"headers": {"PRIVATE-TOKEN": "{admin}"}}),
    ("api: NUL in a token", "get", "/api/v4/user", {"headers": {"PRIVATE-TOKEN": "glpat-\x00"}}),
    ("api: a page number past any database", "get",
     "/api/v4/deploy_tokens?page=99999999999999999999", {"headers": {"PRIVATE-TOKEN": "{admin}"}}),
    ("api: per_page past any database", "get",
     "/api/v4/deploy_tokens?per_page=99999999999999999999", {"headers": {"PRIVATE-TOKEN": "{admin}"}}),
    ("api: an expiry past year 9999 in UTC", "post", "/api/v4/projects/{id}/deploy_tokens",
     {"headers": {"PRIVATE-TOKEN": "{admin}"},
      "json": {"name": "x", "scopes": ["read_repository"], "expires_at": "9999-12-31T23:59:59-01:00"}}),
    ("api: an expiry with year 0", "post", "/api/v4/projects/{id}/deploy_tokens",
     {"headers": {"PRIVATE-TOKEN": "{admin}"},
      "json": {"name": "x", "scopes": ["read_repository"], "expires_at": "0000-01-01"}}),
    ("api: NUL in a token name", "post", "/api/v4/projects/{id}/deploy_tokens",
     {"headers": {"PRIVATE-TOKEN": "{admin}"}, "json": {"name": "a\x00b", "scopes": ["read_repository"]}}),
    ("api: right-to-left override in a username", "post", "/api/v4/projects/{id}/deploy_tokens",
     {"headers": {"PRIVATE-TOKEN": "{admin}"},
      "json": {"name": "x", "username": "abc\u202egpj", "scopes": ["read_repository"]}}),
    ("api: undecodable JSON body", "post", "/api/v4/projects/{id}/deploy_tokens",
     {"headers": {"PRIVATE-TOKEN": "{admin}", "Content-Type": "application/json"},
      "data": b"\xff\xfe{"}),
    ("api: control character in the query", "get", "/api/v4/projects/{id}/deploy_tokens?active=%01",
     {"headers": {"PRIVATE-TOKEN": "{admin}"}}),
    ("pypi: NUL in the package name", "get", "/api/v4/projects/{id}/packages/pypi/simple/a%00b",
     {"headers": basic("{user}", "{secret}")}),
    ("pypi: NUL in the username", "get", "/api/v4/projects/{id}/packages/pypi/simple/",
     {"headers": basic("u\x00", "{secret}")}),
    ("generic: NUL in the file name", "put",
     "/api/v4/projects/{id}/packages/generic/pkg/1.0/a%00b", {"headers": {"Deploy-Token": "{secret}"},
                                                               "data": b"x"}),
    ("npm: JSON nested 100000 deep", "put", "/api/v4/projects/{id}/packages/npm/@tanuki%2fpkg",
     {"headers": {"Authorization": "Bearer {secret}", "Content-Type": "application/json"},
      "data": nested(100000)}),
    ("npm: undecodable body", "put", "/api/v4/projects/{id}/packages/npm/@tanuki%2fpkg",
     {"headers": {"Authorization": "Bearer {secret}", "Content-Type": "application/json"},
      "data": b"\xff\xff"}),
    ("ci: NUL in the token", "get", "/ci/variables", {"headers": {"Authorization": "Bearer glrt-\x00"}}),
    ("ci: control character in the query", "get", "/ci/variables?x=%07", {}),
]


def _fill(value, world):
    if isinstance(value, str):
        return (value.replace("{id}", str(world["id"])).replace("{admin}", world["admin"])
                .replace("{user}", world["deploy"][0]).replace("{secret}", world["deploy"][1]))
    if isinstance(value, dict):
        return {key: _fill(item, world) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, world) for item in value]
    return value


def _basic_filled(headers, world):
    # basic() was applied to the placeholders: decode, fill, encode again.
    header = headers.get("Authorization", "")
    if header.startswith("Basic "):
        pair = base64.b64decode(header[6:]).decode()
        headers = dict(headers, Authorization="Basic " + base64.b64encode(
            _fill(pair, world).encode()).decode())
    return headers


@pytest.mark.parametrize("name, method, url, kwargs", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_a_4xx_with_a_message(app, client, world, caplog, name, method,
                                                 url, kwargs):
    kwargs = _fill(kwargs, world)
    if "headers" in kwargs:
        kwargs["headers"] = _basic_filled(kwargs["headers"], world)
    with caplog.at_level(logging.INFO):
        response = getattr(client, method)(_fill(url, world), **kwargs)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.get_data(as_text=True).strip(), "the answer says what went wrong"
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_nul_in_the_sign_in_form_is_a_field_error(app, client, world):
    page = client.get("/users/sign_in")
    response = client.post("/users/sign_in", data={
        "username": "root\x00", "password": "x", "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 422
    assert "control characters" in response.get_data(as_text=True)


def test_a_failed_create_through_the_api_leaves_no_row(app, client, world):
    from webapp.models import DeployToken
    client.post(f"/api/v4/projects/{world['id']}/deploy_tokens",
                headers={"PRIVATE-TOKEN": world["admin"]},
                json={"name": "x", "scopes": ["read_repository"],
                      "expires_at": "9999-12-31T23:59:59-01:00"})
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DeployToken)) == 1


# ---------------------------------------------------------------- a full disk

@pytest.fixture
def tiny_disk(tmp_path):
    """DATA_DIR on a 1 MiB tmpfs: a real ENOSPC, not an imitation of one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        if in_ci():
            pytest.fail(f"cannot mount a tmpfs to test a full disk: {result.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_507_and_leaves_nothing_behind(app, client, world, tiny_disk):
    app.config["DATA_DIR"] = str(tiny_disk)
    response = client.put(f"/api/v4/projects/{world['id']}/packages/generic/pkg/1.0/big.bin",
                          headers={"Deploy-Token": world["deploy"][1]},
                          data=os.urandom(3 * 1024 * 1024))
    assert response.status_code == 507
    assert "out of storage space" in response.get_json()["error"]
    leftovers = [p for p in Path(tiny_disk).rglob("*") if p.is_file()]
    assert leftovers == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Package)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PackageFile)) == 0

"""Two Gatehouse hosts sharing one database, one Redis and one data directory, behind nginx.

Each "host" is its own gunicorn (own processes, own memory); the only things they share
are what the README's "Running on several hosts" says must be shared.
"""
import os
from contextlib import ExitStack
from pathlib import Path

import jwt
import pytest
import requests
from cryptography import x509

from ..conftest import PASSWORD, csrf_from, gunicorn
from ..support import free_port, redis_server, require_binary
from .containers import Skopeo, docker_registry, registry_config, write_image
from .front import nginx
from .gitclient import seed

GENERIC = "/api/v4/projects/{ref}/packages/generic/tool/1.0.0/{file}"
BAN_AFTER = 4


class Cluster:
    def __init__(self, a, b, front, data_dir: Path):
        self.a, self.b, self.front, self.data_dir = a, b, front, data_dir


@pytest.fixture
def cluster(migrated, tmp_path):
    data_dir = tmp_path / "data"
    front_port = free_port()
    front_url = f"http://127.0.0.1:{front_port}"
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path))
        shared = dict(REDIS_URL=redis_url, EXTERNAL_URL=front_url, TRUSTED_PROXIES=1,
                      ACCEL_REDIRECT="true", AUTH_BAN_MAX_RETRY=BAN_AFTER,
                      AUTH_BAN_FIND_TIME=600, AUTH_BAN_TIME=600, THREADS=4)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = stack.enter_context(gunicorn(migrated, data_dir, tmp_path / "a", workers=1, **shared))
        b = stack.enter_context(gunicorn(migrated, data_dir, tmp_path / "b", workers=1, **shared))
        front = stack.enter_context(nginx(data_dir, tmp_path / "nginx",
                                          [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                                          port=front_port))
        yield Cluster(a, b, front, data_dir)


def api(url: str, token: str) -> dict:
    return {"PRIVATE-TOKEN": token}


def test_two_hosts_share_tokens_revocations_bans_files_and_sessions(cluster, make, git, app,
                                                                     tmp_path):
    a, b = cluster.a.url, cluster.b.url
    project = make.project("tanuki/shared")
    maintainer = make.user("maint")
    make.member("tanuki/shared", maintainer, "maintainer")
    pat = make.pat(maintainer)
    seed(git, app, "tanuki/shared")

    # A token made on host A works at once on host B.
    made = requests.post(f"{a}/api/v4/projects/{project.id}/deploy_tokens", headers=api(a, pat),
                         json={"name": "ci", "scopes": ["read_repository", "write_package_registry",
                                                        "read_registry"]}, timeout=30)
    assert made.status_code == 201, made.text
    token_id, username, secret = made.json()["id"], made.json()["username"], made.json()["token"]
    host_b = b.replace("http://", f"http://{username}:{secret}@")
    assert "refs/heads/main" in git("ls-remote", f"{host_b}/tanuki/shared.git").stdout

    # An upload through one host downloads through the other, and through the front.
    body = os.urandom(300_000)
    put = requests.put(a + GENERIC.format(ref=project.id, file="t.bin"), data=body,
                       headers={"Deploy-Token": secret}, timeout=60)
    assert put.status_code == 201, put.text
    for url in (b, cluster.front.url):
        got = requests.get(url + GENERIC.format(ref=project.id, file="t.bin"),
                           headers={"Deploy-Token": secret}, timeout=60)
        assert got.status_code == 200 and got.content == body

    # Registry tokens signed by either host verify against the one shared certificate.
    signed = []
    for url in (a, b):
        answer = requests.get(f"{url}/jwt/auth", params={
            "service": "container_registry", "scope": "repository:tanuki/shared:pull"},
            auth=(username, secret), timeout=30)
        assert answer.status_code == 200, answer.text
        signed.append(answer.json()["token"])
    cert = x509.load_pem_x509_certificate(
        (cluster.data_dir / "keys" / "registry" / "registry.crt").read_bytes())
    for token in signed:
        claims = jwt.decode(token, cert.public_key(),
                            algorithms=["RS256", "ES256"], audience="container_registry")
        assert claims["access"][0]["actions"] == ["pull"]

    # A browser session signed in on A is valid on B (one SECRET_KEY).
    browser = requests.Session()
    form = browser.get(f"{a}/users/sign_in", timeout=30).text
    signed_in = browser.post(f"{a}/users/sign_in", data={
        "username": "maint", "password": PASSWORD, "csrf_token": csrf_from(form)},
        allow_redirects=False, timeout=30)
    assert signed_in.status_code == 302
    settings = browser.get(f"{b}/tanuki/shared/-/settings/repository", allow_redirects=False,
                           timeout=30)
    assert settings.status_code == 200 and "Deploy tokens" in settings.text

    # A revoke on B is refused on A at once.
    deleted = requests.delete(f"{b}/api/v4/projects/{project.id}/deploy_tokens/{token_id}",
                              headers=api(b, pat), timeout=30)
    assert deleted.status_code == 204
    host_a = a.replace("http://", f"http://{username}:{secret}@")
    refused = git("ls-remote", f"{host_a}/tanuki/shared.git", check=False)
    assert refused.returncode != 0
    assert requests.get(a + GENERIC.format(ref=project.id, file="t.bin"),
                        headers={"Deploy-Token": secret}, timeout=30).status_code == 401


def test_the_failed_login_ban_counts_across_hosts(cluster, make):
    make.project("tanuki/banned")
    params = {"service": "container_registry", "scope": "repository:tanuki/banned:pull"}
    hosts = [cluster.a.url, cluster.b.url] * BAN_AFTER
    for url in hosts[:BAN_AFTER]:  # half the failures on each host
        wrong = requests.get(f"{url}/jwt/auth", params=params, auth=("nobody", "wrong"), timeout=30)
        assert wrong.status_code == 401
    for url in (cluster.a.url, cluster.b.url, cluster.front.url):
        banned = requests.get(f"{url}/jwt/auth", params=params, auth=("nobody", "wrong"),
                              timeout=30)
        assert banned.status_code == 403, (url, banned.text)


def test_the_registry_accepts_tokens_from_whichever_host_answers(cluster, make, tmp_path):
    """The real registry sends clients to the front; nginx spreads /jwt/auth over both."""
    binary = require_binary("docker-registry", "apt-get install docker-registry")
    skopeo_binary = require_binary("skopeo", "apt-get install skopeo")
    make.project("tanuki/images")
    _, username, secret = make.token("tanuki/images", ["read_registry", "write_registry"])
    port = free_port()
    env = dict(os.environ, GATEHOUSE_DATA_DIR=str(cluster.data_dir),
               GATEHOUSE_EXTERNAL_URL=cluster.front.url, GATEHOUSE_SECRET_KEY="live-test-secret")
    layout = tmp_path / "image"
    write_image(layout, "v1", {"hello.txt": b"two hosts\n"})
    with docker_registry(binary, registry_config(env, f"127.0.0.1:{port}"),
                         tmp_path / "registry", port):
        skopeo = Skopeo(skopeo_binary, tmp_path / "skopeo", f"127.0.0.1:{port}")
        assert skopeo.login(username, secret).returncode == 0
        for n in range(3):  # several token requests: both hosts sign some
            pushed = skopeo.push(layout, "v1", f"tanuki/images:v{n}", as_user=username)
            assert pushed.returncode == 0, pushed.stderr
    served = [server.log.read_text().count("/jwt/auth") for server in (cluster.a, cluster.b)]
    assert all(served), f"each host should have signed tokens: {served}"

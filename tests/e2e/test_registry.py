"""The real CNCF registry (`docker-registry`) with Gatehouse as its token authority, via skopeo."""
import json
from datetime import date

import jwt
import requests

from ..conftest import PASSWORD


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def refused(result):
    assert result.returncode != 0, result.stdout
    return result.stderr.lower()


def test_deploy_tokens_log_in_push_and_pull(make, skopeo, image, tmp_path):
    layout, tag, digest = image
    make.project("tanuki/awesome_project")
    _, ro, ro_secret = make.token("tanuki/awesome_project", ["read_registry"])
    _, rw, rw_secret = make.token("tanuki/awesome_project", ["read_registry", "write_registry"])

    assert "login succeeded" in ok(skopeo.login(ro, ro_secret)).stdout.lower()
    ok(skopeo.login(rw, rw_secret))
    ok(skopeo.push(layout, tag, "tanuki/awesome_project/app:v1", as_user=rw))

    info = json.loads(ok(skopeo.inspect("tanuki/awesome_project/app:v1", as_user=ro)).stdout)
    assert info["Digest"] == digest
    pulled = tmp_path / "pulled"
    ok(skopeo.pull("tanuki/awesome_project/app:v1", pulled, "v1", as_user=ro))
    layer = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())["layers"][0]
    assert (pulled / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes() == (
        layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()


def test_read_only_token_cannot_push(make, skopeo, image):
    layout, tag, _ = image
    make.project("tanuki/awesome_project")
    _, ro, ro_secret = make.token("tanuki/awesome_project", ["read_registry"])
    _, rw, rw_secret = make.token("tanuki/awesome_project", ["read_registry", "write_registry"])
    ok(skopeo.login(ro, ro_secret))
    error = refused(skopeo.push(layout, tag, "tanuki/awesome_project:v1", as_user=ro))
    assert "denied" in error or "unauthorized" in error
    ok(skopeo.login(rw, rw_secret))
    assert "manifest unknown" in refused(skopeo.inspect("tanuki/awesome_project:v1", as_user=rw))


def test_dead_foreign_and_misnamed_tokens_cannot_log_in_or_pull(make, skopeo, image):
    layout, tag, _ = image
    make.project("tanuki/awesome_project")
    make.project("tanuki/other")
    _, rw, rw_secret = make.token("tanuki/awesome_project", ["read_registry", "write_registry"])
    ok(skopeo.login(rw, rw_secret))
    ok(skopeo.push(layout, tag, "tanuki/awesome_project:v1", as_user=rw))

    _, revoked, revoked_secret = make.token("tanuki/awesome_project", ["read_registry"],
                                            revoked=True)
    _, expired, expired_secret = make.token("tanuki/awesome_project", ["read_registry"],
                                            expires_at=date.today())
    _, named, named_secret = make.token("tanuki/awesome_project", ["read_registry"],
                                        username="deployer")
    for user, secret in [(revoked, revoked_secret), (expired, expired_secret),
                         ("not-deployer", named_secret)]:
        assert "invalid username/password" in refused(skopeo.login(user, secret))
        pull = skopeo.run("inspect", "--tls-verify=false", "--creds", f"{user}:{secret}",
                          skopeo.ref("tanuki/awesome_project:v1"))
        refused(pull)

    # A valid token of another project logs in, but sees nothing here.
    _, foreign, foreign_secret = make.token("tanuki/other", ["read_registry"])
    ok(skopeo.login(foreign, foreign_secret))
    error = refused(skopeo.inspect("tanuki/awesome_project:v1", as_user=foreign))
    assert "unauthorized" in error or "denied" in error


def test_developer_pushes_with_password_and_group_token_reaches_subgroup(make, skopeo, image):
    layout, tag, digest = image
    make.project("tanuki/infra/deploy")
    make.project("elsewhere/app")
    developer = make.user("dev")
    make.member("tanuki", developer, "developer")
    make.member("elsewhere", developer, "developer")
    ok(skopeo.login("dev", PASSWORD))
    ok(skopeo.push(layout, tag, "tanuki/infra/deploy:v1", as_user="dev"))
    ok(skopeo.push(layout, tag, "elsewhere/app:v1", as_user="dev"))

    _, group_user, group_secret = make.token("tanuki", ["read_registry"])
    ok(skopeo.login(group_user, group_secret))
    info = json.loads(ok(skopeo.inspect("tanuki/infra/deploy:v1", as_user=group_user)).stdout)
    assert info["Digest"] == digest
    refused(skopeo.inspect("elsewhere/app:v1", as_user=group_user))
    refused(skopeo.push(layout, tag, "tanuki/infra/deploy:v2", as_user=group_user))

    reporter = make.user("rep")
    make.member("tanuki", reporter, "reporter")
    ok(skopeo.login("rep", PASSWORD))
    refused(skopeo.push(layout, tag, "tanuki/infra/deploy:v3", as_user="rep"))
    ok(skopeo.inspect("tanuki/infra/deploy:v1", as_user="rep"))


def test_anonymous_pulls_public_projects_only(make, skopeo, image, tmp_path):
    layout, tag, digest = image
    make.project("tanuki/website", visibility="public")
    make.project("tanuki/secret")
    developer = make.user("dev")
    make.member("tanuki", developer, "developer")
    ok(skopeo.login("dev", PASSWORD))
    ok(skopeo.push(layout, tag, "tanuki/website:v1", as_user="dev"))
    ok(skopeo.push(layout, tag, "tanuki/secret:v1", as_user="dev"))

    assert json.loads(ok(skopeo.inspect("tanuki/website:v1")).stdout)["Digest"] == digest
    ok(skopeo.pull("tanuki/website:v1", tmp_path / "anon", "v1"))
    assert "unauthorized" in refused(skopeo.inspect("tanuki/secret:v1"))
    refused(skopeo.push(layout, tag, "tanuki/website:v2"))


def test_cross_repository_mount_gets_only_what_each_scope_allows(make, live_server, registry):
    make.project("tanuki/source")
    make.project("tanuki/target")
    _, user, secret = make.token("tanuki/target", ["read_registry", "write_registry"])
    response = requests.get(f"{live_server.url}/jwt/auth", auth=(user, secret), params=[
        ("account", user), ("service", "container_registry"),
        ("scope", "repository:tanuki/target:pull,push"),
        ("scope", "repository:tanuki/source:pull")], timeout=30)
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["access"] == [
        {"type": "repository", "name": "tanuki/target", "actions": ["pull", "push"]}]

    # The registry accepts the token for what it grants and nothing else.
    base = f"http://{registry}/v2"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{base}/tanuki/target/tags/list", headers=headers, timeout=30
                        ).status_code in (200, 404)
    denied = requests.get(f"{base}/tanuki/source/tags/list", headers=headers, timeout=30)
    assert denied.status_code == 401
    assert "insufficient_scope" in denied.headers.get("WWW-Authenticate", "")

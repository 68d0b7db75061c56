"""The container registry token endpoint, `GET /jwt/auth`, through the test client."""
import base64
import hashlib
import re
import shutil
import threading
from datetime import date
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sqlalchemy import event

from webapp import create_app
from webapp.extensions import db
from webapp.services import registry

from .conftest import PASSWORD

SERVICE = "container_registry"


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(
        f"{username}:{password}".encode()).decode()}


def ask(client, *scopes, creds=None, service=SERVICE, account=None):
    params = [("service", service)] if service is not None else []
    params += [("scope", s) for s in scopes]
    if account:
        params.append(("account", account))
    return client.get("/jwt/auth", query_string=params,
                      headers=basic(*creds) if creds else {})


def claims(app, response):
    """Verify the token with the certificate the registry trusts; return its claims."""
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["token"] == body["access_token"]
    with app.app_context():
        _, cert_path = registry.key_paths()
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return jwt.decode(body["token"], cert.public_key(), algorithms=["ES256", "RS256"],
                      audience=app.config["REGISTRY_SERVICE"])


def access(app, response):
    return {a["name"]: a["actions"] for a in claims(app, response)["access"]}


@pytest.fixture(scope="module")
def shared_keys(tmp_path_factory):
    """One key pair for the module: RSA-3072 generation costs half a second a test."""
    folder = tmp_path_factory.mktemp("keys") / "registry"
    app = create_app({"SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        registry._create(folder / registry.KEY_FILE, folder / registry.CERT_FILE)
    return folder


@pytest.fixture(autouse=True)
def seeded_keys(request, app, shared_keys):
    """Put the shared key pair where the app looks, unless the test wants a fresh one."""
    if "fresh_keys" not in request.fixturenames:
        shutil.copytree(shared_keys, Path(app.config["DATA_DIR"]) / "keys" / "registry")


@pytest.fixture
def fresh_keys():
    """Let the app create its own key pair on first use."""


@pytest.fixture
def project(make):
    make.project("tanuki/awesome_project")
    return "tanuki/awesome_project"


# --- credentials -----------------------------------------------------------------------

def test_login_without_scope_succeeds_with_a_registry_token(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    response = ask(client, creds=(user, secret), account=user)
    assert claims(app, response)["access"] == []
    assert claims(app, response)["sub"] == user


def test_username_with_plus_is_matched_exactly(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    assert user.startswith("gitlab+deploy-token-")
    assert ask(client, creds=(user, secret)).status_code == 200
    # `+` must not be decoded as a space anywhere along the way.
    assert ask(client, creds=(user.replace("+", " "), secret)).status_code == 401
    _, custom, secret2 = make.token(project, ["read_registry"], username="ci+bot")
    assert access(app, ask(client, f"repository:{project}:pull", creds=(custom, secret2))) == {
        project: ["pull"]}


def test_plus_in_a_raw_account_parameter_changes_nothing(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    response = client.get(f"/jwt/auth?account={user}&service={SERVICE}"
                          f"&scope=repository:{project}:pull", headers=basic(user, secret))
    assert access(app, response) == {project: ["pull"]}
    assert claims(app, response)["sub"] == user  # from the credentials, not `account`


def test_bad_credentials_are_refused_with_the_gitlab_body(client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    for creds in [(user, secret + "x"), ("someone-else", secret), (user, ""),
                  ("nobody", "nothing")]:
        response = ask(client, f"repository:{project}:pull", creds=creds)
        assert response.status_code == 401
        assert response.get_json() == {
            "errors": [{"code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied"}]}
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_malformed_basic_header_is_refused(client, project):
    response = client.get("/jwt/auth", query_string={"service": SERVICE},
                          headers={"Authorization": "Basic !!!not-base64"})
    assert response.status_code == 401


def test_revoked_and_expired_tokens_cannot_log_in(client, make, project):
    _, u1, s1 = make.token(project, ["read_registry"], revoked=True)
    _, u2, s2 = make.token(project, ["read_registry"], expires_at=date.today())
    assert ask(client, creds=(u1, s1)).status_code == 401
    assert ask(client, creds=(u2, s2)).status_code == 401


def test_token_without_registry_scope_is_denied(client, make, project):
    _, user, secret = make.token(project, ["read_repository"])
    for scopes in [(), (f"repository:{project}:pull",)]:
        response = ask(client, *scopes, creds=(user, secret))
        assert response.status_code == 403
        assert response.get_json()["errors"][0]["code"] == "DENIED"


def test_user_password_logs_in(app, client, make, project):
    make.user("alice")
    assert claims(app, ask(client, creds=("alice", PASSWORD)))["sub"] == "alice"
    assert ask(client, creds=("alice", "wrong-password")).status_code == 401


def test_anonymous_login_check_asks_for_credentials(client, project):
    response = ask(client)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_successful_use_is_recorded(app, client, make, project):
    token_id, user, secret = make.token(project, ["read_registry"])
    assert ask(client, f"repository:{project}:pull", creds=(user, secret)).status_code == 200
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import DeployToken
        token = db.session.get(DeployToken, token_id)
        assert token.last_used_at is not None
        assert token.last_used_ip == "127.0.0.1"


# --- service ---------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["registry.docker.io", "", None])
def test_wrong_or_missing_service_is_a_clear_400(client, make, project, service):
    _, user, secret = make.token(project, ["read_registry"])
    response = ask(client, f"repository:{project}:pull", creds=(user, secret), service=service)
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["code"] == "INVALID_REQUEST"
    assert "container_registry" in error["message"]


# --- scopes ----------------------------------------------------------------------------

def test_grants_exactly_what_the_token_scopes_allow(app, client, make, project):
    _, ro_user, ro = make.token(project, ["read_registry"])
    _, rw_user, rw = make.token(project, ["read_registry", "write_registry"])
    _, wo_user, wo = make.token(project, ["write_registry"])
    scope = f"repository:{project}:pull,push"
    assert access(app, ask(client, scope, creds=(ro_user, ro))) == {project: ["pull"]}
    assert access(app, ask(client, scope, creds=(rw_user, rw))) == {project: ["pull", "push"]}
    # write_registry alone can push but not pull: docker needs both to push, as in GitLab.
    assert access(app, ask(client, scope, creds=(wo_user, wo))) == {project: ["push"]}


def test_image_names_below_the_project_resolve_to_it(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    names = [f"{project}/app", f"{project}/app/debug"]
    got = access(app, ask(client, *[f"repository:{n}:pull" for n in names], creds=(user, secret)))
    assert got == {n: ["pull"] for n in names}


def test_a_project_token_costs_one_query_its_project_comes_with_it(app, client, make, project):
    # The hot path of every docker pull: the token is looked up together with its project,
    # and the scope's project is then found in hand, not asked for again.
    _, user, secret = make.token(project, ["read_registry", "write_registry"])
    scope = f"repository:{project}/img:pull,push"
    assert access(app, ask(client, scope, creds=(user, secret)))  # records the first use
    statements = []

    def listener(conn, cursor, statement, *args):
        statements.append(" ".join(statement.lower().split()))
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            response = ask(client, scope, creds=(user, secret))
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
    assert access(app, response) == {f"{project}/img": ["pull", "push"]}
    lookups = [s for s in statements if "auth_failures" not in s]  # the ban: Redis in production
    assert len(lookups) == 1, lookups
    assert "from deploy_tokens left outer join projects" in lookups[0]


def test_another_projects_name_is_not_answered_with_the_tokens_own(app, client, make, project):
    make.project("tanuki/other")
    make.project("tanuki/awesome")  # a prefix of the token's project path, as a string
    _, user, secret = make.token(project, ["read_registry"])
    got = access(app, ask(client, f"repository:{project}:pull", "repository:tanuki/other:pull",
                          "repository:tanuki/awesome:pull", creds=(user, secret)))
    assert got == {project: ["pull"]}


def test_longest_project_prefix_wins(app, client, make):
    # `g/app` is a prefix of `g/app...` names only; `g/sub/app/img` must find `g/sub/app`.
    make.project("g/app")
    make.project("g/sub/app")
    _, user, secret = make.token("g/sub/app", ["read_registry"])
    got = access(app, ask(client, "repository:g/sub/app/img:pull", "repository:g/app:pull",
                          creds=(user, secret)))
    assert got == {"g/sub/app/img": ["pull"]}


def test_the_deepest_project_wins_even_where_a_group_and_a_project_share_a_path(app, make):
    # create_* refuse a path a group or a project has, but the two tables are unique
    # only within themselves: were a race ever to let both in, the deeper project wins.
    from webapp.extensions import db
    from webapp.models import Group, Project
    from webapp.services import registry
    make.project("g/x/app")
    with app.app_context():
        parent = db.session.scalar(sa.select(Group).where(Group.full_path == "g"))
        db.session.add(Project(name="x", path="x", full_path="g/x", group=parent))
        db.session.commit()
        assert registry.project_for("g/x/app/img").full_path == "g/x/app"


def test_upper_case_project_paths_match_lower_case_names(app, client, make):
    make.project("Tanuki/Awesome")
    _, user, secret = make.token("Tanuki/Awesome", ["read_registry"])
    got = access(app, ask(client, "repository:tanuki/awesome:pull",
                          "repository:Tanuki/Awesome:pull", creds=(user, secret)))
    assert got == {"tanuki/awesome": ["pull"]}


MALFORMED = [
    "registry:catalog:pull",                     # another type (only catalog:* exists)
    "repository::pull",                          # empty name
    "repository:tanuki/awesome_project",         # no actions
    "repository:tanuki/awesome_project:",        # empty actions
    "repository:tanuki/awesome_project:delete",  # never granted
    "repository:tanuki/awesome_project:*",
    "repository:tanuki/awesome_project:pul",
    "repository:/tanuki/awesome_project:pull",
    "repository:tanuki//awesome_project:pull",
    "repository:tanuki/awesome_project/:pull",
    "repository:tanuki:pull",                    # a group, not a project
    "repository:tanuki/nope:pull",
    "repository:Tanuki/Awesome_Project:pull",    # upper case: the registry refuses it
    "repository:tanuki/awesome_project/" + "x/" * 200 + "x:pull",  # over 255 characters
    "",
    "repository",
]


def test_malformed_scopes_are_never_granted(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry", "write_registry"])
    for scope in MALFORMED:
        assert access(app, ask(client, scope, creds=(user, secret))) == {}, scope
    # Not even to an admin, and not when mixed with a good scope in one request.
    make.user("root", admin=True)
    response = ask(client, *MALFORMED, f"repository:{project}:pull", creds=("root", PASSWORD))
    assert access(app, response) == {project: ["pull"]}


def test_unknown_actions_are_dropped_known_ones_kept(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry", "write_registry"])
    got = access(app, ask(client, f"repository:{project}:delete,pull,*,push,pull",
                          creds=(user, secret)))
    assert got == {project: ["pull", "push"]}


def test_cross_repository_mount_grants_each_scope_separately(app, client, make):
    make.project("g/source")
    make.project("g/target")
    make.project("other/private")
    dev = make.user("dev")
    make.member("g/target", dev, "developer")
    make.member("g/source", dev, "reporter")
    response = ask(client, "repository:g/target:pull,push", "repository:g/source:pull",
                   "repository:other/private:pull", creds=("dev", PASSWORD))
    assert access(app, response) == {"g/target": ["pull", "push"], "g/source": ["pull"]}


def test_other_projects_token_gets_nothing(app, client, make, project):
    make.project("tanuki/other")
    _, user, secret = make.token("tanuki/other", ["read_registry", "write_registry"])
    assert access(app, ask(client, f"repository:{project}:pull,push", creds=(user, secret))) == {}


def test_group_token_reaches_subgroup_projects(app, client, make):
    make.project("tanuki/infra/deploy")
    make.project("other/app")
    _, user, secret = make.token("tanuki", ["read_registry"])
    got = access(app, ask(client, "repository:tanuki/infra/deploy:pull",
                          "repository:other/app:pull", creds=(user, secret)))
    assert got == {"tanuki/infra/deploy": ["pull"]}


@pytest.mark.parametrize("role,expected", [
    ("guest", []), ("reporter", ["pull"]), ("developer", ["pull", "push"]),
    ("maintainer", ["pull", "push"])])
def test_users_get_what_their_role_allows(app, client, make, project, role, expected):
    user = make.user("member")
    make.member(project, user, role)
    got = access(app, ask(client, f"repository:{project}:pull,push", creds=("member", PASSWORD)))
    assert got == ({project: expected} if expected else {})


def test_anonymous_pulls_public_projects_only(app, client, make):
    make.project("tanuki/website", visibility="public")
    make.project("tanuki/internal", visibility="internal")
    make.project("tanuki/private")
    response = ask(client, "repository:tanuki/website:pull,push",
                   "repository:tanuki/internal:pull", "repository:tanuki/private:pull")
    assert access(app, response) == {"tanuki/website": ["pull"]}
    assert claims(app, response)["sub"] == ""


# --- the token -------------------------------------------------------------------------

def test_token_header_and_claims(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    response = ask(client, f"repository:{project}:pull", creds=(user, secret))
    body = response.get_json()
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"  # a new key is P-256
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", header["kid"])
    data = claims(app, response)
    assert data["aud"] == SERVICE and isinstance(data["aud"], str)
    assert data["iss"] == app.config["REGISTRY_ISSUER"]
    assert data["exp"] - data["iat"] == 300 == body["expires_in"]
    assert data["nbf"] <= data["iat"]
    assert len(data["jti"]) >= 32
    assert body["issued_at"].endswith("Z")
    assert response.headers["Cache-Control"] == "no-store"


def test_kid_is_libtrust_form_of_the_certificate_key(app, client, make, project):
    _, user, secret = make.token(project, ["read_registry"])
    token = ask(client, creds=(user, secret)).get_json()["token"]
    with app.app_context():
        _, cert_path = registry.key_paths()
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert jwt.get_unverified_header(token)["kid"] == ":".join(
        b32[i:i + 4] for i in range(0, 48, 4))


def test_lifetime_issuer_and_service_are_configurable(migrated, tmp_path, make):
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": migrated,
                      "DATA_DIR": str(tmp_path / "d"), "REGISTRY_TOKEN_LIFETIME": 60,
                      "REGISTRY_ISSUER": "acme", "REGISTRY_SERVICE": "acme_registry"})
    response = ask(app.test_client(), "repository:x/y:pull", service="acme_registry")
    data = claims(app, response)
    assert (data["exp"] - data["iat"], data["iss"], data["aud"]) == (60, "acme", "acme_registry")


def test_key_is_created_once_and_reused(app, client, make, project, fresh_keys):
    _, user, secret = make.token(project, ["read_registry"])
    first = ask(client, creds=(user, secret)).get_json()["token"]
    with app.app_context():
        key_path, cert_path = registry.key_paths()
    before = (key_path.read_bytes(), cert_path.read_bytes())
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    registry._cache.clear()  # as a fresh worker would
    second = ask(client, creds=(user, secret)).get_json()["token"]
    assert (key_path.read_bytes(), cert_path.read_bytes()) == before
    assert jwt.get_unverified_header(first)["kid"] == jwt.get_unverified_header(second)["kid"]


def test_racing_workers_end_up_with_one_key(app, fresh_keys):
    errors, kids = [], []

    def worker():
        try:
            with app.app_context():
                kids.append(registry.signing_key().kid)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    registry._cache.clear()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(kids)) == 1
    with app.app_context():
        key_path, _ = registry.key_paths()
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["registry.crt", "registry.key"]
    assert [p.name for p in key_path.parent.parent.iterdir()] == ["registry"]  # no leftovers


def test_an_existing_rsa_key_keeps_signing_rs256(app, client, make, project):
    from cryptography.hazmat.primitives.asymmetric import rsa
    with app.app_context():
        key_path, cert_path = registry.key_paths()
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        cert_path.write_bytes(registry._certificate(private).public_bytes(
            serialization.Encoding.PEM))
    _, user, secret = make.token(project, ["read_registry"])
    response = ask(client, f"repository:{project}:pull", creds=(user, secret))
    assert jwt.get_unverified_header(response.get_json()["token"])["alg"] == "RS256"
    assert claims(app, response)["access"][0]["actions"] == ["pull"]


def test_configured_key_and_cert_paths_are_used(migrated, tmp_path, app):
    with app.app_context():
        generated_key, generated_cert = registry.key_paths()
        registry.signing_key()
    other = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": migrated,
                        "DATA_DIR": str(tmp_path / "elsewhere"),
                        "REGISTRY_KEY": str(generated_key), "REGISTRY_CERT": str(generated_cert)})
    with other.app_context():
        assert registry.signing_key().key_path == generated_key
    assert not (tmp_path / "elsewhere" / "keys").exists()
    missing = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": migrated,
                          "REGISTRY_KEY": str(tmp_path / "nope.key"),
                          "REGISTRY_CERT": str(tmp_path / "nope.crt")})
    with missing.app_context(), pytest.raises(RuntimeError, match="does not exist"):
        registry.signing_key()


# --- the registry's config and the project page ----------------------------------------

def test_config_command_prints_a_registry_config(app):
    result = app.test_cli_runner().invoke(args=["registry", "config", "--listen", "127.0.0.1:5055"])
    assert result.exit_code == 0, result.output
    out = result.output
    with app.app_context():
        _, cert_path = registry.key_paths()
    assert cert_path.exists()
    assert 'realm: "http://gatehouse.test/jwt/auth"' in out
    assert 'service: "container_registry"' in out
    assert f'rootcertbundle: "{cert_path.resolve()}"' in out
    assert f'rootdirectory: "{(Path(app.config["DATA_DIR"]) / "registry").resolve()}"' in out
    assert 'addr: "127.0.0.1:5055"' in out
    assert "proxy" not in out


def test_config_command_reports_a_missing_configured_key(migrated, tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": migrated,
                      "REGISTRY_KEY": str(tmp_path / "nope.key"),
                      "REGISTRY_CERT": str(tmp_path / "nope.crt")})
    result = app.test_cli_runner().invoke(args=["registry", "config"])
    assert result.exit_code == 1
    assert "nope.key does not exist" in result.output


def test_project_page_shows_registry_path_and_login(client, make, auth):
    make.project("Tanuki/Awesome", visibility="public")
    page = client.get("/Tanuki/Awesome").get_data(as_text=True)
    assert "127.0.0.1:5050/tanuki/awesome" in page
    assert "docker login 127.0.0.1:5050" in page


# --- the failed-authentication ban, shared with git ---------------------------------------

@pytest.fixture
def small_ban(app):
    app.config.update(AUTH_BAN_MAX_RETRY=3, AUTH_BAN_FIND_TIME=60, AUTH_BAN_TIME=3600)


def test_failures_on_jwt_auth_ban_the_ip_before_any_credential_check(app, client, make, project, small_ban):
    _, username, secret = make.token(project, ["read_registry"])
    for _ in range(3):
        assert ask(client, creds=(username, "gldt-wrongwrongwrongwron")).status_code == 401
    banned = ask(client, f"repository:{project}:pull", creds=(username, secret))
    assert banned.status_code == 403
    assert banned.get_json()["errors"][0]["code"] == "DENIED"
    assert "Too many failed authentication attempts" in banned.get_json()["errors"][0]["message"]
    # The same ban closes git to that IP.
    git = client.get(f"/{project}.git/info/refs?service=git-upload-pack",
                     headers=basic(username, secret))
    assert git.status_code == 403


def test_git_failures_count_towards_the_registry_ban(app, client, make, project, small_ban):
    _, username, secret = make.token(project, ["read_registry", "read_repository"])
    for _ in range(3):
        client.get(f"/{project}.git/info/refs?service=git-upload-pack",
                   headers=basic(username, "gldt-wrongwrongwrongwron"))
    assert ask(client, creds=(username, secret)).status_code == 403


def test_a_success_does_not_reset_the_count(app, client, make, project, small_ban):
    _, username, secret = make.token(project, ["read_registry"])
    for _ in range(2):
        ask(client, creds=(username, "gldt-wrongwrongwrongwron"))
    assert ask(client, creds=(username, secret)).status_code == 200
    ask(client, creds=(username, "gldt-wrongwrongwrongwron"))
    assert ask(client, creds=(username, secret)).status_code == 403


def test_anonymous_login_check_is_not_a_failure(app, client, project, small_ban):
    for _ in range(5):
        assert ask(client).status_code == 401
    assert ask(client, f"repository:{project}:pull").status_code == 200


def test_only_admins_get_the_catalog(app, client, make):
    make.project("tanuki/awesome_project")
    make.user("root", admin=True)
    make.member("tanuki", make.user("owner"), "owner")
    _, user, secret = make.token("tanuki", ["read_registry", "write_registry"])
    granted = claims(app, ask(client, "registry:catalog:*", creds=("root", PASSWORD)))["access"]
    assert granted == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    for creds in (("owner", PASSWORD), (user, secret)):
        assert claims(app, ask(client, "registry:catalog:*", creds=creds))["access"] == []


def test_each_decision_is_one_log_line_without_secrets(app, client, make, caplog):
    make.project("tanuki/awesome_project")
    _, user, secret = make.token("tanuki/awesome_project", ["read_registry"])
    with caplog.at_level("INFO", logger=app.logger.name):
        ask(client, "repository:tanuki/awesome_project:pull,push", creds=(user, secret))
        ask(client, creds=(user, secret))
    lines = [r.getMessage() for r in caplog.records if "registry token" in r.getMessage()]
    assert lines == [
        f"registry token for deploy_token:{user} asked=[repository:tanuki/awesome_project:"
        "pull,push] granted=[repository:tanuki/awesome_project:pull]",
        f"registry token for deploy_token:{user} asked=[login] granted=[]"]
    assert secret not in caplog.text

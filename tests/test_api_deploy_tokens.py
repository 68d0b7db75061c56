"""REST API v4, deploy tokens: GitLab's paths, fields, status codes and error shapes."""
import base64
import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import AuditEvent, DeployToken
from webapp.services import deploy_tokens

PROJECT = "tanuki/awesome_project"
ENCODED = "tanuki%2Fawesome_project"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN_FIELDS = {"id", "name", "username", "expires_at", "scopes", "revoked", "expired",
                # Gatehouse's additions: the address allowlist and the rotation's grace.
                "allowed_ips", "previous_token_expires_at"}


class World:
    """A group with a private project and a nested group; callers made on first use."""

    def __init__(self, make):
        self.project = make.project(PROJECT)
        self.other = make.project("other/thing")
        self.group = make.group("tanuki/infra")
        self.make = make
        self.keys: dict[str, str] = {}

    def key(self, who: str) -> str:
        """The `api` token of maintainer, developer, owner (of tanuki), outsider or root."""
        if who not in self.keys:
            self.make.user(who, admin=(who == "root"))
            if who in ("maintainer", "developer", "owner"):
                self.make.member("tanuki", who, who)
            self.keys[who] = self.make.pat(who)
        return self.keys[who]

    @property
    def read_api(self) -> str:
        self.key("maintainer")
        return self.make.pat("maintainer", ("read_api",), name="read-only")

    def h(self, who="maintainer"):
        return {"PRIVATE-TOKEN": self.key(who)}


@pytest.fixture
def world(make):
    return World(make)


def _count_tokens(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(DeployToken.id)))


def _create(client, world, ref=ENCODED, kind="projects", who="maintainer", **body):
    body = body or {"name": "ci", "scopes": ["read_repository"]}
    return client.post(f"/api/v4/{kind}/{ref}/deploy_tokens", json=body, headers=world.h(who))


# ---------------------------------------------------------------- create

def test_create_project_token_answers_201_with_gitlab_fields_and_the_token(client, world, app):
    response = _create(client, world, name="deployer", scopes=["read_repository", "read_registry"],
                       expires_at="2031-12-01")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == TOKEN_FIELDS | {"token"}
    assert body["name"] == "deployer"
    assert body["username"] == f"gitlab+deploy-token-{body['id']}"
    assert body["expires_at"] == "2031-12-01T00:00:00.000Z"
    assert body["scopes"] == ["read_repository", "read_registry"]
    assert body["revoked"] is False and body["expired"] is False
    assert re.fullmatch(r"gldt-[A-Za-z0-9_-]{20}[0-9A-Za-z]{6}", body["token"])
    with app.app_context():
        assert deploy_tokens.find_active(body["username"], body["token"]).id == body["id"]
        row = db.session.get(DeployToken, body["id"])
        assert row.project_id == world.project.id and body["token"] not in row.token_digest


def test_create_without_expiry_reports_null(client, world):
    body = _create(client, world).get_json()
    assert body["expires_at"] is None


def test_create_accepts_a_datetime_expiry_in_any_offset_and_answers_utc_with_ms(client, world):
    body = _create(client, world, name="a", scopes=["read_repository"],
                   expires_at="2031-05-01T14:30:00+02:00").get_json()
    assert body["expires_at"] == "2031-05-01T12:30:00.000Z"
    body = _create(client, world, name="b", scopes=["read_repository"],
                   expires_at="2031-05-01T12:30:15Z").get_json()
    assert body["expires_at"] == "2031-05-01T12:30:15.000Z"
    assert ISO_MS.match(body["expires_at"])


def test_create_with_custom_username(client, world):
    body = _create(client, world, name="a", scopes=["read_repository"], username="deployer").get_json()
    assert body["username"] == "deployer"


def test_create_accepts_form_encoded_scopes_array(client, world):
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=world.h(), data={
        "name": "form", "scopes[]": ["read_repository", "write_registry"], "expires_at": "2031-01-01"})
    assert response.status_code == 201
    assert response.get_json()["scopes"] == ["read_repository", "write_registry"]
    assert response.get_json()["expires_at"] == "2031-01-01T00:00:00.000Z"


@pytest.mark.parametrize("send", ["json", "form"])
def test_create_accepts_comma_separated_scopes(client, world, send):
    payload = {"name": "csv", "scopes": "read_package_registry,write_package_registry"}
    kw = {"json": payload} if send == "json" else {"data": payload}
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=world.h(), **kw)
    assert response.status_code == 201
    assert response.get_json()["scopes"] == ["read_package_registry", "write_package_registry"]


@pytest.mark.parametrize("body, answer", [
    ({"name": "x"}, {"error": "scopes is missing"}),
    ({"scopes": ["read_repository"]}, {"error": "name is missing"}),
    ({}, {"error": "name is missing, scopes is missing"}),
    ({"name": "x", "scopes": 5}, {"error": "scopes is invalid"}),
    ({"name": 5, "scopes": ["read_repository"]}, {"error": "name is invalid"}),
    ({"name": "x", "scopes": ["read_repository"], "expires_at": "next tuesday"},
     {"error": "expires_at is invalid"}),
])
def test_create_with_missing_or_mistyped_parameter_is_400_error(client, world, app, body, answer):
    # A deliberately empty JSON object must still count as "missing", not as no body.
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", json=body,
                           headers=world.h())
    assert response.status_code == 400
    assert response.get_json() == answer
    assert _count_tokens(app) == 0


@pytest.mark.parametrize("body, field, fragment", [
    ({"name": "", "scopes": ["read_repository"]}, "name", "can't be blank"),
    ({"name": "x" * 256, "scopes": ["read_repository"]}, "name", "too long"),
    ({"name": "x", "scopes": ["write_repository"]}, "scopes", "Unknown scope: write_repository"),
    ({"name": "x", "scopes": []}, "scopes", "can't be blank"),
    ({"name": "x", "scopes": ["read_repository"], "expires_at": "2020-01-01"},
     "expires_at", "must be in the future"),
    ({"name": "x", "scopes": ["read_repository"], "username": "bad name!"},
     "username", "can contain only"),
])
def test_create_with_invalid_value_is_400_message_by_field(client, world, app, body, field, fragment):
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", json=body,
                           headers=world.h())
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert isinstance(message, dict) and fragment in " ".join(message[field])
    assert _count_tokens(app) == 0


def test_create_reports_every_invalid_field_at_once(client, world):
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=world.h(),
                           json={"name": "", "scopes": ["nope"], "expires_at": "2001-01-01"})
    assert set(response.get_json()["message"]) == {"name", "scopes", "expires_at"}


def test_create_with_a_body_that_is_not_a_json_object_is_400(client, world, app):
    response = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=world.h(),
                           data="[1, 2", content_type="application/json")
    assert response.status_code == 400 and "error" in response.get_json()
    assert _count_tokens(app) == 0


# ---------------------------------------------------------------- both id forms

@pytest.fixture(params=["numeric", "encoded-path"])
def project_ref(request, world):
    return str(world.project.id) if request.param == "numeric" else ENCODED


@pytest.fixture(params=["numeric", "encoded-path"])
def group_ref(request, world):
    return str(world.group.id) if request.param == "numeric" else "tanuki%2Finfra"


def _lifecycle(client, world, kind, ref, owner_key):
    """Create, list, get and delete one token; check each answer."""
    created = _create(client, world, ref=ref, kind=kind)
    assert created.status_code == 201
    token = created.get_json()

    listed = client.get(f"/api/v4/{kind}/{ref}/deploy_tokens", headers=world.h())
    assert listed.status_code == 200
    assert [t["id"] for t in listed.get_json()] == [token["id"]]
    assert set(listed.get_json()[0]) == TOKEN_FIELDS  # never the secret again

    got = client.get(f"/api/v4/{kind}/{ref}/deploy_tokens/{token['id']}", headers=world.h())
    assert got.status_code == 200
    assert got.get_json() == {k: v for k, v in token.items() if k != "token"}

    deleted = client.delete(f"/api/v4/{kind}/{ref}/deploy_tokens/{token['id']}", headers=world.h())
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert client.get(f"/api/v4/{kind}/{ref}/deploy_tokens", headers=world.h()).get_json() == []
    gone = client.get(f"/api/v4/{kind}/{ref}/deploy_tokens/{token['id']}", headers=world.h())
    assert gone.status_code == 404
    assert gone.get_json() == {"message": "404 Deploy Token Not Found"}
    return token


def test_project_tokens_by_id_or_encoded_path(client, world, project_ref, app):
    token = _lifecycle(client, world, "projects", project_ref, "project_id")
    with app.app_context():
        assert db.session.get(DeployToken, token["id"]).project_id == world.project.id


def test_group_tokens_by_id_or_encoded_nested_path(client, world, group_ref, app):
    token = _lifecycle(client, world, "groups", group_ref, "group_id")
    with app.app_context():
        assert db.session.get(DeployToken, token["id"]).group_id == world.group.id


def test_get_a_token_of_another_project_is_404(client, world, make):
    other_id = make.token("other/thing")[0]
    response = client.get(f"/api/v4/projects/{ENCODED}/deploy_tokens/{other_id}", headers=world.h("root"))
    assert response.status_code == 404
    assert response.get_json() == {"message": "404 Deploy Token Not Found"}
    deleted = client.delete(f"/api/v4/projects/{ENCODED}/deploy_tokens/{other_id}", headers=world.h("root"))
    assert deleted.status_code == 404


# ---------------------------------------------------------------- delete

def test_deleted_token_never_authenticates_is_hidden_everywhere_and_audited(client, world, make, app, auth):
    token_id, username, secret = make.token(PROJECT, ("read_repository",), name="doomed")
    make.token(PROJECT, ("read_repository",), name="revoked-one", revoked=True)
    response = client.delete(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}", headers=world.h())
    assert response.status_code == 204
    with app.app_context():
        assert deploy_tokens.find_active(username, secret) is None
        row = db.session.get(DeployToken, token_id)
        assert row.revoked and row.deleted_at is not None  # kept for the audit trail
        names = [t.name for t in deploy_tokens.DEPLOY_TOKENS.list_for(world.project)]
        assert names == ["revoked-one"]
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "deploy_token_destroyed"))
        assert event.target_id == token_id and event.actor_name == "maintainer"
        assert event.details["name"] == "doomed" and event.details["scopes"] == ["read_repository"]
    # Gone from the browser panel too, inactive list included.
    auth.login("maintainer")
    page = client.get(f"/{PROJECT}/-/settings/repository").get_data(as_text=True)
    assert "revoked-one" in page and "doomed" not in page
    # Deleting again: it no longer exists.
    again = client.delete(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}", headers=world.h())
    assert again.status_code == 404


# ---------------------------------------------------------------- list filters, pagination

def test_active_filter(client, world, make):
    live = make.token(PROJECT, name="live")[0]
    revoked = make.token(PROJECT, name="revoked", revoked=True)[0]
    expired = make.token(PROJECT, name="expired",
                         expires_at=datetime.now(timezone.utc) - timedelta(hours=1))[0]
    url = f"/api/v4/projects/{ENCODED}/deploy_tokens"

    def ids(query=""):
        response = client.get(url + query, headers=world.h())
        assert response.status_code == 200
        return sorted(t["id"] for t in response.get_json())

    assert ids() == sorted([live, revoked, expired])
    assert ids("?active=true") == [live]
    assert ids("?active=false") == sorted([revoked, expired])
    by_id = {t["id"]: t for t in client.get(url, headers=world.h()).get_json()}
    assert by_id[revoked]["revoked"] is True and by_id[revoked]["expired"] is False
    assert by_id[expired]["expired"] is True and by_id[expired]["revoked"] is False
    bad = client.get(url + "?active=maybe", headers=world.h())
    assert bad.status_code == 400 and bad.get_json() == {"error": "active is invalid"}


def _links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


def test_pagination_headers(client, world, make):
    ids = [make.token(PROJECT, name=f"t{i}")[0] for i in range(5)]
    url = f"/api/v4/projects/{ENCODED}/deploy_tokens"
    response = client.get(url + "?per_page=2&page=2", headers=world.h())
    assert [t["id"] for t in response.get_json()] == ids[2:4]
    h = response.headers
    assert (h["X-Total"], h["X-Total-Pages"], h["X-Page"], h["X-Per-Page"]) == ("5", "3", "2", "2")
    assert (h["X-Next-Page"], h["X-Prev-Page"]) == ("3", "1")
    links = _links(h["Link"])
    base = f"http://gatehouse.test/api/v4/projects/{ENCODED}/deploy_tokens"
    assert links == {"prev": f"{base}?page=1&per_page=2", "next": f"{base}?page=3&per_page=2",
                     "first": f"{base}?page=1&per_page=2", "last": f"{base}?page=3&per_page=2"}

    last = client.get(url + "?per_page=2&page=3&active=true", headers=world.h())
    assert [t["id"] for t in last.get_json()] == ids[4:]
    assert last.headers["X-Next-Page"] == "" and last.headers["X-Prev-Page"] == "2"
    links = _links(last.headers["Link"])
    assert "next" not in links and "active=true" in links["prev"]


def test_pagination_defaults_and_limits(client, world, make):
    for i in range(3):
        make.token(PROJECT, name=f"t{i}")
    url = f"/api/v4/projects/{ENCODED}/deploy_tokens"
    first = client.get(url, headers=world.h()).headers
    assert (first["X-Per-Page"], first["X-Page"], first["X-Total-Pages"]) == ("20", "1", "1")
    assert first["X-Next-Page"] == "" and first["X-Prev-Page"] == ""
    assert set(_links(first["Link"])) == {"first", "last"}
    assert client.get(url + "?per_page=1000", headers=world.h()).headers["X-Per-Page"] == "100"
    beyond = client.get(url + "?page=9", headers=world.h())
    assert beyond.status_code == 200 and beyond.get_json() == []
    bad = client.get(url + "?page=two", headers=world.h())
    assert bad.status_code == 400 and bad.get_json() == {"error": "page is invalid"}


# ---------------------------------------------------------------- instance-wide list

def test_admin_lists_every_deploy_token_with_active_filter(client, world, make):
    project_token = make.token(PROJECT)[0]
    group_token = make.token("tanuki/infra")[0]
    revoked = make.token("other/thing", revoked=True)[0]
    response = client.get("/api/v4/deploy_tokens", headers=world.h("root"))
    assert response.status_code == 200
    assert sorted(t["id"] for t in response.get_json()) == sorted([project_token, group_token, revoked])
    assert response.headers["X-Total"] == "3"
    active = client.get("/api/v4/deploy_tokens?active=true", headers=world.h("root")).get_json()
    assert sorted(t["id"] for t in active) == sorted([project_token, group_token])


def test_instance_list_is_401_anonymous_and_403_for_non_admins(client, world):
    assert client.get("/api/v4/deploy_tokens").status_code == 401
    for who in ("maintainer", "owner"):
        response = client.get("/api/v4/deploy_tokens", headers=world.h(who))
        assert response.status_code == 403
        assert response.get_json() == {"message": "403 Forbidden"}


# ---------------------------------------------------------------- who may call

def _endpoints(world):
    pid = world.project.id
    return [
        ("get", f"/api/v4/projects/{pid}/deploy_tokens", None),
        ("post", f"/api/v4/projects/{pid}/deploy_tokens", {"name": "x", "scopes": ["read_repository"]}),
        ("get", f"/api/v4/projects/{pid}/deploy_tokens/1", None),
        ("delete", f"/api/v4/projects/{pid}/deploy_tokens/1", None),
        ("get", f"/api/v4/groups/{world.group.id}/deploy_tokens", None),
        ("post", f"/api/v4/groups/{world.group.id}/deploy_tokens", {"name": "x", "scopes": ["read_repository"]}),
        ("get", "/api/v4/deploy_tokens", None),
        ("get", "/api/v4/user", None),
        ("get", "/api/v4/version", None),
    ]


def _call(client, method, url, body, headers):
    return getattr(client, method)(url, headers=headers, **({"json": body} if body else {}))


def test_without_a_token_every_endpoint_is_401(client, world, app):
    for method, url, body in _endpoints(world):
        response = _call(client, method, url, body, {})
        assert response.status_code == 401, url
        assert response.get_json() == {"message": "401 Unauthorized"}
    assert _count_tokens(app) == 0


@pytest.mark.parametrize("how", ["private-token", "bearer", "deploy-token-header", "basic"])
def test_a_deploy_token_cannot_call_the_api(client, world, make, app, how):
    _, username, secret = make.token("tanuki/infra", ("read_repository", "read_registry",
                                                      "write_registry", "read_package_registry",
                                                      "write_package_registry"))
    headers = {
        "private-token": {"PRIVATE-TOKEN": secret},
        "bearer": {"Authorization": f"Bearer {secret}"},
        "deploy-token-header": {"Deploy-Token": secret},
        "basic": {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()},
    }[how]
    before = _count_tokens(app)
    for method, url, body in _endpoints(world):
        response = _call(client, method, url, body, headers)
        assert response.status_code == 401, (how, url)
        assert response.get_json() == {"message": "401 Unauthorized"}
    assert _count_tokens(app) == before


def test_a_user_password_cannot_call_the_api(client, world):
    basic = base64.b64encode(b"maintainer:correct-horse-battery").decode()
    response = client.get("/api/v4/user", headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 401


def test_bearer_personal_access_token_works_like_private_token(client, world):
    response = client.get(f"/api/v4/projects/{ENCODED}/deploy_tokens",
                          headers={"Authorization": f"Bearer {world.key('maintainer')}"})
    assert response.status_code == 200


def test_private_token_query_parameter_works_and_job_tokens_do_not(client, world):
    assert client.get(f"/api/v4/user?private_token={world.key('maintainer')}").status_code == 200
    response = client.get("/api/v4/user", headers={"Job-Token": "glcbt-whatever"})
    assert response.status_code == 401


@pytest.mark.parametrize("state", ["unknown", "revoked", "expired"])
def test_an_invalid_personal_access_token_is_401_even_for_public_reads(client, world, make, state):
    make.project("tanuki/website", visibility="public")
    world.key("owner")
    secret = {
        "unknown": "glpat-" + "x" * 20,
        "revoked": make.pat("owner", revoked=True),
        "expired": make.pat("owner", expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)),
    }[state]
    for url in (f"/api/v4/projects/{ENCODED}/deploy_tokens", "/api/v4/projects/tanuki%2Fwebsite"):
        response = client.get(url, headers={"PRIVATE-TOKEN": secret})
        assert response.status_code == 401
        assert response.get_json() == {"message": "401 Unauthorized"}


def test_read_api_token_can_read_but_not_write(client, world, make, app):
    token_id = make.token(PROJECT)[0]
    headers = {"PRIVATE-TOKEN": world.read_api}
    assert client.get(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=headers).status_code == 200
    assert client.get(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}", headers=headers).status_code == 200
    create = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=headers,
                         json={"name": "x", "scopes": ["read_repository"]})
    delete = client.delete(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}", headers=headers)
    for response in (create, delete):
        assert response.status_code == 403
        assert response.get_json() == {"message": "403 Forbidden"}
    with app.app_context():
        assert [t.id for t in deploy_tokens.DEPLOY_TOKENS.list_for(world.project, active=True)] == [token_id]


@pytest.mark.parametrize("who, status", [
    ("maintainer", 200), ("owner", 200), ("root", 200), ("developer", 403), ("outsider", 404)])
def test_maintainers_manage_developers_are_forbidden_strangers_see_nothing(client, world, who, status, app):
    for kind, ref, label in (("projects", ENCODED, "Project"), ("groups", "tanuki%2Finfra", "Group")):
        listed = client.get(f"/api/v4/{kind}/{ref}/deploy_tokens", headers=world.h(who))
        created = client.post(f"/api/v4/{kind}/{ref}/deploy_tokens", headers=world.h(who),
                              json={"name": "x", "scopes": ["read_repository"]})
        assert listed.status_code == status
        assert created.status_code == (201 if status == 200 else status)
        if status == 403:
            assert listed.get_json() == created.get_json() == {"message": "403 Forbidden"}
        if status == 404:
            assert listed.get_json() == created.get_json() == {"message": f"404 {label} Not Found"}
    if status != 200:
        assert _count_tokens(app) == 0


def test_unknown_project_and_group_answer_like_invisible_ones(client, world):
    for kind, label in (("projects", "Project"), ("groups", "Group")):
        for ref in ("999999", "nope%2Fnothing"):
            response = client.get(f"/api/v4/{kind}/{ref}/deploy_tokens", headers=world.h())
            assert response.status_code == 404
            assert response.get_json() == {"message": f"404 {label} Not Found"}


def test_personal_access_token_use_is_recorded(client, world, app):
    from webapp.models import PersonalAccessToken
    client.get("/api/v4/user", headers=world.h(), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    with app.app_context():
        token = db.session.scalar(sa.select(PersonalAccessToken).where(
            PersonalAccessToken.name == "api", PersonalAccessToken.user.has(username="maintainer")))
        assert token.last_used_at is not None and token.last_used_ip == "10.1.2.3"


# ---------------------------------------------------------------- the minimum around it

def test_user_endpoint(client, world):
    body = client.get("/api/v4/user", headers=world.h("root")).get_json()
    assert body["username"] == "root" and body["is_admin"] is True
    assert {"id", "name", "state", "web_url", "email"} <= set(body)


@pytest.mark.parametrize("path", ["/api/v4/version", "/api/v4/metadata"])
def test_version_endpoint(client, world, path):
    body = client.get(path, headers=world.h()).get_json()
    assert re.match(r"^\d+\.\d+\.\d+", body["version"]) and "revision" in body


def test_project_endpoint_by_id_and_path(client, world, project_ref):
    response = client.get(f"/api/v4/projects/{project_ref}", headers=world.h())
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == world.project.id
    assert (body["name"], body["path"], body["path_with_namespace"]) == (
        "awesome_project", "awesome_project", PROJECT)
    assert body["web_url"] == f"http://gatehouse.test/{PROJECT}"
    assert body["http_url_to_repo"] == f"http://gatehouse.test/{PROJECT}.git"
    assert body["namespace"]["full_path"] == "tanuki" and body["namespace"]["kind"] == "group"


def test_group_endpoint_by_id_and_path(client, world, group_ref):
    response = client.get(f"/api/v4/groups/{group_ref}", headers=world.h())
    assert response.status_code == 200
    body = response.get_json()
    assert (body["id"], body["name"], body["path"], body["full_path"]) == (
        world.group.id, "infra", "infra", "tanuki/infra")
    assert body["web_url"] == "http://gatehouse.test/groups/tanuki/infra"


def test_project_endpoint_visibility(client, world, make):
    make.project("tanuki/website", visibility="public")
    assert client.get("/api/v4/projects/tanuki%2Fwebsite").status_code == 200
    hidden = client.get(f"/api/v4/projects/{ENCODED}")
    assert hidden.status_code == 404 and hidden.get_json() == {"message": "404 Project Not Found"}
    assert client.get(f"/api/v4/projects/{ENCODED}", headers=world.h("outsider")).status_code == 404
    assert client.get(f"/api/v4/projects/{ENCODED}", headers=world.h("developer")).status_code == 200
    assert client.get("/api/v4/user").status_code == 401


# ---------------------------------------------------------------- errors are JSON

@pytest.mark.parametrize("method, url, status, body", [
    ("get", "/api/v4/no_such_thing", 404, {"message": "404 Not Found"}),
    ("get", "/api/v4/projects", 404, {"message": "404 Not Found"}),
    ("put", "/api/v4/version", 405, {"error": "405 Not Allowed"}),
    ("patch", f"/api/v4/projects/{ENCODED}/deploy_tokens/1", 405, {"error": "405 Not Allowed"}),
])
def test_api_errors_are_json_never_html(client, world, method, url, status, body):
    response = getattr(client, method)(url, headers=world.h())
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == body
    if status == 405:
        assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("rule", [
    "/api/v4/projects/<path:project_id>/packages/generic/<name>",
    "/api/v4/projects/<project_id>/packages/generic/<name>",
])
def test_more_specific_project_routes_of_other_blueprints_win(app, world, rule):
    # The package registries live under /api/v4/projects/:id/ in their own blueprint;
    # GET /projects/<path:ref> must not swallow their URLs.
    app.add_url_rule(rule, "package_probe", lambda project_id, name: f"{project_id}|{name}",
                     methods=["GET", "PUT"])
    app.config["WTF_CSRF_ENABLED"] = False  # the probe is not in a protocol blueprint
    client = app.test_client()
    for method in ("get", "put"):
        response = getattr(client, method)("/api/v4/projects/7/packages/generic/thing")
        assert response.get_data(as_text=True) == "7|thing"
    if "path:" in rule:
        response = client.get(f"/api/v4/projects/{ENCODED}/packages/generic/thing")
        assert response.get_data(as_text=True) == f"{PROJECT}|thing"
    assert client.get(f"/api/v4/projects/{ENCODED}", headers=world.h()).status_code == 200

"""Git smart HTTP at the HTTP level (Flask test client): routing, auth answers, the ban,
what reaches git http-backend, the repository each project owns, the clone box."""
import base64
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp import create_app
from webapp.extensions import db
from webapp.models import AuthFailure, Project
from webapp.protocols import git_http
from webapp.services import accounts, repositories
from webapp.services.errors import Invalid
from webapp.services.policy import Principal

from .conftest import PASSWORD

INFO_REFS = "/{}.git/info/refs?service=git-upload-pack"


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def repo_dir(app, full_path) -> Path:
    return Path(app.config["DATA_DIR"]) / "repositories" / f"{full_path}.git"


# --- routing ---------------------------------------------------------------------

@pytest.mark.parametrize("path, method, endpoint, full_path", [
    ("/tanuki/awesome_project.git/info/refs", "GET", "git_http.info_refs", "tanuki/awesome_project"),
    # GitLab's forms without `.git`, and with a trailing slash (git adds the `/` itself).
    ("/tanuki/awesome_project/info/refs", "GET", "git_http.info_refs", "tanuki/awesome_project"),
    ("/tanuki/awesome_project/git-upload-pack", "POST", "git_http.upload_pack",
     "tanuki/awesome_project"),
    ("/tanuki/awesome_project.git/git-upload-pack", "POST", "git_http.upload_pack",
     "tanuki/awesome_project"),
    ("/tanuki/awesome_project/git-receive-pack", "POST", "git_http.receive_pack",
     "tanuki/awesome_project"),
    ("/tanuki/a/b/c.git/git-upload-pack", "POST", "git_http.upload_pack", "tanuki/a/b/c"),
    ("/tanuki/awesome_project.git/git-receive-pack", "POST", "git_http.receive_pack",
     "tanuki/awesome_project"),
    # The catch-all project page keeps everything else, including paths that merely
    # look like git's: a project "refs" in a group "tanuki/info".
    ("/tanuki/awesome_project", "GET", "pages.project", "tanuki/awesome_project"),
    ("/tanuki/p/-/settings/repository", "GET", "settings.project_repository", "tanuki/p"),
])
def test_git_urls_and_project_pages_route_apart(app, path, method, endpoint, full_path):
    rule, args = app.url_map.bind("gatehouse.test").match(path, method=method)
    assert rule == endpoint
    routed = args["full_path"] if "full_path" in args else git_http.project_path(args["repo"])
    assert routed == full_path


def test_a_browser_visiting_the_clone_url_lands_on_the_project_page(app, make, client):
    make.project("tanuki/open", visibility="public")
    for url in ("/tanuki/open.git", "/tanuki/open.git/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"] == "/tanuki/open"
    assert client.get("/tanuki/nothing.git").status_code == 404
    make.project("tanuki/hidden")  # private: no redirect tells a stranger it exists
    assert client.get("/tanuki/hidden.git").status_code == 404


def test_a_project_page_still_renders_beside_the_git_routes(app, make, client, auth):
    user = make.user("alice")
    make.project("tanuki/info/refs")
    make.member("tanuki", user, "reporter")
    auth.login("alice")
    page = client.get("/tanuki/info/refs")
    assert page.status_code == 200
    assert "http://gatehouse.test/tanuki/info/refs.git" in page.get_data(as_text=True)


# --- the repository each project owns --------------------------------------------------

def test_creating_a_project_creates_its_bare_repository(app, make):
    make.project("tanuki/awesome_project")
    repo = repo_dir(app, "tanuki/awesome_project")
    assert (repo / "HEAD").read_text().strip() == "ref: refs/heads/main"
    assert (repo / "objects").is_dir()
    assert not [p for p in repo.parent.iterdir() if p.name.startswith(".tmp-")]


def test_a_failed_commit_leaves_no_row_and_no_directory(app, make, ctx, monkeypatch):
    make.group("tanuki")

    def boom():
        raise RuntimeError("database went away")
    monkeypatch.setattr(db.session, "commit", boom)
    with pytest.raises(RuntimeError):
        accounts.create_project("tanuki/doomed")
    monkeypatch.undo()
    assert db.session.scalar(sa.select(Project).where(Project.full_path == "tanuki/doomed")) is None
    assert list((Path(app.config["DATA_DIR"]) / "repositories" / "tanuki").iterdir()) == []


def test_a_leftover_directory_on_disk_refuses_the_project(app, make, ctx):
    make.group("tanuki")
    leftover = repo_dir(app, "tanuki/taken")
    leftover.mkdir(parents=True)
    (leftover / "keep").write_text("someone's data")
    with pytest.raises(Invalid):
        accounts.create_project("tanuki/taken")
    assert accounts.find_project("tanuki/taken") is None
    assert (leftover / "keep").read_text() == "someone's data"
    assert [p.name for p in leftover.parent.iterdir()] == ["taken.git"]


def test_an_invalid_project_creates_no_directory(app, make, ctx):
    make.project("tanuki/one")
    with pytest.raises(Invalid):
        accounts.create_project("tanuki/one")
    assert [p.name for p in (repo_dir(app, "tanuki/one").parent).iterdir()] == ["one.git"]


def test_a_project_without_a_repository_gets_one_on_first_use(app, make, client):
    make.project("tanuki/old", visibility="public")
    repo = repo_dir(app, "tanuki/old")
    shutil.rmtree(repo)
    response = client.get(INFO_REFS.format("tanuki/old"))
    assert response.status_code == 200
    assert (repo / "HEAD").exists()


# --- answers before git runs ------------------------------------------------------------

def test_anonymous_request_to_a_private_project_is_challenged(app, make, client):
    make.project("tanuki/secret")
    response = client.get(INFO_REFS.format("tanuki/secret"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Gatehouse"'
    assert response.get_data(as_text=True) == "HTTP Basic: Access denied\n"


def test_anonymous_request_to_an_unknown_project_is_challenged_too(app, client):
    response = client.get(INFO_REFS.format("tanuki/nothing"))
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_public_project_advertises_refs_anonymously(app, make, client):
    make.project("tanuki/open", visibility="public")
    response = client.get(INFO_REFS.format("tanuki/open"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert b"# service=git-upload-pack" in response.data


def test_anonymous_push_to_a_public_project_is_challenged(app, make, client):
    make.project("tanuki/open", visibility="public")
    response = client.get("/tanuki/open.git/info/refs?service=git-receive-pack")
    assert response.status_code == 401


def test_the_dumb_protocol_is_refused(app, make, client):
    make.project("tanuki/open", visibility="public")
    response = client.get("/tanuki/open.git/info/refs")
    assert response.status_code == 403


def test_wrong_credentials_get_401(app, make, client):
    make.project("tanuki/p")
    _, username, secret = make.token("tanuki/p")
    for user, password in [(username, secret + "x"), ("someone-else", secret), ("", "")]:
        response = client.get(INFO_REFS.format("tanuki/p"), headers=basic(user, password))
        assert response.status_code == 401
        assert response.get_data(as_text=True) == "HTTP Basic: Access denied\n"


def test_no_access_and_no_project_answer_alike(app, make, client):
    make.project("tanuki/mine")
    make.project("tanuki/theirs")
    _, username, secret = make.token("tanuki/mine")
    other = client.get(INFO_REFS.format("tanuki/theirs"), headers=basic(username, secret))
    missing = client.get(INFO_REFS.format("tanuki/missing"), headers=basic(username, secret))
    assert other.status_code == missing.status_code == 404
    assert other.data == missing.data
    assert other.headers["Content-Type"] == missing.headers["Content-Type"]
    assert b"could not be found" in other.data


def test_a_user_without_membership_sees_404(app, make, client):
    make.project("tanuki/p")
    make.user("stranger")
    response = client.get(INFO_REFS.format("tanuki/p"), headers=basic("stranger", PASSWORD))
    assert response.status_code == 404


def test_a_token_without_read_repository_is_told_why(app, make, client):
    make.project("tanuki/p")
    _, username, secret = make.token("tanuki/p", scopes=["read_registry"])
    response = client.get(INFO_REFS.format("tanuki/p"), headers=basic(username, secret))
    assert response.status_code == 403
    assert b"read_repository" in response.data


def test_a_deploy_token_is_refused_push_with_a_reason(app, make, client):
    make.project("tanuki/p")
    _, username, secret = make.token("tanuki/p")
    response = client.get("/tanuki/p.git/info/refs?service=git-receive-pack",
                          headers=basic(username, secret))
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/plain")
    assert b"deploy tokens are read-only" in response.data


def test_a_reporter_is_refused_push_and_a_developer_is_not(app, make, client):
    make.project("tanuki/p")
    make.member("tanuki", make.user("reporter"), "reporter")
    make.member("tanuki", make.user("developer"), "developer")
    url = "/tanuki/p.git/info/refs?service=git-receive-pack"
    assert client.get(url, headers=basic("reporter", PASSWORD)).status_code == 403
    response = client.get(url, headers=basic("developer", PASSWORD))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-receive-pack-advertisement"


# --- the ban ---------------------------------------------------------------------------

@pytest.fixture
def small_ban(app):
    app.config.update(AUTH_BAN_MAX_RETRY=3, AUTH_BAN_FIND_TIME=60, AUTH_BAN_TIME=3600)
    return app


def fail(client, path="tanuki/p", headers=(), **kw):
    return client.get(INFO_REFS.format(path), headers={**basic("nobody", "wrong"), **dict(headers)},
                      **kw)


def test_a_banned_ip_gets_403_before_credentials_are_checked(small_ban, make, client):
    make.project("tanuki/p")
    _, username, secret = make.token("tanuki/p")
    assert [fail(client).status_code for _ in range(3)] == [401, 401, 401]
    good = client.get(INFO_REFS.format("tanuki/p"), headers=basic(username, secret))
    assert good.status_code == 403
    assert b"Too many failed authentication attempts" in good.data
    assert client.get(INFO_REFS.format("tanuki/p")).status_code == 403  # anonymous too
    # The refused valid credentials neither reset nor lift anything.
    with small_ban.app_context():
        assert db.session.get(AuthFailure, "127.0.0.1").banned_until is not None


def test_valid_credentials_do_not_reset_the_failure_count(small_ban, make, client):
    # Otherwise good logins interleaved with guesses would never be banned.
    make.project("tanuki/p")
    _, username, secret = make.token("tanuki/p")
    fail(client)
    fail(client)
    assert client.get(INFO_REFS.format("tanuki/p"), headers=basic(username, secret)).status_code == 200
    fail(client)
    assert client.get(INFO_REFS.format("tanuki/p"), headers=basic(username, secret)).status_code == 403


def test_failures_from_another_ip_do_not_ban_this_one(small_ban, make, client):
    make.project("tanuki/p", visibility="public")
    for _ in range(3):
        fail(client, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert fail(client, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    assert client.get(INFO_REFS.format("tanuki/p")).status_code == 200


def _app_with(app, **settings):
    config = {key: app.config[key] for key in (
        "TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "DATA_DIR", "EXTERNAL_URL",
        "AUTH_BAN_MAX_RETRY", "AUTH_BAN_FIND_TIME", "AUTH_BAN_TIME")}
    config.update(settings)
    return create_app(config)


def test_a_forged_x_forwarded_for_does_not_escape_a_ban(small_ban, make):
    make.project("tanuki/p", visibility="public")
    direct = _app_with(small_ban, TRUSTED_PROXIES=0).test_client()
    for n in range(3):
        assert fail(direct, headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code == 401
    forged = direct.get(INFO_REFS.format("tanuki/p"), headers={"X-Forwarded-For": "192.0.2.200"})
    assert forged.status_code == 403


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(small_ban, make):
    make.project("tanuki/p", visibility="public")
    proxied = _app_with(small_ban, TRUSTED_PROXIES=1).test_client()
    for _ in range(3):
        proxied.get(INFO_REFS.format("tanuki/p"),
                    headers={**basic("nobody", "wrong"), "X-Forwarded-For": "192.0.2.66"})
    banned = proxied.get(INFO_REFS.format("tanuki/p"), headers={"X-Forwarded-For": "192.0.2.66"})
    other = proxied.get(INFO_REFS.format("tanuki/p"), headers={"X-Forwarded-For": "192.0.2.67"})
    assert banned.status_code == 403
    assert other.status_code == 200
    with small_ban.app_context():
        assert db.session.get(AuthFailure, "127.0.0.1") is None  # the proxy itself is not banned


# --- what git http-backend gets -------------------------------------------------------------

def test_the_cgi_environment_carries_protocol_and_encoding_but_no_credentials(app, ctx):
    headers = {**basic("alice", "s3cret"), "Git-Protocol": "version=2",
               "Content-Encoding": "gzip", "Content-Type": "application/x-git-upload-pack-request",
               "Cookie": "session=abc"}
    with app.test_request_context("/tanuki/p.git/git-upload-pack", method="POST",
                                  headers=headers, data=b"0000"):
        env = git_http._cgi_environment("/tanuki/p.git/git-upload-pack",
                                        Principal("user", name="alice", user_id=1),
                                        "127.0.0.1", push=False)
    assert env["GIT_PROTOCOL"] == "version=2"
    assert env["HTTP_CONTENT_ENCODING"] == "gzip"
    assert env["CONTENT_TYPE"] == "application/x-git-upload-pack-request"
    assert env["CONTENT_LENGTH"] == "4"
    assert env["REMOTE_USER"] == "alice"
    assert env["GIT_PROJECT_ROOT"] == str(repositories.root())
    settings = {env[k]: env[k.replace("KEY", "VALUE")] for k in env if k.startswith("GIT_CONFIG_KEY_")}
    assert "http.receivepack" not in settings  # receive-pack stays off for fetches
    assert settings["uploadpack.allowFilter"] == "true"  # partial clone
    assert not [k for k in env if "AUTHORIZATION" in k or "COOKIE" in k]
    assert not [v for v in env.values() if "s3cret" in v or "abc" in v]


def test_cgi_status_line_becomes_the_http_status(app, make, client):
    make.project("tanuki/open", visibility="public")
    # git http-backend answers a wrong Content-Type with "Status: 415 ...".
    response = client.post("/tanuki/open.git/git-upload-pack", data=b"0000",
                           content_type="text/plain")
    assert response.status_code == 415
    ok = client.post("/tanuki/open.git/git-upload-pack", data=b"0000",
                     content_type="application/x-git-upload-pack-request")
    assert ok.status_code == 200
    assert ok.headers["Content-Type"] == "application/x-git-upload-pack-result"


def test_parse_cgi_headers():
    status, headers = git_http._parse_cgi_headers(
        b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nExpires: Fri, 01 Jan 1980")
    assert status == 404
    assert headers == [("Content-Type", "text/plain"), ("Expires", "Fri, 01 Jan 1980")]


# --- the project page ----------------------------------------------------------------------

def test_the_project_page_shows_clone_urls_with_copy_buttons(app, make, client):
    make.project("tanuki/awesome_project", visibility="public")
    html = client.get("/tanuki/awesome_project").get_data(as_text=True)
    assert 'value="http://gatehouse.test/tanuki/awesome_project.git"' in html
    assert ('git clone http://&lt;username&gt;:&lt;deploy_token&gt;@gatehouse.test/'
            'tanuki/awesome_project.git') in html
    assert 'data-copy="#clone-http-url"' in html
    assert 'data-copy="#clone-deploy-token"' in html

"""python-gitlab, unchanged, against Gatehouse under gunicorn: deploy tokens via /api/v4."""
from urllib.parse import quote

import gitlab
import pytest

from webapp.services import deploy_tokens

from .gitclient import seed

PROJECT = "tanuki/awesome_project"
GROUP = "tanuki/infra"


@pytest.fixture
def setup(make):
    """A private project, a nested group, a maintainer and an admin with `api` tokens."""
    make.project(PROJECT)
    make.group(GROUP)
    make.user("maintainer")
    make.member("tanuki", "maintainer", "maintainer")
    make.user("root", admin=True)
    return {"maintainer": make.pat("maintainer"), "root": make.pat("root"),
            "read_api": make.pat("maintainer", ("read_api",), name="ro")}


def _gl(live_server, token=None, **kw) -> gitlab.Gitlab:
    return gitlab.Gitlab(live_server.url, retry_transient_errors=False, **kw,
                         **({"private_token": token} if token else {}))


def assert_token_works(app, username: str, secret: str) -> None:
    """The secret the API handed out authenticates as a deploy token."""
    with app.app_context():
        assert deploy_tokens.find_active(username, secret) is not None


def assert_token_dead(app, username: str, secret: str) -> None:
    with app.app_context():
        assert deploy_tokens.find_active(username, secret) is None


def clone(git, live_server, username: str, secret: str, dest: str):
    host = live_server.url.split("://", 1)[1]
    return git("clone", "-q", f"http://{quote(username, safe='')}:{secret}@{host}/{PROJECT}.git",
               str(git.home / dest), check=False)


def test_project_deploy_tokens_through_python_gitlab(live_server, setup, app, git):
    gl = _gl(live_server, setup["maintainer"])
    gl.auth()
    assert gl.user.username == "maintainer"
    project = gl.projects.get(PROJECT)
    assert project.path_with_namespace == PROJECT

    created = project.deploytokens.create({
        "name": "deployer", "scopes": ["read_repository", "read_registry"],
        "expires_at": "2031-12-01", "username": "deploy-bot"})
    assert created.token.startswith("gldt-") and created.username == "deploy-bot"
    assert created.expires_at == "2031-12-01T00:00:00.000Z"
    assert_token_works(app, created.username, created.token)
    seed(git, app, PROJECT)
    cloned = clone(git, live_server, created.username, created.token, "with-api-token")
    assert cloned.returncode == 0, cloned.stderr
    assert (git.home / "with-api-token" / "README.md").exists()

    listed = project.deploytokens.list(get_all=True)
    assert [t.id for t in listed] == [created.id]
    assert not hasattr(listed[0], "token")
    got = project.deploytokens.get(created.id)
    assert (got.name, got.scopes, got.revoked, got.expired) == (
        "deployer", ["read_repository", "read_registry"], False, False)

    project.deploytokens.delete(created.id)
    assert project.deploytokens.list(get_all=True) == []
    with pytest.raises(gitlab.GitlabGetError) as error:
        project.deploytokens.get(created.id)
    assert error.value.response_code == 404
    assert_token_dead(app, created.username, created.token)
    refused = clone(git, live_server, created.username, created.token, "after-delete")
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr


def test_project_addressed_by_url_encoded_path(live_server, setup, app):
    gl = _gl(live_server, setup["maintainer"])
    # lazy=True keeps the path as the id: python-gitlab sends tanuki%2Fawesome_project.
    project = gl.projects.get(PROJECT, lazy=True)
    created = project.deploytokens.create({"name": "by-path", "scopes": ["read_repository"]})
    assert created.expires_at is None
    assert [t.name for t in project.deploytokens.list(get_all=True)] == ["by-path"]
    assert project.deploytokens.get(created.id).id == created.id
    created.delete()
    assert project.deploytokens.list(get_all=True) == []
    assert_token_dead(app, created.username, created.token)


def test_group_deploy_tokens_through_python_gitlab(live_server, setup, app):
    gl = _gl(live_server, setup["maintainer"])
    for group in (gl.groups.get(GROUP), gl.groups.get(GROUP, lazy=True)):
        created = group.deploytokens.create({"name": "group-token",
                                             "scopes": ["read_package_registry"]})
        assert created.username == f"gitlab+deploy-token-{created.id}"
        assert_token_works(app, created.username, created.token)
        assert [t.id for t in group.deploytokens.list(get_all=True)] == [created.id]
        assert group.deploytokens.get(created.id).scopes == ["read_package_registry"]
        group.deploytokens.delete(created.id)
        assert group.deploytokens.list(get_all=True) == []
        assert_token_dead(app, created.username, created.token)


def test_instance_deploy_tokens_and_pagination(live_server, setup, make):
    ids = [make.token(PROJECT, name=f"t{i}")[0] for i in range(3)]
    ids.append(make.token(GROUP, name="g", revoked=True)[0])
    gl = _gl(live_server, setup["root"], per_page=2)
    # get_all follows the Link rel="next" headers page by page.
    assert sorted(t.id for t in gl.deploytokens.list(get_all=True)) == sorted(ids)
    assert sorted(t.id for t in gl.deploytokens.list(get_all=True, active=True)) == sorted(ids[:3])
    pages = gl.deploytokens.list(iterator=True)
    assert (pages.total, pages.total_pages, pages.per_page) == (4, 2, 2)
    assert len(list(pages)) == 4
    assert len(gl.projects.get(PROJECT).deploytokens.list(page=2, per_page=2)) == 1


def test_errors_reach_python_gitlab_as_its_exceptions(live_server, setup, make):
    gl = _gl(live_server, setup["maintainer"])
    with pytest.raises(gitlab.GitlabGetError) as error:
        gl.projects.get("tanuki/nothing")
    assert error.value.response_code == 404 and "Project Not Found" in str(error.value)
    project = gl.projects.get(PROJECT, lazy=True)
    with pytest.raises(gitlab.GitlabCreateError) as error:
        project.deploytokens.create({"name": "x", "scopes": ["write_repository"]})
    assert error.value.response_code == 400 and "Unknown scope" in str(error.value)
    with pytest.raises(gitlab.GitlabListError) as error:
        gl.deploytokens.list(get_all=True)
    assert error.value.response_code == 403

    read_only = _gl(live_server, setup["read_api"]).projects.get(PROJECT, lazy=True)
    assert read_only.deploytokens.list(get_all=True) == []
    with pytest.raises(gitlab.GitlabCreateError) as error:
        read_only.deploytokens.create({"name": "x", "scopes": ["read_repository"]})
    assert error.value.response_code == 403

    _, username, secret = make.token(PROJECT, ("read_repository",))
    with pytest.raises(gitlab.GitlabAuthenticationError):
        _gl(live_server, secret).projects.get(PROJECT, lazy=True).deploytokens.list(get_all=True)
    with pytest.raises(gitlab.GitlabAuthenticationError):
        _gl(live_server, oauth_token=secret).auth()

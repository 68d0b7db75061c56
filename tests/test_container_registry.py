"""The registry page and API around the registry: who may do what, and a registry that is down.

With the real registry they are exercised in tests/e2e/test_registry_page.py.
"""
import pytest

from webapp.extensions import db
from webapp.models import ContainerRepository

from .support import free_port


@pytest.fixture
def project(app, make):
    app.config["REGISTRY_API_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    project = make.project("tanuki/app")
    make.member("tanuki/app", make.user("rep"), "reporter")
    make.member("tanuki/app", make.user("boss"), "maintainer")
    with app.app_context():
        db.session.add(ContainerRepository(project_id=project.id, name="tanuki/app/web"))
        db.session.commit()
    return project


def test_a_registry_that_is_down_is_a_503_not_a_500(client, make, project, auth):
    headers = {"PRIVATE-TOKEN": make.pat("rep")}
    response = client.get(f"/api/v4/projects/{project.id}/registry/repositories", headers=headers)
    assert response.status_code == 503
    assert "cannot be reached" in response.get_json()["message"]
    auth.login("rep")
    page = client.get("/tanuki/app/container_registry")
    assert page.status_code == 503 and "cannot be reached" in page.get_data(as_text=True)


def test_who_may_delete_is_decided_before_the_registry_is_asked(client, make, project, auth):
    base = f"/api/v4/projects/{project.id}/registry/repositories"
    assert client.delete(f"{base}/1/tags/v1").status_code == 401
    assert client.get(base).status_code == 404  # private: anonymous callers learn nothing
    reporter = {"PRIVATE-TOKEN": make.pat("rep")}
    assert client.delete(f"{base}/1/tags/v1", headers=reporter).status_code == 403
    read_only = {"PRIVATE-TOKEN": make.pat("boss", scopes=["read_api"])}
    assert client.delete(f"{base}/1/tags/v1", headers=read_only).status_code == 403
    boss = {"PRIVATE-TOKEN": make.pat("boss", name="full")}
    missing = client.delete(f"{base}/999/tags/v1", headers=boss)
    assert missing.status_code == 404
    assert missing.get_json() == {"message": "404 Repository Not Found"}

    auth.login("rep")
    assert client.get("/tanuki/app/container_registry/1/tags/v1/delete").status_code == 403
    assert client.post("/tanuki/app/container_registry/1/tags/v1/delete").status_code in (400, 403)


def test_strangers_do_not_see_the_page(client, make, project, auth):
    make.user("stranger")
    auth.login("stranger")
    assert client.get("/tanuki/app/container_registry").status_code == 404

"""Settings › CI/CD › Runners in the browser (CSRF on), and the CI badge of the deploy tokens panel."""
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import RunnerToken, utcnow
from webapp.services import accounts, runners

from webapp.protocols.ci import DOOR as CI_DOOR

from ..conftest import csrf_from, form_fields
from ..support import resolve

PROJECT = "tanuki/app"
PAGE = f"/{PROJECT}/-/settings/ci_cd"
CREATE = f"{PAGE}/runners"
HTMX = {"HX-Request": "true"}
TOKEN_RE = re.compile(r'id="runners-secret-1" readonly value="(glrt-[^"]+)"')


@pytest.fixture
def project(make):
    return make.project(PROJECT)


@pytest.fixture
def maintainer(project, make, auth):
    user = make.user("maint")
    make.member("tanuki", user, "maintainer")
    auth.login("maint")
    return user


def _csrf(client, url=PAGE):
    return csrf_from(client.get(url).get_data(as_text=True))


def _runner_count(app):
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(RunnerToken.id)))


def test_anonymous_is_sent_to_sign_in(project, client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/users/sign_in" in response.headers["Location"]


@pytest.mark.parametrize("role", ["developer", "reporter", "guest"])
def test_below_maintainer_sees_404_and_no_link(project, make, auth, client, role):
    make.member(PROJECT, make.user("someone"), role)
    auth.login("someone")
    assert client.get(PAGE).status_code == 404
    assert client.post(CREATE, data={"csrf_token": _csrf(client, f"/{PROJECT}")}).status_code == 404
    assert "/-/settings/ci_cd" not in client.get(f"/{PROJECT}").get_data(as_text=True)


def test_unknown_project_is_404(maintainer, client):
    assert client.get("/tanuki/nope/-/settings/ci_cd").status_code == 404


def test_maintainer_finds_it_from_the_project_and_repository_pages(maintainer, client):
    for url in (f"/{PROJECT}", f"/{PROJECT}/-/settings/repository"):
        assert f'href="{PAGE}"' in client.get(url).get_data(as_text=True)
    html = client.get(PAGE).get_data(as_text=True)
    assert '<h2 id="runners-title">Runners' in html
    assert "No active runner tokens." in html
    assert "Active runner tokens (0)" in html


def test_create_without_javascript_reveals_the_token_once(maintainer, client, app):
    response = client.post(CREATE, data={"description": "build host 1", **form_fields(client, PAGE)})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    secret = TOKEN_RE.search(html).group(1)
    assert "This token can not be recovered." in html and "Active runner tokens (1)" in html
    assert "build host 1" in html
    with app.app_context():
        assert resolve(CI_DOOR, secret=secret).project_id is not None
    assert secret not in client.get(PAGE).get_data(as_text=True)  # shown once


def test_create_with_htmx_swaps_the_section(maintainer, client):
    response = client.post(CREATE, data={"description": "x", **form_fields(client, PAGE)},
                           headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.status_code == 201
    assert html.lstrip().startswith('<section id="runners"')
    assert "<html" not in html and TOKEN_RE.search(html)
    assert "HX-Request" in response.headers["Vary"]


def test_create_without_csrf_is_refused_and_changes_nothing(maintainer, client, app):
    response = client.post(CREATE, data={"description": "x"})
    assert response.status_code == 400
    assert _runner_count(app) == 0


def test_too_long_description_is_shown_next_to_the_field(maintainer, client, app):
    response = client.post(CREATE, data={"description": "x" * 256, **form_fields(client, PAGE)},
                           headers=HTMX)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="runners-description-error"' in html and "too long" in html
    assert 'aria-describedby="runners-description-hint runners-description-error"' in html
    assert _runner_count(app) == 0


def _create(app, path=PROJECT, description="runner"):
    with app.app_context():
        return runners.RUNNER_TOKENS.create(accounts.find_project(path), name=description)[0].id


def test_revoke_without_javascript_confirms_first(maintainer, client, app):
    runner_id = _create(app, description="old box")
    url = f"/{PROJECT}/-/runners/{runner_id}/revoke"
    assert f'action="{url}"' in client.get(PAGE).get_data(as_text=True)
    confirm = client.get(url).get_data(as_text=True)
    assert "Revoke old box?" in confirm and "This action cannot be undone." in confirm
    response = client.post(url, data={"csrf_token": csrf_from(confirm)})
    assert response.status_code == 302
    html = client.get(PAGE).get_data(as_text=True)
    assert "Revoked runner token old box." in html and "Inactive runner tokens (1)" in html
    assert "Active runner tokens (0)" in html


def test_revoke_with_htmx_asks_and_swaps(maintainer, client, app):
    runner_id = _create(app, description="box")
    url = f"/{PROJECT}/-/runners/{runner_id}/revoke"
    assert 'data-name="box"' in client.get(PAGE).get_data(as_text=True)
    response = client.post(url, headers={**HTMX, "X-CSRFToken": _csrf(client)})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith('<section id="runners"')
    assert "Revoked runner token box." in html


def test_revoke_without_csrf_changes_nothing(maintainer, client, app):
    runner_id = _create(app)
    assert client.post(f"/{PROJECT}/-/runners/{runner_id}/revoke").status_code == 400
    with app.app_context():
        assert not db.session.get(RunnerToken, runner_id).revoked


def test_another_projects_runner_is_404(maintainer, make, client, app):
    make.project("elsewhere/app")
    runner_id = _create(app, "elsewhere/app")
    url = f"/{PROJECT}/-/runners/{runner_id}/revoke"
    assert client.get(url).status_code == 404
    assert client.post(url, data={"csrf_token": _csrf(client)}).status_code == 404
    with app.app_context():
        assert not db.session.get(RunnerToken, runner_id).revoked


def test_variables_section_says_whether_jobs_get_the_deploy_pair(maintainer, make, client):
    assert "Jobs get no <code>CI_DEPLOY_USER</code>" in client.get(PAGE).get_data(as_text=True)
    _, username, secret = make.token(PROJECT, name="gitlab-deploy-token")
    html = client.get(PAGE).get_data(as_text=True)
    assert "Jobs get <code>CI_DEPLOY_USER</code> and <code>CI_DEPLOY_PASSWORD</code>" in html
    assert username in html and secret not in html


# The deploy tokens panel's CI badge ---------------------------------------------------

BADGE = "Exposed to CI jobs as CI_DEPLOY_USER / CI_DEPLOY_PASSWORD"


def _badges(client, url=f"/{PROJECT}/-/settings/repository") -> int:
    return client.get(url).get_data(as_text=True).count(BADGE)


def test_badge_marks_the_active_project_ci_token(maintainer, make, client):
    make.token(PROJECT, name="gitlab-deploy-token")
    assert _badges(client) == 1


@pytest.mark.parametrize("kwargs", [
    {"name": "gitlab-deploy-token", "revoked": True},
    {"name": "gitlab-deploy-token", "expires_at": utcnow() - timedelta(hours=1)},
    {"name": "gitlab-deploy-token2"},
])
def test_no_badge_for_tokens_ci_does_not_use(maintainer, make, client, kwargs):
    make.token(PROJECT, **kwargs)
    assert _badges(client) == 0


def test_no_badge_on_a_group_token(maintainer, make, client):
    make.token("tanuki", name="gitlab-deploy-token")
    assert _badges(client, "/groups/tanuki/-/settings/repository") == 0
    assert _badges(client) == 0


def test_only_the_token_ci_uses_is_marked(maintainer, make, client):
    make.token(PROJECT, name="gitlab-deploy-token", username="older")
    newest, _, _ = make.token(PROJECT, name="gitlab-deploy-token", username="newer")
    html = client.get(f"/{PROJECT}/-/settings/repository").get_data(as_text=True)
    assert html.count(BADGE) == 1
    row = re.search(rf'<tr id="deploy-tokens-{newest}">.*?</tr>', html, re.S).group(0)
    assert BADGE in row

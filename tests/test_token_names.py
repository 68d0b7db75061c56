"""Deploy token names and usernames that would mislead: people's usernames, other
tokens' default usernames, control and bidirectional-override characters."""
import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import DeployToken, utcnow
from webapp.services import deploy_tokens

from .test_api_deploy_tokens import World, _create


@pytest.fixture
def world(make):
    return World(make)


@pytest.mark.parametrize("username, fragment", [
    ("maintainer", "taken by a user"),
    ("MAINTAINER", "taken by a user"),
    ("gitlab+deploy-token-1", "gitlab+deploy-token-N"),
    ("GitLab+Deploy-Token-77", "gitlab+deploy-token-N"),
    ("b\x1bot", "can contain only"),
    ("bot\u202e", "can contain only"),
])
def test_misleading_usernames_are_refused_by_the_api(app, client, world, username, fragment):
    response = _create(client, world, name="ci", scopes=["read_repository"], username=username)
    assert response.status_code == 400, response.get_json()
    assert fragment in response.get_json()["message"]["username"][0]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(DeployToken.id))) == 0


@pytest.mark.parametrize("name", ["evil\u202egnp.exe", "two\nlines", "tab\there", "zero\u200bwidth",
                                  "bell\x07", "isolate\u2066x\u2069"])
def test_names_with_control_or_bidi_characters_are_refused(ctx, name):
    errors = deploy_tokens.validate(name, None, ["read_repository"], None, now=utcnow())
    assert errors["name"] == ["Name cannot contain control characters or invisible "
                              "formatting characters (such as right-to-left overrides)"]


@pytest.mark.parametrize("name, username", [("Déploiement 🚀", "deploy.bot+ci_1"),
                                            ("gitlab-deploy-token", "gitlab+deploy-token"),
                                            ("x", "gitlab+deploy-token-x")])
def test_ordinary_names_and_usernames_pass(ctx, name, username):
    assert deploy_tokens.validate(name, username, ["read_repository"], None, now=utcnow()) == {}


def test_the_api_answer_with_a_new_secret_is_never_cached(client, world):
    response = _create(client, world)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"

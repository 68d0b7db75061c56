"""Fixtures for the CI variables tests: runner tokens and requests as a runner makes them."""
import pytest

from webapp.services import accounts, runners


@pytest.fixture
def runner(app):
    """Create a runner token for a project; return (id, secret)."""
    def create(full_path: str, description: str = "") -> tuple[int, str]:
        with app.app_context():
            token, secret = runners.RUNNER_TOKENS.create(accounts.find_project(full_path),
                                           name=description)
            return token.id, secret
    return create


@pytest.fixture
def fetch(client):
    """GET /ci/variables as a runner; return the response."""
    def get(secret=None, accept=None, **headers):
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        if accept is not None:
            headers["Accept"] = accept
        return client.get("/ci/variables", headers=headers)
    return get


def as_dict(response) -> dict[str, str]:
    """The variables of a JSON answer as KEY → value."""
    return {v["key"]: v["value"] for v in response.get_json()["variables"]}

"""Settings › CI/CD: runner tokens of a project, and the variables jobs get."""
from flask import Blueprint, abort, current_app

from ..services import accounts, ci, deploy_tokens
from ..services.policy import Action, can
from . import token_panels
from .render import principal

bp = Blueprint("ci_settings", __name__)


def _project(full_path: str):
    """The project whose runners are managed, or 404 for everyone but its maintainers."""
    project = accounts.find_project(full_path)
    if project is None or not can(principal(), Action.MANAGE_DEPLOY_TOKENS, project):
        abort(404)
    return project


def _variables(project) -> dict:
    return {"project": project, "external_url": current_app.config["EXTERNAL_URL"],
            "registry": current_app.config.get("REGISTRY_URL", ci.DEFAULT_REGISTRY),
            "ci_token": deploy_tokens.find_ci_token(project),
            "ci_token_name": deploy_tokens.CI_TOKEN_NAME}


token_panels.register(
    bp, token_panels.Panel(token_panels.RUNNER_TOKENS, "settings/ci_cd.html", _project,
                           extras=_variables),
    page=("/<path:full_path>/-/settings/ci_cd", "ci_cd"),
    create=("/<path:full_path>/-/settings/ci_cd/runners", "create_runner"),
    revoke=("/<path:full_path>/-/runners/<int:token_id>/revoke", "revoke_runner"),
    rotate=("/<path:full_path>/-/runners/<int:token_id>/rotate", "rotate_runner"))

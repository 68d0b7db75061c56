"""Settings › Repository › Deploy tokens, for projects and groups alike."""
from flask import Blueprint, abort

from ..services import accounts
from ..services.policy import Action, can
from . import token_panels
from .render import principal

bp = Blueprint("settings", __name__)


def _owner(find):
    def owner(full_path: str):
        """The project or group whose tokens are managed, or 404 for everyone else."""
        target = find(full_path)
        if target is None or not can(principal(), Action.MANAGE_DEPLOY_TOKENS, target):
            abort(404)
        return target
    return owner


for _kind, _prefix, _find, _tokens in (
        ("project", "", accounts.find_project, token_panels.PROJECT_DEPLOY_TOKENS),
        ("group", "/groups", accounts.find_group, token_panels.GROUP_DEPLOY_TOKENS)):
    _base = f"{_prefix}/<path:full_path>/-/settings/repository"
    token_panels.register(
        bp, token_panels.Panel(_tokens, "settings/repository.html", _owner(_find),
                               extras=lambda owner, k=_kind: {"owner_kind": k}),
        page=(_base, f"{_kind}_repository"),
        create=(f"{_base}/deploy_token/create", f"{_kind}_create_deploy_token"),
        revoke=(f"{_prefix}/<path:full_path>/-/deploy_tokens/<int:token_id>/revoke",
                f"{_kind}_revoke_deploy_token"),
        rotate=(f"{_prefix}/<path:full_path>/-/deploy_tokens/<int:token_id>/rotate",
                f"{_kind}_rotate_deploy_token"))

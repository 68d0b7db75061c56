"""User settings › Personal access tokens: the credentials for the REST API."""
from flask import Blueprint
from flask_login import current_user

from . import token_panels

bp = Blueprint("user_settings", __name__, url_prefix="/-/user_settings")

token_panels.register(
    bp, token_panels.Panel(token_panels.PERSONAL_ACCESS_TOKENS,
                           "user_settings/personal_access_tokens.html",
                           lambda: current_user._get_current_object()),
    page=("/personal_access_tokens", "personal_access_tokens"),
    create=("/personal_access_tokens", "create"),
    revoke=("/personal_access_tokens/<int:token_id>/revoke", "revoke"),
    rotate=("/personal_access_tokens/<int:token_id>/rotate", "rotate"))

"""Settings › Repository › Deploy tokens, for projects and groups alike."""
from datetime import timedelta

from flask import Blueprint, abort, redirect, request, session, url_for
from flask_login import current_user, login_required

from ..models import SCOPES, utcnow
from ..services import accounts, deploy_tokens
from ..services.errors import Invalid
from ..services.policy import Action, can
from .forms import DeployTokenForm
from .render import client_ip, is_htmx, paginate, principal, render

bp = Blueprint("settings", __name__)

# The secret of a token just created without JavaScript waits here for the one GET
# that follows the redirect, then is gone.
REVEAL_KEY = "new_deploy_token"
PER_PAGE = 20


def _owner(kind: str, full_path: str):
    """The project or group whose tokens are managed, or 404 for everyone else."""
    target = (accounts.find_project if kind == "project" else accounts.find_group)(full_path)
    if target is None or not can(principal(), Action.MANAGE_DEPLOY_TOKENS, target):
        abort(404)
    return target


def _settings_url(kind: str, owner, **params) -> str:
    return url_for(f"settings.{kind}_repository", full_path=owner.full_path, **params)


def _render_panel(kind: str, owner, form: DeployTokenForm, *, new_token=None,
                  expanded: bool = False, status: int = 200, notice: str = ""):
    now = utcnow()
    active = paginate(deploy_tokens.DEPLOY_TOKENS.list_for(owner, active=True, now=now), PER_PAGE)
    response = render(
        "settings/repository.html", "settings/_deploy_tokens.html", status=status,
        kind=kind, owner=owner, form=form, new_token=new_token, notice=notice,
        expanded=expanded or bool(new_token) or bool(form.errors or form.scope_errors)
        or active.number > 1,
        active_count=active.total, active=active.items, page=active.number, pages=active.pages,
        inactive=deploy_tokens.DEPLOY_TOKENS.list_for(owner, active=False, now=now), now=now,
        scopes=SCOPES, timedelta=timedelta, ci_token_id=_ci_token_id(kind, owner, now))
    # The panel may carry a secret: never keep it in a browser or proxy cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _ci_token_id(kind: str, owner, now):
    """The id of the token CI jobs get as CI_DEPLOY_USER/PASSWORD: project tokens only."""
    token = deploy_tokens.find_ci_token(owner, now=now) if kind == "project" else None
    return token.id if token else None


@login_required
def repository(kind: str, full_path: str):
    owner = _owner(kind, full_path)
    new_token = session.pop(REVEAL_KEY, None)
    if new_token and new_token.get("owner") != f"{kind}:{owner.id}":
        new_token = None
    return _render_panel(kind, owner, DeployTokenForm(formdata=None), new_token=new_token,
                         notice=session.pop("deploy_token_notice", ""))


@login_required
def create(kind: str, full_path: str):
    owner = _owner(kind, full_path)
    form = DeployTokenForm()
    form.validate()  # shape only: the date must parse; CSRF was checked globally
    if form.expires_at.errors:
        # Report the bad date together with everything else that is wrong.
        errors = deploy_tokens.validate(form.name.data, form.username.data,
                                        form.selected_scopes(), None, now=utcnow())
        errors["expires_at"] = ["Expiration date is not a valid date (use YYYY-MM-DD)"]
        _attach(form, errors)
        return _render_panel(kind, owner, form, status=422)
    expires_at = (deploy_tokens.expiry_from_date(form.expires_at.data)
                  if form.expires_at.data else None)
    try:
        token, secret = deploy_tokens.create(
            owner, name=form.name.data, username=form.username.data,
            scopes=form.selected_scopes(), expires_at=expires_at,
            allowed_ips=form.allowed_ips.data, actor=current_user, ip=client_ip())
    except Invalid as error:
        _attach(form, error.errors)
        return _render_panel(kind, owner, form, status=422)
    new_token = {"owner": f"{kind}:{owner.id}", "username": token.username,
                 "token": secret, "name": token.name}
    if is_htmx():
        return _render_panel(kind, owner, DeployTokenForm(formdata=None), new_token=new_token)
    session[REVEAL_KEY] = new_token
    return redirect(_settings_url(kind, owner, _anchor="deploy-tokens"))


def _attach(form: DeployTokenForm, errors: dict[str, list[str]]) -> None:
    """Show each service error next to its field."""
    form.scope_errors = errors.pop("scopes", [])
    for field in ("name", "expires_at", "username", "allowed_ips"):
        form[field].errors = errors.get(field, [])


@login_required
def revoke(kind: str, full_path: str, token_id: int):
    owner = _owner(kind, full_path)
    token = deploy_tokens.DEPLOY_TOKENS.get_for(owner, token_id)
    if request.method == "GET":
        # Without JavaScript the Revoke button leads here to confirm.
        return render("revoke_confirm.html", "revoke_confirm.html",
                      label=token.name, subject=token.name, revoked=token.revoked,
                      back=_settings_url(kind, owner, _anchor="deploy-tokens"),
                      back_label="Back to the deploy tokens")
    deploy_tokens.DEPLOY_TOKENS.revoke(owner, token_id, actor=current_user, ip=client_ip())
    notice = f"Revoked deploy token {token.name}."
    if is_htmx():
        return _render_panel(kind, owner, DeployTokenForm(formdata=None), expanded=True,
                             notice=notice)
    session["deploy_token_notice"] = notice
    return redirect(_settings_url(kind, owner, _anchor="deploy-tokens"))


@login_required
def rotate(kind: str, full_path: str, token_id: int):
    """A new secret for a token, shown once; the old one works for the default grace period."""
    owner = _owner(kind, full_path)
    token, secret = deploy_tokens.DEPLOY_TOKENS.rotate(owner, token_id, actor=current_user,
                                                       ip=client_ip())
    new_token = {"owner": f"{kind}:{owner.id}", "username": token.username,
                 "token": secret, "name": token.name}
    if is_htmx():
        return _render_panel(kind, owner, DeployTokenForm(formdata=None), new_token=new_token)
    session[REVEAL_KEY] = new_token
    return redirect(_settings_url(kind, owner, _anchor="deploy-tokens"))


for _kind, _prefix in (("project", ""), ("group", "/groups")):
    _base = f"{_prefix}/<path:full_path>/-/settings/repository"
    bp.add_url_rule(_base, f"{_kind}_repository", repository, defaults={"kind": _kind})
    bp.add_url_rule(f"{_base}/deploy_token/create", f"{_kind}_create_deploy_token", create,
                    methods=["POST"], defaults={"kind": _kind})
    bp.add_url_rule(f"{_prefix}/<path:full_path>/-/deploy_tokens/<int:token_id>/revoke",
                    f"{_kind}_revoke_deploy_token", revoke, methods=["GET", "POST"],
                    defaults={"kind": _kind})
    bp.add_url_rule(f"{_prefix}/<path:full_path>/-/deploy_tokens/<int:token_id>/rotate",
                    f"{_kind}_rotate_deploy_token", rotate, methods=["POST"],
                    defaults={"kind": _kind})

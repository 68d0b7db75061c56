"""User settings › Personal access tokens: the credentials for the REST API."""
from datetime import timedelta

from flask import Blueprint, redirect, request, session, url_for
from flask_login import current_user, login_required

from ..models import PAT_SCOPES, utcnow
from ..services.personal_access_tokens import PERSONAL_ACCESS_TOKENS as pats
from ..services.deploy_tokens import expiry_from_date
from ..services.errors import Invalid
from .forms import PersonalAccessTokenForm
from .render import client_ip, is_htmx, render

PAT_REVOKE_CONSEQUENCE = "Anything using it loses access to the API."
bp = Blueprint("user_settings", __name__, url_prefix="/-/user_settings")

# The secret of a token just created without JavaScript waits here for the one GET
# that follows the redirect, then is gone.
REVEAL_KEY = "new_personal_access_token"
NOTICE_KEY = "personal_access_token_notice"


def _page_url() -> str:
    return url_for("user_settings.personal_access_tokens", _anchor="personal-access-tokens")


def _render_panel(form: PersonalAccessTokenForm, *, new_token=None, status: int = 200,
                  notice: str = ""):
    now = utcnow()
    return render(
        "user_settings/personal_access_tokens.html",
        "user_settings/_personal_access_tokens.html", status=status,
        form=form, new_token=new_token, notice=notice, now=now, timedelta=timedelta,
        scopes=PAT_SCOPES, revoke_consequence=PAT_REVOKE_CONSEQUENCE,
        active=pats.list_for(current_user, active=True, now=now),
        inactive=pats.list_for(current_user, active=False, now=now))


@bp.get("/personal_access_tokens")
@login_required
def personal_access_tokens():
    new_token = session.pop(REVEAL_KEY, None)
    if new_token and new_token.get("user_id") != current_user.id:
        new_token = None
    return _render_panel(PersonalAccessTokenForm(formdata=None), new_token=new_token,
                         notice=session.pop(NOTICE_KEY, ""))


@bp.post("/personal_access_tokens")
@login_required
def create():
    form = PersonalAccessTokenForm()
    form.validate()  # shape only: the date must parse; CSRF was checked globally
    if form.expires_at.errors:
        errors = pats.validate(form.name.data, form.selected_scopes(),
                                                 None, now=utcnow())
        errors["expires_at"] = ["Expiration date is not a valid date (use YYYY-MM-DD)"]
        _attach(form, errors)
        return _render_panel(form, status=422)
    # A date means the token stops working at 00:00 UTC that day, as deploy tokens do.
    expires_at = expiry_from_date(form.expires_at.data) if form.expires_at.data else None
    try:
        token, secret = pats.create(
            current_user, name=form.name.data, scopes=form.selected_scopes(),
            expires_at=expires_at, actor=current_user, ip=client_ip())
    except Invalid as error:
        _attach(form, error.errors)
        return _render_panel(form, status=422)
    new_token = {"user_id": current_user.id, "name": token.name, "token": secret}
    if is_htmx():
        return _render_panel(PersonalAccessTokenForm(formdata=None), new_token=new_token)
    session[REVEAL_KEY] = new_token
    return redirect(_page_url())


def _attach(form: PersonalAccessTokenForm, errors: dict[str, list[str]]) -> None:
    """Show each service error next to its field."""
    form.scope_errors = errors.pop("scopes", [])
    for field in ("name", "expires_at"):
        form[field].errors = errors.get(field, [])


@bp.route("/personal_access_tokens/<int:token_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke(token_id: int):
    # Another user's token id is a 404, like one that does not exist.
    token = pats.get_for(current_user, token_id)
    if request.method == "GET":
        # Without JavaScript the Revoke button leads here to confirm.
        return render("revoke_confirm.html", "revoke_confirm.html",
                      label=token.name, subject=token.name, consequence=PAT_REVOKE_CONSEQUENCE,
                      revoked=token.revoked, back=url_for("user_settings.personal_access_tokens"),
                      back_label="Back to the personal access tokens")
    pats.revoke(current_user, token_id, actor=current_user, ip=client_ip())
    notice = f"Revoked personal access token {token.name}."
    if is_htmx():
        return _render_panel(PersonalAccessTokenForm(formdata=None), notice=notice)
    session[NOTICE_KEY] = notice
    return redirect(_page_url())

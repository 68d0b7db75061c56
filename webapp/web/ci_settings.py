"""Settings › CI/CD › Runners: runner tokens of a project, and the variables jobs get."""
from flask import Blueprint, abort, current_app, redirect, request, session, url_for
from flask_login import current_user, login_required

from ..models import utcnow
from ..services import accounts, ci, deploy_tokens, runners
from ..services.errors import Invalid
from ..services.policy import Action, can
from .forms import RunnerTokenForm
from .render import client_ip, is_htmx, principal, render

RUNNER_REVOKE_CONSEQUENCE = "The runner stops getting job variables."
bp = Blueprint("ci_settings", __name__)

# As for deploy tokens: a secret created without JavaScript waits here for the one GET
# that follows the redirect, then is gone.
REVEAL_KEY = "new_runner_token"
NOTICE_KEY = "runner_token_notice"


def _project(full_path: str):
    """The project whose runners are managed, or 404 for everyone but its maintainers."""
    project = accounts.find_project(full_path)
    if project is None or not can(principal(), Action.MANAGE_DEPLOY_TOKENS, project):
        abort(404)
    return project


def _page_url(project) -> str:
    return url_for("ci_settings.ci_cd", full_path=project.full_path, _anchor="runners")


def _render_panel(project, form: RunnerTokenForm, *, new_token=None, expanded: bool = False,
                  status: int = 200, notice: str = ""):
    registry = current_app.config.get("REGISTRY_URL", ci.DEFAULT_REGISTRY)
    return render(
        "settings/ci_cd.html", "settings/_runners.html", status=status,
        project=project, form=form, new_token=new_token, notice=notice,
        expanded=expanded or bool(new_token) or bool(form.errors) or bool(notice),
        active=runners.RUNNER_TOKENS.list_for(project, active=True),
        inactive=runners.RUNNER_TOKENS.list_for(project, active=False),
        ci_token=deploy_tokens.find_ci_token(project),
        revoke_consequence=RUNNER_REVOKE_CONSEQUENCE,
        external_url=current_app.config["EXTERNAL_URL"], registry=registry,
        ci_token_name=deploy_tokens.CI_TOKEN_NAME, now=utcnow())


@bp.route("/<path:full_path>/-/settings/ci_cd")
@login_required
def ci_cd(full_path: str):
    project = _project(full_path)
    new_token = session.pop(REVEAL_KEY, None)
    if new_token and new_token.get("project_id") != project.id:
        new_token = None
    return _render_panel(project, RunnerTokenForm(formdata=None), new_token=new_token,
                         notice=session.pop(NOTICE_KEY, ""))


@bp.route("/<path:full_path>/-/settings/ci_cd/runners", methods=["POST"])
@login_required
def create_runner(full_path: str):
    project = _project(full_path)
    form = RunnerTokenForm()
    try:
        token, secret = runners.RUNNER_TOKENS.create(project, name=form.description.data,
                                       actor=current_user, ip=client_ip())
    except Invalid as error:
        form.description.errors = error.errors.get("description", [])
        return _render_panel(project, form, status=422)
    new_token = {"project_id": project.id, "id": token.id, "label": token.label,
                 "token": secret}
    if is_htmx():
        return _render_panel(project, RunnerTokenForm(formdata=None), new_token=new_token)
    session[REVEAL_KEY] = new_token
    return redirect(_page_url(project))


@bp.route("/<path:full_path>/-/runners/<int:runner_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke_runner(full_path: str, runner_id: int):
    project = _project(full_path)
    token = runners.RUNNER_TOKENS.get_for(project, runner_id)
    if request.method == "GET":
        # Without JavaScript the Revoke button leads here to confirm.
        return render("revoke_confirm.html", "revoke_confirm.html",
                      label=token.label, subject=f"the runner token of {token.label}",
                      consequence=RUNNER_REVOKE_CONSEQUENCE, revoked=token.revoked,
                      back=_page_url(project), back_label="Back to the runners")
    runners.RUNNER_TOKENS.revoke(project, runner_id, actor=current_user, ip=client_ip())
    notice = f"Revoked runner token {token.label}."
    if is_htmx():
        return _render_panel(project, RunnerTokenForm(formdata=None), notice=notice)
    session[NOTICE_KEY] = notice
    return redirect(_page_url(project))

"""Dashboard, group pages and project pages."""
from flask import Blueprint, abort, current_app, redirect, render_template, url_for

from ..services import accounts
from ..services.policy import Action, can, visible
from .render import paginate, principal

bp = Blueprint("pages", __name__)


@bp.route("/")
def home():
    me = principal()
    return render_template("pages/dashboard.html",
                           groups=paginate(accounts.visible_groups(me), 20, "groups_page"),
                           projects=paginate(accounts.visible_projects(me), 20, "page"))


@bp.route("/-/health")
def health():
    return "GitLab OK", 200, {"Content-Type": "text/plain", "Cache-Control": "no-store"}


@bp.route("/groups/<path:full_path>")
def group(full_path: str):
    me = principal()
    target = accounts.find_group(full_path)
    if target is None or not visible(me, target):
        abort(404)
    return render_template(
        "pages/group.html", group=target,
        subgroups=[g for g in target.children if visible(me, g)],
        projects=[p for p in target.projects if visible(me, p)],
        can_manage=bool(can(me, Action.MANAGE_DEPLOY_TOKENS, target)))


@bp.route("/<path:full_path>")
def project(full_path: str):
    me = principal()
    target = accounts.find_project(full_path)
    if target is None:
        repo = full_path.strip("/")
        cloned = accounts.find_project(repo[:-4]) if repo.endswith(".git") else None
        if cloned is not None and can(me, Action.READ_PROJECT, cloned):
            # A clone URL pasted into a browser: show the project, as GitLab does.
            return redirect(url_for("pages.project", full_path=cloned.full_path))
        group = accounts.find_group(full_path)
        # Only a group the visitor may see leads on: any other answers as a missing one.
        if group is not None and visible(me, group):
            return redirect(url_for("pages.group", full_path=full_path))
        abort(404)
    if not can(me, Action.READ_PROJECT, target):
        abort(404)
    return render_template(
        "pages/project.html", project=target,
        external_url=current_app.config["EXTERNAL_URL"],
        can_manage=bool(can(me, Action.MANAGE_DEPLOY_TOKENS, target)))


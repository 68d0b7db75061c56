"""The project's Packages page: what was published, and how to install it."""
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from ..services import accounts, packages
from ..services.errors import NotFound
from ..services.policy import Action, can
from .render import is_htmx, principal, render

bp = Blueprint("packages", __name__)


@bp.app_context_processor
def _helpers():
    def can_read_packages(project) -> bool:
        return bool(can(principal(), Action.READ_PACKAGE, project))

    def can_delete_packages(project) -> bool:
        return bool(can(principal(), Action.DELETE_PACKAGE, project))
    return {"can_read_packages": can_read_packages, "can_delete_packages": can_delete_packages,
            "package_count": packages.count_for}


def _project(full_path: str, action: Action = Action.READ_PACKAGE):
    project = accounts.find_project(full_path)
    if project is None or not can(principal(), Action.READ_PACKAGE, project):
        abort(404)
    if not can(principal(), action, project):
        abort(403)
    return project


@bp.route("/<path:full_path>/-/packages/<int:package_id>/delete", methods=["GET", "POST"])
def delete(full_path: str, package_id: int):
    project = _project(full_path, Action.DELETE_PACKAGE)
    if request.method == "GET":  # the confirmation page, for browsers without JavaScript
        package = packages.get_in(project, package_id)
        if package is None:
            abort(404)
        return render_template("packages/delete_confirm.html", project=project, package=package)
    try:
        label = packages.delete_by_id(project, package_id)
    except NotFound:
        abort(404)
    if is_htmx():
        return _list(project)
    flash(f"Deleted {label}.")
    return redirect(url_for("packages.index", full_path=project.full_path))


@bp.route("/<path:full_path>/-/packages")
def index(full_path: str):
    return _list(_project(full_path))


def _list(project):
    per_page = int(current_app.config["PER_PAGE"])
    rows, pages = packages.page_for(project, request.args.get("page", 1, type=int), per_page)
    page = min(max(request.args.get("page", 1, type=int), 1), pages)
    external = current_app.config["EXTERNAL_URL"]
    parts = urlsplit(external)
    return render("packages/index.html", "packages/_list.html", project=project,
                  packages=rows, page=page, pages=pages, external_url=external,
                  scheme=parts.scheme, host=parts.netloc + parts.path,
                  api=f"{external}/api/v4/projects/{project.id}/packages")

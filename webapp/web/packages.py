"""The project's Packages page: what was published, and how to install it."""
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, request

from ..services import accounts, packages
from ..services.policy import Action, can
from .render import principal, render

bp = Blueprint("packages", __name__)


@bp.app_context_processor
def _helpers():
    def can_read_packages(project) -> bool:
        return bool(can(principal(), Action.READ_PACKAGE, project))
    return {"can_read_packages": can_read_packages, "package_count": packages.count_for}


@bp.route("/<path:full_path>/-/packages")
def index(full_path: str):
    project = accounts.find_project(full_path)
    if project is None or not can(principal(), Action.READ_PACKAGE, project):
        abort(404)
    per_page = int(current_app.config["PER_PAGE"])
    rows, pages = packages.page_for(project, request.args.get("page", 1, type=int), per_page)
    page = min(max(request.args.get("page", 1, type=int), 1), pages)
    external = current_app.config["EXTERNAL_URL"]
    parts = urlsplit(external)
    return render("packages/index.html", "packages/_list.html", project=project,
                  packages=rows, page=page, pages=pages, external_url=external,
                  scheme=parts.scheme, host=parts.netloc + parts.path,
                  api=f"{external}/api/v4/projects/{project.id}/packages")

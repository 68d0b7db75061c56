"""Project › Container registry: image repositories and tags, and deleting a tag."""
from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user, login_required

from ..services import accounts, container_registry
from ..services.errors import NotFound
from ..services.policy import Action, can
from .render import client_ip, is_htmx, principal, render

bp = Blueprint("container_registry", __name__)


@bp.app_context_processor
def _helpers():
    def can_read_registry(project) -> bool:
        return bool(can(principal(), Action.READ_REGISTRY, project))
    return {"can_read_registry": can_read_registry}


def _project(full_path: str, action: Action):
    project = accounts.find_project(full_path)
    if project is None or not can(principal(), action, project):
        abort(404)
    return project


def _listing(project, notice: str = "", status: int = 200):
    try:
        repos = [(repo, container_registry.tags(repo))
                 for repo in container_registry.repositories(project)]
        error = ""
    except container_registry.Unavailable as unavailable:
        repos, error, status = [], str(unavailable), 503
    return render("container_registry/index.html", "container_registry/_list.html", status,
                  project=project, repositories=repos, error=error, notice=notice,
                  can_delete=bool(can(principal(), Action.DELETE_REGISTRY, project)),
                  location=container_registry.location)


@bp.route("/<path:full_path>/container_registry")
def index(full_path: str):
    return _listing(_project(full_path, Action.READ_REGISTRY))


@bp.route("/<path:full_path>/container_registry/<int:repository_id>/tags/<tag>/delete",
          methods=["GET", "POST"])
@login_required
def delete_tag(full_path: str, repository_id: int, tag: str):
    project = _project(full_path, Action.READ_REGISTRY)
    if not can(principal(), Action.DELETE_REGISTRY, project):
        abort(403)
    try:
        repo = container_registry.repository(project, repository_id)
        if request.method == "GET":
            # Without JavaScript the Delete button leads here to confirm.
            found = container_registry.tag(repo, tag)
            return render("container_registry/delete_confirm.html",
                          "container_registry/delete_confirm.html", project=project,
                          repo=repo, tag=found, location=container_registry.location)
        container_registry.delete_tag(project, repo, tag, actor=current_user, ip=client_ip())
    except NotFound:
        abort(404)
    except container_registry.Unavailable as unavailable:
        abort(503, str(unavailable))
    notice = f"Deleted tag {tag} of {repo.name}."
    if is_htmx():
        return _listing(project, notice)
    flash(notice)
    return redirect(url_for(".index", full_path=project.full_path))

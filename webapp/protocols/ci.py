"""`GET /ci/variables`: the job variables a runner hands to the jobs of its project.

The runner authenticates with its runner token as `Authorization: Bearer glrt-...`. The
answer is JSON shaped like the `variables` of GitLab's runner job payload, or, when the
client asks for `text/plain`, a dotenv file a job can source. Answers carry a deploy
token's secret, so no cache may keep them (`Cache-Control: no-store`, on errors too).
"""
from flask import Blueprint, current_app, jsonify, request

from ..extensions import db
from ..models import Project
from ..services import ci
from ..services.credentials import RUNNER_TOKEN, Door
from ..services.encryption import DecryptionError, EncryptionKeyError
from ..services.errors import DomainError, NotFound
from ..services.policy import Action, authorize
from .auth import REALM, authenticate

bp = Blueprint("ci", __name__)
DOOR = Door("ci", bare_tokens=frozenset({RUNNER_TOKEN}))
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Project Not Found"}


def _error(status: int, message: str):
    response = jsonify(message=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
    return response


@bp.errorhandler(DomainError)
def _refused(error: DomainError):
    current_app.logger.info("CI variables refused (%s) for %s", error.status, request.remote_addr)
    detail = "" if isinstance(error, NotFound) or error.status == 401 else f" - {error}"
    return _error(error.status, f"{error.status} {TITLES.get(error.status, 'Error')}{detail}")


def _wants_dotenv() -> bool:
    # JSON unless the client prefers text/plain outright (curl's */* gets JSON).
    accept = request.accept_mimetypes
    return accept["text/plain"] > accept["application/json"]


@bp.get("/ci/variables")
def variables():
    principal = authenticate(DOOR)
    project = authorize(principal, Action.READ_CI_VARIABLES,
                        db.session.get(Project, principal.project_id)
                        if principal.project_id is not None else None)
    try:
        values = ci.job_variables(
            project, external_url=current_app.config["EXTERNAL_URL"],
            registry=current_app.config.get("REGISTRY_URL", ci.DEFAULT_REGISTRY))
    except (DecryptionError, EncryptionKeyError) as error:
        # The reason names the key and the row, never the secret.
        current_app.logger.error("CI variables for %s: cannot decrypt the CI deploy token: %s",
                                 project.full_path, error)
        return _error(500, "500 Internal Server Error")
    current_app.logger.info(
        "CI variables for %s served to %s (%d variables, deploy token pair %s)",
        project.full_path, principal.name, len(values),
        "included" if any(v["key"] == "CI_DEPLOY_PASSWORD" for v in values) else "absent")
    if _wants_dotenv():
        response = current_app.response_class(ci.dotenv(values),
                                              mimetype="text/plain")
    else:
        response = jsonify(variables=values)
    response.vary.add("Accept")
    response.vary.add("Authorization")
    return response


@bp.after_app_request
def no_store(response):
    """Never let a cache keep anything under /ci/, error answers included."""
    if request.path.startswith("/ci/"):
        response.headers["Cache-Control"] = "no-store"
    return response

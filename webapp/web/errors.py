"""Error pages for browsers; JSON for the machine protocols under /api and /jwt."""
from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError

from ..services.errors import DomainError

TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 413: "Too large", 500: "Something went wrong"}
MESSAGES = {
    404: "The page could not be found or you don't have permission to view it.",
    403: "You are not allowed to do this.",
    500: "Gatehouse hit an error. It has been logged; try again, and tell an admin if it persists.",
}


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/jwt/", "/ci/"))


def _page(status: int, message: str = ""):
    if _wants_json():
        return jsonify(message=f"{status} {TITLES.get(status, '')}".strip()), status
    return render_template("errors/error.html", status=status, title=TITLES.get(status, "Error"),
                           message=message or MESSAGES.get(status, "")), status


def register(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template(
            "errors/error.html", status=400, title="Your form expired",
            message="The security token of this form is missing or expired. Reload the "
                    "page and submit it again."), 400

    @app.errorhandler(DomainError)
    def domain_error(error):
        return _page(error.status, str(error))

    for status in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(status, lambda e, s=status: _page(s))

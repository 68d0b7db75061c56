"""Error pages for browsers; JSON for the machine protocols under /api and /jwt.

Each protocol blueprint turns domain errors into its own wire format; what reaches
these app-wide handlers is what no blueprint claimed (unknown routes, input refused
before any view ran).
"""
import re

from flask import flash, jsonify, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from markupsafe import escape

from ..services.errors import DomainError, Malformed
from .render import is_htmx

TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 413: "Too large", 500: "Something went wrong",
          507: "Out of storage space"}
MESSAGES = {
    404: "The page could not be found or you don't have permission to view it.",
    403: "You are not allowed to do this.",
    500: "Gatehouse hit an error. It has been logged; try again, and tell an admin if it persists.",
}


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/jwt/", "/ci/"))


# GitLab's wording under /api/v4 (clients match on these strings).
API_MESSAGES = {400: "400 Bad request", 401: "401 Unauthorized", 403: "403 Forbidden",
                404: "404 Not Found", 405: "405 Not Allowed",
                413: "413 Request Entity Too Large", 500: "500 Internal Server Error",
                507: "507 Insufficient Storage"}


# Control characters (tab, newline and carriage return aside in query values): no
# client sends them, and PostgreSQL refuses a NUL outright.
PATH_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
QUERY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def refuse_control_characters():
    """Before any view: a path or query string with control characters is a 400."""
    if PATH_CONTROLS.search(request.path) or any(
            QUERY_CONTROLS.search(key) or QUERY_CONTROLS.search(value)
            for key, value in request.args.items(multi=True)):
        raise Malformed("The request's path or query string contains control characters")


def _json(status: int, error=None):
    # No API route matched (the browser's project-page catch-all does not count): GitLab's
    # catch-all route answers {"message": "404 Not Found"}, a wrong method
    # {"error": "405 Not Allowed"} with an Allow header.
    headers = {}
    if getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if request.path.startswith("/api/") and request.blueprint in (None, "pages"):
        # No API route matched: the same answer whatever credentials came with it.
        from ..protocols.api_v4 import unknown_route, unknown_route_body
        if status == 405 and unknown_route(getattr(error, "valid_methods", None) or ()):
            return jsonify(unknown_route_body()), 404
        if status == 404:
            return jsonify(unknown_route_body()), 404
        return jsonify(error=API_MESSAGES.get(status, str(status))), status, headers
    if request.path.startswith("/api/"):
        return jsonify(message=API_MESSAGES.get(status, str(status))), status, headers
    return jsonify(message=f"{status} {TITLES.get(status, '')}".strip()), status, headers


FORM_EXPIRED = "This form has expired. Reload the page."
_ELEMENT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _htmx_alert(status: int, message: str):
    """An error for htmx: a message into the panel that asked, never a page into it."""
    target = request.headers.get("HX-Target", "")
    where = f"#{target} [data-alerts]" if _ELEMENT_ID.match(target) else "#page-alerts"
    body = f'<p class="flash flash-error" role="alert">{escape(message)}</p>'
    return body, status, {"HX-Retarget": where, "HX-Reswap": "innerHTML",
                          "Content-Type": "text/html; charset=utf-8",
                          "Vary": "HX-Request"}


def _page(status: int, message: str = "", error=None, title: str = ""):
    if _wants_json():
        return _json(status, error)
    message = message or MESSAGES.get(status, "")
    title = title or TITLES.get(status, "Error")
    if is_htmx():
        return _htmx_alert(status, f"{title}: {message}" if message else title)
    return render_template("errors/error.html", status=status, title=title,
                           message=message), status


def register(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        from .auth import unauthorized
        if request.endpoint == "auth.sign_in":
            from .auth import sign_in_page
            flash(FORM_EXPIRED, "warning")
            return sign_in_page(400)
        if not current_user.is_authenticated:
            # No session left to hold the form's token: signed out elsewhere, idle, or
            # the cookie is gone. Say so on the sign-in page.
            return unauthorized()
        if is_htmx():
            return _htmx_alert(400, FORM_EXPIRED)
        return _page(400, f"{FORM_EXPIRED} Its security token is missing or no longer "
                          "valid; nothing was changed.", title="Your form expired")

    @app.errorhandler(DomainError)
    def domain_error(error):
        return _page(error.status, str(error))

    app.before_request(refuse_control_characters)

    for status in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(status, lambda e, s=status: _page(s, error=e))

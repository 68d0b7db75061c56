"""Database blips: a pooled connection killed under a request (failover, restart, kill).

A read whose connection died is run once more on a fresh connection: it wrote nothing
that could be applied twice, and its transaction died with the connection. Anything
else that finds the database unreachable answers 503 with `Retry-After`, in JSON for
the machine routes, so clients retry rather than show an error page.
"""
from flask import g, jsonify, request
from sqlalchemy import exc as sa_exc
from werkzeug.wrappers import Response

from .extensions import db

RETRY_AFTER = "5"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
MACHINE_PREFIXES = ("/api/", "/jwt/", "/ci/")


def is_blip(error: BaseException) -> bool:
    """The database, not the request, failed: connection lost or none to be had."""
    if isinstance(error, sa_exc.TimeoutError):  # the pool had no connection to give
        return True
    return isinstance(error, sa_exc.DBAPIError) and (
        error.connection_invalidated or isinstance(error, sa_exc.OperationalError))


def unavailable() -> Response:
    headers = {"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"}
    if request.path.startswith(MACHINE_PREFIXES):
        response = jsonify(message="503 Service Unavailable",
                           error="the database is unavailable; retry later")
    else:
        # Plain text: a page would need the signed-in user, from the same database.
        response = Response("503 Service Unavailable: the database is unavailable. "
                            "Try again in a few seconds.\n", mimetype="text/plain")
    response.status_code = 503
    response.headers.update(headers)
    return response


def _handle(error: sa_exc.SQLAlchemyError):
    if not is_blip(error):
        raise error  # a bug, not a blip: the usual 500
    db.session.rollback()
    retryable = (request.method in READS and getattr(error, "connection_invalidated", False)
                 and not g.get("_database_retried"))
    if not retryable:
        return unavailable()
    g._database_retried = True
    from flask import current_app
    app = current_app._get_current_object()
    try:
        rv = app.preprocess_request()
        return app.dispatch_request() if rv is None else rv
    except Exception as again:  # the retry's own outcome, handled as any request's is
        return app.handle_user_exception(again)


def register(app) -> None:
    """Retry reads once on a dead connection; answer 503 for the rest."""
    app.register_error_handler(sa_exc.DBAPIError, _handle)
    app.register_error_handler(sa_exc.TimeoutError, _handle)

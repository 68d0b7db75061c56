"""Health checks for load balancers and nginx upstreams (GitLab's `/-/health`, `/-/readiness`).

`/-/health` answers as long as the process serves requests; `/-/readiness` also checks
what this host shares with the others (the database, and Redis when configured), so a
balancer stops sending work to a host that cannot reach them.
"""
import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from ..extensions import db

bp = Blueprint("health", __name__)


@bp.get("/-/health")
def health():
    return "Gatehouse OK", 200, {"Content-Type": "text/plain", "Cache-Control": "no-store"}


@bp.get("/-/readiness")
def readiness():
    checks = {"db_check": _check(lambda: db.session.execute(sa.text("SELECT 1")))}
    if current_app.config.get("REDIS_URL"):
        from ..services.auth_ban import _redis
        checks["redis_check"] = _check(lambda: _redis(current_app.config["REDIS_URL"]).ping())
    ok = all(c[0]["status"] == "ok" for c in checks.values())
    body = {"status": "ok" if ok else "failed", **checks}
    return jsonify(body), 200 if ok else 503, {"Cache-Control": "no-store"}


def _check(probe) -> list[dict]:
    try:
        probe()
    except Exception as exc:  # reported, not raised: the answer is the report
        db.session.rollback()
        return [{"status": "failed", "message": exc.__class__.__name__}]
    return [{"status": "ok"}]

"""Settings › Webhooks and the audit events page, for projects and groups alike."""
import csv
import io
from datetime import date, datetime, time, timedelta, timezone

from flask import Blueprint, abort, make_response, redirect, request, session, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..services import accounts, audit, webhooks
from ..services.errors import Invalid
from ..services.policy import Action, can
from .forms import WebhookForm
from .render import client_ip, paginate, principal, render

bp = Blueprint("lifecycle", __name__)
NOTICE_KEY = "webhook_notice"


def _owner(kind: str, full_path: str, action: Action):
    target = (accounts.find_project if kind == "project" else accounts.find_group)(full_path)
    if target is None or not can(principal(), action, target):
        abort(404)
    return target


def _hooks_url(kind: str, owner) -> str:
    return url_for(f"lifecycle.{kind}_webhooks", full_path=owner.full_path)


@login_required
def hooks_page(kind: str, full_path: str):
    owner = _owner(kind, full_path, Action.MANAGE_WEBHOOKS)
    form = WebhookForm(formdata=None)
    status = 200
    if request.method == "POST":
        form = WebhookForm()
        try:
            webhooks.create(owner, url=form.url.data, token=form.token.data or None,
                            deploy_token_events=form.deploy_token_events.data,
                            enable_ssl_verification=form.enable_ssl_verification.data,
                            actor=current_user, ip=client_ip())
        except Invalid as error:
            form.url.errors = error.errors.get("url", [])
            form.token.errors = error.errors.get("token", [])
            status = 422
        else:
            session[NOTICE_KEY] = "Webhook added."
            return redirect(_hooks_url(kind, owner))
    hooks = [(hook, webhooks.deliveries(hook, limit=10)) for hook in webhooks.list_for(owner)]
    response = render("settings/webhooks.html", "settings/webhooks.html", status=status,
                      kind=kind, owner=owner, form=form, hooks=hooks,
                      notice=session.pop(NOTICE_KEY, ""))
    response.headers["Cache-Control"] = "no-store"
    return response


@login_required
def delete_hook(kind: str, full_path: str, hook_id: int):
    owner = _owner(kind, full_path, Action.MANAGE_WEBHOOKS)
    webhooks.delete(owner, hook_id, actor=current_user, ip=client_ip())
    session[NOTICE_KEY] = "Webhook deleted."
    return redirect(_hooks_url(kind, owner))


def _day(name: str, errors: list[str]):
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw), time.min, tzinfo=timezone.utc)
    except ValueError:
        errors.append(f"{name.capitalize()} is not a date (use YYYY-MM-DD)")
        return None


@login_required
def audit_page(kind: str, full_path: str):
    owner = _owner(kind, full_path, Action.READ_AUDIT_EVENTS)
    errors: list[str] = []
    after = _day("from", errors)
    until = _day("to", errors)
    token = request.args.get("token_id", "").strip()
    if token and not token.isdigit():
        errors.append("Token must be a deploy token id")
    query = audit.events_query(owner, token_id=int(token) if token.isdigit() else None,
                               after=after, before=until + timedelta(days=1) if until else None)
    events = list(db.session.scalars(query.limit(10000)))
    if request.args.get("format") == "csv" and not errors:
        return _csv(owner, events)
    page = paginate(events, 50)
    return render("settings/audit_events.html", "settings/audit_events.html",
                  status=400 if errors else 200, kind=kind, owner=owner, page=page,
                  errors=errors, args=request.args)


def _csv(owner, events):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "created_at", "event", "author", "target_type", "target_id",
                     "target", "ip_address"])
    for e in events:
        target = (e.details or {}).get("name") or (e.details or {}).get("url") or ""
        # A leading = + - @ would be a formula in a spreadsheet.
        cells = [e.id, e.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), e.action, e.actor_name,
                 e.target_type, e.target_id, target, e.ip or ""]
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in "=+-@" else c
                         for c in cells])
    response = make_response(out.getvalue())
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    name = owner.full_path.replace("/", "-")
    response.headers["Content-Disposition"] = f'attachment; filename="audit-events-{name}.csv"'
    return response


for _kind, _prefix in (("project", ""), ("group", "/groups")):
    bp.add_url_rule(f"{_prefix}/<path:full_path>/-/settings/webhooks", f"{_kind}_webhooks",
                    hooks_page, methods=["GET", "POST"], defaults={"kind": _kind})
    bp.add_url_rule(f"{_prefix}/<path:full_path>/-/hooks/<int:hook_id>/delete",
                    f"{_kind}_delete_webhook", delete_hook, methods=["POST"],
                    defaults={"kind": _kind})
    bp.add_url_rule(f"{_prefix}/<path:full_path>/-/audit_events", f"{_kind}_audit_events",
                    audit_page, defaults={"kind": _kind})

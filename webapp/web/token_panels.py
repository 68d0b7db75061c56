"""One token panel for every kind: deploy tokens (project, group), runner tokens, personal
access tokens. A kind is data (words, form fields, columns) plus the four service calls
the views make; `register` gives a blueprint the panel's three URLs for one kind.

This module is the only place the browser calls the token services.
"""
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

from flask import redirect, request, session, url_for
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from ..models import PAT_SCOPES, SCOPES, utcnow
from ..services import deploy_tokens
from ..services.deploy_tokens import DEPLOY_TOKENS, expiry_from_date
from ..services.personal_access_tokens import PERSONAL_ACCESS_TOKENS as PATS
from ..services.runners import RUNNER_TOKENS as RUNNERS
from ..services.secret_tokens import TokenKind
from ..services.errors import Invalid
from . import one_time
from .forms import DeployTokenForm, PersonalAccessTokenForm, RunnerTokenForm
from .render import client_ip, is_htmx, relative_time, render

PER_PAGE = 20
DATE_ERROR = "Expiration date is not a valid date (use YYYY-MM-DD)"


@dataclass(frozen=True)
class Field:
    """A text input of the create form."""

    name: str
    label: str
    hint: str = ""
    type: str = "text"


@dataclass(frozen=True)
class Row:
    """One token as every table shows it, whatever its kind."""

    id: int
    name: str
    username: Optional[str]
    scopes: list[str]
    created_at: datetime
    last_used_at: Optional[datetime]
    last_used_ip: Optional[str]
    expires_at: Optional[datetime]
    revoked: bool
    revoked_at: Optional[datetime]
    badge: str = ""
    previous_until: Optional[datetime] = None  # the previous secret works until then
    allowed: tuple[str, ...] = ()               # the addresses it is allowed from


@dataclass(frozen=True)
class Kind:
    key: str                      # the section's id, e.g. "deploy-tokens"
    title: str                    # "Deploy tokens"
    singular: str                 # "deploy token"
    intro: str
    form_class: type
    fields: tuple[Field, ...]
    columns: tuple[tuple[str, str], ...]   # (cell, header) in order
    empty: str
    reveal_warning: str
    revoke_consequence: str = ""
    scopes: dict[str, str] = field(default_factory=dict)
    scope_notes: dict[str, Markup] = field(default_factory=dict)
    note: Markup = Markup("")
    always_open: bool = False
    # The kind's one service (list, get, revoke), and how this form creates and validates.
    tokens: TokenKind = None
    create: Callable[..., tuple[Any, str]] = None
    validate: Optional[Callable[..., dict]] = None
    row: Callable[[Any], Row] = None
    reveal: Callable[[Any, str], list[tuple[str, str, str]]] = None
    badges: Callable[[Any, datetime], dict[int, str]] = lambda owner, now: {}

    @property
    def sorts(self) -> dict[str, str]:
        options = {"created": "Created (newest first)"}
        if any(cell == "expires" for cell, _ in self.columns):
            options["expires"] = "Expires (soonest first)"
        options["last_used"] = "Last used (most recent first)"
        return options

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.columns)


# ------------------------------------------------------------------ the kinds


def _expiry(form) -> Optional[datetime]:
    # A date means the token stops working at 00:00 UTC that day.
    return expiry_from_date(form.expires_at.data) if form.expires_at.data else None


def _row(t) -> Row:
    """Deploy and personal access tokens; only deploy tokens have a username."""
    return Row(t.id, t.name, getattr(t, "username", None), t.scopes, t.created_at,
               t.last_used_at, t.last_used_ip, t.expires_at, t.revoked, t.revoked_at,
               **_lifecycle(t))


def _lifecycle(t) -> dict:
    """What rotation and the address allowlist add to every kind's row."""
    return {"previous_until": t.previous_expires_at if t.in_grace_at(utcnow()) else None,
            "allowed": tuple(t.allowed_networks)}


def _ci_badge(owner, now) -> dict[int, str]:
    if getattr(owner, "group_id", None) is None:  # a group: never exposed to CI
        return {}
    token = deploy_tokens.find_ci_token(owner, now=now)
    return {token.id: "Exposed to CI jobs as CI_DEPLOY_USER / CI_DEPLOY_PASSWORD"} if token else {}


PROJECT_DEPLOY_TOKENS = Kind(
    key="deploy-tokens", title="Deploy tokens", singular="deploy token",
    intro="Deploy tokens allow access to packages, your repository, and registry images.",
    form_class=DeployTokenForm,
    fields=(Field("name", "Name", "Enter a unique name for your deploy token."),
            Field("expires_at", "Expiration date (optional)",
                  "Enter an expiration date for your token. Defaults to never expire. "
                  "The token stops working at 00:00 UTC on that date.", "date"),
            Field("username", "Username (optional)",
                  "Enter a username for your token. Defaults to gitlab+deploy-token-{n}."),
            Field("allowed_ips", "Allowed IP addresses (optional)",
                  "Addresses and CIDR ranges (IPv4 or IPv6), separated by commas. The token "
                  "is refused from anywhere else. Defaults to any address.")),
    scopes=SCOPES,
    scope_notes={"write_registry": Markup(" Pushing an image needs <code>read_registry</code> as well.")},
    columns=(("name", "Name"), ("username", "Username"), ("scopes", "Scopes"),
             ("created", "Created"), ("last_used", "Last used"), ("expires", "Expires")),
    empty="No active deploy tokens.",
    reveal_warning="Use this token as a password. Save it. This password can not be recovered.",
    create=lambda owner, form, actor, ip: deploy_tokens.create(
        owner, name=form.name.data, username=form.username.data, scopes=form.selected_scopes(),
        expires_at=_expiry(form), allowed_ips=form.allowed_ips.data, actor=actor, ip=ip),
    validate=lambda form, now: deploy_tokens.validate(
        form.name.data, form.username.data, form.selected_scopes(), None, now=now),
    tokens=DEPLOY_TOKENS,
    row=_row,
    reveal=lambda t, secret: [("Username", t.username, "Copy username"),
                              ("Token", secret, "Copy deploy token")],
    badges=_ci_badge,
)

GROUP_DEPLOY_TOKENS = replace(
    PROJECT_DEPLOY_TOKENS,
    note=Markup("Group deploy tokens reach every project in this group and its subgroups. "
                "A group token named <code>gitlab-deploy-token</code> is <strong>not</strong> "
                "exposed to CI jobs: create that one on the project instead."),
    badges=lambda owner, now: {})

RUNNER_TOKENS = Kind(
    key="runners", title="Runners", singular="runner token",
    intro="Runners run the CI/CD jobs of this project. A runner proves itself with its "
          "runner token to fetch the variables of the jobs.",
    form_class=RunnerTokenForm,
    fields=(Field("description", "Description (optional)", "What runs with it, e.g. build host 1."),),
    columns=(("name", "Runner"), ("created", "Created"), ("last_used", "Last contact")),
    empty="No active runner tokens.",
    reveal_warning="Give this token to the runner. Save it. This token can not be recovered.",
    revoke_consequence="The runner stops getting job variables.",
    tokens=RUNNERS,
    create=lambda owner, form, actor, ip: RUNNERS.create(
        owner, name=form.description.data, actor=actor, ip=ip),
    row=lambda t: Row(t.id, t.label, None, [], t.created_at, t.last_used_at, t.last_used_ip,
                      None, t.revoked, t.revoked_at, **_lifecycle(t)),
    reveal=lambda t, secret: [(f"Runner authentication token for {t.label}", secret,
                               "Copy runner token")],
)

PERSONAL_ACCESS_TOKENS = Kind(
    key="personal-access-tokens", title="Personal access tokens",
    singular="personal access token",
    intro="Personal access tokens authenticate you to the REST API (/api/v4): send one as "
          "PRIVATE-TOKEN: <token> or Authorization: Bearer <token>. A token acts as you, "
          "with your access to groups and projects, limited by its scopes.",
    form_class=PersonalAccessTokenForm,
    fields=(Field("name", "Token name",
                  "For example, the application using the token or the purpose of the token."),
            Field("expires_at", "Expiration date (optional)",
                  "Leave empty for a token that does not expire. The token stops working at "
                  "00:00 UTC on that date.", "date")),
    scopes=PAT_SCOPES,
    columns=(("name", "Token name"), ("scopes", "Scopes"), ("created", "Created"),
             ("last_used", "Last used"), ("expires", "Expires")),
    empty="No active personal access tokens.",
    reveal_warning="Make sure you save it - you won't be able to access it again.",
    revoke_consequence="Anything using it loses access to the API.",
    always_open=True,
    tokens=PATS,
    create=lambda owner, form, actor, ip: PATS.create(
        owner, name=form.name.data, scopes=form.selected_scopes(), expires_at=_expiry(form),
        actor=actor, ip=ip),
    validate=lambda form, now: PATS.validate(form.name.data, form.selected_scopes(), None, now=now),
    row=_row,
    reveal=lambda t, secret: [("Token", secret, "Copy token")],
)


# ------------------------------------------------------------------ the list


@dataclass(frozen=True)
class Listing:
    active: list[Row]
    inactive: list[Row]
    total: int          # active tokens in all
    matching: int       # active tokens the search matches
    page: int
    pages: int
    q: str
    sort: str

    def query(self, **change) -> dict[str, Any]:
        """The list's state as URL arguments, defaults left out."""
        state = {"q": self.q, "sort": self.sort, "page": self.page, **change}
        return {k: v for k, v in state.items()
                if v and not (k == "sort" and v == "created") and not (k == "page" and v == 1)}


_NEVER = datetime.max.replace(tzinfo=None)


def _sort_key(sort: str):
    if sort == "expires":  # soonest first, never last
        return lambda r: (r.expires_at is None, r.expires_at.timestamp() if r.expires_at else 0, -r.id)
    if sort == "last_used":  # most recent first, never used last
        return lambda r: (r.last_used_at is None, -(r.last_used_at.timestamp() if r.last_used_at else 0), -r.id)
    return lambda r: (-r.created_at.timestamp(), -r.id)


def list_tokens(kind: Kind, owner, args, now: datetime) -> Listing:
    """Search, sort and page the owner's tokens as the URL arguments say.

    Done in Python over the service's list (a few hundred rows per owner at most); the one
    place to move into SQL when the generic token service offers it.
    """
    badges = kind.badges(owner, now)
    rows = [replace(kind.row(t), badge=badges.get(t.id, "")) for t in kind.tokens.list_for(owner, now=now)]
    live = [r for r in rows if not r.revoked and not (r.expires_at and r.expires_at <= now)]
    inactive = [r for r in rows if r not in live]
    q = (args.get("q") or "").strip()[:255]
    sort = args.get("sort") if args.get("sort") in kind.sorts else "created"
    needle = q.casefold()
    matching = [r for r in live if needle in r.name.casefold()
                or needle in (r.username or "").casefold()] if q else live
    matching.sort(key=_sort_key(sort))
    pages = max(1, math.ceil(len(matching) / PER_PAGE))
    page = args.get("page", 1, type=int) or 1
    page = min(max(page, 1), pages)
    shown = matching[(page - 1) * PER_PAGE: page * PER_PAGE]
    return Listing(shown, inactive, len(live), len(matching), page, pages, q, sort)


# ------------------------------------------------------------------ the views


@dataclass
class Panel:
    """One kind of token panel on one blueprint: its URLs, owner and page."""

    kind: Kind
    page_template: str
    owner: Callable[..., Any]     # view args -> owner, or abort(404)
    extras: Callable[[Any], dict] = lambda owner: {}
    endpoints: dict[str, str] = field(default_factory=dict)  # filled by register()

    def url(self, what: str, view_args: dict, **params) -> str:
        """The URL of the panel's "page", "create" or "revoke" endpoint."""
        return url_for(self.endpoints[what], **view_args, **params)

    def render(self, owner, view_args: dict, *, form=None, status=200, new_token=None,
               notice: str = "", focus: str = "", args=None, headers=None):
        """The panel (htmx) or its page, with the list as `args` say; never cached."""
        kind, now = self.kind, utcnow()
        listing = list_tokens(kind, owner, request.args if args is None else args, now)
        form = form or kind.form_class(formdata=None)
        form.form_token.data = one_time.issue(current_user.id)
        errors = bool(form.errors or getattr(form, "scope_errors", []))
        response = render(
            self.page_template, "tokens/_panel.html", status=status,
            kind=kind, panel=self, view_args=view_args, owner=owner, form=form,
            listing=listing, new_token=new_token, notice=notice, now=now, errors=errors,
            relative=relative_time, tomorrow=(now + timedelta(days=1)).date().isoformat(),
            focus=focus or ("reveal" if new_token else "field" if errors else ""),
            expanded=kind.always_open or bool(new_token or errors or notice or request.args
                                              or (args or {})),
            form_open=errors or listing.total == 0,
            **self.extras(owner))
        response.headers["Cache-Control"] = "no-store"  # the panel may carry a secret
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def back(self, view_args: dict, args) -> str:
        """The page URL with the list state of `args`, at the panel."""
        state = {k: args[k] for k in ("q", "sort", "page") if args.get(k)}
        return self.url("page", view_args, _anchor=self.kind.key, **state)

    # Views ----------------------------------------------------------------

    def page_view(self, **view_args):
        owner = self.owner(**view_args)
        # An htmx GET is a search, sort or page of the list: the focus goes to the list.
        return self.render(owner, view_args, notice=session.pop(f"notice:{self.kind.key}", ""),
                           focus="list" if is_htmx() else "")

    def create_view(self, **view_args):
        owner = self.owner(**view_args)
        kind = self.kind
        form = kind.form_class()
        digest = one_time.digest_of(form.form_token.data, current_user.id)
        if digest is None:
            raise CSRFError("The one-time token of this form is missing or expired.")
        failed = {}

        def create():
            form.validate()  # shape only: the date must parse; CSRF was checked globally
            if "expires_at" in form and form.expires_at.errors:
                # Report the bad date together with everything else that is wrong.
                errors = kind.validate(form, utcnow())
                errors["expires_at"] = [DATE_ERROR]
                failed.update(errors)
                return None
            try:
                token, secret = kind.create(owner, form, current_user, client_ip())
            except Invalid as error:
                failed.update(error.errors)
                return None
            return {"name": kind.row(token).name, "fields": kind.reveal(token, secret)}

        new_token, repeated = one_time.submit_once(digest, current_user.id, create)
        if failed:
            _attach(form, failed)
            return self.render(owner, view_args, form=form, status=422)
        if new_token is None:
            return self.render(owner, view_args, status=409, notice=(
                f"This form was already sent: it created one {kind.singular}, whose secret "
                "was shown once. If you did not see it, revoke that token and create another."))
        # Without JavaScript too the answer is the page with the secret (no redirect, so
        # the secret never waits in a cookie); a reload re-sends the same one-time form.
        return self.render(owner, view_args, new_token=new_token, status=200 if repeated else 201,
                           headers=_announce(f"Created {kind.singular} {new_token['name']}."))

    def rotate_view(self, token_id: int, **view_args):
        """A new secret, shown once; the previous one keeps working for the default grace."""
        owner = self.owner(**view_args)
        kind = self.kind
        token, secret = kind.tokens.rotate(owner, token_id, actor=current_user, ip=client_ip())
        new_token = {"name": kind.row(token).name, "fields": kind.reveal(token, secret)}
        notice = (f"Rotated {kind.singular} {new_token['name']}: its previous secret works "
                  f"until {token.previous_expires_at:%Y-%m-%d %H:%M} UTC.")
        return self.render(owner, view_args, new_token=new_token, notice=notice,
                           headers=_announce(notice))

    def revoke_view(self, token_id: int, **view_args):
        owner = self.owner(**view_args)
        kind = self.kind
        row = kind.row(kind.tokens.get_for(owner, token_id))
        if request.method == "GET":
            # Without JavaScript the Revoke button leads here to confirm.
            response = render("tokens/revoke_confirm.html", "tokens/revoke_confirm.html",
                              kind=kind, row=row, back=self.back(view_args, request.args))
            response.headers["Cache-Control"] = "no-store"
            return response
        kind.tokens.revoke(owner, token_id, actor=current_user, ip=client_ip())
        notice = f"Revoked {kind.singular} {row.name}."
        if is_htmx():
            return self.render(owner, view_args, notice=notice, focus="list",
                               headers=_announce(notice))
        session[f"notice:{kind.key}"] = notice
        return redirect(self.back(view_args, request.args))


def _announce(message: str) -> dict[str, str]:
    """Ask static/app.js to read `message` out in the page's live region."""
    return {"HX-Trigger": json.dumps({"gatehouse:announce": message})}


def _attach(form, errors: dict[str, list[str]]) -> None:
    """Show each service error next to its field."""
    form.scope_errors = errors.pop("scopes", [])
    for name, messages in errors.items():
        if name in form:
            form[name].errors = list(messages)


def register(bp, panel: Panel, **rules: tuple[str, str]) -> None:
    """Add the panel's page, create and revoke URLs to the blueprint.

    `rules` maps "page", "create", "revoke" and "rotate" to (URL rule, endpoint name).
    """
    methods = {"page": ["GET"], "create": ["POST"], "revoke": ["GET", "POST"],
               "rotate": ["POST"]}
    views = {"page": panel.page_view, "create": panel.create_view, "revoke": panel.revoke_view,
             "rotate": panel.rotate_view}
    for what, (rule, name) in rules.items():
        bp.add_url_rule(rule, name, login_required(views[what]), methods=methods[what])
        panel.endpoints[what] = f"{bp.name}.{name}"

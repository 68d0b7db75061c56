"""Sign in and sign out, and the browser session: how it starts, idles out and ends."""
import secrets
import time
from typing import Optional
from urllib.parse import urlsplit

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_user, logout_user

from ..extensions import db, login_manager
from ..models import User
from ..services import accounts, credentials
from ..services.errors import DomainError, Malformed
from .forms import SignInForm
from .render import is_htmx

bp = Blueprint("auth", __name__)
# The sign-in form is a door like any other: the same ban, account lock and accounting.
DOOR = credentials.Door("sign_in", passwords=True)

EXPIRED = "Your session has expired. Sign in again to continue."
# The session's last-seen time is rewritten at most this often (seconds): a fresh
# Set-Cookie on every request would be noise.
SEEN_RESOLUTION = 60


@login_manager.user_loader
def load_user(session_id: str) -> Optional[User]:
    user_id = session_id.partition(":")[0]
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.get_id() != session_id:
        # Signed out (anywhere) or the password changed since this session began.
        g.session_ended = True
        return None
    return user


@bp.before_app_request
def _end_idle_sessions():
    if "_user_id" not in session:
        return
    now = int(time.time())
    seen = session.get("seen")
    if not isinstance(seen, int) or now - seen > int(current_app.config["SESSION_IDLE_TIMEOUT"]):
        session.clear()
        g.session_ended = True
    elif now - seen >= SEEN_RESOLUTION:
        session["seen"] = now


def _same_site_path(url: Optional[str]) -> Optional[str]:
    """The path and query of `url` when it points at this site, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if (parts.scheme or parts.netloc) and parts.netloc != request.host:
        return None
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//"):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def sign_in_url_for_here() -> str:
    """The sign-in page, with `next` leading back to the page the user was looking at.

    Under htmx that is the page (HX-Current-URL), not the partial's URL; after a form
    post it is the page the form was on, never the POST-only URL itself.
    """
    if is_htmx():
        back = _same_site_path(request.headers.get("HX-Current-URL"))
    elif request.method in ("GET", "HEAD"):
        back = request.full_path.rstrip("?")
    else:
        back = _same_site_path(request.referrer)
    return url_for("auth.sign_in", next=back) if back else url_for("auth.sign_in")


@login_manager.unauthorized_handler
def unauthorized():
    # An htmx request comes from a page that was signed in: its session has ended.
    if g.get("session_ended") or is_htmx():
        flash(EXPIRED, "warning")
    else:
        flash(login_manager.login_message, "info")
    target = sign_in_url_for_here()
    if is_htmx():
        # Never swap the sign-in page into a panel: send the whole tab there.
        return "", 200, {"HX-Redirect": target}
    return redirect(target)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never redirect to another host after sign-in.
    if not target:
        return url_for("pages.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.home")
    return target


def start_session(user: User, remember: bool) -> None:
    """A new session for `user`: nothing carried over from before sign-in."""
    flashes = session.get("_flashes")
    session.clear()  # no fixation: an identifier known before sign-in is worth nothing
    if flashes:
        session["_flashes"] = flashes
    login_user(user, remember=False)  # Flask-Login's own remember cookie is never used
    # "Remember me" makes the one session cookie outlive the browser, up to the idle
    # timeout; a random value makes every login's cookie different.
    session.permanent = bool(remember)
    session["login"] = secrets.token_urlsafe(16)
    session["seen"] = int(time.time())


@bp.route("/users/sign_in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = check_credentials(form.username.data.strip(), form.password.data)
        except Malformed as error:
            form.username.errors.append(str(error))
        except DomainError as error:
            form.password.errors.append(_sign_in_message(error))
            status = 422 if error.status == 401 else error.status
        else:
            start_session(user, form.remember_me.data)
            return redirect(_safe_next(request.args.get("next")))
    if form.errors and status == 200:
        status = 422
    return sign_in_page(status, form)


def sign_in_page(status: int = 200, form: Optional[SignInForm] = None):
    form = form or SignInForm(formdata=None, username=request.form.get("username", ""))
    return render_template("auth/sign_in.html", form=form), status


def check_credentials(login: str, password: str) -> User:
    """The user these credentials sign in, through the one authentication chain."""
    principal = credentials.authenticate(
        credentials.Credentials(username=login, password=password), DOOR,
        ip=request.remote_addr)
    return db.session.get(User, principal.user_id)


def _sign_in_message(error: DomainError) -> str:
    if error.status == 401:
        return "Invalid username or password."
    return str(error)  # a ban or an account lock says what happened and what to do


@bp.route("/users/sign_out", methods=["POST"])
def sign_out():
    if current_user.is_authenticated:
        accounts.end_sessions(current_user)
    logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("auth.sign_in"))

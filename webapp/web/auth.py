"""Sign in and sign out."""
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..extensions import db, login_manager
from ..models import User
from ..services import credentials
from ..services.errors import DomainError, Malformed
from .forms import SignInForm

bp = Blueprint("auth", __name__)
# The sign-in form is a door like any other: the same ban, account lock and accounting.
DOOR = credentials.Door("sign_in", passwords=True)


@login_manager.user_loader
def load_user(user_id: str):
    return db.session.get(User, int(user_id))


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never redirect to another host after sign-in.
    if not target:
        return url_for("pages.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.home")
    return target


@bp.route("/users/sign_in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = _check_sign_in(form.username.data.strip(), form.password.data)
        except Malformed as error:
            form.username.errors.append(str(error))
        except DomainError as error:
            form.password.errors.append(_sign_in_message(error))
            status = 422 if error.status == 401 else error.status
        else:
            login_user(user, remember=form.remember_me.data)
            return redirect(_safe_next(request.args.get("next")))
    if form.errors and status == 200:
        status = 422
    return render_template("auth/sign_in.html", form=form), status


def _check_sign_in(login: str, password: str) -> User:
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
    logout_user()
    flash("Signed out.", "info")
    return redirect(url_for("auth.sign_in"))

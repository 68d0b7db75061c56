"""Sign in and sign out."""
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..extensions import db, login_manager
from ..models import User
from ..services import accounts
from .forms import SignInForm

bp = Blueprint("auth", __name__)


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
    if form.validate_on_submit():
        login = form.username.data.strip()
        user = accounts.find_user(login) or db.session.scalar(
            db.select(User).where(User.email == login))
        if user is not None and user.check_password(form.password.data):
            login_user(user, remember=form.remember_me.data)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("Invalid username or password.")
    status = 422 if form.errors else 200
    return render_template("auth/sign_in.html", form=form), status


@bp.route("/users/sign_out", methods=["POST"])
def sign_out():
    logout_user()
    flash("Signed out.", "info")
    return redirect(url_for("auth.sign_in"))

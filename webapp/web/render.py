"""Page-or-fragment rendering and small helpers shared by the views."""
import math
from dataclasses import dataclass
from typing import Sequence

from flask import make_response, render_template, request
from flask_login import current_user

from ..services import credentials
from ..services.policy import Principal


def is_htmx() -> bool:
    # A history restore wants the whole page, not the fragment.
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


def render(page_template: str, partial_template: str, status: int = 200, **context):
    """Render the partial for htmx requests and the full page otherwise."""
    html = render_template(partial_template if is_htmx() else page_template, **context)
    response = make_response(html, status)
    response.vary.add("HX-Request")
    return response


def principal() -> Principal:
    """The signed-in browser user as a Principal."""
    return credentials.for_user(current_user if current_user.is_authenticated else None)


def client_ip() -> str:
    return request.remote_addr or ""


@dataclass(frozen=True)
class Page:
    items: Sequence
    number: int
    pages: int
    total: int


def paginate(items: Sequence, per_page: int = 20, arg: str = "page") -> Page:
    """Slice a list by the `?page=` argument, clamped to the pages that exist."""
    pages = max(1, math.ceil(len(items) / per_page))
    number = min(max(request.args.get(arg, 1, type=int), 1), pages)
    return Page(items[(number - 1) * per_page: number * per_page], number, pages, len(items))


_UNITS = [("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600),
          ("minute", 60)]


def relative_time(when, now) -> str:
    """"in 3 days", "5 minutes ago", "just now": the nearest whole unit, rounded down."""
    seconds = (when - now).total_seconds()
    size = abs(seconds)
    for unit, length in _UNITS:
        if size >= length:
            n = int(size // length)
            words = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {words}" if seconds > 0 else f"{words} ago"
    return "in less than a minute" if seconds > 0 else "just now"

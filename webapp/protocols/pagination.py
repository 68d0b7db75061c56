"""GitLab's offset pagination for /api/v4 lists: `page`, `per_page` and the headers.

Reusable by any JSON list endpoint: `items, headers = paginate(select)`.
"""
import math
from typing import Optional
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import abort, current_app, jsonify, request

from ..extensions import db

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
# Past this no database takes the OFFSET; no real list has that many pages either.
MAX_PAGE = 2 ** 31 - 1


def _positive_int(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        # Grape's answer to a parameter of the wrong type.
        abort(_bad_request(f"{name} is invalid"))
    if value > MAX_PAGE:
        abort(_bad_request(f"{name} is invalid: at most {MAX_PAGE}"))
    return value if value > 0 else default


def _bad_request(message: str):
    response = jsonify(error=message)
    response.status_code = 400
    return response


def page_params(default: int = DEFAULT_PER_PAGE, maximum: int = MAX_PER_PAGE) -> tuple[int, int]:
    """Return (page, per_page) from the query string; per_page is capped at `maximum`."""
    return _positive_int("page", 1), min(_positive_int("per_page", default), maximum)


def paginate(query: sa.Select, *, path: Optional[str] = None,
             default: int = DEFAULT_PER_PAGE, maximum: int = MAX_PER_PAGE
             ) -> tuple[list, dict[str, str]]:
    """Run one page of `query`; return its rows and GitLab's pagination headers.

    `path` is the URL path to put in `Link` (default: the request's), so that callers
    can keep an id like `group%2Fproject` encoded as the client sent it.
    """
    page, per_page = page_params(default, maximum)
    total = db.session.scalar(
        sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    items = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)))
    return items, headers_for(page, per_page, total, pages, path or request.path)


def headers_for(page: int, per_page: int, total: int, pages: int, path: str) -> dict[str, str]:
    """X-Total, X-Total-Pages, X-Page, X-Per-Page, X-Next-Page, X-Prev-Page and Link."""
    base = current_app.config["EXTERNAL_URL"] + path
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "per_page")]

    def url(number: int) -> str:
        return base + "?" + urlencode(kept + [("page", number), ("per_page", per_page)])

    next_page = page + 1 if page < pages else None
    prev_page = min(page - 1, pages) if page > 1 else None
    links = []
    if prev_page:
        links.append(f'<{url(prev_page)}>; rel="prev"')
    if next_page:
        links.append(f'<{url(next_page)}>; rel="next"')
    links.append(f'<{url(1)}>; rel="first"')
    links.append(f'<{url(pages)}>; rel="last"')
    return {
        "X-Total": str(total), "X-Total-Pages": str(pages), "X-Page": str(page),
        "X-Per-Page": str(per_page), "X-Next-Page": str(next_page or ""),
        "X-Prev-Page": str(prev_page or ""), "Link": ", ".join(links),
    }

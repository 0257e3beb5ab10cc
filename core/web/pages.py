"""What every UI's views share besides headers: Beijing-time display, the pager's page number,
redirect-after-POST, and error pages that show a message with the right status, never a stack
trace. Each UI passes its own error template and strings to :func:`register_error_pages`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

from flask import Blueprint, redirect, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from core.errors import GovpkiError

#: China has one time zone and no daylight saving: times are shown as Beijing time.
DISPLAY_TZ: Final = dt.timezone(dt.timedelta(hours=8))
#: A page number beyond any real result: a huge ?page= must not become a huge OFFSET.
MAX_PAGE: Final = 10_000_000

Page = tuple[str, int]


class ErrorPage(Protocol):
    """A UI's error page: status, the catalogue key of its title, a message, the field named."""

    def __call__(self, status: int, title_key: str, message: str = "", *,
                 field: str | None = None) -> Page: ...


def local_time(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M")


def local_date(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d")


def here() -> str:
    """The current page as a local path with its query (for "back here" links)."""
    return request.full_path.rstrip("?")


def page_number() -> int:
    """?page=N, clamped to 1..MAX_PAGE; a mistyped page is page 1, not an error page."""
    try:
        return max(1, min(int(request.args.get("page", "1")), MAX_PAGE))
    except ValueError:
        return 1


def see_other(endpoint: str, **values: Any) -> Response:
    """303 after a POST, so reloading the next page does not send the form again."""
    return redirect(url_for(endpoint, **values), 303)


def register_error_pages(bp: Blueprint, page: ErrorPage, *,
                         title_key: Callable[[str, int], str],
                         translate: Callable[[str], str],
                         csrf_refused: type[HTTPException],
                         log: logging.Logger,
                         special: Callable[[HTTPException], Page | None] | None = None) -> None:
    """Typed errors become a page with their status, message and field; HTTP errors a page
    with their status (a refused CSRF token its own explanation; ``special`` may answer
    others first); anything else a logged 500 page with nothing of the exception shown."""

    @bp.errorhandler(GovpkiError)
    def _govpki_error(exc: GovpkiError) -> Page:
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        field = exc.details.get("field")
        return page(status, title_key(exc.kind, status), exc.message,
                    field=field if isinstance(field, str) else None)

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Page:
        if isinstance(exc, csrf_refused):
            return page(400, "error.csrf", translate("error.csrf.detail"))
        answer = special(exc) if special is not None else None
        if answer is not None:
            return answer
        status = exc.code or 500
        return page(status, title_key("", status))

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Page:
        log.exception("unexpected error in a page of %s", bp.name)
        return page(500, "error.status.500", translate("error.status.500.detail"))

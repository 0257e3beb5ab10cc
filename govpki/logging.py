"""Structured JSON logs, one object per line, each carrying the request id of the HTTP request
that caused it.

Why a request id: an official's failed login or a refused certificate passes through nginx, a
govpki node and the database; operators correlate the three by one id. nginx generates it
(``proxy_set_header X-Request-Id $request_id``); govpki accepts it when well-formed, makes one
otherwise (32 hex digits, like nginx's), echoes it in the ``X-Request-Id`` response header and
puts it in every log line written while the request runs (a context variable, so threads and
workers never mix ids up).

What is never logged: query strings (OAuth codes and enrollment codes travel there), request
bodies, headers other than the id. Messages of govpki's own errors are safe by construction
(core/errors.py); PINs and passphrases never reach a logger.

``GOVPKI_LOG_LEVEL`` (default INFO) sets the level. ``GOVPKI_ACCESS_LOG`` chooses the access
lines: ``on`` (one per request; the default), ``errors`` (status 400 and up, or slower than a
second; the default of an ``--only ocsp`` node, whose hot path an access line per request
would slow by half — nginx in front logs every request with the same id anyway) or ``off``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, Final

REQUEST_ID: ContextVar[str | None] = ContextVar("govpki_request_id", default=None)
HEADER: Final = "X-Request-Id"
ENVIRON_KEY: Final = "govpki.request_id"
# Letters, digits and . _ : - up to 128 characters: UUIDs, nginx's $request_id, trace ids. Any
# other value (spaces, control characters, a JSON fragment) is replaced, never logged.
_WELL_FORMED: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MAX_PATH: Final = 200
access_log = logging.getLogger("govpki.access")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "request_id"}

StartResponse = Callable[..., Any]


def well_formed(value: str | None) -> bool:
    return bool(value) and _WELL_FORMED.fullmatch(value or "") is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on every record at emit time (in the emitting thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, request_id, pid, then
    any ``extra=`` fields; an exception as its formatted traceback under ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        body: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging() -> bool:
    """Send the root logger to stderr as JSON, once per process, unless someone configured
    logging already (a test runner, an embedding application). Returns whether it did."""
    root = logging.getLogger()
    if root.handlers:
        return False
    root.addHandler(json_handler())
    level = os.environ.get("GOVPKI_LOG_LEVEL", "INFO").upper()
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    return True


ACCESS_MODES: Final = ("on", "errors", "off")
SLOW_SECONDS: Final = 1.0


def access_mode(only: str | None = None) -> str:
    """GOVPKI_ACCESS_LOG if valid, else ``errors`` for an OCSP-only node and ``on`` otherwise."""
    value = os.environ.get("GOVPKI_ACCESS_LOG", "").strip().lower()
    if value in ACCESS_MODES:
        return value
    return "errors" if only == "ocsp" else "on"


class RequestIdMiddleware:
    """Assigns or propagates X-Request-Id around the whole application and writes one access
    line per request.

    Attribute lookups fall through to the wrapped application, so callers that reach into the
    router (``app.default``, ``app.routes``) keep working when it is wrapped.
    """

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
                 access: str = "on") -> None:
        if access not in ACCESS_MODES:
            raise ValueError(f"access must be one of {', '.join(ACCESS_MODES)}, not {access!r}")
        self.app = app
        self.access = access

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID")
        rid: str = given if given is not None and well_formed(given) else new_request_id()
        environ[ENVIRON_KEY] = rid
        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status: list[str] = []

        def with_id(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(line)
            headers = [*headers, (HEADER, rid)]  # a copy: an app may reuse its header lists
            if exc_info is None:
                return start_response(line, headers)
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, with_id)
        finally:
            if self.access != "off" and access_log.isEnabledFor(logging.INFO):
                self._access_line(environ, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _access_line(self, environ: dict[str, Any], status: list[str], seconds: float) -> None:
        code = int(status[-1][:3]) if status else 500
        if self.access == "errors" and code < 400 and seconds < SLOW_SECONDS:
            return
        access_log.info("request", extra={
            "method": environ.get("REQUEST_METHOD", ""),
            "path": (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))[:_MAX_PATH],
            "status": code if status else None,
            "duration_ms": round(seconds * 1000, 3),
            "remote": environ.get("REMOTE_ADDR"),
        })

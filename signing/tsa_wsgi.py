"""A lean WSGI front end for the TSA: ``POST /tsa`` (RFC 3161 §3.4) and ``GET /tsa/health``.

Plain WSGI rather than a Flask blueprint, like the OCSP responder: the protocol answer is one
function call, and a framework would add per-request cost under a fast server. govpki/ mounts
it (e.g. with werkzeug's DispatcherMiddleware) or serves it alone.

HTTP-level refusals (method, media type, size, path) are RFC 9457 problem bodies; anything that
reaches RFC 3161 gets a TimeStampResp with HTTP 200, a rejection included, never a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ca.context import CaContext
from core.errors import GovpkiError
from signing.config import TsaConfig
from signing.errors import (
    BadHttpRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from signing.tsa import MAX_QUERY_BYTES, TimeStampAuthority

log = logging.getLogger(__name__)

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
TSA_PATH = "/tsa"
HEALTH_PATH = "/tsa/health"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _problem(start_response: StartResponse, error: GovpkiError,
             extra_headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = json.dumps(error.problem(), ensure_ascii=False).encode("utf-8")
    status = f"{error.http_status} {_REASONS.get(error.http_status, 'Error')}"
    start_response(status, [("Content-Type", "application/problem+json"),
                            ("Content-Length", str(len(body))),
                            *(extra_headers or [])])
    return [body]


_REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, refusing oversize ones before reading them when the length is known."""
    raw_length = (environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ["wsgi.input"]
    if raw_length:
        if not raw_length.isdigit():
            raise BadHttpRequest("Content-Length is not a number")
        length = int(raw_length)
        if length > MAX_QUERY_BYTES:
            raise PayloadTooLarge(f"a time-stamp query is at most {MAX_QUERY_BYTES} bytes",
                                  limit=MAX_QUERY_BYTES)
        return bytes(stream.read(length)) if length else b""
    if environ.get("wsgi.input_terminated"):  # chunked upload the server has de-chunked
        body = bytes(stream.read(MAX_QUERY_BYTES + 1))
        if len(body) > MAX_QUERY_BYTES:
            raise PayloadTooLarge(f"a time-stamp query is at most {MAX_QUERY_BYTES} bytes",
                                  limit=MAX_QUERY_BYTES)
        return body
    return b""


def create_tsa_app(ctx: CaContext | None, config: TsaConfig | None = None, *,
                   tsa: TimeStampAuthority | None = None) -> WsgiApp:
    """WSGI app for one TSA; loads and checks the TSA key now, so a bad setup fails at start."""
    authority = tsa or TimeStampAuthority(ctx, config)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            if path == HEALTH_PATH:
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{method} is not allowed on {HEALTH_PATH}")
                return _health(authority, start_response, head=method == "HEAD")
            if path != TSA_PATH:
                raise NotFound(f"no such resource: {path}")
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on {TSA_PATH}; "
                                       f"send the query with POST")
            media_type = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
            if media_type != QUERY_TYPE:
                raise UnsupportedMediaType(
                    f"Content-Type must be {QUERY_TYPE}, got {media_type or 'none'}")
            body = _read_body(environ)
        except MethodNotAllowed as exc:
            allow = "GET, HEAD" if path == HEALTH_PATH else "POST"
            return _problem(start_response, exc, [("Allow", allow)])
        except GovpkiError as exc:
            return _problem(start_response, exc)
        reply = authority.respond(body)
        start_response("200 OK", [("Content-Type", REPLY_TYPE),
                                  ("Content-Length", str(len(reply))),
                                  ("Cache-Control", "no-store")])
        return [reply]

    return app


def _health(authority: TimeStampAuthority, start_response: StartResponse,
            head: bool) -> list[bytes]:
    """The clock state as JSON: 200 when the TSA can grant, 503 when it would refuse."""
    state = authority.clock_status()
    body = json.dumps(state, ensure_ascii=False).encode("utf-8")
    status = "200 OK" if state["synchronised"] else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [] if head else [body]

"""A lean WSGI callable for ``POST /ocsp`` and ``GET /ocsp/<base64>`` (RFC 6960 Appendix A,
RFC 5019 §5/§6).

Not Flask: the responder's hot path is one dict lookup, and a framework's request objects would
cost more than that (issue 4, Benchmark). Every answer is an OCSPResponse with HTTP 200 — a bad
request gets ``malformedRequest``, never a 4xx/500 page, because OCSP clients read the protocol
status and nothing else. Only requests outside the OCSP URL space get plain 404/405.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from ca.context import CaContext
from ocsp import der
from ocsp.errors import ResponseStatus
from ocsp.events import StatusEvents, install
from ocsp.request import MAX_REQUEST_SIZE
from ocsp.responder import Answer, OcspResponder

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
CONTENT_TYPE = "application/ocsp-response"
REQUEST_TYPE = "application/ocsp-request"
_MALFORMED = der.ERROR_RESPONSES[ResponseStatus.MALFORMED_REQUEST]
_INTERNAL = der.ERROR_RESPONSES[ResponseStatus.INTERNAL_ERROR]


def _http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


class OcspApp:
    """The WSGI callable. Works standalone (paths ``/ocsp``, ``/ocsp/<b64>``) and mounted at
    ``/ocsp`` (SCRIPT_NAME ``/ocsp``, PATH_INFO ``/`` or ``/<b64>``)."""

    def __init__(self, responder: OcspResponder, status_events: StatusEvents | None = None
                 ) -> None:
        self.responder = responder
        self.status_events = status_events
        self._headers: dict[str, list[tuple[str, str]]] = {}

    def close(self) -> None:
        if self.status_events is not None:
            self.status_events.close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        try:
            return self._dispatch(environ, start_response)
        except Exception:
            log.exception("OCSP: unexpected error at the HTTP edge")
            return self._reply(start_response, _INTERNAL, [("Cache-Control", "no-store")])

    def _dispatch(self, environ: dict[str, Any], start_response: StartResponse
                  ) -> Iterable[bytes]:
        rest = self._rest(environ)
        if rest is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", "10")])
            return [b"not found\n"]
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "POST" and rest in ("", "/"):
            return self._post(environ, start_response)
        if method in ("GET", "HEAD"):
            body = self._get(environ, start_response, rest)
            return [] if method == "HEAD" else body
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD, POST"),
                                                  ("Content-Type", "text/plain"),
                                                  ("Content-Length", "19")])
        return [b"method not allowed\n"]

    @staticmethod
    def _rest(environ: dict[str, Any]) -> str | None:
        """The path below the OCSP mount point, or None when the request is not for us."""
        script = environ.get("SCRIPT_NAME", "").rstrip("/")
        path = environ.get("PATH_INFO", "")
        if script.endswith("/ocsp"):
            return path
        if path == "/ocsp" or path.startswith("/ocsp/"):
            return path[5:]
        return None

    def _post(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype and ctype != REQUEST_TYPE:
            # A 415 would be ignored by OCSP clients; malformedRequest is what they understand.
            return self._reply(start_response, _MALFORMED, [("Cache-Control", "no-store")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length > MAX_REQUEST_SIZE:
            return self._reply(start_response, _MALFORMED, [("Cache-Control", "no-store"),
                                                            ("Connection", "close")])
        stream = environ["wsgi.input"]
        body = stream.read(length) if length >= 0 else stream.read(MAX_REQUEST_SIZE + 1)
        answer = self.responder.respond_detailed(body)
        return self._reply(start_response, answer.der, [("Cache-Control", "no-store")]
                           if not answer.cacheable else self._cache_headers(answer))

    def _get(self, environ: dict[str, Any], start_response: StartResponse, rest: str
             ) -> Iterable[bytes]:
        request = self._decode_get(environ, rest)
        if request is None:
            return self._reply(start_response, _MALFORMED, [("Cache-Control", "no-store")])
        answer = self.responder.respond_detailed(request)
        if not answer.cacheable:
            return self._reply(start_response, answer.der, [("Cache-Control", "no-store")])
        headers = self._cache_headers(answer)
        if answer.etag is not None and environ.get("HTTP_IF_NONE_MATCH") == answer.etag:
            start_response("304 Not Modified", headers)
            return []
        return self._reply(start_response, answer.der, headers)

    @staticmethod
    def _decode_get(environ: dict[str, Any], rest: str) -> bytes | None:
        """The DER request from the URL: read from the RAW request URI (RFC 5019 §5 allows '/' in
        the base64 and percent-encoded '+', '/', '='; PATH_INFO is already decoded and some
        servers fold '//'), falling back to PATH_INFO on servers that give no raw URI."""
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        encoded = rest[1:] if rest.startswith("/") else rest
        if raw:
            raw = raw.split("?", 1)[0]
            if "://" in raw:  # absolute-form request target
                raw = "/" + raw.split("://", 1)[1].partition("/")[2]
            index = raw.find("/ocsp/")
            if index >= 0:
                encoded = unquote(raw[index + 6:])
        encoded = "".join(encoded.split()).replace("-", "+").replace("_", "/")
        if not encoded:
            return None
        encoded += "=" * (-len(encoded) % 4)
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded if len(decoded) <= MAX_REQUEST_SIZE else None

    def _cache_headers(self, answer: Answer) -> list[tuple[str, str]]:
        """RFC 5019 §6.2: max-age no later than nextUpdate, public, no-transform,
        must-revalidate; ETag (SHA-1 of the response); Last-Modified thisUpdate; Expires
        nextUpdate."""
        assert answer.this_update is not None and answer.next_update is not None
        assert answer.etag is not None
        fixed = self._headers.get(answer.etag)
        if fixed is None:
            if len(self._headers) > 100_000:
                self._headers = {}
            fixed = [("ETag", answer.etag),
                     ("Last-Modified", _http_date(answer.this_update)),
                     ("Expires", _http_date(answer.next_update))]
            self._headers[answer.etag] = fixed
        max_age = max(0, int(answer.next_update.timestamp() - time.time()))
        return [("Cache-Control", f"max-age={max_age}, public, no-transform, must-revalidate"),
                *fixed]

    @staticmethod
    def _reply(start_response: StartResponse, body: bytes, headers: list[tuple[str, str]]
               ) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", CONTENT_TYPE),
                                  ("Content-Length", str(len(body))), *headers])
        return [body]


def create_ocsp_app(ctx: CaContext, *, responder: OcspResponder | None = None,
                    listen: bool = True, load: bool = True) -> OcspApp:
    """The OCSP WSGI app for ``ctx``: loads pre-signed answers from the table (``load``) and
    subscribes to status changes, in-process and — with ``listen`` — from other processes."""
    responder = responder or OcspResponder(ctx)
    if load:
        try:
            responder.load()
        except Exception:
            # Start anyway: answers are signed on demand, and the database may come back.
            log.exception("OCSP: could not load pre-signed answers at start-up")
    return OcspApp(responder, install(ctx, responder, listen=listen))

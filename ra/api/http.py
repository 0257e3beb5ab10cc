"""How one API call is handled: size and media-type checks, authentication, parameter and
body parsing, then the view; and the reply, with pagination links (RFC 8288).

Errors are raised, never rendered here: they are GovpkiError subclasses (ra.errors,
ra.api.errors) that the application's one handler turns into RFC 9457 problem bodies
(govpki/wsgi.py, which also keeps ``Allow`` on a 405). The hook below only adds what a problem
needs beyond its body: the ``WWW-Authenticate`` challenge of a 401 (RFC 9110 §11.6.1, RFC 6750
§3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from ca.context import CaContext
from ra.api.auth import authenticate, challenge
from ra.api.errors import BodyTooLarge, LengthRequired, UnsupportedMediaType
from ra.api.spec import Route, shown
from ra.config import RaConfig, ra_config_from
from ra.errors import ValidationError
from ra.records import Operator, Page

T = TypeVar("T")

API_PREFIX: Final = "/api/v1"
JSON: Final = "application/json"
_JSON_TYPES: Final = ("application/json", "application/merge-patch+json")
_CSV_TYPES: Final = ("text/csv", "text/plain")


def ca_context() -> CaContext:
    return cast(CaContext, current_app.config["GOVPKI_CA"])


def ra_config() -> RaConfig:
    """The [ra] settings, validated once per application. The web pages keep theirs under the
    same key, so both edges share one validated copy (tests may put their own there)."""
    config = current_app.config.get("GOVPKI_RA_CONFIG")
    if config is None:
        config = ra_config_from(ca_context().config.sections)
        current_app.config["GOVPKI_RA_CONFIG"] = config
    return cast(RaConfig, config)


@dataclass(frozen=True)
class Call:
    """One authenticated, parsed call, as a view sees it."""

    ctx: CaContext
    config: RaConfig
    actor: Operator | None
    path: Mapping[str, Any]
    query: Mapping[str, Any]
    body: Mapping[str, Any]
    #: The roster of a CSV upload, or the document of a binary body; empty otherwise.
    upload: bytes
    #: The enrollment code of an ``Authorization: Enrollment`` header.
    enrollment_code: str
    client: str
    #: Declared header parameters, checked (absent optional ones hold their default).
    headers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def operator(self) -> Operator:
        """The bearer token's operator (every bearer route has one)."""
        if self.actor is None:  # pragma: no cover - make_view authenticates bearer routes
            raise RuntimeError("this route is not authenticated by a bearer token")
        return self.actor


@dataclass(frozen=True)
class Reply:
    """What a view answers: a JSON ``body``, or ``content`` bytes in ``media_type`` (a
    document; see :meth:`binary`)."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    media_type: str = "application/json"

    @classmethod
    def binary(cls, content: bytes, media_type: str, status: int = 200,
               headers: Mapping[str, str] | None = None) -> Reply:
        return cls(None, status, dict(headers or {}), content=content, media_type=media_type)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  mimetype: str = JSON) -> Response:
    """UTF-8 JSON (Chinese names readable, RFC 8259 §8.1), not the app's ASCII-escaping
    default, which is the application's setting and not ours to change."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=status, headers=dict(headers or {}), mimetype=mimetype)


def page_reply(page: Page[T], item: Callable[[T], Any]) -> Reply:
    """A page of items with its totals in the body and RFC 8288 links in ``Link``."""
    links = []
    for rel, number in (("first", 1), ("prev", page.page - 1), ("next", page.page + 1),
                        ("last", page.pages)):
        if 1 <= number <= page.pages and not (rel in ("prev", "next") and number == page.page):
            args = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
            args.append(("page", str(number)))
            links.append(f'<{request.path}?{urlencode(args)}>; rel="{rel}"')
    body = {"items": [item(i) for i in page.items], "total": page.total, "page": page.page,
            "per_page": page.per_page, "pages": page.pages}
    return Reply(body, headers={"Link": ", ".join(links)} if links else {})


def list_reply(items: Sequence[T], item: Callable[[T], Any]) -> Reply:
    """A short, complete list (operators, tokens): no pages, the same envelope."""
    return Reply({"items": [item(i) for i in items], "total": len(items)})


# ---------------------------------------------------------------------------------------------
# Reading the request


def _body_limit(route: Route) -> int:
    return route.max_body or ra_config().max_body_bytes


def _streamed() -> bool:
    """A body follows without a length (Transfer-Encoding: chunked); a request with neither
    Content-Length nor Transfer-Encoding has an empty body (RFC 9112 §6.3)."""
    return bool(request.headers.get("Transfer-Encoding")
                or request.environ.get("wsgi.input_terminated"))


def check_size(route: Route) -> None:
    """Refuse an oversized body before anything reads it (from Content-Length), and cap the
    stream for bodies that announce no length (chunked): werkzeug stops reading at the limit
    and :func:`_raw_body` refuses a body that reached it. A binary body (a document) must
    announce its length: a chunked one is refused unread (411)."""
    limit = _body_limit(route)
    request.max_content_length = limit
    if route.binary_body is not None and request.content_length is None and _streamed():
        raise LengthRequired(f"send the document with a Content-Length (at most {limit} "
                             f"bytes); a body without one is not accepted here", limit=limit)
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"the body is {request.content_length} bytes; this endpoint takes "
                           f"at most {limit}", limit=limit)


def _raw_body(route: Route) -> bytes:
    """The whole body, at most the route's limit. A body without Content-Length (chunked)
    is cut at the limit by werkzeug's stream without an error, so reaching it is refused."""
    limit = _body_limit(route)
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        data = None
    if data is None or (request.content_length is None and len(data) >= limit):
        raise BodyTooLarge(f"the body is larger than {limit} bytes", limit=limit)
    return data


def _reject_constant(name: str) -> None:
    raise ValidationError(f"{name} is not a JSON number", field="body")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValidationError(f"field {shown(key)!r} appears twice", field=shown(key))
        out[key] = value
    return out


def parse_json(raw: bytes) -> object:
    """The JSON value of ``raw``; any defect is a 400 naming the body."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the body is not UTF-8 text", field="body") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValidationError(f"the body is not valid JSON{where}", field="body") from None


def _json_body(route: Route) -> dict[str, Any]:
    assert route.body is not None
    raw = _raw_body(route)
    if not raw.strip():
        return route.body.parse({})
    if request.mimetype not in _JSON_TYPES and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {request.mimetype or 'no media type'}",
            field="Content-Type")
    return route.body.parse(parse_json(raw))


def _csv_body(route: Route) -> bytes:
    if request.mimetype == "multipart/form-data":
        _raw_body(route)  # read within the limit first; the form is parsed from that copy
        try:
            upload = request.files.get("file")
            data = upload.read() if upload is not None else None
        except ValueError:
            data = None
        if data is None:
            raise ValidationError("the multipart body has no 'file' part", field="file")
        return data
    if request.mimetype in _CSV_TYPES:
        return _raw_body(route)
    raise UnsupportedMediaType("send the roster as text/csv or as multipart/form-data with a "
                               f"'file' part, not {request.mimetype or 'no media type'}",
                               field="Content-Type")


def _binary_body(route: Route) -> bytes:
    assert route.binary_body is not None
    accepted = route.binary_body.media_types
    if request.mimetype not in accepted:
        raise UnsupportedMediaType(f"send the body as {' or '.join(accepted)}, not "
                                   f"{request.mimetype or 'no media type'}",
                                   field="Content-Type")
    return _raw_body(route)


def _headers(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for param in route.header_params:
        raw = request.headers.get(param.name)
        if raw is None:
            if param.required:
                raise ValidationError(f"the {param.name} header is required", field=param.name)
            out[param.name] = param.default
        else:
            out[param.name] = param.parse(raw)
    return out


def _query(route: Route) -> dict[str, Any]:
    declared = {p.name: p for p in route.query_params}
    for name in request.args:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ValidationError(f"unknown query parameter {shown(name)!r} (known: {known})",
                                  field=shown(name))
    out: dict[str, Any] = {}
    for name, param in declared.items():
        values = request.args.getlist(name)
        if len(values) > 1:
            raise ValidationError(f"{name} is given more than once", field=name)
        if values:
            out[name] = param.parse(values[0])
        elif param.required:
            raise ValidationError(f"{name} is required", field=name)
        else:
            out[name] = param.default
    return out


def make_view(route: Route) -> Callable[..., Response]:
    """The Flask view of ``route``: authenticate, parse, call, reply."""

    def view(**path_values: str) -> Response:
        ctx = ca_context()
        config = ra_config()
        g.ra_api_auth = route.auth
        actor, code = authenticate(ctx, route.auth)
        path = {p.name: p.parse(path_values[p.name]) for p in route.path_params}
        query = _query(route)
        headers = _headers(route)
        body = _json_body(route) if route.body is not None else {}
        if route.csv_body:
            upload = _csv_body(route)
        elif route.binary_body is not None:
            upload = _binary_body(route)
        else:
            upload = b""
        result = route.view(Call(ctx, config, actor, path, query, body, upload, code,
                                 request.remote_addr or "", headers))
        if result.status == 204:
            return Response(status=204, headers=dict(result.headers))
        if result.content is not None:
            return Response(result.content, status=result.status,
                            headers=dict(result.headers), mimetype=result.media_type)
        return json_response(result.body, result.status, result.headers)

    view.__name__ = route.operation_id
    view.__doc__ = route.description
    return view


def install_hooks(bp: Blueprint, routes: Mapping[str, Route]) -> None:
    """The body limit before anything reads the body; the headers a problem response needs
    beyond its body; no caching of API answers. ``routes`` maps endpoint names to routes."""

    @bp.before_request
    def _limit_body() -> None:
        route = routes.get(request.endpoint or "")
        if route is not None:
            check_size(route)

    @bp.after_request
    def _api_headers(response: Response) -> Response:
        if response.status_code == 401 and "WWW-Authenticate" not in response.headers:
            response.headers["WWW-Authenticate"] = challenge(
                g.get("ra_api_auth", "bearer"), presented=g.get("ra_api_presented", False))
        # Answers carry tokens, codes and personal data: never kept by a cache (RFC 9111).
        response.headers.setdefault("Cache-Control", "no-store")
        return response

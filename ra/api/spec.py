"""The REST API's one route table, and the declarative input specs it is made of.

Every endpoint is declared once, with :func:`api_route`: method, path, who may call it (bearer
token, enrollment code, nobody), its path, query and header parameters, its body (JSON fields, a
CSV roster, or a binary document) and its responses. From that one declaration ``ra.api``
registers the Flask rule and checks the input, and ``ra.api.openapi`` writes the OpenAPI
document, so the document cannot drift from what is served (tests/ra/api/test_openapi.py checks
both directions anyway).

Packages above ra (govpki, apps/*) serve their own endpoints under /api/v1 through the same
table: they declare them on a :class:`RouteGroup` of their own (``group.route`` takes exactly
what :func:`api_route` takes) and the composition root hands the group to
:func:`register_routes` before it assembles the application. ra never imports them: the group
carries its views, and a view gets the same :class:`~ra.api.http.Call` (authenticated operator,
checked input) as ra's own. The RA's table (:data:`ROUTES`) is one such group too.

The input checks here are about *shape*: types, unknown fields, lengths, characters that no
field may hold (control characters would forge lines in the audit log, NUL is refused by
PostgreSQL, lone surrogates cannot be stored at all). What a value *means* — whether an
identifier is taken, a CSR verifies, the actor may act — stays with the ra services, which
name the field themselves. Each refusal is :class:`ra.errors.ValidationError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from ra.errors import ValidationError

if TYPE_CHECKING:
    from ra.api.http import Call, Reply

FieldType = Literal["string", "integer", "boolean", "strings"]
Auth = Literal["bearer", "enrollment", "none"]
Location = Literal["path", "query", "header"]

#: Characters no value may hold. Multi-line fields (comments, PEM) may hold \t \n \r.
_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_FORBIDDEN_MULTILINE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: Database integer columns are 32-bit signed on PostgreSQL: larger ids cannot exist.
MAX_ID: Final = 2**31 - 1
_DIGITS: Final = re.compile(r"[0-9]{1,10}")


def shown(name: str) -> str:
    """A client-chosen name made safe to echo in a problem body (unknown field names)."""
    cleaned = _FORBIDDEN.sub("?", name)
    return cleaned if len(cleaned) <= 64 else cleaned[:61] + "..."


def check_text(value: str, name: str, *, max_length: int, multiline: bool = False) -> str:
    """``value`` unchanged, or ValidationError naming ``name``."""
    if len(value) > max_length:
        raise ValidationError(f"{name} must be at most {max_length} characters", field=name)
    pattern = _FORBIDDEN_MULTILINE if multiline else _FORBIDDEN
    if pattern.search(value):
        what = "line breaks or " if not multiline else ""
        raise ValidationError(f"{name} must not contain {what}control characters or invalid "
                              "Unicode", field=name)
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass(frozen=True)
class Field:
    """One member of a JSON request body."""

    name: str
    type: FieldType
    description: str
    required: bool = False
    nullable: bool = False
    max_length: int = 255
    multiline: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_items: int = 100

    def schema(self) -> dict[str, Any]:
        item: dict[str, Any]
        if self.type == "strings":
            item = {"type": "array", "items": {"type": "string", "maxLength": self.max_length},
                    "maxItems": self.max_items}
        elif self.type == "string":
            item = {"type": "string", "maxLength": self.max_length}
            if self.enum:
                item["enum"] = list(self.enum)
        elif self.type == "integer":
            item = {"type": "integer"}
            if self.minimum is not None:
                item["minimum"] = self.minimum
            if self.maximum is not None:
                item["maximum"] = self.maximum
        else:
            item = {"type": "boolean"}
        if self.nullable:
            item["type"] = [item["type"], "null"]
            if "enum" in item:
                item["enum"] = [*item["enum"], None]
        item["description"] = self.description
        return item

    def check(self, value: object) -> Any:
        """The value as the service wants it, or ValidationError naming this field."""
        if value is None:
            if self.nullable:
                return None
            raise ValidationError(f"{self.name} must not be null", field=self.name)
        expected = {"strings": "array"}.get(self.type, self.type)
        if _type_name(value) != expected:
            raise ValidationError(f"{self.name} must be {expected}, not {_type_name(value)}",
                                  field=self.name)
        if isinstance(value, str):
            check_text(value, self.name, max_length=self.max_length, multiline=self.multiline)
            if self.enum and value not in self.enum:
                raise ValidationError(f"{self.name} must be one of {', '.join(self.enum)}",
                                      field=self.name)
        elif isinstance(value, int):
            if (self.minimum is not None and value < self.minimum) or (
                    self.maximum is not None and value > self.maximum):
                raise ValidationError(f"{self.name} must be {self.minimum}..{self.maximum}",
                                      field=self.name)
        elif isinstance(value, list):
            if len(value) > self.max_items:
                raise ValidationError(f"{self.name} has more than {self.max_items} items",
                                      field=self.name)
            for item in value:
                if not isinstance(item, str):
                    raise ValidationError(f"{self.name} must hold strings only, not "
                                          f"{_type_name(item)}", field=self.name)
                check_text(item, self.name, max_length=self.max_length)
            return tuple(value)
        return value


@dataclass(frozen=True)
class Body:
    """A JSON object body: its fields; any other member is refused, naming it."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""
    #: Non-empty when the body may be absent (all fields optional): absent means ``{}``.
    optional: bool = False

    def schema(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "object", "description": self.description,
            "properties": {f.name: f.schema() for f in self.fields},
            "additionalProperties": False}
        required = [f.name for f in self.fields if f.required]
        if required:
            body["required"] = required
        return body

    def parse(self, data: object) -> dict[str, Any]:
        """Checked values of the members present (absent optional ones are left out)."""
        if not isinstance(data, dict):
            raise ValidationError(f"the body must be a JSON object, not {_type_name(data)}",
                                  field="body")
        known = {f.name: f for f in self.fields}
        for key in data:
            if key not in known:
                raise ValidationError(
                    f"unknown field {shown(key)!r} (fields: {', '.join(known) or 'none'})",
                    field=shown(key))
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name in data:
                out[f.name] = f.check(data[f.name])
            elif f.required:
                raise ValidationError(f"{f.name} is required", field=f.name)
        return out


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter. Path parameters are always required; a query or
    header parameter when ``required`` says so."""

    name: str
    location: Location
    description: str
    type: Literal["string", "integer", "boolean"] = "string"
    max_length: int = 128
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: int | bool | str | None = None
    required: bool = False

    @property
    def is_required(self) -> bool:
        return self.location == "path" or self.required

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "string":
            out["maxLength"] = self.max_length
        if self.enum:
            out["enum"] = list(self.enum)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.default is not None:
            out["default"] = self.default
        return out

    def parse(self, raw: str) -> Any:
        if self.type == "integer":
            value = int(raw) if _DIGITS.fullmatch(raw) else None
            low = self.minimum if self.minimum is not None else 0
            high = self.maximum if self.maximum is not None else MAX_ID
            if value is None or not low <= value <= high:
                raise ValidationError(f"{self.name} must be an integer {low}..{high}",
                                      field=self.name)
            return value
        if self.type == "boolean":
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValidationError(f"{self.name} must be true or false", field=self.name)
            return lowered in ("true", "1")
        check_text(raw, self.name, max_length=self.max_length)
        if self.enum and raw not in self.enum:
            raise ValidationError(f"{self.name} must be one of {', '.join(self.enum)}",
                                  field=self.name)
        return raw


@dataclass(frozen=True)
class BinaryBody:
    """A request body taken as it is, e.g. a PDF upload: the media types accepted (anything
    else is 415). Its length must be announced: a body without ``Content-Length`` (chunked) is
    refused with 411 and one over the route's ``max_body`` with 413, both before a byte of it
    is read (RFC 9110 §15.5.12, §15.5.14)."""

    media_types: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if not self.media_types:
            raise ValueError("a binary body needs at least one media type")


@dataclass(frozen=True)
class BinaryContent:
    """A response body that is not JSON (a signed document), in ``media_type``."""

    media_type: str
    description: str = ""


#: What a status answers with: the name of a JSON response schema, a binary body, or nothing.
ResponseSpec = str | BinaryContent | None


@dataclass(frozen=True)
class Route:
    """One endpoint: everything the Flask rule, the input checks and the OpenAPI operation
    need. ``path`` is relative to /api/v1 and written the OpenAPI way (``{name}``)."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    auth: Auth
    view: Callable[[Call], Reply]
    description: str = ""
    params: tuple[Param, ...] = ()
    body: Body | None = None
    #: A roster: text/csv, or multipart/form-data with a ``file`` part.
    csv_body: bool = False
    #: A body taken as it is (a document upload); needs ``max_body``.
    binary_body: BinaryBody | None = None
    #: status → name of the response schema (serialise.SCHEMAS, or the contributing group's
    #: schemas), a :class:`BinaryContent`, or None for no body.
    responses: Mapping[int, ResponseSpec] = field(default_factory=dict)
    #: Headers of a successful answer besides the standard ones: name → description.
    response_headers: Mapping[str, str] = field(default_factory=dict)
    #: Problem statuses this endpoint can answer besides the common ones.
    errors: tuple[int, ...] = ()
    paginated: bool = False
    #: Body limit in bytes when it differs from ``[ra] max_body_bytes`` (rosters, documents).
    max_body: int | None = None

    def __post_init__(self) -> None:
        bodies = [self.body is not None, self.csv_body, self.binary_body is not None]
        if sum(bodies) > 1:
            raise ValueError(f"{self.method} {self.path}: declare one kind of body, not several")
        if self.binary_body is not None and self.max_body is None:
            raise ValueError(f"{self.method} {self.path}: a binary body needs max_body")
        if self.max_body is not None and self.max_body < 1:
            raise ValueError(f"{self.method} {self.path}: max_body must be positive")

    @property
    def flask_rule(self) -> str:
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    @property
    def path_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.location == "path")

    @property
    def query_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.location == "query")

    @property
    def header_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.location == "header")


View = Callable[["Call"], "Reply"]


class RouteGroup:
    """Endpoints declared together, in declaration order (the OpenAPI document keeps it):
    ra's own table, or the routes one package above ra contributes. ``schemas`` are the JSON
    Schemas (OpenAPI components) its responses name that ra does not define itself."""

    def __init__(self, name: str, *, schemas: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", name):
            raise ValueError(f"a route group name is lower-case letters, digits, '_', '.', "
                             f"'-', not {name!r}")
        self.name = name
        self.routes: list[Route] = []
        self.schemas: dict[str, Mapping[str, Any]] = dict(schemas or {})

    def route(self, method: str, path: str, *, operation_id: str, summary: str, tag: str,
              auth: Auth = "bearer", **options: Any) -> Callable[[View], View]:
        """Declare the decorated function as the view of ``method path`` (see :class:`Route`;
        ``path`` is relative to /api/v1)."""

        def register(view: View) -> View:
            if not path.startswith("/"):
                raise ValueError(f"{method} {path}: the path must start with '/'")
            names = set(re.findall(r"\{(\w+)\}", path))
            declared = {p.name for p in options.get("params", ()) if p.location == "path"}
            if names != declared:
                raise ValueError(f"{method} {path}: path parameters {sorted(names)} are not "
                                 f"the declared ones {sorted(declared)}")
            if any(r.operation_id == operation_id for r in self.routes):
                raise ValueError(f"operation id {operation_id} is declared twice")
            self.routes.append(Route(method.upper(), path, operation_id, summary, tag, auth,
                                     view, description=(view.__doc__ or "").strip(),
                                     **options))
            return view

        return register


#: The RA's own endpoints.
RA_GROUP: Final = RouteGroup("ra")
#: The RA's own endpoints, in declaration order.
ROUTES: Final = RA_GROUP.routes
#: Declare one of the RA's own endpoints (see :meth:`RouteGroup.route`).
api_route: Final = RA_GROUP.route

#: Groups contributed by packages above ra, by name, in registration order.
_CONTRIBUTED: dict[str, RouteGroup] = {}


def _conflicts(group: RouteGroup, others: list[RouteGroup]) -> None:
    ids = {r.operation_id: g.name for g in others for r in g.routes}
    rules = {(r.method, r.flask_rule): g.name for g in others for r in g.routes}
    normalised = {(m, re.sub(r"<\w+>", "<>", rule)): name for (m, rule), name in rules.items()}
    schemas = {s: g.name for g in others for s in g.schemas}
    for route in group.routes:
        if route.operation_id in ids:
            raise ValueError(f"route group {group.name!r}: operation id {route.operation_id} "
                             f"is {ids[route.operation_id]!r}'s already")
        key = (route.method, re.sub(r"<\w+>", "<>", route.flask_rule))
        if key in normalised:
            raise ValueError(f"route group {group.name!r}: {route.method} {route.path} is "
                             f"served by {normalised[key]!r} already")
    for name in group.schemas:
        if name in schemas:
            raise ValueError(f"route group {group.name!r}: schema {name} is "
                             f"{schemas[name]!r}'s already")


def register_routes(group: RouteGroup) -> None:
    """Serve ``group``'s endpoints under /api/v1 in every application assembled from now on
    (``ra.api.api_blueprint``), with the RA's authentication, input checks, problem bodies
    and OpenAPI document. Registering a group of the same name again replaces it (the
    composition root may assemble several applications in one process). A clash with a
    route, operation id or schema of another group is refused at once, naming both."""
    if group.name == RA_GROUP.name:
        raise ValueError(f"the route group name {group.name!r} is ra's own")
    others = [RA_GROUP, *(g for n, g in _CONTRIBUTED.items() if n != group.name)]
    _conflicts(group, others)
    _CONTRIBUTED[group.name] = group


def unregister_routes(name: str) -> None:
    """Forget a contributed group (applications assembled already keep serving it)."""
    _CONTRIBUTED.pop(name, None)


def route_groups() -> tuple[RouteGroup, ...]:
    """ra's own group first, then the contributed ones in registration order."""
    return (RA_GROUP, *_CONTRIBUTED.values())


def all_routes() -> tuple[Route, ...]:
    """Every endpoint an application assembled now serves."""
    return tuple(r for g in route_groups() for r in g.routes)


# ---------------------------------------------------------------------------------------------
# Parameters several endpoints share

PAGE: Final = Param("page", "query", "Page number, from 1.", "integer", minimum=1,
                    maximum=MAX_ID, default=1)
PER_PAGE: Final = Param("per_page", "query", "Items per page.", "integer", minimum=1,
                        maximum=500, default=50)
PAGINATION: Final = (PAGE, PER_PAGE)
IDENTIFIER: Final = Param("identifier", "path", "The official's internal identifier.",
                          max_length=64)
REQUEST_ID: Final = Param("request_id", "path", "The request's number.", "integer", minimum=1)
CA_NAME: Final = Param("ca", "path", "The issuing CA's name (e.g. officials).", max_length=64)
SERIAL: Final = Param("serial", "path", "The certificate's serial number in hexadecimal.",
                      max_length=64)
USERNAME: Final = Param("username", "path", "The operator's user name.", max_length=64)
ORG_CODE: Final = Param("code", "path", "The organisation's code.", max_length=32)

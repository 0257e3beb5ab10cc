"""POST /api/v1/sign/pdf and POST /api/v1/verify/pdf: server-held seals and validation over HTTP.

ra owns /api/v1 and authenticates its bearer tokens; signing owns seals and validation. They
are siblings and may not import each other, so this module — above both — declares the two
endpoints as a route group (:data:`ROUTES`, ra's extension point, docs/api.md) whose views
pass the token's operator to :func:`signing.seals.stamp_with_seal` and the upload to
:func:`signing.pdf_verify.verify_pdf`. create_app registers the group
(:func:`install_signing_api`) and, once the application exists, binds the per-application
services (:func:`bind_signing_api`: the OCSP responder it serves, answered in-process).

Who decides: the seal's access list and its second approver (signing.seals, GOVPKI_HOME's
``seals.toml``), before the key is touched; every attempt is an audit event naming the
document's SHA-256. The approver proves the approval with their own API token
(``Seal-Approval-Token``), never a name the caller could type. Verification is open to any
valid bearer token: it reveals nothing but the uploaded document's own signatures, yet costs
the server real work, so it is not anonymous (docs/signing.md).

Revocation data is gathered only from this installation (CRLs and CA certificates from the
store, OCSP from the responder in this process): an uploaded document names URLs of its own
choosing, and the server must not fetch them for a stranger.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from flask import Flask, current_app

from ca.context import CaContext
from ca.store import list_authorities
from core.db import transaction
from core.errors import GovpkiError
from ra.api import (
    BinaryBody,
    BinaryContent,
    Call,
    Param,
    Reply,
    RouteGroup,
    register_routes,
)
from ra.api_tokens import authenticate_api_token
from ra.errors import AuthenticationFailed, ValidationError
from ra.orgs import get_organisation
from signing.appearance import (
    CrossPagePlacement,
    PagePlacement,
    Placement,
    RoundSeal,
    parse_box,
)
from signing.pades import Level, PadesOptions, SigningServices
from signing.pdf_errors import (
    CorruptPdf,
    EncryptedPdf,
    FieldError,
    NotAPdf,
    SealApprovalRequired,
    UnknownSeal,
)
from signing.pdf_limits import DEFAULT_MAX_BYTES, MAX_PAGES
from signing.pdf_revinfo import (
    CaStoreTransport,
    GovpkiFetcherBackend,
    HttpTransport,
    RefuseTransport,
    Transport,
    TransportError,
    WsgiTransport,
)
from signing.pdf_verify import SignatureReport, VerifyOptions, verify_pdf
from signing.seals import SealRegistry, stamp_with_seal
from signing.tsa import TimeStampAuthority

PDF: Final = "application/pdf"
#: The seals this server holds (signing.seals' TOML layout), in GOVPKI_HOME.
SEALS_FILE: Final = "seals.toml"
APPROVAL_HEADER: Final = "Seal-Approval-Token"
_EXTENSION_KEY: Final = "govpki.signing_api"


class BadDocument(GovpkiError):
    """The uploaded document cannot be used — not a PDF, damaged, encrypted — mapped to 400
    at this edge (the client sent it), keeping signing's own kind (``pdf-not-a-pdf``,
    ``pdf-corrupt``, ``pdf-encrypted``) so the problem still says which."""

    http_status = 400

    def __init__(self, cause: GovpkiError) -> None:
        super().__init__(cause.message)
        self.kind = cause.kind


# -- the report's schema, derived from the dataclass so it cannot drift ---------------------------

_TYPES: Final[dict[str, dict[str, Any]]] = {
    "str": {"type": "string"},
    "str | None": {"type": ["string", "null"]},
    "bool": {"type": "boolean"},
    "bool | None": {"type": ["boolean", "null"]},
    "dt.datetime | None": {"type": ["string", "null"], "format": "date-time"},
    "tuple[str, ...]": {"type": "array", "items": {"type": "string"}},
}


def _report_schema() -> dict[str, Any]:
    properties = {}
    for f in dataclasses.fields(SignatureReport):
        annotation = f.type if isinstance(f.type, str) else str(f.type)
        if annotation not in _TYPES:  # a new kind of field: teach _TYPES, do not guess
            raise TypeError(f"SignatureReport.{f.name}: no JSON type for {annotation}")
        properties[f.name] = dict(_TYPES[annotation])
    return {"type": "object", "additionalProperties": False, "required": list(properties),
            "properties": properties,
            "description": "One signature or document time-stamp (docs/signing.md, "
                           "Validation)."}


SCHEMAS: Final = {
    "PdfSignatureReport": _report_schema(),
    "PdfVerification": {
        "type": "object", "additionalProperties": False,
        "required": ["valid", "error", "signatures"],
        "properties": {
            "valid": {"type": "boolean",
                      "description": "Every signature and time-stamp is valid."},
            "error": {"type": ["string", "null"],
                      "description": "Why the document as a whole could not be judged (no "
                                     "signatures, damaged)."},
            "signatures": {"type": "array",
                           "items": {"$ref": "#/components/schemas/PdfSignatureReport"}}}},
}
ROUTES: Final = RouteGroup("signing", schemas=SCHEMAS)
_DOCUMENT: Final = BinaryBody((PDF,), "The PDF document, as it is.")


# -- per-application services -------------------------------------------------------------------


class _OwnUrlsOnly:
    """Fetches only URLs under this installation's public base URL (split deployments: the
    OCSP responder on another node behind the same address); anything else is refused."""

    blocking = False

    def __init__(self, base_url: str, inner: Transport) -> None:
        self.base = base_url.rstrip("/") + "/"
        self.inner = inner

    def _check(self, url: str) -> None:
        if not url.startswith(self.base):
            raise TransportError(f"not fetched: {url} is not this installation's")

    def get(self, url: str, accept: typing.Iterable[str]) -> tuple[bytes, str]:
        self._check(url)
        return self.inner.get(url, accept)

    def post(self, url: str, body: bytes, content_type: str,
             accept: typing.Iterable[str]) -> tuple[bytes, str]:
        self._check(url)
        return self.inner.post(url, body, content_type, accept)


@dataclass
class SigningApi:
    """What the two endpoints need from the application they run in: the context, the OCSP
    responder it serves (None on a node without one: OCSP then goes over HTTP, to this
    installation's own URLs only), one TSA, and the seal registry read from GOVPKI_HOME."""

    ctx: CaContext
    ocsp_app: Any = None
    seals_path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tsa: TimeStampAuthority | None = field(default=None, repr=False)
    _registry: tuple[tuple[int, int], SealRegistry] | None = field(default=None, repr=False)

    def transport(self) -> Transport:
        base = self.ctx.config.public_base_url
        ocsp: Transport
        if self.ocsp_app is not None:
            ocsp = WsgiTransport(base, self.ocsp_app, fallback=RefuseTransport())
        else:
            ocsp = _OwnUrlsOnly(base, HttpTransport())
        return CaStoreTransport(self.ctx, fallback=ocsp)

    def services(self) -> SigningServices:
        with self._lock:
            if self._tsa is None:
                from signing.config import tsa_config_from

                self._tsa = TimeStampAuthority(self.ctx,
                                               tsa_config_from(self.ctx.config.sections))
            tsa = self._tsa
        return SigningServices.in_process(self.ctx, transport=self.transport(), tsa=tsa)

    def registry(self) -> SealRegistry:
        """The seals, re-read when seals.toml changes (an access list edit takes effect
        without a restart); no file means no seals."""
        path = self.seals_path or self.ctx.config.path(SEALS_FILE)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return SealRegistry([])
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._registry is None or self._registry[0] != key:
                self._registry = (key, SealRegistry.from_toml(path))
            return self._registry[1]

    def trust_roots(self) -> list[x509.Certificate]:
        with transaction(self.ctx.sessions) as session:
            return [a.certificate() for a in list_authorities(session) if a.parent is None]


def _api() -> SigningApi:
    api = current_app.extensions.get(_EXTENSION_KEY)
    if api is None:  # assembled without bind_signing_api: OCSP over HTTP to our own URLs
        api = SigningApi(current_app.config["GOVPKI_CA"])
        current_app.extensions[_EXTENSION_KEY] = api
    return typing.cast(SigningApi, api)


def install_signing_api() -> None:
    """Register the two endpoints in ra's /api/v1 table (before the application is built)."""
    register_routes(ROUTES)


def bind_signing_api(app: Flask, ctx: CaContext, ocsp_app: Any = None) -> None:
    """Give the endpoints of ``app`` their services; ``ocsp_app``: the OCSP WSGI app this
    process serves, so B-LT signing embeds its answers without an HTTP round trip to itself."""
    app.extensions[_EXTENSION_KEY] = SigningApi(ctx, ocsp_app)


# -- POST /sign/pdf -----------------------------------------------------------------------------

SIGN_PARAMS: Final = (
    Param("seal", "query", "The server-held seal to stamp (its name in seals.toml). Give "
          "this or org.", max_length=64),
    Param("org", "query", "Instead of seal: the RA organisation code whose seal to stamp (the "
          "one seal whose department is the organisation's name).", max_length=32),
    Param("level", "query", "PAdES baseline level.", enum=tuple(lvl.value for lvl in Level),
          default=Level.B_LT.value, max_length=8),
    Param("page", "query", "Page of the seal, from 1 (default: the last page).", "integer",
          minimum=1, maximum=MAX_PAGES),
    Param("box", "query", "The seal's box x1,y1,x2,y2 in PDF points (default: lower right).",
          max_length=80),
    Param("cross_page", "query", "Cross-page seal (骑缝章) over the right edge of every page "
          "instead of one page.", "boolean", default=False),
    Param("reason", "query", "Reason for signing, recorded in the signature.", max_length=500),
    Param("certify", "query", "Lock the document: nothing may change after this seal (DocMDP "
          "certification on an unsigned document, a field lock otherwise).", "boolean",
          default=False),
    Param(APPROVAL_HEADER, "header", "For a seal with approvers: the API token of the second "
          "person approving this use (two-person rule).", max_length=128),
)


def seal_placement(query: typing.Mapping[str, Any]) -> Placement | None:
    """Where the seal goes, from the checked query; anything unusable is a 400 naming
    ``page`` or ``box`` (signing's FieldError would be a 422 about a command-line option)."""
    page, box = query.get("page"), query.get("box")
    if query["cross_page"]:
        if page is not None or box is not None:
            field_name = "page" if page is not None else "box"
            raise ValidationError("a cross-page seal goes on every page: drop page and box",
                                  field=field_name)
        return CrossPagePlacement()
    if page is None and box is None:
        return None  # stamp_with_seal's default: lower right of the last page
    try:
        parsed = parse_box(box) if box is not None else None
        return PagePlacement(page if page is not None else -1, parsed)
    except FieldError as exc:
        raise ValidationError(exc.message.replace("--box", "box"),
                              field="box" if box is not None else "page") from None


def seal_name(ctx: CaContext, registry: SealRegistry, seal: str | None, org: str | None
              ) -> str:
    """The seal named, or the one seal of organisation ``org``: its name in the RA (ra's
    record, looked up here, above both) is the department a seal is drawn with."""
    if (seal is None) == (org is None):
        raise ValidationError("give seal (the seal's name) or org (the organisation whose "
                              "seal it is), one of them", field="seal")
    if seal is not None:
        return seal
    assert org is not None
    with transaction(ctx.sessions) as session:
        organisation = get_organisation(session, org)
    names = [n for n in registry.names() if registry.get(n).department == organisation.name]
    if not names:
        raise UnknownSeal(f"organisation {org} ({organisation.name}) has no seal on this "
                          f"server")
    if len(names) > 1:
        raise ValidationError(f"organisation {org} has several seals ({', '.join(names)}): "
                              f"name one with seal", field="org")
    return names[0]


def _approver(call: Call) -> str | None:
    token = call.headers.get(APPROVAL_HEADER)
    if not token:
        return None
    try:
        return authenticate_api_token(call.ctx, token, client=call.client).username
    except AuthenticationFailed:
        raise SealApprovalRequired(f"the {APPROVAL_HEADER} is not a valid API token") from None


@ROUTES.route("POST", "/sign/pdf", operation_id="signPdfWithSeal",
              summary="Stamp a server-held department seal on a PDF", tag="signing",
              params=SIGN_PARAMS, binary_body=_DOCUMENT, max_body=DEFAULT_MAX_BYTES,
              responses={200: BinaryContent(PDF, "The stamped document (PAdES).")},
              response_headers={
                  "Content-Disposition": "attachment; filename=\"signed.pdf\"",
                  "Repr-Digest": "RFC 9530 SHA-256 of the stamped document",
                  "Govpki-Document-Sha256": "SHA-256 (hex) of the document as received, as "
                                            "the audit event names it"},
              errors=(404, 409, 422, 502))
def sign_pdf(call: Call) -> Reply:
    """Stamp the seal onto the uploaded PDF for the token's operator. The seal's access list
    decides (403 ``seal-forbidden``), a seal with approvers needs the approver's own API token
    in ``Seal-Approval-Token`` (403 ``seal-approval-required``); both are checked before the
    key is touched. Every attempt is an audit event ``signing.seal.stamp`` naming the
    document's SHA-256. B-LT by default: time-stamped by govpki's TSA, with the chain, OCSP
    responses and CRLs embedded, so it validates offline."""
    api = _api()
    registry = api.registry()
    name = seal_name(call.ctx, registry, call.query.get("seal"), call.query.get("org"))
    placement = seal_placement(call.query)
    # A placement comes with the seal's own round seal (as stamp_with_seal draws it by
    # default); an unknown seal is left to stamp_with_seal, which refuses it and audits that.
    appearance = None
    if placement is not None:
        if name in registry.names():
            seal = registry.get(name)
            appearance = RoundSeal(seal.department, seal.text)
        else:
            placement = None
    options = PadesOptions(level=Level(call.query["level"]), appearance=appearance,
                           placement=placement, reason=call.query.get("reason"),
                           certify=call.query["certify"])
    approved_by = _approver(call)
    try:
        result = stamp_with_seal(call.ctx, call.operator.username, name, call.upload,
                                 registry=registry, approved_by=approved_by, options=options,
                                 services=api.services())
    except (NotAPdf, CorruptPdf, EncryptedPdf) as exc:
        raise BadDocument(exc) from None
    digest = base64.b64encode(hashlib.sha256(result.pdf).digest()).decode("ascii")
    return Reply.binary(result.pdf, PDF, headers={
        "Content-Disposition": 'attachment; filename="signed.pdf"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "Govpki-Document-Sha256": result.document_sha256})


# -- POST /verify/pdf ---------------------------------------------------------------------------


@ROUTES.route("POST", "/verify/pdf", operation_id="verifyPdf",
              summary="Verify every signature in a PDF", tag="signing",
              params=(Param("offline", "query", "Judge only from the revocation data embedded "
                            "in the document (B-LT/B-LTA); otherwise missing data is fetched "
                            "from this installation's OCSP/CRL.", "boolean", default=False),),
              binary_body=_DOCUMENT, max_body=DEFAULT_MAX_BYTES,
              responses={200: "PdfVerification"})
def verify(call: Call) -> Reply:
    """The report of every signature and document time-stamp, in signing order: signer and
    organisation, claimed and time-stamped signing time, integrity, trust (this
    installation's roots), revocation at signing time, coverage and later modifications, and
    ``valid`` overall. An invalid or damaged document is a 200 report with ``valid: false``;
    only input that is not a PDF at all (or is encrypted) is a 400 problem."""
    api = _api()
    fetcher = None if call.query["offline"] else GovpkiFetcherBackend(api.transport())
    try:
        report = verify_pdf(call.upload, VerifyOptions(trust_roots=api.trust_roots(),
                                                       fetcher=fetcher))
    except (NotAPdf, CorruptPdf, EncryptedPdf) as exc:
        raise BadDocument(exc) from None
    return Reply(report.as_dict())


__all__ = ["ROUTES", "SEALS_FILE", "SigningApi", "bind_signing_api", "install_signing_api"]

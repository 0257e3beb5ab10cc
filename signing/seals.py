"""Server-held department seals (部门电子印章): who may stamp them, and the stamping itself.

A department's seal key lives in the server's key store (file or PKCS#11 HSM), never on a
desk. Stamping it onto a paper is therefore an act the server must authorise and record:

* a :class:`Seal` is data — the key URI, the department's name (drawn on the round seal), the
  seal certificate and its chain, the access list of usernames who may stamp it, and optionally
  the approvers of whom one must confirm each use (two-person rule);
* :func:`stamp_with_seal` checks the access list (and the approval) *before* the key is
  touched, signs with :func:`signing.pades.sign_pdf`, and writes one audit event per attempt —
  success, refusal or failure — naming the SHA-256 digest of the document as received (and of
  the stamped result), so the audit log can later prove which paper was sealed by whom.

The RA's HTTP route (``POST /api/v1/sign/pdf``) authenticates the caller and passes the
username in; this module does no authentication itself, and the department's name comes from
the seal definition (the caller above both looks it up, DESIGN.md "Layout").
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.context import CaContext
from core import audit
from core.db import transaction
from core.errors import GovpkiError
from signing.appearance import RoundSeal
from signing.pades import PadesOptions, SigningServices, sign_pdf
from signing.pdf_errors import (
    InvalidSealDefinition,
    SealApprovalRequired,
    SealForbidden,
    UnknownSeal,
)
from signing.pdf_signer import SigningKey, load_certificates

AUDIT_ACTION = "signing.seal.stamp"
_SEAL_KEYS = {"name", "key_uri", "department", "certificate", "allowed", "approvers", "text"}


@dataclass(frozen=True)
class Seal:
    """One server-held seal. ``certificate_pem`` holds the seal certificate first, then its
    issuing chain. ``approvers`` non-empty means every use needs one of them to approve."""

    name: str
    key_uri: str
    department: str
    certificate_pem: bytes = field(repr=False)
    allowed: frozenset[str]
    approvers: frozenset[str] = frozenset()
    text: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise InvalidSealDefinition("a seal needs a name")
        if not self.key_uri.startswith(("file:", "pkcs11:")):
            raise InvalidSealDefinition(f"seal {self.name!r}: key_uri must be file: or pkcs11:")
        if not self.department.strip():
            raise InvalidSealDefinition(f"seal {self.name!r}: the department's name is missing")
        if not self.allowed:
            raise InvalidSealDefinition(f"seal {self.name!r}: the access list is empty; nobody "
                                        f"could use it")
        object.__setattr__(self, "allowed", frozenset(self.allowed))
        object.__setattr__(self, "approvers", frozenset(self.approvers))
        self.certificates()  # fail at load time, not at the first stamp

    def certificates(self) -> list[x509.Certificate]:
        try:
            return load_certificates(self.certificate_pem, f"the certificate of seal "
                                                           f"{self.name!r}")
        except GovpkiError as exc:
            raise InvalidSealDefinition(exc.message) from None


class SealRegistry:
    """The seals this server holds, by name."""

    def __init__(self, seals: Iterable[Seal]) -> None:
        self._seals: dict[str, Seal] = {}
        for seal in seals:
            if seal.name in self._seals:
                raise InvalidSealDefinition(f"seal {seal.name!r} is defined twice")
            self._seals[seal.name] = seal

    def get(self, name: str) -> Seal:
        seal = self._seals.get(name)
        if seal is None:
            raise UnknownSeal(f"no seal named {name!r}")
        return seal

    def names(self) -> list[str]:
        return sorted(self._seals)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: Path | None = None) -> SealRegistry:
        """From ``{"seal": [{name, key_uri, department, certificate, allowed, approvers,
        text}, ...]}`` (the TOML layout); ``certificate`` is a PEM path relative to ``base``
        or PEM text. Unknown keys are refused, naming the key."""
        seals = []
        for i, entry in enumerate(data.get("seal", [])):
            unknown = set(entry) - _SEAL_KEYS
            if unknown:
                raise InvalidSealDefinition(f"seal #{i + 1}: unknown key(s) "
                                            f"{', '.join(sorted(unknown))}")
            cert_value = str(entry.get("certificate", ""))
            if "-----BEGIN" in cert_value:
                pem = cert_value.encode("ascii")
            else:
                path = Path(cert_value)
                if base is not None and not path.is_absolute():
                    path = base / path
                try:
                    pem = path.read_bytes()
                except OSError as exc:
                    raise InvalidSealDefinition(f"seal #{i + 1}: cannot read certificate "
                                                f"{path}: {exc.strerror or exc}") from None
            seals.append(Seal(name=str(entry.get("name", "")),
                              key_uri=str(entry.get("key_uri", "")),
                              department=str(entry.get("department", "")),
                              certificate_pem=pem,
                              allowed=frozenset(entry.get("allowed", ())),
                              approvers=frozenset(entry.get("approvers", ())),
                              text=str(entry.get("text", ""))))
        return cls(seals)

    @classmethod
    def from_toml(cls, path: Path) -> SealRegistry:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidSealDefinition(f"{path}: {exc}") from None
        return cls.from_mapping(data, base=path.parent)


@dataclass(frozen=True)
class StampResult:
    pdf: bytes = field(repr=False)
    seal: str
    actor: str
    approved_by: str | None
    document_sha256: str
    stamped_sha256: str


def check_access(seal: Seal, actor: str, approved_by: str | None) -> None:
    """The access list and the two-person rule; raises a 403 error saying which failed."""
    if actor not in seal.allowed:
        raise SealForbidden(f"{actor!r} may not use seal {seal.name!r}")
    if seal.approvers:
        if not approved_by:
            raise SealApprovalRequired(f"seal {seal.name!r} needs a second approver for every "
                                       f"use")
        if approved_by == actor:
            raise SealForbidden(f"{actor!r} cannot approve their own use of seal "
                                f"{seal.name!r}")
        if approved_by not in seal.approvers:
            raise SealApprovalRequired(f"{approved_by!r} is not an approver of seal "
                                       f"{seal.name!r}")


def stamp_with_seal(ctx: CaContext, actor_username: str, seal_name: str, pdf_bytes: bytes, *,
                    registry: SealRegistry, approved_by: str | None = None,
                    options: PadesOptions | None = None,
                    services: SigningServices | None = None) -> StampResult:
    """Stamp ``seal_name`` onto ``pdf_bytes`` for ``actor_username`` (already authenticated).

    ``options`` default to a B-LT signature with the round seal drawn from the department's
    name at the lower right of the last page; a given ``options`` without an appearance gets
    that round seal too (a seal is visible by nature). ``services`` default to
    :meth:`SigningServices.in_process` (create them once and reuse them when stamping many).
    Every attempt is audited with the document's SHA-256; refusals raise 403 errors.
    """
    digest = hashlib.sha256(bytes(pdf_bytes)).hexdigest()
    details: dict[str, Any] = {"document_sha256": digest}
    if approved_by:
        details["approved_by"] = approved_by
    try:
        seal = registry.get(seal_name)
        details["department"] = seal.department
        check_access(seal, actor_username, approved_by)
        certs = seal.certificates()
        key = SigningKey(ctx.keyring.get(seal.key_uri), certs[0], tuple(certs[1:]),
                         description=f"seal {seal.name}")
        opts = options or PadesOptions()
        if opts.appearance is None:
            opts = replace(opts, appearance=RoundSeal(seal.department, seal.text))
        svc = services or SigningServices.in_process(ctx)
        signed = sign_pdf(bytes(pdf_bytes), key, opts, svc)
    except GovpkiError as exc:
        audit.record_refusal(
            ctx.sessions, actor=actor_username, action=AUDIT_ACTION, object_type="seal",
            object_id=seal_name,
            outcome="refused" if exc.http_status < 500 else "failure",
            details={**details, "error": exc.kind, "message": exc.message})
        raise
    stamped = hashlib.sha256(signed).hexdigest()
    with transaction(ctx.sessions) as session:
        audit.record_event(
            session, actor=actor_username, action=AUDIT_ACTION, object_type="seal",
            object_id=seal.name, outcome="success",
            details={**details, "stamped_sha256": stamped, "level": opts.level.value,
                     "certificate_serial": format(key.certificate.serial_number, "x")})
    return StampResult(pdf=signed, seal=seal.name, actor=actor_username,
                       approved_by=approved_by, document_sha256=digest,
                       stamped_sha256=stamped)


def seal_certificate_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """PEM bundle for :attr:`Seal.certificate_pem` (seal certificate first)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

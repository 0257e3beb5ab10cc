"""Receipts: a recipient's signed word that a package was delivered and verified (technical
receipt) and what it did with the document (business receipt: signed for 签收, returned 退回
with a reason, completed 办结).

Each receipt is two signatures by the recipient organisation's seal, one inside the other:

* the **RFC 2634 signed receipt** (§2.4, §2.8, via :mod:`signing.cms_receipt`) over the
  package header's SignedData: it quotes the header's signature value and carries msgSigDigest,
  so it proves *this* package reached *this* recipient — ``openssl cms -verify_receipt``
  accepts it against the header;
* the **receipt statement**: a CMS SignedData (id-data) over the DER ReceiptStatement
  {message id, kind, recipient, reason, the ESS receipt}. RFC 2634's Receipt has no room for
  which act it records or why a document was returned, and a receipt request cannot tell
  apart receipts made for different acts; the statement binds the kind and the reason to the
  ESS receipt under the same seal, so the hub cannot turn a return into a signing-for.

The technical receipt (kind ``delivered``) is kept apart from the business ones: its own
state column and receipt row (hub.py). The statement's bytes are what travels and is stored;
the ESS receipt is also stored alone, for openssl.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from apps.exchange import asn1
from apps.exchange.errors import MalformedPackage, ReceiptInvalid
from apps.exchange.header import (
    OrgName,
    check_message_id,
    check_org_code,
    check_text,
    load_canonical,
)
from apps.exchange.package import SealKey
from signing.cms import OID_DATA, RevocationChecker, parse_signed_data, sign_cms, verify_cms
from signing.cms_errors import CmsError
from signing.cms_receipt import sign_receipt, verify_receipt

STATEMENT_VERSION: Final = 1
TECHNICAL: Final = "delivered"
BUSINESS_KINDS: Final = ("signed-for", "returned", "completed")
KINDS: Final = (TECHNICAL, *BUSINESS_KINDS)
MAX_REASON: Final = 1000
MAX_ESS_RECEIPT: Final = 64 * 1024


@dataclass(frozen=True)
class Statement:
    message_id: str
    kind: str
    recipient: OrgName
    reason: str
    ess_receipt: bytes = field(repr=False)


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose statement and RFC 2634 receipt both verify, by one seal."""

    statement: Statement
    statement_der: bytes = field(repr=False)
    signer: x509.Certificate
    signing_time: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.statement.message_id, "kind": self.statement.kind,
                "recipient": self.statement.recipient.as_dict(),
                "reason": self.statement.reason or None,
                "signer": self.signer.subject.rfc4514_string(),
                "signer_serial": format(self.signer.serial_number, "x"),
                "signing_time": self.signing_time.isoformat() if self.signing_time else None}


def make_receipt(signed_header: bytes, *, message_id: str, kind: str, recipient: OrgName,
                 seal: SealKey, reason: str = "") -> bytes:
    """The signed statement (DER ContentInfo) of ``kind`` for the package whose signed header
    is ``signed_header``, with the RFC 2634 receipt inside, both signed by ``seal``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    try:
        ess = sign_receipt(signed_header, seal.signer, seal.certificate, seal.chain)
    except CmsError as exc:
        raise ReceiptInvalid(f"no receipt can be made for {message_id}: {exc.message}") \
            from None
    statement = asn1.ReceiptStatement({
        "version": STATEMENT_VERSION, "message_id": message_id, "kind": kind,
        "recipient": {"code": recipient.code, "name": recipient.name}, "reason": reason,
        "ess_receipt": ess})
    return sign_cms(bytes(statement.dump(force=True)), seal.signer, seal.certificate,
                    seal.chain, detached=False)


def parse_statement(der: bytes) -> Statement:
    """The ReceiptStatement (canonical DER) inside a statement's signature, every field
    checked. Raises MalformedPackage for anything else."""
    native = load_canonical(asn1.ReceiptStatement, der, "receipt statement")
    try:
        if native["version"] != STATEMENT_VERSION:
            raise MalformedPackage(f"receipt statement version {native['version']} is not "
                                   f"{STATEMENT_VERSION}", field="version")
        kind = native["kind"]
        if kind not in KINDS:
            raise MalformedPackage(f"receipt kind must be one of {', '.join(KINDS)}",
                                   field="kind")
        ess = native["ess_receipt"]
        if not isinstance(ess, bytes) or not ess or len(ess) > MAX_ESS_RECEIPT:
            raise MalformedPackage("the statement holds no RFC 2634 receipt",
                                   field="ess_receipt")
        reason = native["reason"]
        if reason:
            check_text(reason, "reason", max_chars=MAX_REASON)
        return Statement(
            message_id=check_message_id(native["message_id"]), kind=kind,
            recipient=OrgName(check_org_code(native["recipient"]["code"], "recipient.code"),
                              check_text(native["recipient"]["name"], "recipient.name",
                                         max_chars=128)),
            reason=reason, ess_receipt=ess)
    except (KeyError, TypeError):
        raise MalformedPackage("the receipt statement lacks a field") from None


def statement_of(statement_der: bytes) -> Statement:
    """The statement inside a signed statement (not yet verified: see verify)."""
    try:
        parsed = parse_signed_data(statement_der, expected_content_type=OID_DATA)
    except CmsError as exc:
        raise MalformedPackage(f"the receipt is not a CMS SignedData: {exc.message}") \
            from None
    if parsed.content is None or len(parsed.signer_infos) != 1:
        raise MalformedPackage("a receipt statement is signed by one seal, with the statement "
                               "inside the signature")
    return parse_statement(parsed.content)


def verify(statement_der: bytes, signed_header: bytes, *, message_id: str,
           trust_roots: Iterable[x509.Certificate], revocation: RevocationChecker
           ) -> VerifiedReceipt:
    """Check a receipt against the package header it answers: the statement's signature,
    chain and revocation; the RFC 2634 receipt's (RFC 2634 §2.6: bound to this header's
    signature value and receipt request); both by the same certificate; the message id.
    ReceiptInvalid says which check failed. Whose seal it is, is the caller's check."""
    roots = list(trust_roots)
    statement = statement_of(statement_der)
    if statement.message_id != message_id:
        raise ReceiptInvalid(f"the receipt is for {statement.message_id}, not {message_id}")
    try:
        outer = verify_cms(statement_der, None, trust_roots=roots, revocation=revocation)
        inner = verify_receipt(statement.ess_receipt, signed_header, trust_roots=roots,
                               revocation=revocation)
    except CmsError as exc:
        raise ReceiptInvalid(f"the receipt cannot be verified: {exc.message}") from None
    if not outer.valid:
        raise ReceiptInvalid("the receipt statement's signature is not valid: "
                             + "; ".join(outer.reasons))
    if not inner.valid:
        raise ReceiptInvalid("the RFC 2634 receipt does not answer this package: "
                             + "; ".join(inner.reasons))
    signer = outer.signer_certificate
    assert signer is not None and inner.signer_certificate is not None
    if signer.public_bytes(Encoding.DER) != inner.signer_certificate.public_bytes(Encoding.DER):
        raise ReceiptInvalid("the statement and the RFC 2634 receipt are signed by different "
                             "certificates")
    return VerifiedReceipt(statement, statement_der, signer, outer.signing_time)

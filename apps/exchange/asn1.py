"""The exchange's own ASN.1 structures (DER), carried inside CMS (docs/exchange.md has the
module in ASN.1 notation).

Every structure is the encapsulated content (id-data) of a CMS SignedData or the plaintext of
an EnvelopedData, so what the signatures cover is exactly these bytes. Strings are UTF8String
(Chinese names intact), times GeneralizedTime in UTC, digests SHA-256.

    ExchangePackage   ::= SEQUENCE { version, header OCTET STRING, body OCTET STRING }
        header: DER ContentInfo(SignedData) over ExchangeHeader, by the sender's seal
        body:   DER ContentInfo(EnvelopedData) of DocumentContent, to each recipient
    ExchangeHeader    ::= what routing, tracking and search need (cleartext, signed)
    DocumentContent   ::= the document itself (encrypted): metadata again, body PDF, attachments
    ReceiptStatement  ::= which act a receipt records (delivered, signed-for, returned,
                          completed), with the RFC 2634 signed receipt it stands for
"""

from __future__ import annotations

from asn1crypto import core


class OrgRef(core.Sequence):
    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("code", core.UTF8String),
        ("name", core.UTF8String),
    ]


class OrgRefs(core.SequenceOf):
    _child_spec = OrgRef


class FileInfo(core.Sequence):
    _fields = [  # noqa: RUF012
        ("name", core.UTF8String),
        ("size", core.Integer),
        ("sha256", core.OctetString),
    ]


class FileInfos(core.SequenceOf):
    _child_spec = FileInfo


class DocumentMetadata(core.Sequence):
    """What the sender states about the document; identical in header and content."""

    _fields = [  # noqa: RUF012
        ("document_number", core.UTF8String),
        ("title", core.UTF8String),
        ("issuer", OrgRef),
        ("document_date", core.UTF8String),  # YYYY-MM-DD
        ("urgency", core.UTF8String),
        ("classification", core.UTF8String),
        ("main_recipients", OrgRefs),
        ("copy_recipients", OrgRefs),
    ]


class ExchangeHeader(core.Sequence):
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("message_id", core.UTF8String),
        ("metadata", DocumentMetadata),
        ("content_digest", core.OctetString),
        ("envelope_digest", core.OctetString),
        ("sent_at", core.GeneralizedTime),
        ("deadline", core.GeneralizedTime),
        ("body", FileInfo),
        ("attachments", FileInfos),
    ]


class DocumentFile(core.Sequence):
    _fields = [  # noqa: RUF012
        ("name", core.UTF8String),
        ("content", core.OctetString),
    ]


class DocumentFiles(core.SequenceOf):
    _child_spec = DocumentFile


class DocumentContent(core.Sequence):
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("message_id", core.UTF8String),
        ("metadata", DocumentMetadata),
        ("body", DocumentFile),
        ("attachments", DocumentFiles),
    ]


class ExchangePackage(core.Sequence):
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("header", core.OctetString),
        ("body", core.OctetString),
    ]


class ReceiptStatement(core.Sequence):
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("message_id", core.UTF8String),
        ("kind", core.UTF8String),
        ("recipient", OrgRef),
        ("reason", core.UTF8String),
        ("ess_receipt", core.OctetString),
    ]

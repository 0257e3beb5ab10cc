"""pkilint's document for a certificate, built from pieces an issuing CA repeats.

pkilint decodes the whole certificate with pyasn1 and then builds a node for every value
(together about half of lint time), although an issuing CA's certificates repeat most of their
bytes: the version, both signature algorithms, the issuer, every subject RDN but the CN, the key
algorithm, every extension but the subject key identifier. This loader splits the DER at
element boundaries, decodes each piece with the same decoder and the same schema pkilint uses
(pyasn1-fasder, pyasn1-alt-modules' RFC 5280 module), keeps decoded pieces per thread, and
copies a piece's nodes from a template instead of walking pyasn1 again.

It accepts only the shape govpki issues, in canonical DER: a v3 certificate without unique
identifiers, with a non-empty extensions list. Anything else, and any piece that does not
decode, gets ``None`` and the caller uses pkilint's own loader, so a broken certificate is
reported in pkilint's words. tests/ca/test_lint_document.py checks that the node tree (paths,
classes, tags, constraints, encodings) is the one pkilint builds, and tests/ca/test_lint.py that
the findings are.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pkilint.document import PDUNode
from pkilint.pkix.certificate import RFC5280Certificate
from pyasn1.error import PyAsn1Error
from pyasn1_alt_modules import rfc5280
from pyasn1_fasder import decode_der

_TBS_TYPES = {nt.name: nt.asn1Object for nt in rfc5280.TBSCertificate().componentType.namedTypes}
_CERT_TYPES = {nt.name: nt.asn1Object for nt in rfc5280.Certificate().componentType.namedTypes}
_SPKI_TYPES = {nt.name: nt.asn1Object
               for nt in rfc5280.SubjectPublicKeyInfo().componentType.namedTypes}
_RDN_SEQUENCE = rfc5280.RDNSequence()
_RDN = _RDN_SEQUENCE.componentType
_EXTENSION = _TBS_TYPES["extensions"].componentType

#: TBSCertificate fields in order, with the tag each must carry (RFC 5280 §4.1).
_TBS_FIELDS = (("version", 0xA0), ("serialNumber", 0x02), ("signature", 0x30),
               ("issuer", 0x30), ("validity", 0x30), ("subject", 0x30),
               ("subjectPublicKeyInfo", 0x30), ("extensions", 0xA3))
_V3 = b"\xa0\x03\x02\x01\x02"  # DER never encodes the DEFAULT v1, so only v3 is taken here

#: Pieces that differ in every certificate: decoded each time, never kept.
_UNIQUE = frozenset({"tbs.serialNumber", "spki.subjectPublicKey", "certificate.signature"})

#: Decoded pieces kept per loader: shared pieces are used by every certificate and stay.
_PIECES = 512


class _Unsupported(Exception):
    """Not the shape this loader takes: pkilint's own loader decodes it."""


def _element(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, element end) of the canonical DER element at ``pos``."""
    if pos + 2 > end:
        raise _Unsupported
    tag = der[pos]
    if tag & 0x1F == 0x1F:  # high tag numbers never occur in a certificate's frame
        raise _Unsupported
    first = der[pos + 1]
    if first < 0x80:
        length, start = first, pos + 2
    else:
        octets = first & 0x7F
        if not 1 <= octets <= 3 or pos + 2 + octets > end or der[pos + 2] == 0:
            raise _Unsupported
        length = int.from_bytes(der[pos + 2:pos + 2 + octets], "big")
        if length < 0x80:  # DER: the short form whenever it fits
            raise _Unsupported
        start = pos + 2 + octets
    stop = start + length
    if stop > end:
        raise _Unsupported
    return tag, start, stop


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, element start, element end) of every element between ``start`` and ``end``."""
    found = []
    pos = start
    while pos < end:
        tag, _, stop = _element(der, pos, end)
        found.append((tag, pos, stop))
        pos = stop
    return found


def _contents(der: bytes, pos: int, end: int, tag: int) -> list[tuple[int, int, int]]:
    """The elements inside the constructed element at ``pos``, which must carry ``tag``."""
    found_tag, start, stop = _element(der, pos, end)
    if found_tag != tag or stop != end:
        raise _Unsupported
    return _children(der, start, stop)


def _bare_node(document: Any, name: str, pdu: Any, parent: PDUNode | None) -> PDUNode:
    """A PDUNode with pkilint's attributes and no children yet (pkilint's __init__ would walk
    ``pdu`` at once)."""
    node = PDUNode.__new__(PDUNode)
    node.document = document
    node.name = name
    node.pdu = pdu
    node.parent = parent
    node.path = name if parent is None else f"{parent.path}.{name}"
    node.children = {}
    if parent is not None:
        parent.children[name] = node
    return node


def node_template(pdu: Any) -> PDUNode:
    """The nodes pkilint builds for ``pdu``, attached to no document: copied, never linted."""
    return PDUNode(None, "template", pdu, None)


def copy_nodes(template: PDUNode, document: Any, name: str, parent: PDUNode) -> PDUNode:
    """``template``'s nodes as children of ``parent`` under ``name``: what pkilint's
    PDUNode would build for the same value, without asking pyasn1 for its components."""
    node = _bare_node(document, name, template.pdu, parent)
    for child_name, child in template.children.items():
        copy_nodes(child, document, child_name, node)
    return node


class _Piece:
    """A decoded piece and the nodes pkilint builds for it, kept unattached as a template."""

    __slots__ = ("pdu", "template")

    def __init__(self, pdu: Any) -> None:
        self.pdu = pdu
        self.template = node_template(pdu)


class CertificateDocumentLoader:
    """Builds RFC5280Certificate documents; one per thread (the piece memo is not locked)."""

    def __init__(self) -> None:
        self._pieces: OrderedDict[tuple[str, bytes], _Piece] = OrderedDict()

    def load(self, der: bytes, name: str) -> RFC5280Certificate | None:
        """The document pkilint's loader would build, or None: decode it with pkilint's."""
        doc = RFC5280Certificate(None, der, name)
        try:
            doc.root = self._certificate(doc, der)
        except (_Unsupported, PyAsn1Error, ValueError):
            return None
        return doc

    def _piece(self, slot: str, der: bytes, start: int, end: int, schema: Any) -> _Piece:
        key = (slot, der[start:end])
        piece = self._pieces.get(key)
        if piece is not None:
            self._pieces.move_to_end(key)
            return piece
        decoded, _ = decode_der(key[1], asn1Spec=schema)
        piece = _Piece(decoded)
        self._pieces[key] = piece
        if len(self._pieces) > _PIECES:
            self._pieces.popitem(last=False)
        return piece

    def _attach(self, node: PDUNode, slot: str, der: bytes, start: int, end: int,
                schema: Any, field: str) -> None:
        """Decode (or recall) one piece, set it as ``field`` of node.pdu, copy its nodes."""
        if slot in _UNIQUE:
            decoded, _ = decode_der(der[start:end], asn1Spec=schema)
            node.pdu.setComponentByName(field, decoded)
            node.children[field] = PDUNode(node.document, field, decoded, node)
            return
        piece = self._piece(slot, der, start, end, schema)
        node.pdu.setComponentByName(field, piece.pdu)
        copy_nodes(piece.template, node.document, field, node)

    def _certificate(self, doc: RFC5280Certificate, der: bytes) -> PDUNode:
        top = _contents(der, 0, len(der), 0x30)
        if [tag for tag, _, _ in top] != [0x30, 0x30, 0x03]:
            raise _Unsupported
        root = _bare_node(doc, "certificate", rfc5280.Certificate(), None)
        tbs = _bare_node(doc, "tbsCertificate", _CERT_TYPES["tbsCertificate"].clone(), root)
        self._tbs(tbs, der, top[0][1], top[0][2])
        root.pdu.setComponentByName("tbsCertificate", tbs.pdu)
        for field, (_, start, end) in zip(("signatureAlgorithm", "signature"), top[1:],
                                          strict=True):
            self._attach(root, f"certificate.{field}", der, start, end, _CERT_TYPES[field],
                         field)
        return root

    def _tbs(self, node: PDUNode, der: bytes, start: int, end: int) -> None:
        fields = _contents(der, start, end, 0x30)
        if tuple(tag for tag, _, _ in fields) != tuple(tag for _, tag in _TBS_FIELDS):
            raise _Unsupported
        if der[fields[0][1]:fields[0][2]] != _V3:
            raise _Unsupported
        for (field, _), (_, s, e) in zip(_TBS_FIELDS, fields, strict=True):
            if field in ("issuer", "subject"):
                self._name(node, field, der, s, e)
            elif field == "subjectPublicKeyInfo":
                self._spki(node, der, s, e)
            elif field == "extensions":
                self._extensions(node, der, s, e)
            else:
                self._attach(node, f"tbs.{field}", der, s, e, _TBS_TYPES[field], field)

    def _name(self, tbs: PDUNode, field: str, der: bytes, start: int, end: int) -> None:
        """Name is a CHOICE of one RDNSequence: each RelativeDistinguishedName is a piece."""
        rdns = _contents(der, start, end, 0x30)
        name = _bare_node(tbs.document, field, _TBS_TYPES[field].clone(), tbs)
        sequence = _bare_node(tbs.document, "rdnSequence", _RDN_SEQUENCE.clone(), name)
        for index, (tag, s, e) in enumerate(rdns):
            if tag != 0x31:
                raise _Unsupported
            piece = self._piece("rdn", der, s, e, _RDN)
            # a decoded RDN carries its own size constraint object, equal to the schema's
            sequence.pdu.setComponentByPosition(index, piece.pdu, matchConstraints=False)
            copy_nodes(piece.template, tbs.document, str(index), sequence)
        name.pdu.setComponentByName("rdnSequence", sequence.pdu)
        tbs.pdu.setComponentByName(field, name.pdu)

    def _spki(self, tbs: PDUNode, der: bytes, start: int, end: int) -> None:
        parts = _contents(der, start, end, 0x30)
        if [tag for tag, _, _ in parts] != [0x30, 0x03]:
            raise _Unsupported
        field = "subjectPublicKeyInfo"
        spki = _bare_node(tbs.document, field, _TBS_TYPES[field].clone(), tbs)
        for part, (_, s, e) in zip(("algorithm", "subjectPublicKey"), parts, strict=True):
            self._attach(spki, f"spki.{part}", der, s, e, _SPKI_TYPES[part], part)
        tbs.pdu.setComponentByName(field, spki.pdu)

    def _extensions(self, tbs: PDUNode, der: bytes, start: int, end: int) -> None:
        """[3] EXPLICIT Extensions, SIZE (1..MAX): each Extension is a piece."""
        inner = _contents(der, start, end, 0xA3)
        if len(inner) != 1 or inner[0][0] != 0x30:
            raise _Unsupported
        items = _contents(der, inner[0][1], inner[0][2], 0x30)
        if not items:
            raise _Unsupported
        extensions = _bare_node(tbs.document, "extensions", _TBS_TYPES["extensions"].clone(),
                                tbs)
        for index, (tag, s, e) in enumerate(items):
            if tag != 0x30:
                raise _Unsupported
            piece = self._piece("extension", der, s, e, _EXTENSION)
            extensions.pdu.setComponentByPosition(index, piece.pdu)
            copy_nodes(piece.template, tbs.document, str(index), extensions)
        tbs.pdu.setComponentByName("extensions", extensions.pdu)

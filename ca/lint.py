"""Pre-issuance check: pkilint's RFC 5280 certificate linter on the to-be-signed certificate.

As Boulder lints a certificate signed with a throwaway key before the real key signs, govpki lints
the throwaway-signed certificate whose TBS bytes the HSM will sign; an error or fatal finding
refuses issuance. Building pkilint's validator tree is expensive, so each thread builds one once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pkilint import document, loader
from pkilint.pkix import certificate, extension, general_name, name
from pkilint.validation import ValidationFindingSeverity

from ca.lint_document import CertificateDocumentLoader, copy_nodes, node_template

_local = threading.local()


@dataclass(frozen=True)
class LintFinding:
    severity: str
    code: str
    node_path: str
    message: str | None

    def __str__(self) -> str:
        text = f"{self.severity} {self.code} at {self.node_path}"
        return f"{text}: {self.message}" if self.message else text


def _validator() -> Any:
    validator = getattr(_local, "validator", None)
    if validator is None:
        validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(
                name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
            ),
            [
                certificate.create_issuer_validator_container([]),
                certificate.create_validity_validator_container(),
                certificate.create_subject_validator_container([]),
                certificate.create_extensions_validator_container([]),
                certificate.create_spki_validator_container([]),
            ],
        )
        _accelerate(validator)
        _local.validator = validator
        _local.loader = loader.RFC5280CertificateDocumentLoader()
        _local.pieces = CertificateDocumentLoader()
    return validator


def _accelerate(container: Any) -> None:
    """Give every validator container of the tree a dispatch cache: same findings, less work.

    pkilint's ``ValidatorContainer._validate_rec`` asks every validator of a container whether
    it matches every node (about 4,600 ``match`` calls per certificate, a third of lint time).
    Two of the criteria a validator matches on, the node's exact path and the class of its PDU,
    are fixed for a given (PDU class, path) pair, so the validators that can possibly match are
    computed once per pair and only they are asked, in pkilint's order, with pkilint's own
    ``match`` (predicates and supertype checks still run per node). tests/ca/test_lint.py
    compares findings with pkilint's unmodified traversal, so an upgrade that changes the
    traversal fails there rather than silently linting less.
    """
    decoder = getattr(container, "decode_func", None)
    if isinstance(decoder, document.ValueDecoder):
        _memoise_values(decoder)
    if type(container) in _SYNTAX_VALIDATORS:
        _memoise_syntax(container)
    validators = getattr(container, "validators", None)
    if not isinstance(validators, list):
        return
    for child in validators:
        _accelerate(child)
    cache: dict[tuple[type, str], list[Any]] = {}

    def candidates(node: Any) -> list[Any]:
        key = (type(node.pdu), node.path)
        found = cache.get(key)
        if found is None:
            found = [v for v in validators if _static_match(v, node)]
            if len(cache) < 4096:
                cache[key] = found
        return found

    def validate_rec(node: Any, results: list[Any]) -> None:
        for v in candidates(node):
            if v.match(node):
                result = v.validate_wrapper(node)
                if isinstance(result, list):
                    results += result
                else:
                    results.append(result)
        for child_node in node.children.values():
            validate_rec(child_node, results)

    container._validate_rec = validate_rec


#: Decoded values kept per thread: the certificates of one profile and issuer share most
#: extension and name values byte for byte; values unique to one certificate fall out first.
_DECODED_VALUES = 512


def _memoise_values(decoder: Any) -> None:
    """Decode each (schema, value bytes) pair once per thread instead of once per certificate.

    pkilint decodes every extension's and attribute's value with pyasn1 (a third of lint time),
    though most of them (key usage, policies, CRL DP, AIA, issuer name, ...) are the same bytes
    in every certificate an issuing CA signs. The decoded pyasn1 value is only read by the
    validators, so one decoded object can back the node of many documents; a miss, and every
    decoding error, goes through pkilint's own ``decode_substrate`` unchanged.
    """
    memo: OrderedDict[tuple[int, bytes], Any] = OrderedDict()
    original = decoder.decode_value

    def decode_value(node: Any, type_node: Any, value_node: Any, pdu_type: Any) -> Any:
        if any(value_node.children):
            return original(node, type_node, value_node, pdu_type)
        substrate = decoder.retrieve_substrate(value_node)
        key = (id(pdu_type), bytes(substrate))
        template = memo.get(key)
        if template is None:
            created = original(node, type_node, value_node, pdu_type)
            memo[key] = node_template(created.pdu)
            if len(memo) > _DECODED_VALUES:
                memo.popitem(last=False)
            return created
        memo.move_to_end(key)
        # the node name pkilint's create_and_append_node_from_pdu gives a decoded value
        name = document.get_node_name_for_pdu(template.pdu)
        return copy_nodes(template, value_node.document, name, value_node)

    decoder.decode_value = decode_value


#: pkilint's URI, domain-name and mailbox syntax validators, read line by line (pkilint 0.13):
#: each one's ``validate_value`` depends only on the value's text and on whether the node sits
#: inside NameConstraints. Exact classes only: a subclass may look at more than that.
_SYNTAX_VALIDATORS = frozenset({
    general_name.UriSyntaxValidator,
    general_name.DomainNameSyntaxValidator,
    general_name.MailboxAddressSyntaxValidator,
    general_name.GeneralNameUriSyntaxValidator,
    general_name.GeneralNameDnsNameSyntaxValidator,
    general_name.GeneralNameMailboxAddressSyntaxValidator,
})
#: Syntax answers kept per validator: an issuing CA's certificates repeat a handful of URLs.
_SYNTAX_ANSWERS = 256


def _memoise_syntax(v: Any) -> None:
    """Answer each (text, inside NameConstraints) pair once per validator.

    The ``validators`` package pkilint checks URIs with rebuilds an ``inspect`` signature on
    every call, which made the CRL, OCSP and caIssuers URLs that every certificate repeats a
    fifth of lint time. Only the boolean answer is kept; a value that raises (an LDAP URI's
    notice) raises again each time, since it is never stored.
    """
    memo: OrderedDict[tuple[str, bool], bool] = OrderedDict()
    original = v.validate_value

    def validate_value(node: Any) -> bool:
        key = (str(node.pdu), general_name.is_nameconstraints_child_node(node))
        answer = memo.get(key)
        if answer is None:
            answer = bool(original(node))
            memo[key] = answer
            if len(memo) > _SYNTAX_ANSWERS:
                memo.popitem(last=False)
        return answer

    v.validate_value = validate_value


def _static_match(v: Any, node: Any) -> bool:
    """The part of pkilint's NodeVisitor.match that depends only on (PDU class, path)."""
    path = getattr(v, "_path", None)
    if path is not None and path != node.path:
        return False
    path_re = getattr(v, "_path_re", None)
    if path_re is not None and path_re.match(node.path) is None:
        return False
    pdu_class = getattr(v, "_pdu_class", None)
    return pdu_class is None or isinstance(node.pdu, pdu_class)


def lint_certificate(der: bytes) -> list[LintFinding]:
    """All findings of severity warning or worse, in pkilint's order."""
    validator = _validator()
    try:
        doc = _local.pieces.load(der, "tbs")
        if doc is None:
            doc = _local.loader.load_der_document(der, "tbs")
    except Exception as exc:  # pkilint raises assorted decoder errors for broken DER
        return [LintFinding("FATAL", "decoding_failed", "certificate", str(exc))]
    findings: list[LintFinding] = []
    try:
        for result in validator.validate(doc.root):
            for fd in result.finding_descriptions:
                if fd.finding.severity <= ValidationFindingSeverity.WARNING:
                    findings.append(LintFinding(
                        fd.finding.severity.name, fd.finding.code, result.node.path, fd.message
                    ))
    finally:
        _dismantle(doc.root)
        doc.root = None
    return findings


def _dismantle(node: Any) -> None:
    """Break the document's parent/child cycles so reference counting frees its nodes at once.

    A linted document is some 450 nodes, each pointing at its parent and its document: left
    to the cycle collector, they made it run every few certificates, each time over a heap
    that in the CA process holds the database layer, pyca and pkilint's own tables
    (12% of issuance's instructions under callgrind).
    """
    stack = [node]
    while stack:
        current = stack.pop()
        stack.extend(current.children.values())
        current.children = {}
        current.parent = None
        current.document = None


def blocking(findings: list[LintFinding]) -> list[LintFinding]:
    return [f for f in findings if f.severity in ("FATAL", "ERROR")]

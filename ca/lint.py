"""Pre-issuance check: pkilint's RFC 5280 certificate linter on the to-be-signed certificate.

As Boulder lints a certificate signed with a throwaway key before the real key signs, govpki lints
the throwaway-signed certificate whose TBS bytes the HSM will sign; an error or fatal finding
refuses issuance. Building pkilint's validator tree is expensive, so each thread builds one once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

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
        doc = _local.loader.load_der_document(der, "tbs")
    except Exception as exc:  # pkilint raises assorted decoder errors for broken DER
        return [LintFinding("FATAL", "decoding_failed", "certificate", str(exc))]
    findings: list[LintFinding] = []
    for result in validator.validate(doc.root):
        for fd in result.finding_descriptions:
            if fd.finding.severity <= ValidationFindingSeverity.WARNING:
                findings.append(
                    LintFinding(
                        fd.finding.severity.name, fd.finding.code, result.node.path, fd.message
                    )
                )
    return findings


def blocking(findings: list[LintFinding]) -> list[LintFinding]:
    return [f for f in findings if f.severity in ("FATAL", "ERROR")]

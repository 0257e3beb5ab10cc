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
        _local.validator = validator
        _local.loader = loader.RFC5280CertificateDocumentLoader()
    return validator


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

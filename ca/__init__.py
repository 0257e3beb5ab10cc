"""The certificate authority: hierarchy, issuance, revocation state.

The Python API other packages (ra/, ocsp/, signing/) use; see docs/ca.md.
"""

from ca.context import CaContext
from ca.issuance import CertificateRequest, IssuedCertificate, issue_certificate, issue_certificates
from ca.revocation import release, revoke, suspend

__all__ = [
    "CaContext",
    "CertificateRequest",
    "IssuedCertificate",
    "issue_certificate",
    "issue_certificates",
    "release",
    "revoke",
    "suspend",
]

"""Object identifiers that profiles name: the govpki policy arc, EKUs, extensions, name attributes.

govpki's arc is a PLACEHOLDER under ``1.3.6.1.4.1.32473``, the enterprise number IANA
assigns for documentation (RFC 5612), with Qinghai's division code (GB/T 2260: 630000)
beneath it. A production deployment replaces it with the province's registered arc (under
``1.2.156``, from the national OID registration centre) before its first ceremony; every
issued certificate names these OIDs, so it cannot change afterwards. A UUID-derived ``2.25``
arc was tried first and rejected: its 128-bit arc breaks decoders that limit arcs to 32 bits
(pkilint's among them, and several relying-party stacks); the X.660 example arc ``2.999``
breaks the same decoder (a first subidentifier above 127). The allocation table is also in
docs/profiles.md — keep the two in step.
"""

from __future__ import annotations

from typing import Final

GOVPKI_ARC: Final = "1.3.6.1.4.1.32473.630000"

# .1 — certificate policies (RFC 5280 §4.2.1.4).
CERTIFICATE_POLICIES_ARC: Final = f"{GOVPKI_ARC}.1"
POLICY_OFFICIAL_SIGNING: Final = f"{CERTIFICATE_POLICIES_ARC}.1"
POLICY_OFFICIAL_ENCRYPTION: Final = f"{CERTIFICATE_POLICIES_ARC}.2"
POLICY_ORG_ENCRYPTION: Final = f"{CERTIFICATE_POLICIES_ARC}.3"
POLICY_DEPARTMENT_SEAL: Final = f"{CERTIFICATE_POLICIES_ARC}.4"
POLICY_SERVER: Final = f"{CERTIFICATE_POLICIES_ARC}.5"
POLICY_OCSP: Final = f"{CERTIFICATE_POLICIES_ARC}.6"
# Also the TSA policy that the TSA puts in TSTInfo.policy (RFC 3161 §2.4.2).
POLICY_TSA: Final = f"{CERTIFICATE_POLICIES_ARC}.7"
POLICY_SSO: Final = f"{CERTIFICATE_POLICIES_ARC}.8"
POLICY_CA: Final = f"{CERTIFICATE_POLICIES_ARC}.9"

GOVPKI_POLICIES: Final[dict[str, str]] = {
    POLICY_OFFICIAL_SIGNING: "official signing",
    POLICY_OFFICIAL_ENCRYPTION: "official encryption",
    POLICY_ORG_ENCRYPTION: "organisation encryption",
    POLICY_DEPARTMENT_SEAL: "department seal",
    POLICY_SERVER: "server and device",
    POLICY_OCSP: "OCSP signer",
    POLICY_TSA: "time-stamp authority",
    POLICY_SSO: "single sign-on token signing",
    POLICY_CA: "CA certificates",
}

# RFC 5280 §4.2.1.4: in a CA certificate, "any policy" lets every end-entity policy through path
# validation without listing each one.
ANY_POLICY: Final = "2.5.29.32.0"

# Extended key usage purposes (RFC 5280 §4.2.1.12; documentSigning: RFC 9336).
EKU_OIDS: Final[dict[str, str]] = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": "1.3.6.1.5.5.7.3.9",
    "documentSigning": "1.3.6.1.5.5.7.3.36",
}

# id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
OCSP_NOCHECK: Final = "1.3.6.1.5.5.7.48.1.5"

# Subject attribute types (RFC 5280 §4.1.2.4 and Appendix A; emailAddress: PKCS #9).
ATTRIBUTE_OIDS: Final[dict[str, str]] = {
    "C": "2.5.4.6",
    "ST": "2.5.4.8",
    "L": "2.5.4.7",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "CN": "2.5.4.3",
    "serialNumber": "2.5.4.5",
    "emailAddress": "1.2.840.113549.1.9.1",
}

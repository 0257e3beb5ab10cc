"""Profile → extension plan for one subject key and one issuing CA (pipeline step 4).

The profile is data (policies/); this is the one place that turns it into what the certificate
carries, with the URLs built from the public base URL, the *CA name* and the issuing key
generation. Generation 1 has the plain URLs (``/crl/<ca>.crl``); generation N ≥ 2 has its own
(``/crl/<ca>/gN.crl``), because a CRL verifies only under the key that signed the certificate it
speaks for (OpenSSL, RFC 5280 §6.3.3 (f)): after a rollover each generation publishes its own
CRL, and the URLs already issued certificates name never change (docs/crl.md, "Key rollover").
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ca.errors import PolicyViolation
from ca.tbs import ExtensionPlan
from hsm.algorithms import algorithm, key_type_of
from policies.errors import PolicyError
from policies.names import check_subject_alt_names
from policies.profiles import Profile


def generation_path(ca: str, generation: int = 1) -> str:
    """``<ca>`` for generation 1, ``<ca>/g<N>`` after: the file stem of its CRLs and certificate.

    A path segment, not a suffix, so no CA name can ever be mistaken for another CA's
    generation (CA names never contain ``/``: they are URL path segments themselves)."""
    return ca if generation <= 1 else f"{ca}/g{generation}"


def crl_url(base_url: str, ca: str, generation: int = 1) -> str:
    return f"{base_url}/crl/{generation_path(ca, generation)}.crl"


def delta_crl_url(base_url: str, ca: str, generation: int = 1) -> str:
    return f"{base_url}/crl/{generation_path(ca, generation)}-delta.crl"


def ocsp_url(base_url: str) -> str:
    return f"{base_url}/ocsp"


def ca_issuers_url(base_url: str, ca: str, generation: int = 1) -> str:
    return f"{base_url}/certs/{generation_path(ca, generation)}.crt"


def plan_for(profile: Profile, public_key: PublicKeyTypes, base_url: str, issuer: str, *,
             generation: int = 1, san_dns: tuple[str, ...] = (), san_ip: tuple[str, ...] = (),
             san_email: tuple[str, ...] = ()) -> ExtensionPlan:
    family = algorithm(key_type_of(public_key)).family
    try:
        usage = profile.key_usage_for(family)
        sans = check_subject_alt_names(
            [("dns", d) for d in san_dns] + [("ip", i) for i in san_ip]
            + [("email", e) for e in san_email],
            profile.san_rules,
        )
    except PolicyError as exc:
        raise PolicyViolation(exc.message, profile=profile.name) from None
    eku = profile.extended_key_usage
    return ExtensionPlan(
        key_usage=usage.usages,
        key_usage_critical=usage.critical,
        extended_key_usage=eku.oids if eku else (),
        eku_critical=eku.critical if eku else False,
        is_ca=profile.is_ca,
        path_length=profile.path_length,
        policy_oids=profile.certificate_policies,
        crl_url=crl_url(base_url, issuer, generation) if profile.crl_distribution_point
        else None,
        # Every CA publishes delta CRLs; relying parties learn where from the certificate
        # (RFC 5280 §4.2.1.15), since validators such as pyhanko-certvalidator will not follow
        # the full CRL's own freshest-CRL pointer (§5.2.6) for a delta they were not told of.
        delta_crl_url=delta_crl_url(base_url, issuer, generation)
        if profile.crl_distribution_point else None,
        ocsp_url=ocsp_url(base_url) if profile.aia_ocsp else None,
        ca_issuers_url=ca_issuers_url(base_url, issuer, generation) if profile.aia_ca_issuers
        else None,
        ocsp_nocheck=profile.ocsp_nocheck,
        san_dns=tuple(v for k, v in sans if k == "dns"),
        san_ip=tuple(v for k, v in sans if k == "ip"),
        san_email=tuple(v for k, v in sans if k == "email"),
    )

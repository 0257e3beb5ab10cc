"""Profile → extension plan for one subject key and one issuing CA (pipeline step 4).

The profile is data (policies/); this is the one place that turns it into what the certificate
carries, with the URLs built from the public base URL and the *CA name* (not its key), so a key
rollover changes no URL (DESIGN.md).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ca.errors import PolicyViolation
from ca.tbs import ExtensionPlan
from hsm.algorithms import algorithm, key_type_of
from policies.errors import PolicyError
from policies.names import check_subject_alt_names
from policies.profiles import Profile


def crl_url(base_url: str, ca: str) -> str:
    return f"{base_url}/crl/{ca}.crl"


def delta_crl_url(base_url: str, ca: str) -> str:
    return f"{base_url}/crl/{ca}-delta.crl"


def ocsp_url(base_url: str) -> str:
    return f"{base_url}/ocsp"


def ca_issuers_url(base_url: str, ca: str) -> str:
    return f"{base_url}/certs/{ca}.crt"


def plan_for(profile: Profile, public_key: PublicKeyTypes, base_url: str, issuer: str, *,
             san_dns: tuple[str, ...] = (), san_ip: tuple[str, ...] = (),
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
        crl_url=crl_url(base_url, issuer) if profile.crl_distribution_point else None,
        # Every CA publishes delta CRLs; relying parties learn where from the certificate
        # (RFC 5280 §4.2.1.15), since validators such as pyhanko-certvalidator will not follow
        # the full CRL's own freshest-CRL pointer (§5.2.6) for a delta they were not told of.
        delta_crl_url=delta_crl_url(base_url, issuer) if profile.crl_distribution_point
        else None,
        ocsp_url=ocsp_url(base_url) if profile.aia_ocsp else None,
        ca_issuers_url=ca_issuers_url(base_url, issuer) if profile.aia_ca_issuers else None,
        ocsp_nocheck=profile.ocsp_nocheck,
        san_dns=tuple(v for k, v in sans if k == "dns"),
        san_ip=tuple(v for k, v in sans if k == "ip"),
        san_email=tuple(v for k, v in sans if k == "email"),
    )

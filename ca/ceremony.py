"""Key ceremony from one declarative file, in the spirit of Boulder's ``ceremony`` tool.

The file declares the hierarchy (authorities with parents, OCSP signers, the TSA, the audit key)
by key *label*; the key store is chosen when the ceremony runs (file keys or a PKCS#11 token), so
the same file drives the demo, the tests on SoftHSM2 and production. Every step is an audit event.
A ceremony refuses to run, and changes nothing, if any CA or key it declares already exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from ca.context import CaContext
from ca.errors import AlreadyInitialised, CeremonyError, PolicyViolation
from ca.issuance import IssuedCertificate, check_key, sign_and_record
from ca.issuer import Issuer, load_issuer
from ca.models import Authority, Certificate, Generation, ServiceKey
from ca.plan import plan_for
from ca.tbs import build_name
from core import audit, events
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.algorithms import KeyType
from hsm.signer import Signer
from policies.errors import PolicyError
from policies.names import parse_subject
from policies.profiles import get_profile

SERVICE_ROLES = ("ocsp-signer", "tsa")


@dataclass(frozen=True)
class KeySpec:
    label: str
    type: KeyType


@dataclass(frozen=True)
class AuthoritySpec:
    name: str
    profile: str
    key: KeySpec
    subject: str
    validity_days: int
    parent: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    role: str
    ca: str
    profile: str
    key: KeySpec
    subject: str
    validity_days: int | None = None


@dataclass(frozen=True)
class CeremonySpec:
    authorities: tuple[AuthoritySpec, ...]
    services: tuple[ServiceSpec, ...] = ()
    audit_key: KeySpec | None = None
    description: str = ""
    labels: tuple[str, ...] = field(default=())


def _require(data: Any, where: str, fields: dict[str, type], optional: dict[str, type]
             ) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CeremonyError(f"{where}: must be a mapping")
    for key in data:
        if key not in fields and key not in optional:
            raise CeremonyError(f"{where}: unknown field '{key}'")
    for key in fields:
        if key not in data:
            raise CeremonyError(f"{where}: missing field '{key}'")
    for key, value in data.items():
        typ = fields.get(key) or optional[key]
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
            raise CeremonyError(f"{where}.{key}: must be {typ.__name__}")
    return data


def _key(data: Any, where: str) -> KeySpec:
    d = _require(data, where, {"label": str, "type": str}, {})
    try:
        return KeySpec(d["label"], KeyType(d["type"]))
    except ValueError:
        raise CeremonyError(
            f"{where}.type: unknown key type '{d['type']}' "
            f"(known: {', '.join(k.value for k in KeyType)})"
        ) from None


def parse_ceremony(text: str, source: str = "ceremony") -> CeremonySpec:
    """Validate a ceremony file; every error names the exact field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CeremonyError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    top = _require(data, source, {"authorities": list},
                   {"services": list, "audit_key": dict, "description": str, "version": int})
    authorities = []
    names: set[str] = set()
    for i, item in enumerate(top["authorities"]):
        where = f"{source}: authorities[{i}]"
        d = _require(item, where, {"name": str, "profile": str, "key": dict, "subject": str,
                                   "validity_days": int}, {"parent": str})
        if d["name"] in names:
            raise CeremonyError(f"{where}.name: '{d['name']}' is declared twice")
        # A parent not declared here must already exist (checked when the ceremony runs):
        # that is how a later ceremony adds an issuing CA under the existing root.
        names.add(d["name"])
        authorities.append(AuthoritySpec(d["name"], d["profile"], _key(d["key"], f"{where}.key"),
                                         d["subject"], d["validity_days"], d.get("parent")))
    services = []
    for i, item in enumerate(top.get("services", [])):
        where = f"{source}: services[{i}]"
        d = _require(item, where, {"role": str, "ca": str, "profile": str, "key": dict,
                                   "subject": str}, {"validity_days": int})
        if d["role"] not in SERVICE_ROLES:
            raise CeremonyError(f"{where}.role: must be one of {', '.join(SERVICE_ROLES)}")
        services.append(ServiceSpec(d["role"], d["ca"], d["profile"], _key(d["key"],
                                    f"{where}.key"), d["subject"], d.get("validity_days")))
    audit_key = _key(top["audit_key"], f"{source}: audit_key") if "audit_key" in top else None
    labels = [a.key.label for a in authorities] + [s.key.label for s in services]
    if audit_key:
        labels.append(audit_key.label)
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise CeremonyError(f"{source}: key label(s) used twice: {', '.join(sorted(dupes))}")
    for i, a in enumerate(authorities):
        _check_profile(a.profile, a.key, f"{source}: authorities[{i}]")
    for i, s in enumerate(services):
        _check_profile(s.profile, s.key, f"{source}: services[{i}]")
    return CeremonySpec(tuple(authorities), tuple(services), audit_key,
                        top.get("description", ""), tuple(labels))


def _check_profile(profile_name: str, key: KeySpec, where: str) -> None:
    try:
        profile = get_profile(profile_name)
    except PolicyError as exc:
        raise CeremonyError(f"{where}.profile: {exc.message}") from None
    if not profile.allows_key_type(key.type.value):
        raise CeremonyError(
            f"{where}.key.type: profile {profile_name} does not allow {key.type.value} keys"
        )


def load_ceremony(path: Path) -> CeremonySpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CeremonyError(f"cannot read ceremony file {path}: {exc.strerror}") from None
    return parse_ceremony(text, path.name)


@dataclass(frozen=True)
class CeremonyResult:
    authorities: dict[str, IssuedCertificate]
    services: list[tuple[ServiceSpec, IssuedCertificate]]
    audit_key_uri: str | None


def preflight(ctx: CaContext, spec: CeremonySpec, key_uri: Callable[[str], str]) -> None:
    """Refuse before touching anything if the home or the key store already holds any of it."""
    with transaction(ctx.sessions) as session:
        existing = [a.name for a in spec.authorities
                    if session.query(Authority).filter_by(name=a.name).first() is not None]
        declared = {a.name for a in spec.authorities}
        outside = {a.parent for a in spec.authorities if a.parent and a.parent not in declared}
        outside |= {s.ca for s in spec.services if s.ca not in declared}
        missing = sorted(n for n in outside
                         if session.query(Authority).filter_by(name=n).first() is None)
    if missing:
        raise CeremonyError(f"ceremony refers to CA(s) that neither it nor the database "
                            f"declares: {', '.join(missing)}")
    if existing:
        raise AlreadyInitialised(
            f"already initialised: CA {', '.join(existing)} already exist(s); "
            "the ceremony changed nothing"
        )
    taken = [label for label in spec.labels if ctx.keyring.exists(key_uri(label))]
    if taken:
        raise AlreadyInitialised(
            f"key(s) {', '.join(taken)} already exist in the key store; the ceremony changed "
            "nothing"
        )


def run_ceremony(ctx: CaContext, spec: CeremonySpec, *, key_uri: Callable[[str], str],
                 actor: str, progress: Callable[[str], None] = lambda _m: None
                 ) -> CeremonyResult:
    try:
        preflight(ctx, spec, key_uri)
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action="ceremony.start",
                             object_type="ceremony", object_id=spec.description or "ceremony",
                             details={"error": exc.kind, "message": exc.message})
        raise
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action="ceremony.start", object_type="ceremony",
                           object_id=spec.description or "ceremony", outcome="success",
                           details={"authorities": [a.name for a in spec.authorities],
                                    "services": [f"{s.role}:{s.ca}" for s in spec.services]})
    issued: dict[str, IssuedCertificate] = {}
    for a in spec.authorities:
        progress(f"generating {a.key.type.value} key for CA '{a.name}'")
        signer = _generate(ctx, a.key, key_uri, actor, f"ca:{a.name}")
        progress(f"certifying CA '{a.name}'")
        issued[a.name] = _certify_authority(ctx, a, signer, actor)
    services = []
    for s in spec.services:
        progress(f"generating {s.key.type.value} key for the {s.role} of '{s.ca}'")
        signer = _generate(ctx, s.key, key_uri, actor, f"{s.role}:{s.ca}")
        services.append((s, certify_service(ctx, s, signer, actor)))
    audit_uri = None
    if spec.audit_key:
        progress("generating the audit key")
        audit_uri = _generate(ctx, spec.audit_key, key_uri, actor, "audit").key_uri
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action="ceremony.complete",
                           object_type="ceremony", object_id=spec.description or "ceremony",
                           outcome="success",
                           details={n: c.serial for n, c in issued.items()})
    return CeremonyResult(issued, services, audit_uri)


def _generate(ctx: CaContext, key: KeySpec, key_uri: Callable[[str], str], actor: str,
              purpose: str) -> Signer:
    uri = key_uri(key.label)
    signer = ctx.keyring.generate(uri, key.type)
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action="ceremony.generate-key",
                           object_type="key", object_id=uri, outcome="success",
                           details={"key_type": key.type.value, "purpose": purpose})
    return signer


def _subject(profile_name: str, subject: str) -> x509.Name:
    profile = get_profile(profile_name)
    return build_name(parse_subject(subject, profile.subject_rules))


def _certify_authority(ctx: CaContext, spec: AuthoritySpec, signer: Signer, actor: str
                       ) -> IssuedCertificate:
    profile = get_profile(spec.profile)
    check_key(signer.public_key(), profile)
    subject = _subject(spec.profile, spec.subject)
    if spec.validity_days > profile.validity_days:
        raise PolicyViolation(f"CA '{spec.name}': validity_days exceeds profile "
                              f"{profile.name}'s {profile.validity_days}")
    now = utcnow()
    if spec.parent is None:
        with transaction(ctx.sessions) as session:
            auth = Authority(name=spec.name, parent_id=None, profile=spec.profile, created_at=now)
            session.add(auth)
            session.flush()
            authority_id = auth.id
        issuer = Issuer(authority_id=authority_id, name=spec.name, generation_id=None,
                        subject=subject, ski=None,
                        public_key=signer.public_key(),  # type: ignore[arg-type]
                        not_after=None, signer=signer)
        self_signed = True
    else:
        with transaction(ctx.sessions) as session:
            issuer = load_issuer(session, ctx, spec.parent, now)
        self_signed = False
    plan = plan_for(profile, signer.public_key(), ctx.config.public_base_url, issuer.name,
                    generation=issuer.generation)
    cert = sign_and_record(
        ctx, issuer=issuer, profile=profile, plan=plan, subject=subject,
        public_key=signer.public_key(),  # type: ignore[arg-type]
        validity_days=spec.validity_days, requested_by=actor,
        subscriber_ref=f"ca:{spec.name}", self_signed=self_signed,
    )
    with transaction(ctx.sessions) as session:
        row = session.query(Certificate).filter_by(
            authority_id=issuer.authority_id, serial=cert.serial).one()
        if self_signed:
            authority_id = issuer.authority_id
        else:
            parent = session.query(Authority).filter_by(name=spec.parent).one()
            auth = Authority(name=spec.name, parent_id=parent.id, profile=spec.profile,
                             created_at=now)
            session.add(auth)
            session.flush()
            authority_id = auth.id
        session.add(Generation(
            authority_id=authority_id, number=1, key_uri=signer.key_uri, certificate_id=row.id,
            certificate_der=cert.der, not_before=cert.not_before, not_after=cert.not_after,
            created_at=now,
        ))
        audit.record_event(session, actor=actor, action="ca.create", object_type="ca",
                           object_id=spec.name, outcome="success",
                           details={"parent": spec.parent, "serial": cert.serial,
                                    "key_uri": signer.key_uri, "generation": 1})
    return cert


def certify_service(ctx: CaContext, spec: ServiceSpec, signer: Signer, actor: str, *,
                    generation: int | None = None) -> IssuedCertificate:
    """Certify an OCSP signer or TSA key under its CA and record it as that CA's service key.

    Also used to renew an OCSP signer before it expires (a new row; the newest one answers).
    ``generation`` names an older key generation of the CA: after a rollover each generation
    keeps a delegated OCSP signer of its own for the certificates it issued.
    """
    profile = get_profile(spec.profile)
    check_key(signer.public_key(), profile)
    with transaction(ctx.sessions) as session:
        issuer = load_issuer(session, ctx, spec.ca, utcnow(), generation=generation)
    plan = plan_for(profile, signer.public_key(), ctx.config.public_base_url, issuer.name,
                    generation=issuer.generation)
    cert = sign_and_record(
        ctx, issuer=issuer, profile=profile, plan=plan,
        subject=_subject(spec.profile, spec.subject),
        public_key=signer.public_key(),  # type: ignore[arg-type]
        validity_days=spec.validity_days or profile.validity_days, requested_by=actor,
        subscriber_ref=f"{spec.role}:{spec.ca}",
    )
    with transaction(ctx.sessions) as session:
        row = session.query(Certificate).filter_by(
            authority_id=issuer.authority_id, serial=cert.serial).one()
        session.add(ServiceKey(role=spec.role, authority_id=issuer.authority_id,
                               key_uri=signer.key_uri, certificate_id=row.id,
                               created_at=utcnow()))
        audit.record_event(session, actor=actor, action="ca.service-key", object_type="ca",
                           object_id=spec.ca, outcome="success",
                           details={"role": spec.role, "serial": cert.serial,
                                    "key_uri": signer.key_uri,
                                    "generation": issuer.generation})
        # OCSP responders pick a renewed signer up at once (ocsp/events.py).
        events.publish(session, {"type": "ca-keys", "ca": spec.ca,
                                 "generation": issuer.generation, "change": spec.role})
    return cert

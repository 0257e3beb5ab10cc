"""Renewal of the delegated OCSP signers (RFC 6960 §4.2.2.2).

A signer certificate carries id-pkix-ocsp-nocheck, so clients never check its revocation: it must
be short-lived and replaced before it expires. :func:`ensure_fresh` re-certifies a CA's signer with
a new key once less than a third of its validity remains; the new service-key row is the newest,
so every responder switches to it on its next metadata reload (≤ 30 s), and answers signed by the
old one stay valid until their nextUpdate (which never exceeds the old signer's notAfter).

After an issuing-CA key rollover every generation not yet retired has a signer of its own,
renewed under that generation: a client checks the responder certificate against the issuer of
the certificate it asked about. A retired generation's signer is left to expire.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ca import status as ca_status
from ca.ceremony import KeySpec, ServiceSpec, certify_service
from ca.context import CaContext
from ca.errors import UnknownCa
from core import audit
from core.db import transaction, utcnow
from hsm.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from ocsp.responder import SIGNER_ROLE

PROFILE = "ocsp-signer"


@dataclass(frozen=True)
class Renewal:
    ca: str
    old_serial: str
    new_serial: str
    key_uri: str
    not_after: dt.datetime
    generation: int = 1


def needs_renewal(record: ca_status.ServiceKeyRecord, now: dt.datetime) -> bool:
    """True once less than a third of the certificate's validity remains."""
    lifetime = record.not_after - record.not_before
    return record.not_after - now < lifetime / 3


def _new_key_uri(old: str, now: dt.datetime) -> str:
    """A fresh key name beside the old one: ``<old label>-r<UTC timestamp>``."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    if old.startswith("pkcs11:"):
        uri = parse_pkcs11_uri(old)
        base = (uri.object or "ocsp").split("-r2")[0]
        return Pkcs11Uri(token=uri.token, object=f"{base}-r{stamp}").format()
    base = old.split(":", 1)[1].split("-r2")[0]
    return f"file:{base}-r{stamp}"


def ensure_fresh(ctx: CaContext, *, actor: str = "system", force: bool = False,
                 ca: str | None = None, now: dt.datetime | None = None) -> list[Renewal]:
    """Renew every OCSP signer (of ``ca``, or of all CAs) that is due; returns what was renewed.

    Each renewal is audited (``ocsp.renew-signer``) on top of the key-generation and
    ``ca.service-key`` events that certification writes.
    """
    now = now or utcnow()
    with transaction(ctx.sessions) as session:
        names = [ca] if ca is not None else ca_status.authority_names(session)
        records = []
        for name in names:
            for gen in ca_status.generations(session, name, active_only=True):
                if gen.status != "good":
                    continue  # a compromised key certifies nothing more
                try:
                    records.append(ca_status.service_key(session, name, SIGNER_ROLE,
                                                         generation=gen.number))
                except UnknownCa:
                    continue
    renewed = []
    for record in records:
        if not force and not needs_renewal(record, now):
            continue
        old_signer = ctx.keyring.get(record.key_uri)
        uri = _new_key_uri(record.key_uri, now)
        signer = ctx.keyring.generate(uri, old_signer.key_type)
        with transaction(ctx.sessions) as session:
            audit.record_event(session, actor=actor, action="ocsp.generate-key",
                               object_type="key", object_id=uri, outcome="success",
                               details={"key_type": signer.key_type.value,
                                        "purpose": f"{SIGNER_ROLE}:{record.ca}"})
        subject = record.certificate().subject.rfc4514_string()
        spec = ServiceSpec(SIGNER_ROLE, record.ca, PROFILE, KeySpec(uri, signer.key_type),
                           subject)
        cert = certify_service(ctx, spec, signer, actor, generation=record.generation)
        with transaction(ctx.sessions) as session:
            audit.record_event(session, actor=actor, action="ocsp.renew-signer",
                               object_type="ca", object_id=record.ca, outcome="success",
                               details={"old_serial": record.serial, "new_serial": cert.serial,
                                        "key_uri": uri, "not_after": cert.not_after.isoformat(),
                                        "forced": force, "generation": record.generation})
        renewed.append(Renewal(record.ca, record.serial, cert.serial, uri, cert.not_after,
                               record.generation))
    return renewed

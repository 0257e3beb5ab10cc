"""The issuing side of an issuance: which CA, which key generation, and whether it may issue.

Issuer data that cannot change while a generation lives (names, keys, validity of every CA up to
the root) is cached on the CaContext; status, which revocation changes, is read in the
transaction that reserves the serial, so a revocation that committed first is always seen.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.context import CaContext
from ca.errors import IssuerUnavailable
from ca.models import Authority, Certificate, Generation
from core.db import transaction
from hsm.signer import Signer


@dataclass(frozen=True)
class ChainLink:
    """One CA certificate on the way to the root: its row (whose status can change) and
    validity (which cannot)."""

    ca: str
    certificate_id: int
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class Issuer:
    """The issuing side of one issuance: which CA, which generation, which key."""

    authority_id: int
    name: str
    generation_id: int | None
    subject: x509.Name
    ski: bytes | None
    public_key: CertificateIssuerPublicKeyTypes
    not_after: dt.datetime | None
    signer: Signer
    chain: tuple[ChainLink, ...] = ()
    # The generation's number: its CRL and caIssuers URLs (ca/plan.py) depend on it.
    generation: int = 1

    def check_usable(self, session: Session, now: dt.datetime) -> None:
        """Refuse if this CA or any above it is outside its validity, revoked or on hold.

        Validity comes from the (cached) chain; status is read fresh in the caller's
        transaction with one query, so a revocation that committed first is always seen.
        """
        self.check_validity(now)
        self.check_status(session)

    def check_validity(self, now: dt.datetime) -> None:
        for link in self.chain:
            if not (link.not_before <= now < link.not_after):
                raise IssuerUnavailable(
                    f"CA '{link.ca}' certificate is not valid now "
                    f"(valid {link.not_before:%Y-%m-%d} to {link.not_after:%Y-%m-%d})",
                    ca=link.ca,
                )

    def check_status(self, session: Session) -> None:
        if not self.chain:
            return
        ids = [link.certificate_id for link in self.chain]
        statuses = dict(session.execute(
            select(Certificate.id, Certificate.status).where(Certificate.id.in_(ids))
        ).all())
        for link in self.chain:
            status = statuses.get(link.certificate_id, "good")
            if status != "good":
                state = "revoked" if status == "revoked" else "suspended"
                raise IssuerUnavailable(f"CA '{link.ca}' is {state}", ca=link.ca)


# Issuer data that cannot change while a generation lives (names, keys, validity) is cached per
# process; status is read in every issuance's own transaction (Issuer.check_usable). A key
# rollover in this process empties the cache (invalidate_issuers); other processes pick the new
# generation up when their entry expires — until then they issue under the previous generation,
# which stays valid, and once that generation's certificate is revoked (key compromise) the
# status check refuses instead.
ISSUER_CACHE_SECONDS = 30.0


def load_issuer(session: Session, ctx: CaContext, name: str, now: dt.datetime, *,
                generation: int | None = None, signer: Signer | None = None) -> Issuer:
    """The newest generation of CA ``name`` (or generation number ``generation``), refused if
    it or any CA above it is unusable. ``signer`` is its key from a store this process's key
    ring does not hold (an offline root's token, brought out for one command): used as given
    and not cached; the caller checks that it is the CA's key."""
    if signer is not None:
        issuer = _read_issuer(session, ctx, name, generation, signer)
    else:
        issuer = cached_issuer(ctx, name, session, generation=generation)
    issuer.check_usable(session, now)
    return issuer


def issuer_with_key(session: Session, ctx: CaContext, name: str, generation: int | None,
                    signer: Signer) -> Issuer:
    """Generation ``generation`` (None: the newest) of CA ``name`` signing with ``signer``, a key
    from a store the key ring does not hold; not cached. No usability check: CRLs are signed
    for a generation even after its certificate was revoked."""
    return _read_issuer(session, ctx, name, generation, signer)


def _cache_key(name: str, generation: int | None) -> str:
    return name if generation is None else f"{name}\x00g{generation}"


def cached_issuer(ctx: CaContext, name: str, session: Session | None = None, *,
                  generation: int | None = None) -> Issuer:
    """Issuer data from the cache, read (in ``session`` or a transaction of its own) on a miss.

    ``generation`` None is the newest generation (the one that issues); a number names an
    older one, which still signs CRLs and OCSP signer certificates for what it issued.
    Callers must still run :meth:`Issuer.check_usable` in the transaction that reserves the
    serial: the cache holds nothing that revocation can change.
    """
    cache = ctx.issuer_cache
    key = _cache_key(name, generation)
    with ctx.lock:
        cached = cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    if session is None:
        with transaction(ctx.sessions) as own:
            issuer = _read_issuer(own, ctx, name, generation)
    else:
        issuer = _read_issuer(session, ctx, name, generation)
    with ctx.lock:
        cache[key] = (time.monotonic() + ISSUER_CACHE_SECONDS, issuer)
    return issuer


def invalidate_issuers(ctx: CaContext) -> None:
    """Forget every cached issuer of this process: after a rollover, retirement or compromise
    the next issuance, CRL or OCSP signer certificate reads the generations afresh."""
    with ctx.lock:
        ctx.issuer_cache.clear()


def _read_issuer(session: Session, ctx: CaContext, name: str, number: int | None,
                 signer: Signer | None = None) -> Issuer:
    from ca.store import authority_row, current_generation, generation_row

    auth = authority_row(session, name)
    gen = current_generation(session, auth) if number is None \
        else generation_row(session, auth, number)
    # Up to the root through the generations that actually signed each certificate.
    chain: list[ChainLink] = []
    walk: Authority | None = auth
    walk_gen: Generation = gen
    while walk is not None:
        chain.append(ChainLink(walk.name, walk_gen.certificate_id, walk_gen.not_before,
                               walk_gen.not_after))
        signed_by = session.get(Certificate, walk_gen.certificate_id)
        walk = session.get(Authority, walk.parent_id) if walk.parent_id else None
        if walk is not None:
            parent_gen = session.get(Generation, signed_by.generation_id) \
                if signed_by is not None and signed_by.generation_id is not None else None
            walk_gen = parent_gen or current_generation(session, walk)
    cert = x509.load_der_x509_certificate(gen.certificate_der)
    if signer is None:
        signer = ctx.keyring.get(gen.key_uri)
    return Issuer(
        authority_id=auth.id, name=auth.name, generation_id=gen.id, subject=cert.subject,
        ski=cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest,
        public_key=cert.public_key(),  # type: ignore[arg-type]
        not_after=gen.not_after, signer=signer, chain=tuple(chain), generation=gen.number,
    )

"""Delivery: an escrowed key wrapped for one token's transport key, and nothing else.

The server side of putting the encryption key into a USB key. The token made an unwrap-only
transport key pair and sent its public half (:mod:`hsm.kmc_unwrap`); the HSM unwraps the
escrow blob, re-wraps it for that transport key and forgets it (:mod:`hsm.escrow`); the token
unwraps it inside itself. The answer, a :class:`hsm.key_transport.WrappedKey`, is safe to send
and store: without the token's transport private key it is noise.

:func:`wrapped_for_token` is the *first* delivery, during enrollment, authorised by the RA's
one-time enrollment code (the caller's job): once per escrowed key. Every later copy — a new
USB key after a loss, a recovery officer's token — goes through :mod:`kmc.recovery` and its
two-person rule; this module refuses a second first delivery. Each release is audited with the
key's and the transport key's fingerprints.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select, update

from ca.context import CaContext
from ca.store import chain_der, find_certificate
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.key_transport import WrappedKey, load_transport_key, spki_sha256
from hsm.signer import Signer
from kmc import keys, models
from kmc.errors import EscrowNotFound, InvalidTransition, KmcError
from kmc.escrow import EscrowRecord, get_escrow_unchecked, record_of


def _public(record: EscrowRecord) -> rsa.RSAPublicKey:
    key = load_der_public_key(record.public_key_der)
    assert isinstance(key, rsa.RSAPublicKey)  # escrowed keys are RSA (hsm.escrow)
    return key


def wrap_escrowed(ctx: CaContext, record: EscrowRecord, transport: rsa.RSAPublicKey,
                  oaep_hash: str = "sha1") -> WrappedKey:
    """The HSM step alone (no state change, no audit): callers record the release."""
    if record.certificate_ca is None or record.certificate_serial is None:
        raise InvalidTransition(f"escrowed key {record.id} has no certificate yet "
                                f"(state {record.state}); it cannot be delivered",
                                state=record.state)
    with transaction(ctx.sessions) as session:
        row = session.get(models.Escrow, record.id)
        assert row is not None
        wrapped, mechanism = row.wrapped_key, row.wrap_mechanism
        cert = find_certificate(session, record.certificate_serial, record.certificate_ca)
        chain = tuple(chain_der(session, record.certificate_ca))
        master_row = session.get(models.MasterKey, record.master_key_id)
        assert master_row is not None  # a foreign key
        master = keys.record_of(master_row)
    if master.mechanism != mechanism:
        raise KmcError(f"escrowed key {record.id} is wrapped with {mechanism}, but its master "
                       f"key records {master.mechanism}")
    parts = keys.backend(ctx, master).wrap_for_transport(wrapped, _public(record), transport,
                                                         oaep_hash)
    return WrappedKey(
        escrow_id=record.id, key_type=record.key_type,
        transport_key_sha256=spki_sha256(transport), oaep_hash=parts.oaep_hash,
        wrapped_cek=parts.wrapped_cek, wrapped_key=parts.wrapped_key,
        public_key_der=record.public_key_der, certificate_der=cert.certificate_der,
        chain_der=chain)


def release_details(record: EscrowRecord, transport_sha256: str) -> dict[str, object]:
    return {"owner": record.owner_ref, "public_key_sha256": record.public_key_sha256,
            "transport_key_sha256": transport_sha256,
            "certificate": f"{record.certificate_ca}/{record.certificate_serial}"}


def wrapped_for_token(ctx: CaContext, subscriber_ref: str, transport_public_key: object, *,
                      actor: str = "enrollment") -> WrappedKey:
    """The first delivery of the key escrowed for ``subscriber_ref`` into a token.

    ``subscriber_ref`` is what the provider stored: ``ra-official:<id>/request:<id>`` (that
    request's key) or ``ra-official:<id>`` (the official's newest undelivered key). The caller
    has authenticated the token's side (the RA: the enrollment code of that request).
    ``transport_public_key`` is the token's transport key (PEM/DER SubjectPublicKeyInfo or a
    pyca RSA key). A key delivered once is refused (InvalidTransition, audited): further
    copies are recoveries, under the two-person rule.
    """
    transport = load_transport_key(transport_public_key)  # type: ignore[arg-type]
    transport_sha = spki_sha256(transport)
    with transaction(ctx.sessions) as session:
        rows = session.scalars(select(models.Escrow).where(
            (models.Escrow.subscriber_ref == subscriber_ref)
            | (models.Escrow.owner_ref == subscriber_ref))
            .order_by(models.Escrow.id.desc())).all()
        records = [record_of(r) for r in rows]
    waiting = [r for r in records if r.state == "escrowed"]
    if not waiting:
        if any(r.state == "delivered" for r in records):
            exc: GovpkiError = InvalidTransition(
                f"the encryption key of {subscriber_ref} has been delivered already; another "
                f"copy is a recovery (`govpki kmc recover-user`, two-person rule)",
                state="delivered")
            audit.record_refusal(ctx.sessions, actor=actor, action="kmc.deliver",
                                 object_type="kmc-escrow", object_id=str(records[0].id),
                                 details={"error": exc.kind, "message": exc.message,
                                          "transport_key_sha256": transport_sha})
            raise exc
        raise EscrowNotFound(f"no escrowed encryption key for {subscriber_ref}")
    record = waiting[0]
    try:
        wrapped = wrap_escrowed(ctx, record, transport)
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action="kmc.deliver",
                             object_type="kmc-escrow", object_id=str(record.id),
                             outcome="failure",
                             details={"error": exc.kind, "message": exc.message,
                                      "transport_key_sha256": transport_sha})
        raise
    with transaction(ctx.sessions) as session:
        # Claim the first delivery: two concurrent callers cannot both pass this update.
        claimed = session.execute(  # type: ignore[attr-defined]
            update(models.Escrow).where(models.Escrow.id == record.id,
                                        models.Escrow.state == "escrowed")
            .values(state="delivered", delivered_at=utcnow(),
                    deliveries=models.Escrow.deliveries + 1)).rowcount
        if claimed != 1:
            raise InvalidTransition(f"escrowed key {record.id} was delivered meanwhile",
                                    state="delivered")
        audit.record_event(session, actor=actor, action="kmc.deliver",
                           object_type="kmc-escrow", object_id=str(record.id),
                           outcome="success",
                           details={**release_details(record, transport_sha),
                                    "purpose": "enrollment"})
    return wrapped


def install_for_server(ctx: CaContext, escrow_id: int, key_uri: str, *, actor: str) -> Signer:
    """An organisation's escrowed exchange key, unwrapped onto the server HSM for good as a
    non-extractable decryption key at ``key_uri`` (for documents opened through the exchange's
    web pages). PKCS#11 master keys only: a file store cannot hold a key non-extractably."""
    record = get_escrow_unchecked(ctx, escrow_id)
    if record.owner_kind != "organisation":
        raise InvalidTransition(f"escrowed key {escrow_id} belongs to an official; only "
                                f"organisations' keys are held on the server", state=record.state)
    if record.state != "escrowed":
        raise InvalidTransition(f"escrowed key {escrow_id} is {record.state}; only an escrowed, "
                                f"undelivered key is installed", state=record.state)
    master = keys.master_key(ctx, record.master_key_id)
    backend = keys.backend(ctx, master)
    install = getattr(backend, "install", None)
    if install is None:
        raise KmcError(f"master key {master.key_uri} is not on an HSM: a file store cannot "
                       f"hold an organisation's key non-extractably")
    with transaction(ctx.sessions) as session:
        row = session.get(models.Escrow, escrow_id)
        assert row is not None
        wrapped = row.wrapped_key
    signer: Signer = install(wrapped, _public(record), key_uri)
    with transaction(ctx.sessions) as session:
        session.execute(update(models.Escrow).where(models.Escrow.id == escrow_id).values(
            state="delivered", delivered_at=utcnow(), deliveries=models.Escrow.deliveries + 1))
        audit.record_event(session, actor=actor, action="kmc.deliver",
                           object_type="kmc-escrow", object_id=str(escrow_id),
                           outcome="success",
                           details={"owner": record.owner_ref, "key_uri": key_uri,
                                    "public_key_sha256": record.public_key_sha256,
                                    "purpose": "server"})
    return signer

"""The KMC master key: created once (`govpki kmc init`), recorded, opened for every escrow.

Where it lives follows the server key store (DESIGN.md, "Real components"):

* PKCS#11 configured (production; SoftHSM2 in tests): a non-extractable AES-256 wrapping key
  generated on the HSM (``pkcs11:token=<store token>;object=kmc-master;type=secret-key``).
  It never leaves the HSM; escrow blobs are RFC 5649 AES-KWP under it.
* File store (the embedded default): there is no non-extractable key in software, so the
  honest equivalent is an RSA-3072 key pair in the file store (``file:kmc-master``,
  PBES2-encrypted PKCS#8 under the store's passphrase, like the CA's own file keys), and
  hybrid blobs (RSA-OAEP-SHA256 CEK + AES-KWP). docs/kmc.md says what that does not protect.

The record (URI, mechanism) is in ``kmc_master_key``; the runtime reads it from the database,
so no configuration key is needed and every escrow row names the master key that wrapped it.
The key operations themselves are :mod:`hsm.escrow`'s.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.context import CaContext
from core import audit
from core.config import Config
from core.db import transaction, utcnow
from hsm import escrow as hsm_escrow
from hsm.keystore import KeyRing
from hsm.pkcs11_uri import Pkcs11Uri
from kmc import models
from kmc.errors import KmcAlreadyInitialised, KmcNotInitialised

DEFAULT_LABEL = "kmc-master"


@dataclass(frozen=True)
class MasterKeyRecord:
    id: int
    key_uri: str
    mechanism: str
    created_by: str
    created_at: dt.datetime


def default_master_uri(config: Config) -> str:
    """The master key's URI on the configured server key store (PKCS#11 when configured)."""
    ks = config.keystore
    if ks.type == "pkcs11" or ks.pkcs11_module:
        return Pkcs11Uri(token=ks.token_label or None, object=DEFAULT_LABEL,
                         type="secret-key").format()
    return f"file:{DEFAULT_LABEL}"


def record_of(row: models.MasterKey) -> MasterKeyRecord:
    return MasterKeyRecord(row.id, row.key_uri, row.mechanism, row.created_by, row.created_at)


def active_master_row(session: Session) -> models.MasterKey:
    row = session.scalar(select(models.MasterKey).where(models.MasterKey.state == "active")
                         .order_by(models.MasterKey.id.desc()).limit(1))
    if row is None:
        raise KmcNotInitialised("the key management centre has no master key yet: run "
                                "`govpki kmc init`")
    return row


def active_master_key(ctx: CaContext) -> MasterKeyRecord:
    with transaction(ctx.sessions) as session:
        return record_of(active_master_row(session))


def master_key(ctx: CaContext, master_id: int) -> MasterKeyRecord:
    with transaction(ctx.sessions) as session:
        row = session.get(models.MasterKey, master_id)
        if row is None:
            raise KmcNotInitialised(f"master key {master_id} is not recorded")
        return record_of(row)


def init_master_key(ctx: CaContext, *, actor: str, key_uri: str | None = None
                    ) -> tuple[MasterKeyRecord, hsm_escrow.MasterKeyInfo]:
    """Create the master key in the server key store and record it (once).

    Refused when an active master key is recorded. The key is created before its row: if the
    database write then fails, a re-run stops at the key store's KeyExists naming the label,
    instead of silently making a second key.
    """
    uri = key_uri or default_master_uri(ctx.config)
    with transaction(ctx.sessions) as session:
        existing = session.scalar(select(models.MasterKey).where(
            models.MasterKey.state == "active"))
        if existing is not None:
            raise KmcAlreadyInitialised(f"the KMC master key {existing.key_uri} exists "
                                        f"(created {existing.created_at:%Y-%m-%d} by "
                                        f"{existing.created_by})")
    info = hsm_escrow.create_master_key(ctx.keyring, uri)
    with transaction(ctx.sessions) as session:
        row = models.MasterKey(key_uri=uri, mechanism=info.mechanism,
                               public_key_der=info.public_key_der, state="active",
                               created_by=actor, created_at=utcnow())
        session.add(row)
        session.flush()
        audit.record_event(session, actor=actor, action="kmc.key.create",
                           object_type="kmc-master-key", object_id=uri, outcome="success",
                           details={"mechanism": info.mechanism,
                                    "protection": info.protection})
        return record_of(row), info


_BACKENDS: weakref.WeakKeyDictionary[KeyRing, dict[str, hsm_escrow.EscrowBackend]] = \
    weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def backend(ctx: CaContext, master: MasterKeyRecord) -> hsm_escrow.EscrowBackend:
    """The escrow backend for ``master`` on this context's key ring (opened once, cached)."""
    with _BACKENDS_LOCK:
        per_ring = _BACKENDS.setdefault(ctx.keyring, {})
        found = per_ring.get(master.key_uri)
        if found is None:
            found = hsm_escrow.open_backend(ctx.keyring, master.key_uri, master.mechanism)
            per_ring[master.key_uri] = found
        return found

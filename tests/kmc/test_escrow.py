"""The KMC's keys: the master key stays in the HSM, escrow rows are useless without it, signing
keys are never escrowed, and no key material reaches the database, the audit log, logs or
error messages. SoftHSM2 facts that docs/kmc.md relies on are pinned here too."""

from __future__ import annotations

import base64
import logging
import os
import secrets

import pkcs11
import pytest
from asn1crypto.keys import PrivateKeyInfo
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_der_public_key
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11e
from sqlalchemy import func, inspect, select, text, update

from core.audit import AuditEvent
from core.db import transaction
from hsm.errors import HsmError, InvalidKeyUri, WrongPin
from hsm.escrow import MECH_AES_KWP, MECH_RSA_AES_KWP, EscrowIntegrityError, open_backend
from hsm.file_store import FileKeyStore
from hsm.key_transport import spki_der
from hsm.keystore import KeyRing
from hsm.pkcs11_lock import PKCS11_LOCK
from kmc import keys, models
from kmc.delivery import wrap_escrowed, wrapped_for_token
from kmc.errors import KmcAlreadyInitialised, SigningKeyNotEscrowable
from kmc.escrow import KeyOwner, escrow_key, get_escrow_unchecked
from tests.conftest import Pki
from tests.kmc.conftest import USB_PIN, master_uri
from tests.ra.conftest import unique

SUBJECT = "CN=李四,OU=秘书科,O=西宁市人民政府办公厅,L=西宁市,ST=青海省,C=CN"


def owner(org: str = "630100-BGT", path: str = "/630000/630100/630100-BGT/") -> KeyOwner:
    return KeyOwner("official", f"ra-official:{secrets.randbelow(10**9)}", org, path)


def escrow(pki: Pki, **kwargs: object):
    who = owner()
    return escrow_key(pki.ctx, who, ca="officials", profile="official-encryption",
                      subject=SUBJECT, subscriber_ref=f"{who.ref}/request:1", actor="test",
                      **kwargs)  # type: ignore[arg-type]


def stored_blob(pki: Pki, escrow_id: int) -> tuple[bytes, str]:
    with transaction(pki.ctx.sessions) as session:
        row = session.get(models.Escrow, escrow_id)
        return row.wrapped_key, row.wrap_mechanism


def hsm_session(pki: Pki):
    """The HSM store's own logged-in session (the test reaches past the code under test)."""
    store = pki.ctx.keyring.store_for("pkcs11:token=govpki-ca;object=x")
    return store._session()


# -- the master key ----------------------------------------------------------------------------


def test_master_key_never_leaves_the_hsm(kmc_pki) -> None:
    pki = kmc_pki
    master = keys.active_master_key(pki.ctx)
    assert master.key_uri == master_uri(pki)
    with pytest.raises(KmcAlreadyInitialised):
        keys.init_master_key(pki.ctx, actor="test")
    with transaction(pki.ctx.sessions) as session:
        created = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "kmc.key.create", AuditEvent.object_id == master.key_uri))
    assert created is not None
    if pki.keys == "file":
        assert master.mechanism == MECH_RSA_AES_KWP
        pem = (pki.home / "keys" / "kmc-master.p8.pem").read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        return
    assert master.mechanism == MECH_AES_KWP
    attributes = keys.backend(pki.ctx, master).master_attributes()  # type: ignore[attr-defined]
    assert attributes | {"CKA_SENSITIVE": True, "CKA_EXTRACTABLE": False,
                         "CKA_NEVER_EXTRACTABLE": True, "CKA_ALWAYS_SENSITIVE": True,
                         "CKA_LOCAL": True, "CKA_MODIFIABLE": False, "CKA_ENCRYPT": False,
                         "CKA_DECRYPT": False, "CKA_WRAP": True, "CKA_UNWRAP": True} \
        == attributes
    assert created.details_dict()["protection"]["CKA_EXTRACTABLE"] is False
    label = master.key_uri.split("object=")[1].split(";")[0]
    with PKCS11_LOCK:
        session = hsm_session(pki)
        [key] = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                          Attribute.LABEL: label}))
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]
        other = session.generate_key(P11KeyType.AES, 256, store=False,
                                     template={Attribute.WRAP: True})
        try:
            with pytest.raises(p11e.KeyUnextractable):
                other.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            with pytest.raises(p11e.PKCS11Error):
                key[Attribute.EXTRACTABLE] = True
            with pytest.raises(p11e.PKCS11Error):
                key[Attribute.DECRYPT] = True  # CKA_MODIFIABLE=false: no decryption oracle
        finally:
            other.destroy()


# -- escrow rows without the master key --------------------------------------------------------


def test_escrow_rows_are_useless_without_the_master_key(kmc_pki, tmp_path) -> None:
    pki = kmc_pki
    record = escrow(pki)
    assert record.state == "escrowed" and record.certificate_serial
    blob, mechanism = stored_blob(pki, record.id)
    public = load_der_public_key(record.public_key_der)
    assert isinstance(public, rsa.RSAPublicKey)
    master = keys.active_master_key(pki.ctx)

    if pki.keys == "softhsm":
        assert mechanism == MECH_AES_KWP
        for _ in range(5):  # any key other than the HSM's: the RFC 5649 integrity check fails
            with pytest.raises(InvalidUnwrap):
                aes_key_unwrap_with_padding(os.urandom(32), blob)
        with PKCS11_LOCK:  # another AES key in the same HSM cannot unwrap it either
            session = hsm_session(pki)
            other = session.generate_key(P11KeyType.AES, 256, store=False,
                                         template={Attribute.UNWRAP: True})
            try:
                with pytest.raises(p11e.PKCS11Error):
                    other.unwrap_key(ObjectClass.PRIVATE_KEY, P11KeyType.RSA, blob,
                                     mechanism=Mechanism.AES_KEY_WRAP_PAD,
                                     template={Attribute.TOKEN: False,
                                               Attribute.ENCRYPT: pkcs11.constants.DEFAULT,
                                               Attribute.VERIFY: pkcs11.constants.DEFAULT,
                                               Attribute.WRAP: pkcs11.constants.DEFAULT})
            finally:
                other.destroy()
        # The database alone, on a machine without the HSM: no store can even be opened.
        no_hsm = KeyRing([FileKeyStore(tmp_path / "keys", passphrase=b"x")])
        with pytest.raises(InvalidKeyUri, match="no key store for 'pkcs11:'"):
            open_backend(no_hsm, master.key_uri, mechanism)
    else:
        assert mechanism == MECH_RSA_AES_KWP
        stranger = rsa.generate_private_key(65537, 3072)
        with pytest.raises(ValueError):
            stranger.decrypt(blob[:384], padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                      hashes.SHA256(), None))
        for _ in range(5):
            with pytest.raises(InvalidUnwrap):
                aes_key_unwrap_with_padding(os.urandom(32), blob[384:])
        # The key file without its passphrase is no better.
        wrong = KeyRing([FileKeyStore(pki.home / "keys", passphrase=b"not the passphrase")])
        with pytest.raises(WrongPin):
            open_backend(wrong, master.key_uri, mechanism)

    # A blob swapped into another escrow's row is caught: the HSM checks the unwrapped
    # modulus against the public key the record names, and releases nothing.
    victim = escrow(pki)
    with transaction(pki.ctx.sessions) as session:
        session.execute(update(models.Escrow).where(models.Escrow.id == victim.id)
                        .values(wrapped_key=blob))
    transport = rsa.generate_private_key(65537, 2048).public_key()
    with pytest.raises(EscrowIntegrityError) as info:
        wrap_escrowed(pki.ctx, get_escrow_unchecked(pki.ctx, victim.id), transport)
    assert "does not unwrap" in info.value.message


def test_softhsm_wrap_mechanisms_are_as_documented(new_usb) -> None:
    """docs/kmc.md: SoftHSM2 2.6's CKM_AES_KEY_WRAP_PAD is RFC 5649 over the PKCS#8 zero-padded
    to 8 bytes; it has neither CKM_AES_KEY_WRAP_KWP nor CKM_RSA_AES_KEY_WRAP, and OAEP only
    with SHA-1. If a SoftHSM2 upgrade changes any of this, the documentation must too."""
    usb = new_usb("probe")
    with PKCS11_LOCK:
        lib = pkcs11.lib(os.path.realpath(usb.module))
        token = lib.get_token(token_label=usb.label)
        mechanisms = {int(m) for m in token.slot.get_mechanisms()}
        assert int(Mechanism.AES_KEY_WRAP_PAD) in mechanisms
        assert int(Mechanism.AES_KEY_WRAP_KWP) not in mechanisms
        assert 0x1054 not in mechanisms  # CKM_RSA_AES_KEY_WRAP
        session = token.open(rw=True, user_pin=USB_PIN)
        try:
            kek_value = os.urandom(32)
            kek = session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: P11KeyType.AES,
                Attribute.VALUE: kek_value, Attribute.TOKEN: False, Attribute.WRAP: True,
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
            public, private = session.generate_keypair(
                P11KeyType.RSA, 2048, store=False,
                private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True})
            blob = bytes(kek.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD))
            unwrapped = aes_key_unwrap_with_padding(kek_value, blob)  # RFC 5649
            info = PrivateKeyInfo.load(unwrapped)
            der = info.dump()
            assert unwrapped.startswith(der) and set(unwrapped[len(der):]) <= {0}
            assert len(unwrapped) % 8 == 0 and len(unwrapped) - len(der) < 8
            assert info["private_key"].parsed["modulus"].native == int.from_bytes(
                bytes(public[Attribute.MODULUS]), "big")
            transport = session.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: P11KeyType.RSA,
                Attribute.TOKEN: False, Attribute.WRAP: True,
                Attribute.MODULUS: public[Attribute.MODULUS],
                Attribute.PUBLIC_EXPONENT: public[Attribute.PUBLIC_EXPONENT]})
            cek = session.generate_key(P11KeyType.AES, 256, store=False,
                                       template={Attribute.EXTRACTABLE: True})
            with pytest.raises(p11e.ArgumentsBad):
                transport.wrap_key(cek, mechanism=Mechanism.RSA_PKCS_OAEP,
                                   mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, None))
            transport.wrap_key(cek, mechanism=Mechanism.RSA_PKCS_OAEP,
                               mechanism_param=(Mechanism.SHA_1, pkcs11.MGF.SHA1, None))
        finally:
            session.close()


# -- signing keys ------------------------------------------------------------------------------


def test_a_signing_key_is_never_escrowed(kmc_file_pki) -> None:
    pki = kmc_file_pki
    with transaction(pki.ctx.sessions) as session:
        rows_before = session.scalar(select(func.count()).select_from(models.Escrow))
    for profile in ("official-signing", "department-seal", "issuing-ca-officials"):
        who = owner()
        with pytest.raises(SigningKeyNotEscrowable, match="never escrowed"):
            escrow_key(pki.ctx, who, ca="officials", profile=profile, subject=SUBJECT,
                       subscriber_ref=f"{who.ref}/request:1", actor="signing-tester",
                       key_type="rsa-2048")
        with transaction(pki.ctx.sessions) as session:
            event = session.scalar(select(AuditEvent).where(
                AuditEvent.action == "kmc.escrow", AuditEvent.object_id == who.ref))
        assert event is not None and event.outcome == "refused"
        assert event.details_dict()["error"] == "kmc-signing-key-refused"
    with transaction(pki.ctx.sessions) as session:
        assert session.scalar(select(func.count()).select_from(models.Escrow)) == rows_before


# -- no key material anywhere ------------------------------------------------------------------


def _needles(private_pkcs8: bytes) -> list[bytes]:
    key = PrivateKeyInfo.load(private_pkcs8)["private_key"].parsed
    numbers = [key[name].native for name in ("private_exponent", "prime1", "prime2",
                                             "exponent1", "exponent2", "coefficient")]
    raw = [n.to_bytes((n.bit_length() + 7) // 8, "big") for n in numbers]
    der = PrivateKeyInfo.load(private_pkcs8).dump()
    texts = [der.hex(), der.hex().upper(), base64.b64encode(der).decode()]
    texts += [r.hex() for r in raw] + [base64.b64encode(r).decode() for r in raw]
    # 32-byte windows of each secret: also catches a value stored truncated or framed.
    windows = [r[i:i + 32] for r in raw for i in (0, len(r) // 2)]
    return [der, *raw, *windows, *(t.encode() for t in texts), *(t[:64].encode() for t in texts)]


def test_no_key_material_in_the_database_audit_log_logs_or_errors(kmc_pki, caplog) -> None:
    """A software transport key stands in for a token so the test learns the escrowed key,
    then every row of every table, every audit detail, every log record and the errors raised
    on the way are searched for it."""
    pki = kmc_pki
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    record = escrow(pki)
    transport = rsa.generate_private_key(65537, 2048)
    wrapped = wrapped_for_token(pki.ctx, record.subscriber_ref, transport.public_key(),
                                actor="scan-test")
    for attempt in (lambda: wrapped_for_token(pki.ctx, record.subscriber_ref,
                                              transport.public_key()),
                    lambda: wrap_escrowed(pki.ctx, record.__class__(
                        **{**record.__dict__, "public_key_der": spki_der(
                            transport.public_key())}), transport.public_key())):
        try:
            attempt()
        except HsmError as exc:
            errors.append(f"{exc.kind}: {exc.message} {exc!r} {exc.details}")
        except Exception as exc:  # KmcError and friends
            errors.append(f"{exc!r} {getattr(exc, 'details', '')}")
    assert len(errors) == 2

    sha1 = hashes.SHA1()  # noqa: S303 (the envelope's OAEP hash, SoftHSM2's only one)
    cek = transport.decrypt(wrapped.wrapped_cek, padding.OAEP(padding.MGF1(sha1), sha1, None))
    pkcs8 = aes_key_unwrap_with_padding(cek, wrapped.wrapped_key)
    der = PrivateKeyInfo.load(pkcs8).dump()  # (SoftHSM2 leaves ≤ 7 zero bytes of padding)
    private = load_der_private_key(der, None)  # the real key: it matches the certified one
    assert isinstance(private, rsa.RSAPrivateKey)
    assert spki_der(private.public_key()) == record.public_key_der
    needles = _needles(der)
    assert all(n in der or n.decode(errors="ignore") for n in needles)  # the search can hit
    assert sum(n in der for n in needles) >= 7

    haystacks: list[bytes] = []
    with pki.ctx.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        haystacks.append(bytes(value))
                    elif value is not None:
                        haystacks.append(str(value).encode())
    haystacks += [r.getMessage().encode() for r in caplog.records]
    haystacks += [e.encode() for e in errors]
    assert len(haystacks) > 100
    for haystack in haystacks:
        for needle in needles:
            assert needle not in haystack, "key material found in storage, logs or errors"
    with transaction(pki.ctx.sessions) as session:
        delivered = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "kmc.deliver", AuditEvent.object_id == str(record.id)))
    assert delivered is not None and delivered.actor == "scan-test"
    assert set(delivered.details_dict()) == {"owner", "public_key_sha256", "certificate",
                                             "transport_key_sha256", "purpose"}


# -- organisations' keys on the server HSM -----------------------------------------------------


def test_an_organisation_key_is_installed_on_the_hsm_non_extractable(kmc_pki) -> None:
    from kmc.delivery import install_for_server
    from kmc.errors import KmcError

    pki = kmc_pki
    code = unique("ORG")
    who = KeyOwner("organisation", f"ra-org:{code}", "630000-CZT", "/630000/630000-CZT/")
    record = escrow_key(pki.ctx, who, ca="officials", profile="org-encryption",
                        subject="CN=青海省财政厅,O=青海省财政厅,ST=青海省,C=CN",
                        subscriber_ref=who.ref, actor="test")
    if pki.keys == "file":
        with pytest.raises(KmcError, match="non-extractably"):
            install_for_server(pki.ctx, record.id, "file:org-x", actor="test")
        return
    uri = f"pkcs11:token=govpki-ca;object={pki.home.name}-{code}"
    signer = install_for_server(pki.ctx, record.id, uri, actor="test")
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert signer.decrypt(public.encrypt(b"session key", padding.PKCS1v15()),
                          padding.PKCS1v15()) == b"session key"
    attributes = signer.key_attributes()  # type: ignore[attr-defined]
    assert attributes["CKA_EXTRACTABLE"] is False and attributes["CKA_SENSITIVE"] is True
    assert attributes["CKA_SIGN"] is False
    assert get_escrow_unchecked(pki.ctx, record.id).state == "delivered"

"""Property tests: whatever bytes arrive, the CMS code answers with a verdict or a typed
CmsError — never another exception — and a verdict of "valid" only ever vouches for exactly
what was signed (content, signed attributes, signer)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signing.cms import sign_cms, tsa_timestamper, verify_cms
from signing.cms_envelope import decrypt_cms, encrypt_cms
from signing.cms_errors import CmsError
from signing.cms_receipt import make_receipt_request, sign_receipt, verify_receipt
from signing.tsa import TimeStampAuthority
from tests.signing.cms.conftest import CmsPki

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DATA = "青海省人民政府办公厅文件\n".encode() * 20


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, int]]:
    """1-4 edits: set a byte, insert a byte, or cut the tail."""
    count = draw(st.integers(1, 4))
    return [(draw(st.sampled_from(["set", "set", "set", "insert", "truncate"])),
             draw(st.integers(0, size - 1)), draw(st.integers(0, 255)))
            for _ in range(count)]


def apply(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, index, value in edits:
        index = min(index, len(out) - 1)
        if kind == "set":
            out[index] = value if value != out[index] else value ^ 0xFF
        elif kind == "insert":
            out.insert(index, value)
        else:
            del out[index:]
        if not out:
            break
    return bytes(out)


@pytest.fixture(scope="module")
def signatures(cms_pki: CmsPki, file_tsa: TimeStampAuthority) -> dict[str, bytes]:
    from ca.store import chain_der
    from core.db import transaction

    with transaction(cms_pki.pki.ctx.sessions) as session:
        devices = chain_der(session, "devices")[0]
    return {
        "attached-ec": sign_cms(DATA, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain,
                                detached=False),
        "detached-rsa-timestamped": sign_cms(
            DATA, cms_pki.rsa.signer, cms_pki.rsa.certificate, [*cms_pki.chain, devices],
            timestamp=tsa_timestamper(file_tsa.respond)),
    }


def reference(signature: bytes, cms_pki: CmsPki) -> tuple[object, ...]:
    verdict = verify_cms(signature, DATA, trust_roots=cms_pki.root)
    assert verdict.valid, verdict.reasons
    s = verdict.signers[0]
    return verdict.content, s.certificate, dict(s.attributes), s.timestamp


@pytest.mark.parametrize("which", ["attached-ec", "detached-rsa-timestamped"])
def test_mutated_signatures_are_invalid_or_refused(cms_pki: CmsPki,
                                                   signatures: dict[str, bytes],
                                                   which: str) -> None:
    original = signatures[which]
    expected = reference(original, cms_pki)

    @SETTINGS
    @given(edits=mutations(len(original)))
    def check(edits: list[tuple[str, int, int]]) -> None:
        mutated = apply(original, edits)
        try:
            verdict = verify_cms(mutated, DATA, trust_roots=cms_pki.root)
        except CmsError:
            return
        if verdict.valid:
            # Only unauthenticated, unused bytes can have changed (e.g. the SignedData
            # version or digestAlgorithms set): what the verdict vouches for is the original.
            s = verdict.signers[0]
            assert (verdict.content, s.certificate, dict(s.attributes)) == expected[:3]
        else:
            assert verdict.reasons

    check()


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(cms_pki: CmsPki, blob: bytes) -> None:
    try:
        verdict = verify_cms(blob, DATA, trust_roots=cms_pki.root)
    except CmsError:
        return
    assert not verdict.valid


def test_mutated_envelopes_decrypt_to_the_original_or_fail(cms_pki: CmsPki) -> None:
    envelope = encrypt_cms(DATA, [cms_pki.org.certificate], content_encryption="aes256-gcm")

    @SETTINGS
    @given(edits=mutations(len(envelope)))
    def check(edits: list[tuple[str, int, int]]) -> None:
        try:
            plaintext = decrypt_cms(apply(envelope, edits), cms_pki.org.signer,
                                    cms_pki.org.certificate)
        except CmsError:
            return
        assert plaintext == DATA  # AES-GCM: anything else is refused

    check()


def test_mutated_cbc_envelopes_never_crash(cms_pki: CmsPki) -> None:
    envelope = encrypt_cms(DATA, [cms_pki.org.certificate], key_transport="rsaes-pkcs1v15")

    @SETTINGS
    @given(edits=mutations(len(envelope)))
    def check(edits: list[tuple[str, int, int]]) -> None:
        try:
            decrypt_cms(apply(envelope, edits), cms_pki.org.signer)
        except CmsError:
            pass

    check()


def test_mutated_receipts_are_invalid_or_refused(cms_pki: CmsPki) -> None:
    message = sign_cms(DATA, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain,
                       detached=False,
                       signed_attributes=[make_receipt_request(["hub@gov.qh"],
                                                               content_identifier=b"id-1")])
    receipt = sign_receipt(message, cms_pki.rsa.signer, cms_pki.rsa.certificate, cms_pki.chain)

    @SETTINGS
    @given(edits=mutations(len(receipt)))
    def check(edits: list[tuple[str, int, int]]) -> None:
        try:
            verdict = verify_receipt(apply(receipt, edits), message, trust_roots=cms_pki.root)
        except CmsError:
            return
        if verdict.valid:
            assert verdict.content_identifier == b"id-1"
            assert verdict.signer_certificate == cms_pki.rsa.certificate

    check()

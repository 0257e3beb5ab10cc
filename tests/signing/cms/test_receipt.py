"""RFC 2634 signed receipts: `openssl cms -verify_receipt RECEIPT -in ORIGINAL` accepts ours,
refuses ours against another message, and openssl's receipts and receipt requests work with
ours in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.x509.oid import NameOID

from signing.cms import sign_cms
from signing.cms_errors import ReceiptError
from signing.cms_receipt import (
    make_receipt_request,
    receipt_request_of,
    sign_receipt,
    verify_receipt,
)
from tests.signing.cms.conftest import CmsPki, Party
from tests.signing.cms.helpers import flip, openssl

MESSAGE_ID = b"QH-2025-000123"
HUB = "https://exchange.gov.qh/receipts"


def original(cms_pki: CmsPki, sender: Party, data: bytes, *, detached: bool) -> bytes:
    request = make_receipt_request([HUB, "bangongting@青海.gov.cn"], content_identifier=MESSAGE_ID)
    return sign_cms(data, sender.signer, sender.certificate, cms_pki.chain, detached=detached,
                    signed_attributes=[request])


def openssl_verify_receipt(receipt: bytes, original_der: bytes, cms_pki: CmsPki,
                           directory: Path, content: bytes | None = None) -> int:
    rct = directory / "receipt.der"
    rct.write_bytes(receipt)
    orig = directory / "original.der"
    orig.write_bytes(original_der)
    argv: list[str | Path] = ["cms", "-verify_receipt", rct, "-rctform", "DER", "-in", orig,
                              "-inform", "DER", "-CAfile", cms_pki.root_pem, "-binary"]
    if content is not None:
        data = directory / "content.bin"
        data.write_bytes(content)
        argv += ["-content", data]
    result = openssl(*argv)
    return result.returncode


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
@pytest.mark.parametrize(("sender", "receiver"), [("ec", "rsa"), ("rsa", "ec")])
def test_openssl_accepts_our_receipts(cms_pki: CmsPki, tmp_path: Path, detached: bool,
                                      sender: str, receiver: str) -> None:
    data = "公文正文".encode() * 100
    message = original(cms_pki, getattr(cms_pki, sender), data, detached=detached)
    who = getattr(cms_pki, receiver)
    receipt = sign_receipt(message, who.signer, who.certificate, cms_pki.chain)
    assert openssl_verify_receipt(receipt, message, cms_pki, tmp_path,
                                  data if detached else None) == 0
    verdict = verify_receipt(receipt, message, trust_roots=cms_pki.root)
    assert verdict.valid, verdict.reasons
    assert verdict.content_identifier == MESSAGE_ID
    assert verdict.signer_certificate == who.certificate
    assert verdict.as_dict()["content_identifier"] == MESSAGE_ID.hex()


def test_receipt_for_another_message_is_refused(cms_pki: CmsPki, tmp_path: Path) -> None:
    first = original(cms_pki, cms_pki.ec, b"first document", detached=False)
    second = original(cms_pki, cms_pki.ec, b"second document", detached=False)
    receipt = sign_receipt(first, cms_pki.rsa.signer, cms_pki.rsa.certificate, cms_pki.chain)
    assert openssl_verify_receipt(receipt, second, cms_pki, tmp_path) != 0
    verdict = verify_receipt(receipt, second, trust_roots=cms_pki.root)
    assert not verdict.valid
    assert any("answers another message" in r for r in verdict.reasons)


def test_changed_receipt_is_invalid(cms_pki: CmsPki) -> None:
    message = original(cms_pki, cms_pki.ec, b"doc", detached=False)
    receipt = sign_receipt(message, cms_pki.rsa.signer, cms_pki.rsa.certificate,
                           cms_pki.chain)
    content = cms.ContentInfo.load(receipt)["content"]["encap_content_info"]["content"]
    at = receipt.index(bytes(content)) + 5
    verdict = verify_receipt(flip(receipt, at), message, trust_roots=cms_pki.root)
    assert not verdict.valid


def test_openssl_receipt_request_and_receipt(cms_pki: CmsPki, tmp_path: Path) -> None:
    """openssl asks for a receipt, we sign it, openssl accepts; openssl signs a receipt for our
    request, we accept it."""
    data = tmp_path / "doc.txt"
    data.write_bytes(b"request from openssl")
    theirs = tmp_path / "theirs.der"
    made = openssl("cms", "-sign", "-binary", "-nodetach", "-in", data, "-signer",
                   cms_pki.ec.cert_pem, "-inkey", cms_pki.ec.plain_key_pem, "-certfile",
                   cms_pki.chain_pem, "-outform", "DER", "-out", theirs,
                   "-receipt_request_to", "hub@gov.qh", "-receipt_request_all")
    assert made.returncode == 0, made.stderr.decode()
    request = receipt_request_of(theirs.read_bytes())
    assert request is not None and request.receipts_to == ("hub@gov.qh",)
    assert request.receipts_from == "all" and len(request.content_identifier) == 32
    ours = sign_receipt(theirs.read_bytes(), cms_pki.rsa.signer, cms_pki.rsa.certificate,
                        cms_pki.chain)
    assert openssl_verify_receipt(ours, theirs.read_bytes(), cms_pki, tmp_path) == 0

    message = original(cms_pki, cms_pki.ec, b"request from govpki", detached=False)
    mine = tmp_path / "mine.der"
    mine.write_bytes(message)
    their_receipt = tmp_path / "their-receipt.der"
    made = openssl("cms", "-sign_receipt", "-in", mine, "-inform", "DER", "-signer",
                   cms_pki.rsa.cert_pem, "-inkey", cms_pki.rsa.plain_key_pem, "-certfile",
                   cms_pki.chain_pem, "-CAfile", cms_pki.root_pem, "-outform", "DER",
                   "-out", their_receipt)
    assert made.returncode == 0, made.stderr.decode()
    verdict = verify_receipt(their_receipt.read_bytes(), message, trust_roots=cms_pki.root)
    assert verdict.valid, verdict.reasons
    assert verdict.content_identifier == MESSAGE_ID


def test_request_contents() -> None:
    directory = x509.DirectoryName(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "青海省人民政府办公厅")]))
    attribute = make_receipt_request(["a@gov.qh", directory], receipts_from="first-tier")
    assert attribute["type"].dotted == "1.2.840.113549.1.9.16.2.1"
    with pytest.raises(ValueError, match="neither an e-mail"):
        make_receipt_request(["青海省"])
    with pytest.raises(ValueError, match="must be ASCII"):
        make_receipt_request(["办公厅@gov.qh"])
    with pytest.raises(ValueError):
        make_receipt_request([])
    with pytest.raises(ValueError):
        make_receipt_request(["a@gov.qh"], content_identifier=b"")
    listed = make_receipt_request(["a@gov.qh"], receipts_from=["b@gov.qh", HUB])
    assert listed["values"][0].dump()


def test_receipt_refusals(cms_pki: CmsPki) -> None:
    unrequested = sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    with pytest.raises(ReceiptError, match="requests no receipt"):
        sign_receipt(unrequested, cms_pki.rsa.signer, cms_pki.rsa.certificate)
    message = original(cms_pki, cms_pki.ec, b"doc", detached=False)
    receipt = sign_receipt(message, cms_pki.rsa.signer, cms_pki.rsa.certificate)
    with pytest.raises(ReceiptError, match="itself a receipt"):
        sign_receipt(receipt, cms_pki.ec.signer, cms_pki.ec.certificate)
    # A forged original (signature value changed) gets no receipt (RFC 2634 §2.3).
    si = cms.ContentInfo.load(message)["content"]["signer_infos"][0]
    value = si["signature"].native
    forged = flip(message, message.index(value) + len(value) - 3)
    with pytest.raises(ReceiptError, match="does not verify"):
        sign_receipt(forged, cms_pki.rsa.signer, cms_pki.rsa.certificate)
    assert receipt_request_of(unrequested) is None


def test_receipt_list_names_who_may_answer(cms_pki: CmsPki) -> None:
    receiver = x509.DirectoryName(cms_pki.rsa.certificate.subject)
    someone_else = x509.DirectoryName(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "青海省教育厅")]))
    for allowed, names in ((True, [receiver]), (False, [someone_else, "x@gov.qh"])):
        message = sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain,
                           detached=False, signed_attributes=[make_receipt_request(
                               [HUB], content_identifier=MESSAGE_ID, receipts_from=names)])
        if allowed:
            receipt = sign_receipt(message, cms_pki.rsa.signer, cms_pki.rsa.certificate)
            assert verify_receipt(receipt, message, trust_roots=cms_pki.root,
                                  ).content_identifier == MESSAGE_ID
        else:
            with pytest.raises(ReceiptError, match="requests receipts only from"):
                sign_receipt(message, cms_pki.rsa.signer, cms_pki.rsa.certificate)


def test_differing_requests_of_two_signers_get_no_receipt(cms_pki: CmsPki) -> None:
    """RFC 2634 §2.3: several signers' receipt requests must be identical."""
    first = original(cms_pki, cms_pki.ec, b"doc", detached=False)
    second = sign_cms(b"doc", cms_pki.rsa.signer, cms_pki.rsa.certificate, cms_pki.chain,
                      detached=False, signed_attributes=[make_receipt_request(
                          [HUB], content_identifier=b"another id")])
    merged = cms.ContentInfo.load(first)
    other = cms.ContentInfo.load(second)["content"]
    sd = merged["content"]
    sd["signer_infos"] = [*sd["signer_infos"], *other["signer_infos"]]
    sd["certificates"] = [*sd["certificates"], *other["certificates"]]
    two_signers = merged.dump(force=True)
    from signing.cms import verify_cms

    assert verify_cms(two_signers, trust_roots=cms_pki.root).valid
    with pytest.raises(ReceiptError, match="different receipts"):
        sign_receipt(two_signers, cms_pki.org.signer, cms_pki.ec.certificate)

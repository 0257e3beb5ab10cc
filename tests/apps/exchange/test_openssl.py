"""The package and its receipts as an independent CMS implementation sees them (OpenSSL 3):
the header verifies with `openssl cms -verify`, the body opens with `openssl cms -decrypt`
and the recipient's file key, and every receipt passes `openssl cms -verify_receipt`."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization

from apps.exchange import asn1, org_keys, service
from apps.exchange.package import parse_package
from apps.exchange.policy import get_policy
from tests.apps.exchange.conftest import XINING, clerks, request
from tests.apps.exchange.helpers import openssl, root_pem, verify_receipt


def test_openssl_reads_header_body_and_receipts(exchange_file_pki, tmp_path) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    req = request()
    sent = service.send(pki.ctx, team.province, req)
    fetched = service.fetch(pki.ctx, team.xining, sent.message_id)
    parsed = parse_package(fetched.package, get_policy())
    root = root_pem(pki, tmp_path)

    header = tmp_path / "header.der"
    header.write_bytes(parsed.signed_header)
    content = tmp_path / "header-content.der"
    verified = openssl("cms", "-verify", "-inform", "DER", "-in", header, "-CAfile", root,
                       "-binary", "-out", content)
    assert verified.returncode == 0, verified.stderr
    assert content.read_bytes() == parsed.header.to_der()

    [key] = [k for k in org_keys.list_keys(pki.ctx, XINING)
             if k.purpose == "encryption" and k.key_uri and k.key_uri.startswith("file:")][-1:]
    private = pki.ctx.keyring.get(key.key_uri).as_private_key()
    key_pem = tmp_path / "xining.key.pem"
    key_pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    [(_decryptor, certificate)] = org_keys.decryptors(pki.ctx, XINING)[:1]
    cert_pem = tmp_path / "xining.pem"
    cert_pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    envelope = tmp_path / "body.der"
    envelope.write_bytes(parsed.envelope)
    plain = tmp_path / "content.der"
    decrypted = openssl("cms", "-decrypt", "-inform", "DER", "-in", envelope, "-recip", cert_pem,
                        "-inkey", key_pem, "-binary", "-out", plain)
    assert decrypted.returncode == 0, decrypted.stderr
    assert hashlib.sha256(plain.read_bytes()).digest() == parsed.header.content_digest
    document = asn1.DocumentContent.load(plain.read_bytes()).native
    assert document["body"]["content"] == req.body.content
    assert document["metadata"]["document_number"] == req.number

    service.open_document(pki.ctx, team.xining, sent.message_id)
    service.receipt(pki.ctx, team.xining, sent.message_id, "returned", reason="附件缺页，请补发")
    for record in service.receipts(pki.ctx, team.province, sent.message_id):
        rct = tmp_path / f"{record.kind}.rct.der"
        rct.write_bytes(record.ess_receipt)
        checked = verify_receipt(rct, header, root)
        assert checked.returncode == 0, (record.kind, checked.stderr)
        statement = tmp_path / f"{record.kind}.statement.der"
        statement.write_bytes(record.statement)
        assert openssl("cms", "-verify", "-inform", "DER", "-in", statement, "-CAfile", root,
                       "-binary", "-out", tmp_path / "s.der").returncode == 0
    other = service.send(pki.ctx, team.province, request())
    other_header = tmp_path / "other.der"
    other_header.write_bytes(parse_package(
        service.fetch(pki.ctx, team.xining, other.message_id).package, get_policy()).signed_header)
    assert verify_receipt(tmp_path / "returned.rct.der", other_header, root).returncode != 0
    status = service.status(pki.ctx, team.province, sent.message_id)
    assert status.deliveries[0].business_state == "returned"
    assert status.deliveries[0].return_reason == "附件缺页，请补发"

"""ID-token keys live in the configured key store: on the PKCS#11 token when there is one."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from apps.sso import keys
from tests.conftest import _get_pki


@pytest.mark.hsm
def test_token_key_on_softhsm_signs_es256_through_the_signer(request) -> None:
    pki = _get_pki(request, "sqlite", "softhsm")
    record = keys.rotate(pki.ctx, actor="test")
    assert record.key_uri.startswith("pkcs11:")  # not a key in a file
    token_keys = keys.TokenKeys(pki.ctx)
    token = token_keys.sign({"iss": "x", "sub": "y"})
    decoded = jwt.decode(token, KeySet.import_key_set(token_keys.jwks()), algorithms=["ES256"])
    assert decoded.header["kid"] == record.kid and decoded.claims["sub"] == "y"
    assert len(token.split(".")[2]) == 86  # 64 bytes r||s, base64url: raw, not DER


def test_file_installation_uses_a_file_key(file_pki) -> None:
    record = keys.rotate(file_pki.ctx, actor="test")
    assert record.key_uri.startswith("file:sso-")

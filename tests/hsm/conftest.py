"""SoftHSM2 fixtures for the key store tests: tokens in a temporary directory, keys made once.

The token's PIN reaches the store the way production's does, through an environment variable
(:data:`PIN_ENV`), set for the session here because pytest's monkeypatch is function-scoped.
Every key type is generated once per session (RSA-4096 is the slow one) and shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hsm.algorithms import KeyType
from hsm.pkcs11_store import Pkcs11KeyStore, Pkcs11Signer
from hsm.pkcs11_uri import Pkcs11Uri
from tests import softhsm

TEST_PIN = "hsm-test-user-pin-8412"
TEST_SO_PIN = "hsm-test-so-pin-5120"
MAIN_LABEL = "govpki-hsm-test"
# A token nobody logs in to for long: wrong-PIN tests need C_Login to really run, which it
# does not once this process is logged in to a token (login is per application).
SPARE_LABEL = "govpki-hsm-spare"
PIN_ENV = "GOVPKI_TEST_HSM_PIN"


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    spare_label: str
    pin: str
    so_pin: str
    pin_env: str

    def key_uri(self, label: str) -> str:
        return Pkcs11Uri(token=self.label, object=label).format()


@pytest.fixture(scope="session")
def hsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm"))
    softhsm.init_token(MAIN_LABEL, TEST_PIN, TEST_SO_PIN)
    softhsm.init_token(SPARE_LABEL, TEST_PIN, TEST_SO_PIN)
    previous = os.environ.get(PIN_ENV)
    os.environ[PIN_ENV] = TEST_PIN
    try:
        yield SoftHsmToken(softhsm.SOFTHSM_MODULE, MAIN_LABEL, SPARE_LABEL, TEST_PIN,
                           TEST_SO_PIN, PIN_ENV)
    finally:
        if previous is None:
            os.environ.pop(PIN_ENV, None)
        else:
            os.environ[PIN_ENV] = previous


@pytest.fixture(scope="session")
def store(hsm_token: SoftHsmToken) -> Iterator[Pkcs11KeyStore]:
    """The session's store on the main token, PIN from the environment."""
    with Pkcs11KeyStore(hsm_token.module, hsm_token.label, pin_env=hsm_token.pin_env) as s:
        yield s


@pytest.fixture(scope="session")
def token_keys(hsm_token: SoftHsmToken, store: Pkcs11KeyStore) -> dict[KeyType, Pkcs11Signer]:
    """One token key of every supported type, generated on SoftHSM2 once per session."""
    return {kt: store.generate(hsm_token.key_uri(f"key-{kt.value}"), kt) for kt in KeyType}

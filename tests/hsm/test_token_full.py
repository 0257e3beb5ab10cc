"""A USB key that cannot take another object: nothing may be left half-written.

Two real ways to make SoftHSM2 refuse, measured on 2.6.1 (it keeps every object in its own file
in the token's directory):

* the token's directory made immutable (``chattr +i``; plain permissions do not stop root, and
  CI runs as root): creating the object file fails and SoftHSM2 answers CKR_GENERAL_ERROR to
  C_GenerateKeyPair and C_CreateObject, keeping nothing;
* a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) that a small certificate object fits under
  and a large one does not: C_CreateObject of the large one answers CKR_GENERAL_ERROR, which
  makes a store fail half-way.

SoftHSM2 does not notice every failed write, so the limit is chosen with care. It checks what
``fwrite`` answers but not the final flush: a limit at a multiple of the 4 KiB stdio buffer lets
the object "succeed" with a truncated file on disk (measured: limit 4096, a 6.4 kB certificate),
and key generation ignores failed writes altogether (success, key kept in memory, 100-byte files
on disk). 3000 bytes cuts inside the first buffer, where the failure is reported.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from pkcs11 import exceptions as p11e

from hsm.token import TokenFull, TokenWriteFailed, UsbToken
from tests.conftest import require
from tests.hsm import test_token as base
from tests.hsm.test_token import UsbKey, issue, make_ca, raw_objects

pytestmark = pytest.mark.hsm

# The throwaway-token fixtures of test_token.py, shared by name.
usb_module = base.usb_module
usb = base.usb
token = base.token


@contextmanager
def immutable(directory: Path) -> Iterator[None]:
    result = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True,
                            check=False, timeout=30)
    require(result.returncode == 0,
            f"chattr +i on the SoftHSM2 token directory ({result.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True, timeout=30)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """No file of this process may grow past ``limit`` bytes (writes fail with EFBIG).

    Nothing else may write while it holds: pytest's captured output lives in a file too."""
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


def test_generation_on_a_token_that_cannot_store_leaves_nothing(usb: UsbKey,
                                                                token: UsbToken) -> None:
    kept = token.generate_signing_key("ec-p256")
    before = raw_objects(usb)
    with immutable(usb.directory):
        for key_type in ("ec-p256", "rsa-2048"):
            with pytest.raises(TokenWriteFailed) as caught:
                token.generate_signing_key(key_type)
            message = str(caught.value)
            assert f"token '{usb.label}' could not store a new {key_type} key" in message
            assert "CKR_GENERAL_ERROR" in message
            assert "nothing was left on the token" in message
            assert not isinstance(caught.value, TokenFull)  # SoftHSM2 does not say "full"
            assert caught.value.kind == "hsm-token-write-failed"
    assert raw_objects(usb) == before
    assert token.find_key(kept.id_hex) == kept
    token.generate_signing_key("ec-p256")  # room again
    assert len(raw_objects(usb)) == len(before) + 2


def test_a_certificate_store_that_fails_at_once_writes_nothing(usb: UsbKey,
                                                               token: UsbToken) -> None:
    ca = make_ca("省政府签发CA")
    key = token.generate_signing_key("ec-p256")
    cert = issue(ca, key.public_key)
    before = raw_objects(usb)
    with immutable(usb.directory), pytest.raises(TokenWriteFailed,
                                                 match="could not store the certificate"):
        token.store_certificate(key, cert, [ca.cert])
    assert raw_objects(usb) == before
    token.store_certificate(key, cert, [ca.cert])
    assert len(raw_objects(usb)) == len(before) + 2


def test_a_certificate_store_that_fails_half_way_removes_what_it_wrote(
        usb: UsbKey, token: UsbToken) -> None:
    # A CA certificate made large by a private extension: its object cannot be written under
    # the limit, while the end-entity certificate's (written first) can.
    bulk = b"\x04\x82" + (6000).to_bytes(2, "big") + b"\x00" * 6000
    ca = make_ca("省政府签发CA", extra=x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), bulk))
    key = token.generate_signing_key("ec-p256")
    cert = issue(ca, key.public_key)
    before = raw_objects(usb)
    with file_size_limit(3000), pytest.raises(TokenWriteFailed) as caught:
        token.store_certificate(key, cert, [ca.cert])
    message = str(caught.value)
    assert "could not store CA certificate" in message
    assert "nothing was left on the token" in message
    assert raw_objects(usb) == before  # the end-entity certificate was removed again
    token.store_certificate(key, cert, [ca.cert])
    kinds = [o.kind for o in token.list_objects()]
    assert kinds.count("certificate") == 2


@pytest.mark.parametrize(("answer", "error", "wording"), [
    (p11e.DeviceMemory, TokenFull, "is full: no room for a new ec-p256 key (CKR_DEVICE_MEMORY)"),
    (p11e.TokenWriteProtected, TokenWriteFailed, "is write-protected"),
    (p11e.DeviceError, TokenWriteFailed, "could not store a new ec-p256 key (CKR_DEVICE_ERROR)"),
], ids=lambda v: getattr(v, "__name__", None))
def test_what_tokens_answer_when_they_cannot_store(token: UsbToken,
                                                   answer: type[p11e.PKCS11Error],
                                                   error: type[Exception], wording: str) -> None:
    """SoftHSM2 only ever says CKR_GENERAL_ERROR; real USB keys say these (the mapping alone)."""
    made = token._write_error(answer(), "a new ec-p256 key", ["public-key (GeneralError)"])
    assert type(made) is error
    assert wording in str(made)
    assert str(made).endswith("these objects could not be removed: public-key (GeneralError)")

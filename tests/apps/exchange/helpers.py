"""OpenSSL CLI checks shared by the exchange tests (the independent checker, DESIGN.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from apps.exchange.org_keys import trust_chain
from core.db import transaction
from tests.conftest import Pki


def root_pem(pki: Pki, directory: Path) -> Path:
    with transaction(pki.ctx.sessions) as session:
        _chain, root = trust_chain(session, "officials")
    path = directory / "root.pem"
    path.write_bytes(root.public_bytes(Encoding.PEM))
    return path


def openssl(*argv: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, argv)], capture_output=True, check=False,
                          timeout=60)


def verify_receipt(receipt: Path, header: Path, root: Path) -> subprocess.CompletedProcess[bytes]:
    """`openssl cms -verify_receipt`: the receipt answers the header's signature."""
    return openssl("cms", "-verify_receipt", receipt, "-rctform", "DER", "-in", header,
                   "-inform", "DER", "-CAfile", root, "-binary")

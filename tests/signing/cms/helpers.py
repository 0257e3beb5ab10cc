"""The OpenSSL CLI as the independent checker of CMS (`openssl cms -verify / -decrypt /
-verify_receipt / -sign / -encrypt / -sign_receipt`)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*argv: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, argv)], input=stdin, capture_output=True,
                          check=False, timeout=60)


def openssl_verify(signature: Path, root: Path, content: Path | None = None,
                   *, purpose: str | None = "any", out: Path | None = None
                   ) -> subprocess.CompletedProcess[bytes]:
    """`openssl cms -verify -binary [-content DATA] -inform DER -in SIG -CAfile ROOT.pem`."""
    argv: list[str | Path] = ["cms", "-verify", "-binary", "-inform", "DER", "-in", signature,
                              "-CAfile", root, "-out", out or "/dev/null"]
    if content is not None:
        argv += ["-content", content]
    if purpose is not None:
        argv += ["-purpose", purpose]
    return openssl(*argv)


def flip(data: bytes, index: int) -> bytes:
    """``data`` with the byte at ``index`` changed."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]

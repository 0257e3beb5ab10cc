"""How much PDF govpki accepts, and the checks every document passes before pyHanko parses it.

Signing and validation both take documents from outside (an official's upload, a file another
department sent). Cheap checks run first, in this order, so each bad input gets its own
one-line error and nothing is parsed that need not be:

1. size: a 0-byte file is :class:`EmptyPdf`, anything over ``max_bytes`` :class:`PdfTooLarge`
   (checked from ``stat`` before a file is even read);
2. header: ``%PDF-`` within the first 1024 bytes (ISO 32000-2 §7.5.2 lets readers tolerate
   leading junk; Acrobat looks that far), else :class:`NotAPdf`;
3. parse: pyHanko's reader in strict mode with its stream-decoding limits (pyHanko 0.38
   ``DecodeLimits``: no decompression bombs); any failure is :class:`CorruptPdf`;
4. encryption: an encrypted document needs its password (:class:`EncryptedPdf` otherwise).

Strict mode matters for signing: an incremental update appended to a file whose cross-reference
data had to be "repaired" would be signed over bytes that other readers interpret differently.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.decode_limits import DecodeLimits
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.pdf_errors import CorruptPdf, EmptyPdf, EncryptedPdf, NotAPdf, PdfTooLarge

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""64 MiB: official papers are text and a few scans; a larger upload is refused, not parsed."""
HEADER_WINDOW = 1024
MAX_PAGES = 10_000


@dataclass(frozen=True)
class PdfLimits:
    """Size bounds for one document. ``max_bytes`` bounds the file, ``max_pages`` the page
    tree (a cross-page seal draws one widget per page), ``decode`` pyHanko's decompression
    bounds per stream and per document."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pages: int = MAX_PAGES
    decode: DecodeLimits = field(default_factory=DecodeLimits)

    def __post_init__(self) -> None:
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive int, not {self.max_bytes!r}")
        if not isinstance(self.max_pages, int) or self.max_pages < 1:
            raise ValueError(f"max_pages must be a positive int, not {self.max_pages!r}")


DEFAULT_LIMITS = PdfLimits()


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def check_size(size: int, limits: PdfLimits, what: str) -> None:
    if size == 0:
        raise EmptyPdf(f"{what} is empty (0 bytes)")
    if size > limits.max_bytes:
        raise PdfTooLarge(f"{what} is {_mib(size)}, over the limit of {_mib(limits.max_bytes)}",
                          limit=limits.max_bytes, size=size)


def check_header(data: bytes, what: str) -> None:
    if b"%PDF-" not in data[:HEADER_WINDOW]:
        raise NotAPdf(f"{what} is not a PDF (no %PDF- header)")


def check_pdf_bytes(data: bytes, limits: PdfLimits = DEFAULT_LIMITS,
                    what: str = "the document") -> None:
    """Steps 1 and 2: size and header, without parsing."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a PDF is bytes, not {type(data).__name__}")
    check_size(len(data), limits, what)
    check_header(bytes(data[:HEADER_WINDOW]), what)


def read_pdf_file(path: Path | str, limits: PdfLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of a PDF file, refused by size before they are read."""
    path = Path(path)
    what = str(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise CorruptPdf(f"{what} does not exist") from None
    except OSError as exc:
        raise CorruptPdf(f"cannot read {what}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise NotAPdf(f"{what} is not a regular file")
    check_size(size, limits, what)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptPdf(f"cannot read {what}: {exc.strerror or exc}") from None
    check_pdf_bytes(data, limits, what)
    return data


def open_pdf(data: bytes, limits: PdfLimits = DEFAULT_LIMITS, *, password: str | None = None,
             what: str = "the document") -> PdfFileReader:
    """Steps 1-4: a strict pyHanko reader over ``data``, decrypted when a password is given.

    Every object the signer will touch (catalog, page tree, AcroForm) is resolved here, so a
    damaged document fails now with :class:`CorruptPdf` rather than half-way through signing.
    """
    check_pdf_bytes(data, limits, what)
    try:
        reader = PdfFileReader(io.BytesIO(bytes(data)), strict=True, decode_limits=limits.decode)
    except Exception as exc:  # pyHanko raises PdfReadError, PdfStrictReadError, ValueError...
        raise CorruptPdf(f"{what} is damaged and cannot be read: {_first_line(exc)}") from None
    if reader.encrypted:
        if password is None:
            raise EncryptedPdf(f"{what} is encrypted: give its password "
                               f"(GOVPKI_PDF_PASSWORD) to sign or verify it")
        try:
            result = reader.decrypt(password)
        except Exception as exc:
            raise EncryptedPdf(f"{what} is encrypted with a scheme govpki cannot open: "
                               f"{_first_line(exc)}") from None
        if result.status == AuthStatus.FAILED:
            raise EncryptedPdf(f"the password does not open {what}")
    try:
        root = reader.root
        pages = root["/Pages"].get_object()
        count = int(pages.get("/Count", 0))
        form = root.get("/AcroForm")
        if form is not None:
            form.get_object()
    except Exception as exc:
        raise CorruptPdf(f"{what} is damaged (catalog or page tree): {_first_line(exc)}") from None
    if count < 1:
        raise CorruptPdf(f"{what} has no pages")
    if count > limits.max_pages:
        raise PdfTooLarge(f"{what} has {count} pages, over the limit of {limits.max_pages}",
                          limit=limits.max_pages, size=count)
    return reader


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text[:200]

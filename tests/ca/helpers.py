"""Helpers for CA tests: keys, CSRs and the independent checkers (OpenSSL CLI, pkilint CLI,
pyhanko-certvalidator)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ca.store import chain_der
from core.db import transaction

OFFICIAL_DN = "CN=张三,OU=办公室,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"
SERVER_DN = "CN=ra.gov.qh,O=青海省人民政府办公厅,ST=青海省,C=CN"

# Which CA issues which profile in the demo hierarchy, and a subject for it.
PROFILE_CASES = {
    "official-signing": ("officials", OFFICIAL_DN, {}),
    "official-encryption": ("officials", OFFICIAL_DN, {}),
    "org-encryption": ("officials", "CN=青海省财政厅,O=青海省财政厅,ST=青海省,C=CN", {}),
    "department-seal": (
        "officials", "CN=青海省人民政府办公厅,O=青海省人民政府办公厅,ST=青海省,C=CN", {}),
    "server-tls": ("devices", SERVER_DN, {"san_dns": ("ra.gov.qh",), "san_ip": ("10.1.2.3",)}),
    "sso-signing": ("devices", "CN=统一身份认证,O=青海省人民政府办公厅,ST=青海省,C=CN", {}),
    "ocsp-signer": ("officials", "CN=OCSP测试,O=青海省人民政府办公厅,ST=青海省,C=CN", {}),
    "tsa": ("devices", "CN=时间戳测试,O=青海省人民政府办公厅,ST=青海省,C=CN", {}),
}


def new_key(key_type: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    family, size = key_type.split("-")
    if family == "rsa":
        return rsa.generate_private_key(65537, int(size))
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}[size])


def make_csr(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str = "ignored",
             encoding: serialization.Encoding = serialization.Encoding.PEM) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(encoding)


def write_chain(ctx, ca: str, directory: Path) -> tuple[Path, Path]:
    """(root.pem, intermediates.pem) for openssl verify."""
    with transaction(ctx.sessions) as session:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der(session, ca)]
    root = directory / "root.pem"
    untrusted = directory / "untrusted.pem"
    root.write_bytes(chain[-1].public_bytes(serialization.Encoding.PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[:-1]))
    return root, untrusted


def openssl_verify(cert_pem: bytes, root: Path, untrusted: Path, directory: Path,
                   purpose: str | None = None) -> subprocess.CompletedProcess[str]:
    leaf = directory / "leaf.pem"
    leaf.write_bytes(cert_pem)
    argv = ["openssl", "verify", "-x509_strict", "-CAfile", str(root)]
    if untrusted.read_bytes():
        argv += ["-untrusted", str(untrusted)]
    if purpose:
        argv += ["-purpose", purpose]
    return subprocess.run([*argv, str(leaf)], capture_output=True, text=True, check=False)


def pkilint_cli(cert_pem: bytes, directory: Path) -> subprocess.CompletedProcess[str]:
    """pkilint's own RFC 5280 linter, run as its command (not through govpki's wrapper)."""
    exe = str(Path(sys.executable).parent / "lint_pkix_cert")
    if not Path(exe).exists():
        exe = shutil.which("lint_pkix_cert") or "lint_pkix_cert"
    leaf = directory / "lint.pem"
    leaf.write_bytes(cert_pem)
    return subprocess.run([exe, "lint", "-s", "ERROR", str(leaf)],
                          capture_output=True, text=True, check=False)

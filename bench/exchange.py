"""Document exchange end to end, and the share of its time spent in raw cryptography.

One package, measured whole (JSON on stdout): the province's clerk sends a document to 10
organisations through ``apps.exchange.service.send`` — seal the header (ECDSA P-256), check
every recipient's encryption certificate in the CA's store, encrypt the body once (AES-256-CBC)
with the key wrapped for each recipient (RSAES-OAEP, RSA-2048), take the package apart again
and store it with its 10 deliveries (verifying the seal, its chain and revocation) — then each
of the 10 recipients' clerks opens it through ``service.open_document`` — fetch, verify the
seal (signature, chain, revocation, registered seal), decrypt with its key, check both
digests, and make, verify and store the technical receipt (RFC 2634 receipt + signed
statement). Bodies of 100 KB and 10 MB (random bytes behind a PDF header: nothing compresses),
SQLite (and PostgreSQL in the full run when it is reachable), file keys.

``raw_crypto``: the same run measures the pyca/OpenSSL operations one package needs, on the
same sizes and key types, alone: ``share`` is their sum over the end-to-end time per package.
The operation counts per package (N recipients, S the content size) are read off the code
paths — sender: SHA-256 ×3 over S (content digest, envelope digest, the hub's envelope check),
AES-256-CBC encrypt ×1, RSA-OAEP encrypt ×N, ECDSA sign ×1; per recipient: SHA-256 ×3 over S
(envelope check on fetch and before decrypting, content digest), RSA-OAEP decrypt ×1,
AES-256-CBC decrypt ×1, ECDSA sign ×2 (RFC 2634 receipt, statement); verifications ×(1 + 3N)
(the header at submission and at each opening, the receipt's statement and its RFC 2634
receipt), each a P-256 signature over a small message plus the chain's two certificate
signatures (officials CA P-256, root P-384). Everything else — DER encoding and parsing,
copies, database writes and reads of S-sized rows, revocation look-ups, audit events — is
the remainder.

  .venv/bin/python bench/exchange.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/exchange.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, padding  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from apps.exchange import org_keys, service  # noqa: E402
from apps.exchange.package import DocumentFile  # noqa: E402
from apps.exchange.policy import get_policy  # noqa: E402
from bench.pg import drop_pg, pg_database  # noqa: E402
from ca.ceremony import load_ceremony, run_ceremony  # noqa: E402
from ca.cli import DEMO_CEREMONY  # noqa: E402
from ca.context import CaContext  # noqa: E402
from core import migrate  # noqa: E402
from core.config import AuditConfig, Config, KeyStoreConfig  # noqa: E402
from core.db import make_engine  # noqa: E402
from govpki.migrations import all_version_locations  # noqa: E402
from hsm.file_store import FileKeyStore  # noqa: E402
from hsm.keystore import KeyRing  # noqa: E402
from ra import operators, orgs  # noqa: E402
from ra.records import Operator  # noqa: E402

PASSPHRASE = b"bench-passphrase"
SENDER = "630000"
#: Ten recipients from the demo organisation tree: prefectures and provincial departments.
RECIPIENTS = ("630100", "630200", "632200", "632300", "632500", "632600", "632700", "632800",
              "630000-FGW", "630000-JYT")
SIZES = {"100KB": 100 * 1024, "10MB": 10 * 1024 * 1024}
SMOKE_SIZES = {"100KB": 10 * 1024, "10MB": 100 * 1024}


def build(home: Path, url: str) -> CaContext:
    """The demo hierarchy, every package's tables, the organisation tree."""
    home.mkdir(parents=True)
    engine = make_engine(url)
    migrate.upgrade(engine, all_version_locations())
    engine.dispose()
    config = Config(home=home, database_url=url, public_base_url="http://127.0.0.1:8600",
                    keystore=KeyStoreConfig(), audit=AuditConfig(key_uri="file:audit"))
    ctx = CaContext.open(config, keyring=KeyRing([FileKeyStore(home / "keys",
                                                               passphrase=PASSPHRASE)]))
    run_ceremony(ctx, load_ceremony(DEMO_CEREMONY), key_uri=lambda label: f"file:{label}",
                 actor="bench")
    orgs.load_organisations(ctx.sessions, actor="bench")
    return ctx


def clerks(ctx: CaContext, recipients: tuple[str, ...]) -> tuple[Operator, list[Operator]]:
    """Keys (seal + encryption) and an exchange clerk for the sender and every recipient."""
    admin = operators.add_operator(ctx.sessions, None, "bench-admin", org_code=SENDER,
                                   role="ca-admin")
    people = []
    for code in (SENDER, *recipients):
        org_keys.provision(ctx, code, policy=get_policy(), actor="bench")
        people.append(operators.add_operator(ctx.sessions, admin, f"clerk-{code.lower()}",
                                             org_code=code, role="exchange-clerk"))
    return people[0], people[1:]


def pdf_body(size: int) -> bytes:
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    return head + os.urandom(max(0, size - len(head)))


def one_package(ctx: CaContext, sender: Operator, readers: list[Operator], body: bytes,
                recipients: tuple[str, ...]) -> None:
    request = service.SendRequest(
        issuer=SENDER, number=f"青政办〔2024〕{secrets.randbelow(10**12)}号",
        title="关于印发全省电子政务建设规划的通知", date=dt.date(2024, 6, 1), urgency="平急",
        classification="非密", main=recipients[:2], copy=recipients[2:],
        body=DocumentFile("正文.pdf", body))
    sent = service.send(ctx, sender, request)
    for reader in readers:
        opened = service.open_document(ctx, reader, sent.message_id)
        assert len(opened.document.body.content) == len(body)


def median_seconds(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_crypto(size: int, recipients: int, reps: int) -> dict[str, Any]:
    """The package's cryptography alone (module docstring), timed operation by operation."""
    data = os.urandom(size + 200)  # the DER content is a little larger than the body
    seal = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(65537, 2048)
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                             label=None)
    cek, iv = os.urandom(32), os.urandom(16)
    wrapped = rsa_key.public_key().encrypt(cek, oaep)
    small = os.urandom(600)  # signed attributes of a header or statement
    signature = seal.sign(small, ec.ECDSA(hashes.SHA256()))

    def cert(subject_key: Any, issuer_key: Any, algorithm: hashes.HashAlgorithm
             ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bench")])
        now = dt.datetime.now(dt.UTC)
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(subject_key.public_key()).serial_number(1)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .sign(issuer_key, algorithm))

    seal_cert = cert(seal, ca_key, hashes.SHA256())
    ca_cert = cert(ca_key, root_key, hashes.SHA384())
    root_cert = cert(root_key, root_key, hashes.SHA384())

    def aes_encrypt() -> bytes:
        padder = padding.PKCS7(128).padder()
        encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()

    ciphertext = aes_encrypt()

    def aes_decrypt() -> bytes:
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        plain = decryptor.update(ciphertext) + decryptor.finalize()
        return unpadder.update(plain) + unpadder.finalize()

    def sha256() -> bytes:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(ciphertext)
        return digest.finalize()

    def verification() -> None:
        seal.public_key().verify(signature, small, ec.ECDSA(hashes.SHA256()))
        seal_cert.verify_directly_issued_by(ca_cert)
        ca_cert.verify_directly_issued_by(root_cert)

    fast = reps * 20
    ops = {  # name: (count per package, seconds per operation)
        "sha256": (3 + 3 * recipients, median_seconds(sha256, reps)),
        "aes256cbc.encrypt": (1, median_seconds(aes_encrypt, reps)),
        "aes256cbc.decrypt": (recipients, median_seconds(aes_decrypt, reps)),
        "rsa2048.oaep.encrypt": (recipients, median_seconds(
            lambda: rsa_key.public_key().encrypt(cek, oaep), fast)),
        "rsa2048.oaep.decrypt": (recipients, median_seconds(
            lambda: rsa_key.decrypt(wrapped, oaep), fast)),
        "ecdsa.p256.sign": (1 + 2 * recipients, median_seconds(
            lambda: seal.sign(small, ec.ECDSA(hashes.SHA256())), fast)),
        "verify.signature+chain": (1 + 3 * recipients, median_seconds(verification, fast)),
    }
    total = sum(count * seconds for count, seconds in ops.values())
    return {"per_package_ms": round(total * 1000, 2),
            "operations": {name: {"count": count, "ms_each": round(seconds * 1000, 4)}
                           for name, (count, seconds) in ops.items()}}


def measure(ctx: CaContext, sizes: dict[str, int], count: int, reps: int,
            recipients: tuple[str, ...]) -> dict[str, Any]:
    sender, readers = clerks(ctx, recipients)
    out: dict[str, Any] = {}
    for name, size in sizes.items():
        body = pdf_body(size)
        one_package(ctx, sender, readers, body, recipients)  # warm: keys loaded, plans cached
        n = count if size < 1024 * 1024 else max(1, count // 5)
        start = time.perf_counter()
        for _ in range(n):
            one_package(ctx, sender, readers, body, recipients)
        seconds = (time.perf_counter() - start) / n
        raw = raw_crypto(size, len(recipients), reps)
        out[name] = {"packages": n, "packages_per_s": round(1 / seconds, 3),
                     "ms_per_package": round(seconds * 1000, 1),
                     "raw_crypto": raw,
                     "raw_crypto_share": round(raw["per_package_ms"] / (seconds * 1000), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--count", type=int, default=10,
                        help="packages per measurement (a fifth of it for the large body)")
    parser.add_argument("--databases", choices=["sqlite", "postgres", "both"], default="both",
                        help="where the hub stores (PostgreSQL only when reachable; never in "
                             "--smoke)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    sizes = SMOKE_SIZES if args.smoke else SIZES
    count = 1 if args.smoke else args.count
    reps = 3 if args.smoke else 15
    os.environ.setdefault("GOVPKI_KEY_PASSPHRASE", PASSPHRASE.decode())
    results: dict[str, Any] = {
        "benchmark": "exchange", "recipients": len(RECIPIENTS),
        "sizes_bytes": sizes, "smoke": args.smoke, "count": count,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": {}}
    with tempfile.TemporaryDirectory(prefix="govpki-bench-exchange-") as tmp:
        base = Path(tmp)
        setups = [] if args.databases == "postgres" else [
            ("sqlite", f"sqlite:///{base / 'sqlite' / 'govpki.sqlite3'}")]
        pg = None if args.smoke or args.databases == "sqlite" \
            else pg_database("govpki_bench_exchange")
        if pg:
            setups.append(("postgres", pg))
        try:
            for name, url in setups:
                ctx = build(base / name, url)
                try:
                    results["results"][name] = measure(ctx, sizes, count, reps, RECIPIENTS)
                finally:
                    ctx.close()
        finally:
            if pg:
                drop_pg(pg)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

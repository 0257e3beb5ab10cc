"""Issuance throughput: govpki's whole pipeline against its limits and a classic peer.

Measured side by side in one run (JSON on stdout):
- ``pipeline``: ca.issue_certificate in-process (record → lint → sign → record), per
  database × key store × issuer algorithm; with ``--processes`` workers in parallel on PostgreSQL.
- ``limit``: raw pyca parse-CSR + build + sign of the same certificate plus one pkilint run —
  the ceiling for any linted pipeline — in the same number of processes.
- ``openssl_ca``: ``openssl ca -batch`` in a loop on an equivalent CA (the classic peer).
- ``softhsm_raw_sign``: SoftHSM2's own signing rate with the same key type, for the ratio of the
  SoftHSM2-backed pipeline to its token.
Ratios: pipeline/limit, pipeline/openssl_ca, softhsm pipeline/softhsm_raw_sign.

  .venv/bin/python bench/issuance.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/issuance.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from bench.pg import drop_pg, pg_database  # noqa: E402
from ca.ceremony import parse_ceremony, run_ceremony  # noqa: E402
from ca.context import CaContext, version_locations  # noqa: E402
from ca.issuance import (  # noqa: E402
    CertificateRequest,
    issue_certificate,
    issue_certificates,
    new_serial,
)
from ca.lint import lint_certificate  # noqa: E402
from ca.plan import plan_for  # noqa: E402
from ca.tbs import build_name, extensions_for  # noqa: E402
from core import migrate  # noqa: E402
from core.config import AuditConfig, Config, KeyStoreConfig  # noqa: E402
from core.db import make_engine  # noqa: E402
from hsm.file_store import FileKeyStore  # noqa: E402
from hsm.keystore import KeyRing  # noqa: E402
from policies.profiles import get_profile  # noqa: E402

PASSPHRASE = "bench-passphrase"
PIN = "bench-pin"
SUBJECT = "CN=张三,OU=办公室,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"

CEREMONY = """
authorities:
  - name: root
    profile: root-ca
    key: {label: bench-root, type: ec-p384}
    subject: CN=Bench Root,O=青海省人民政府办公厅,ST=青海省,C=CN
    validity_days: 3650
  - name: ec
    parent: root
    profile: issuing-ca-officials
    key: {label: bench-ec, type: ec-p256}
    subject: CN=Bench EC CA,O=青海省人民政府办公厅,ST=青海省,C=CN
    validity_days: 1825
  - name: rsa
    parent: root
    profile: issuing-ca-officials
    key: {label: bench-rsa, type: rsa-2048}
    subject: CN=Bench RSA CA,O=青海省人民政府办公厅,ST=青海省,C=CN
    validity_days: 1825
audit_key: {label: bench-audit, type: ec-p256}
"""


def csr_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def distinct_requests(count: int) -> list[tuple[bytes, str]]:
    """(CSR, subject) pairs with a key and a name of their own, made before the clock starts.

    Real issuance never sees the same key twice, and ca.lint keeps decoded values per thread
    (extension values repeat from one certificate to the next, keys and names do not): one CSR
    for every certificate would let the linter skip work no real request lets it skip.
    """
    return [(csr_pem(), SUBJECT.replace("CN=张三", f"CN=张三{i:05d}")) for i in range(count)]


# --------------------------------------------------------------------------------------------
# set-up

def softhsm_setup(base: Path) -> dict[str, str] | None:
    module = next((m for m in ("/usr/lib/softhsm/libsofthsm2.so",
                               "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
                   if Path(m).exists()), None)
    if module is None or shutil.which("softhsm2-util") is None:
        return None
    tokens = base / "tokens"
    tokens.mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench",
                    "--pin", PIN, "--so-pin", "bench-so"], check=True, capture_output=True)
    return {"module": module, "label": "bench"}


def keyring_for(home: Path, keys: str, token: dict[str, str] | None) -> tuple[KeyRing, Config,
                                                                              object]:
    stores: list = [FileKeyStore(home / "keys", passphrase=PASSPHRASE.encode())]
    if keys == "softhsm":
        from hsm.pkcs11_store import Pkcs11KeyStore
        from hsm.pkcs11_uri import Pkcs11Uri

        assert token
        stores.append(Pkcs11KeyStore(token["module"], token["label"], pin=PIN))
        prefix = home.name + "-"

        def uri(label: str) -> str:
            return Pkcs11Uri(token=token["label"], object=prefix + label).format()
        ks = KeyStoreConfig(type="pkcs11", pkcs11_module=token["module"],
                            token_label=token["label"])
    else:
        def uri(label: str) -> str:
            return f"file:{label}"
        ks = KeyStoreConfig()
    return KeyRing(stores), ks, uri  # type: ignore[return-value]


def build(home: Path, db_url: str, keys: str, token: dict[str, str] | None) -> CaContext:
    keyring, ks, uri = keyring_for(home, keys, token)
    config = Config(home=home, database_url=db_url, keystore=ks,
                    audit=AuditConfig(key_uri=uri("bench-audit")))  # type: ignore[operator]
    engine = make_engine(db_url)
    migrate.upgrade(engine, version_locations())
    engine.dispose()
    ctx = CaContext.open(config, keyring=keyring)
    run_ceremony(ctx, parse_ceremony(CEREMONY, "bench"), key_uri=uri, actor="bench")  # type: ignore[arg-type]
    return ctx


# --------------------------------------------------------------------------------------------
# measurements

def _wait(start_at: float | None) -> None:
    """Parallel workers warm up, then start together, so spawn time is not measured."""
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))


BATCH = 50


def _pipeline_worker(args: tuple) -> tuple[float, float]:
    """One process issuing ``count`` certificates, one request per call (batch=1) or in
    batches through issue_certificates (bulk enrollment)."""
    home, db_url, keys, ca, count, token_json, batch, start_at = args
    token = json.loads(token_json) if token_json else None
    keyring, ks, _uri = keyring_for(Path(home), keys, token)
    config = Config(home=Path(home), database_url=db_url, keystore=ks)
    ctx = CaContext.open(config, keyring=keyring)
    requests = [CertificateRequest(ca=ca, profile="official-signing", csr=csr, subject=subject,
                                   requested_by="bench")
                for csr, subject in distinct_requests(count + 1)]
    issue_certificate(ctx, requests.pop())  # warm caches (lint validator, key, throwaway key)
    _wait(start_at)
    start = time.time()
    if batch == 1:
        for request in requests:
            issue_certificate(ctx, request)
    else:
        for done in range(0, count, batch):
            results = issue_certificates(ctx, requests[done:done + batch])
            assert not any(isinstance(r, Exception) for r in results)
    end = time.time()
    ctx.close()
    return start, end


def run_parallel(fn, args_list: list) -> float:
    """Seconds from the first worker's start to the last one's end (spawned processes that
    warm up first and then start at one agreed moment)."""
    ctx = mp.get_context("spawn")
    start_at = time.time() + 8.0
    with ctx.Pool(len(args_list)) as pool:
        spans = pool.map(fn, [(*a, start_at) for a in args_list])
    return max(e for _, e in spans) - min(s for s, _ in spans)


def elapsed(span: tuple[float, float]) -> float:
    return span[1] - span[0]


#: Distinct keys and names the linted limit cycles through: more than ca.lint's memo of
#: decoded values holds, so the limit, like the pipeline, decodes every key and name.
_LIMIT_DISTINCT = 1024


def _limit_certificates(key_type: str) -> Callable[[], bytes]:
    """Raw pyca parse + build + sign with the full extension set: one certificate's DER per
    call, what the linted limit and the lint comparison both work on."""
    issuer_key = (ec.generate_private_key(ec.SECP256R1()) if key_type == "ec-p256"
                  else rsa.generate_private_key(65537, 2048))
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Limit CA")])
    profile = get_profile("official-signing")
    csrs = [csr_pem() for _ in range(_LIMIT_DISTINCT)]
    place = [("C", "CN"), ("ST", "青海省"), ("L", "西宁市"), ("O", "青海省人民政府办公厅"),
             ("OU", "办公室")]
    subjects = [build_name([*place, ("CN", f"张三{i:05d}")]) for i in range(_LIMIT_DISTINCT)]
    turn = itertools.count()
    issuer_ski = x509.SubjectKeyIdentifier.from_public_key(issuer_key.public_key()).digest

    def one() -> bytes:
        i = next(turn) % _LIMIT_DISTINCT
        csr, subject = x509.load_pem_x509_csr(csrs[i]), subjects[i]
        assert csr.is_signature_valid
        pub = csr.public_key()
        plan = plan_for(profile, pub, "http://127.0.0.1:8600", "ec")
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().issuer_name(issuer_name).subject_name(subject)
                   .public_key(pub).serial_number(new_serial()).not_valid_before(now)
                   .not_valid_after(now + dt.timedelta(days=730)))
        for ext, critical in extensions_for(plan, pub, issuer_ski):
            builder = builder.add_extension(ext, critical)
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    return one


def _limit_worker(args: tuple) -> tuple[float, float]:
    """Raw pyca parse + build + sign with the full extension set + one pkilint run per cert."""
    key_type, count, start_at = args
    make = _limit_certificates(key_type)
    lint_certificate(make())
    _wait(start_at)
    start = time.time()
    for _ in range(count):
        lint_certificate(make())
    return start, time.time()


def lint_rates(count: int) -> tuple[float, float]:
    """Lints per second: ca.lint (pkilint's validators behind a dispatch cache and a memo of
    decoded values) and pkilint's own traversal of the same validators, with the same findings,
    over the same certificates, each with its own key and name."""
    from pkilint import loader
    from pkilint.pkix import certificate, extension, name

    make = _limit_certificates("ec-p256")
    ders = [make() for _ in range(min(count, _LIMIT_DISTINCT))]
    plain = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS,
                                               extension.EXTENSION_MAPPINGS),
        [certificate.create_issuer_validator_container([]),
         certificate.create_validity_validator_container(),
         certificate.create_subject_validator_container([]),
         certificate.create_extensions_validator_container([]),
         certificate.create_spki_validator_container([])])
    doc_loader = loader.RFC5280CertificateDocumentLoader()

    def plain_lint(der: bytes) -> None:
        plain.validate(doc_loader.load_der_document(der, "tbs").root)

    def ours(der: bytes) -> None:
        lint_certificate(der)

    rates = []
    for fn in (ours, plain_lint):
        fn(ders[-1])
        start = time.perf_counter()
        for i in range(count):
            fn(ders[i % len(ders)])
        rates.append(count / (time.perf_counter() - start))
    return rates[0], rates[1]


def openssl_ca_loop(base: Path, count: int, key_type: str) -> float:
    """`openssl ca -batch` once per certificate, as a classic CA script would."""
    d = base / f"openssl-{key_type}"
    (d / "newcerts").mkdir(parents=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    keyarg = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_type == "ec-p256"
              else ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509", *keyarg, "-nodes", "-keyout", str(d / "ca.key"),
                    "-out", str(d / "ca.pem"), "-subj", "/CN=OpenSSL Peer CA", "-days", "3650"],
                   check=True, capture_output=True)
    (d / "ca.cnf").write_text(f"""
[ca]
default_ca = peer
[peer]
dir = {d}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 730
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = leaf
utf8 = yes
string_mask = utf8only
[anything]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = clientAuth,emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
certificatePolicies = 1.3.6.1.4.1.32473.630000.1.1
crlDistributionPoints = URI:http://127.0.0.1:8600/crl/ec.crl
authorityInfoAccess = OCSP;URI:http://127.0.0.1:8600/ocsp,caIssuers;URI:http://127.0.0.1:8600/certs/ec.crt
""")
    csr = d / "req.pem"
    csr.write_bytes(csr_pem())
    argv = ["openssl", "ca", "-batch", "-config", str(d / "ca.cnf"), "-in", str(csr),
            "-subj", "/C=CN/ST=青海省/L=西宁市/O=青海省人民政府办公厅/OU=办公室/CN=张三",
            "-out", os.devnull, "-notext"]
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def softhsm_raw(ctx: CaContext, uri: str, count: int) -> float:
    signer = ctx.keyring.get(uri)
    data = b"x" * 600
    signer.sign(data, hashes.SHA256())
    start = time.perf_counter()
    for _ in range(count):
        signer.sign(data, hashes.SHA256())
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--count", type=int, default=2000, help="certificates per measurement")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    count = 5 if args.smoke else args.count
    procs = 2 if args.smoke else args.processes
    os.environ.setdefault("GOVPKI_KEY_PASSPHRASE", PASSPHRASE)

    results: dict = {"benchmark": "issuance", "count": count, "processes": procs,
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                     "rates_per_s": {}, "ratios": {}}
    rates = results["rates_per_s"]
    with tempfile.TemporaryDirectory(prefix="govpki-bench-") as tmp:
        base = Path(tmp)
        token = softhsm_setup(base / "softhsm")
        pg = pg_database("govpki_bench")
        setups = [("sqlite", "file")]
        if pg:
            setups.append(("postgres", "file"))
        if token:
            setups.append(("sqlite" if not pg else "postgres", "softhsm"))
        try:
            for db, keys in setups:
                home = base / f"home-{db}-{keys}"
                home.mkdir()
                url = pg if db == "postgres" else f"sqlite:///{home / 'govpki.sqlite3'}"
                assert url
                if db == "postgres" and keys == "softhsm":
                    drop_pg(url)
                    url = pg_database("govpki_bench")
                    assert url
                ctx = build(home, url, keys, token)
                for ca, key_type in (("ec", "ec-p256"), ("rsa", "rsa-2048")):
                    tj = json.dumps(token) if keys == "softhsm" else None
                    for batch in (1, BATCH):
                        name = f"pipeline.{db}.{keys}.{key_type}.batch{batch}"
                        one = elapsed(_pipeline_worker(
                            (str(home), url, keys, ca, count, tj, batch, None)))
                        rates[f"{name}.1proc"] = count / one
                        if db == "postgres":
                            per = max(1, count // procs)
                            wall = run_parallel(_pipeline_worker, [
                                (str(home), url, keys, ca, per, tj, batch)
                                for _ in range(procs)])
                            rates[f"{name}.{procs}proc"] = per * procs / wall
                    if keys == "softhsm":
                        from ca.store import get_authority
                        from core.db import transaction

                        with transaction(ctx.sessions) as session:
                            key_uri = get_authority(session, ca).key_uri
                        rates[f"softhsm_raw_sign.{key_type}"] = count / softhsm_raw(
                            ctx, key_uri, count)
                ctx.close()
        finally:
            if pg:
                drop_pg(pg)
        for key_type in ("ec-p256", "rsa-2048"):
            rates[f"limit.{key_type}.1proc"] = count / elapsed(
                _limit_worker((key_type, count, None)))
            per = max(1, count // procs)
            wall = run_parallel(_limit_worker, [(key_type, per) for _ in range(procs)])
            rates[f"limit.{key_type}.{procs}proc"] = per * procs / wall
            n = max(3, count // 10)
            rates[f"openssl_ca.{key_type}"] = n / openssl_ca_loop(base, n, key_type)

    rates["lint.govpki"], rates["lint.pkilint_traversal"] = lint_rates(count)
    ratios = results["ratios"]
    ratios["lint.govpki / lint.pkilint_traversal"] = (rates["lint.govpki"]
                                                      / rates["lint.pkilint_traversal"])
    for key_type in ("ec-p256", "rsa-2048"):
        for name, value in list(rates.items()):
            if not name.startswith("pipeline.") or key_type not in name:
                continue
            nproc = name.rsplit(".", 1)[1]
            limit = rates.get(f"limit.{key_type}.{nproc}")
            if limit:
                ratios[f"{name} / limit"] = value / limit
            ratios[f"{name} / openssl_ca"] = value / rates[f"openssl_ca.{key_type}"]
            if ".softhsm." in name and f"softhsm_raw_sign.{key_type}" in rates:
                ratios[f"{name} / softhsm_raw_sign"] = value / rates[
                    f"softhsm_raw_sign.{key_type}"]
    results["rates_per_s"] = {k: round(v, 1) for k, v in rates.items()}
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""CRL generation: seconds and peak memory for 10k, 100k and 1M revoked entries, beside
``openssl ca -gencrl`` on the same numbers of entries, in one run (JSON on stdout).

- ``govpki``: ``ca.crl.publish_crls`` for one CA in a fresh process (read every revoked row
  from the database, encode, sign with the CA's file key, verify, store the full CRL and its
  delta, audit) — the whole publication, not just the encoding. The rows are bulk-inserted
  with SQL beforehand (setup, not measured). Peak memory is the worker's ru_maxrss (os.wait4),
  with the same process's maxrss before publishing (interpreter + imports) beside it.
- ``openssl_ca``: ``openssl ca -gencrl`` over an index.txt with that many ``R`` lines, P-256
  key, SHA-256, AKI extension; ru_maxrss of the openssl process.

  .venv/bin/python bench/crl.py --out bench/results/crl.json    # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/crl.py --smoke                         # 1k entries, for CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pg import drop_pg, pg_database  # noqa: E402

PASSPHRASE = "bench-passphrase"
CEREMONY = """
authorities:
  - name: root
    profile: root-ca
    key: {label: bench-root, type: ec-p384}
    subject: CN=Bench Root,O=青海省人民政府办公厅,ST=青海省,C=CN
    validity_days: 3650
  - name: bench
    parent: root
    profile: issuing-ca-officials
    key: {label: bench-ca, type: ec-p256}
    subject: CN=Bench CA,O=青海省人民政府办公厅,ST=青海省,C=CN
    validity_days: 1825
audit_key: {label: bench-audit, type: ec-p256}
"""


def _context(home: Path, db_url: str):  # type: ignore[no-untyped-def]
    from ca.context import CaContext
    from core.config import AuditConfig, Config
    from hsm.file_store import FileKeyStore
    from hsm.keystore import KeyRing

    config = Config(home=home, database_url=db_url, audit=AuditConfig(key_uri="file:bench-audit"))
    keyring = KeyRing([FileKeyStore(home / "keys", passphrase=PASSPHRASE.encode())])
    return CaContext.open(config, keyring=keyring)


def build(home: Path, db_url: str) -> None:
    from ca.ceremony import parse_ceremony, run_ceremony
    from ca.context import version_locations
    from core import migrate
    from core.db import make_engine

    engine = make_engine(db_url)
    migrate.upgrade(engine, version_locations())
    engine.dispose()
    ctx = _context(home, db_url)
    run_ceremony(ctx, parse_ceremony(CEREMONY, "bench"), key_uri=lambda label: f"file:{label}",
                 actor="bench")
    ctx.close()


def bulk_insert(db_url: str, count: int) -> float:
    """Setup, not measured: ``count`` revoked certificates under CA 'bench', inserted by SQL."""
    from sqlalchemy import text

    from core.db import make_engine

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    params = {"n": count, "nb": now - dt.timedelta(days=1), "na": now + dt.timedelta(days=365),
              "ra": now - dt.timedelta(hours=2), "salt": secrets.token_hex(8)}
    columns = ("authority_id, serial, profile, subject, key_type, state, tbs_der, not_before, "
               "not_after, status, revoked_at, revocation_reason, status_changed_at, "
               "requested_by, created_at")
    reason = ("CASE x % 3 WHEN 0 THEN 'keyCompromise' WHEN 1 THEN 'unspecified' "
              "ELSE 'superseded' END")
    aid = "(SELECT id FROM ca_authority WHERE name = 'bench')"
    if db_url.startswith("sqlite"):
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        params.update({k: params[k].strftime(fmt)  # type: ignore[attr-defined]
                       for k in ("nb", "na", "ra")})
        sql = (f"INSERT INTO ca_certificate ({columns}) "  # noqa: S608 (constants only)
               f"WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < :n) "
               f"SELECT {aid}, '7' || substr(lower(hex(randomblob(16))), 2), 'official-signing', "
               f"'CN=bench', 'ec-p256', 'issued', x'', :nb, :na, 'revoked', :ra, {reason}, :ra, "
               f"'bench', :nb FROM cnt")
    else:
        sql = (f"INSERT INTO ca_certificate ({columns}) "  # noqa: S608 (constants only)
               f"SELECT {aid}, '7' || substr(md5(x::text || :salt), 2), 'official-signing', "
               f"'CN=bench', 'ec-p256', 'issued', ''::bytea, :nb, :na, 'revoked', :ra, {reason}, "
               f":ra, 'bench', :nb FROM generate_series(1, :n) AS x")
    engine = make_engine(db_url)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(sql), params)
    if not db_url.startswith("sqlite"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE ca_certificate"))
    engine.dispose()
    return time.perf_counter() - start


def worker(home: Path, db_url: str) -> None:
    """In a fresh process: publish the CA's CRLs once and report time and memory."""
    import resource

    from ca.crl import publish_crls
    from ca.issuer import cached_issuer

    ctx = _context(home, db_url)
    cached_issuer(ctx, "bench")  # key loaded: the publication is what is timed
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    records = publish_crls(ctx, "bench", actor="bench")
    seconds = time.perf_counter() - start
    full = records[0]
    print(json.dumps({"seconds": round(seconds, 3), "entries": full.entries,
                      "der_bytes": len(full.der), "baseline_rss_mib": round(baseline / 1024, 1)}))
    ctx.close()


# A small launcher process: the child's ru_maxrss counts the memory of whatever it was forked
# from (Linux keeps the pre-exec high-water mark), so children are forked from this ~10 MB
# interpreter instead of the benchmark's own (which holds SQLAlchemy, pyca, ...).
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_measured(argv: list[str], env: dict[str, str] | None = None
                  ) -> tuple[str, float, float]:
    """Run ``argv`` and return (stdout, wall seconds, peak RSS MiB of exactly that program)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "maxrss"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, str(rss_file), *argv],
                              capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip()[-800:]}")
        return proc.stdout, seconds, int(rss_file.read_text()) / 1024


def measure_govpki(home: Path, db_url: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out, wall, rss = _run_measured([sys.executable, str(Path(__file__).resolve()), "--worker",
                                    str(home), db_url], env)
    result = json.loads(out.strip().splitlines()[-1])
    result.update({"process_wall_seconds": round(wall, 3), "peak_rss_mib": round(rss, 1)})
    return result


def openssl_setup(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench openssl CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "crlnumber").write_text("01\n")
    (directory / "index.txt.attr").write_text("unique_subject = no\n")
    (directory / "openssl.cnf").write_text(f"""
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {directory}
database = $dir/index.txt
certificate = $dir/ca.pem
private_key = $dir/ca.key
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_hours = 24
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
""")


def measure_openssl(directory: Path, count: int) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC)
    expiry = (now + dt.timedelta(days=365)).strftime("%y%m%d%H%M%SZ")
    revoked = (now - dt.timedelta(hours=2)).strftime("%y%m%d%H%M%SZ")
    reasons = ("keyCompromise", "", "superseded")
    with open(directory / "index.txt", "w", encoding="ascii") as index:
        for i in range(count):
            reason = reasons[i % 3]
            when = f"{revoked},{reason}" if reason else revoked
            index.write(f"R\t{expiry}\t{when}\t7{secrets.token_hex(16)[1:].upper()}\tunknown\t"
                        f"/CN=bench{i}\n")
    _, seconds, rss = _run_measured(["openssl", "ca", "-gencrl", "-batch", "-config",
                                     str(directory / "openssl.cnf"), "-out",
                                     str(directory / "crl.pem")])
    return {"seconds": round(seconds, 3), "entries": count, "peak_rss_mib": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1k entries only, for CI")
    parser.add_argument("--sizes", default=None, help="comma-separated entry counts")
    parser.add_argument("--openssl-sizes", default=None, help="comma-separated entry counts")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--worker", nargs=2, metavar=("HOME", "DB_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1])
        return
    sizes = [1000] if args.smoke else [10_000, 100_000, 1_000_000]
    openssl_sizes = [1000] if args.smoke else [100_000, 1_000_000]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    if args.openssl_sizes:
        openssl_sizes = [int(s) for s in args.openssl_sizes.split(",")]
    results: dict[str, object] = {
        "benchmark": "crl", "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "openssl": subprocess.run(["openssl", "version"], capture_output=True,
                                              text=True).stdout.strip()},
        "govpki": {}, "openssl_ca": [],
    }
    with tempfile.TemporaryDirectory(prefix="govpki-bench-crl-") as tmp:
        base = Path(tmp)
        for db in args.db.split(","):
            home = base / db
            home.mkdir()
            url = (f"sqlite:///{home / 'govpki.sqlite3'}" if db == "sqlite"
                   else pg_database("govpki_bench_crl"))
            if url is None:
                print(f"skipping {db}: not reachable", file=sys.stderr)
                continue
            try:
                build(home, url)
                runs = []
                inserted = 0
                for size in sorted(sizes):
                    setup = bulk_insert(url, size - inserted)
                    inserted = size
                    run = measure_govpki(home, url)
                    run["setup_insert_seconds"] = round(setup, 1)
                    runs.append(run)
                    print(f"govpki {db} {size}: {run}", file=sys.stderr)
                results["govpki"][db] = runs  # type: ignore[index]
            finally:
                if db != "sqlite":
                    drop_pg(url)
        ossl = base / "openssl"
        ossl.mkdir()
        openssl_setup(ossl)
        for size in openssl_sizes:
            run = measure_openssl(ossl, size)
            results["openssl_ca"].append(run)  # type: ignore[attr-defined]
            print(f"openssl ca -gencrl {size}: {run}", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

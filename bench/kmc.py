"""Key management centre throughput: encryption key pairs generated, escrowed and certified.

Measured side by side in one run (JSON on stdout):
- ``escrow``: ``kmc.escrow.escrow_key`` in-process, one key pair at a time — generate the
  RSA-2048 pair (on SoftHSM2, or in software for the file store), sign its CSR, wrap it under
  the master key, record it, have the CA issue the official-encryption certificate (lint, record,
  sign, record), record the certificate — per database × key store.
- ``floor``: in the same setup, SoftHSM2's own C_GenerateKeyPair for RSA-2048 session keys on
  the same token (generate + destroy), or pyca's RSA-2048 generation for the file store: the
  ceiling of any escrow that generates its key there. RSA generation time varies a lot from key
  to key (prime search) and the machine may be shared, so escrow and floor are *interleaved*
  (one escrow, one bare generation, repeat) and timed separately: both see the same load.
- ``overhead_ms``: (escrow time − floor time) per key — everything but key generation (CSR
  signature on the token, wrap, two recorded transactions, the CA's issuance with its lint).
- ``release``: ``kmc.delivery.wrap_escrowed`` (unwrap in the HSM, re-wrap for a token's
  transport key) per second, for the recovery and delivery side.
Ratios: escrow / its floor.

  .venv/bin/python bench/kmc.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/kmc.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

import kmc  # noqa: E402
from bench.issuance import CEREMONY, PASSPHRASE, keyring_for, softhsm_setup  # noqa: E402
from bench.pg import drop_pg, pg_database  # noqa: E402
from ca.ceremony import parse_ceremony, run_ceremony  # noqa: E402
from ca.context import CaContext, version_locations  # noqa: E402
from core import migrate  # noqa: E402
from core.config import AuditConfig, Config  # noqa: E402
from core.db import make_engine  # noqa: E402
from hsm.pkcs11_uri import Pkcs11Uri  # noqa: E402
from kmc import keys  # noqa: E402
from kmc.delivery import wrap_escrowed  # noqa: E402
from kmc.escrow import EscrowRecord, KeyOwner, escrow_key  # noqa: E402

SUBJECT = "CN=张三,OU=办公室,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"
OWNER = KeyOwner("official", "ra-official:1", "630000", "/630000/")


def build(home: Path, db_url: str, key_store: str, token: dict[str, str] | None) -> CaContext:
    """The bench CA hierarchy (bench/issuance.py's ceremony) plus kmc's tables and master key."""
    keyring, ks, uri = keyring_for(home, key_store, token)
    config = Config(home=home, database_url=db_url, keystore=ks,
                    audit=AuditConfig(key_uri=uri("bench-audit")))  # type: ignore[operator]
    engine = make_engine(db_url)
    migrate.upgrade(engine, [*version_locations(), *kmc.version_locations()])
    engine.dispose()
    ctx = CaContext.open(config, keyring=keyring)
    run_ceremony(ctx, parse_ceremony(CEREMONY, "bench"), key_uri=uri, actor="bench")  # type: ignore[arg-type]
    master = (Pkcs11Uri(token=token["label"], object=f"{home.name}-kmc-master",
                        type="secret-key").format() if key_store == "softhsm" and token
              else "file:kmc-master")
    keys.init_master_key(ctx, actor="bench", key_uri=master)
    return ctx


def escrow_one(ctx: CaContext, i: int) -> EscrowRecord:
    return escrow_key(ctx, OWNER, ca="rsa", profile="official-encryption", subject=SUBJECT,
                      subscriber_ref=f"ra-official:1/request:{i}", actor="bench")


def paired(count: int, first, second) -> tuple[float, float]:
    """Alternate ``first`` and ``second`` ``count`` times each; seconds spent in each."""
    first(-1)
    second(-1)
    spent = [0.0, 0.0]
    for i in range(count):
        for slot, fn in enumerate((first, second)):
            start = time.perf_counter()
            fn(i)
            spent[slot] += time.perf_counter() - start
    return spent[0], spent[1]


def timed(count: int, fn) -> float:
    fn(-1)  # warm caches (profile, issuer, lint validators, master key handle)
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return time.perf_counter() - start


def pyca_keygen(_i: int) -> None:
    rsa.generate_private_key(65537, 2048)


def softhsm_keygen(ctx: CaContext):
    """C_GenerateKeyPair RSA-2048, session objects, destroyed at once (under the global lock,
    as the escrow backend does)."""
    from pkcs11 import KeyType as P11KeyType

    from hsm.pkcs11_lock import PKCS11_LOCK

    store = next(s for s in ctx.keyring.stores if s.scheme == "pkcs11")

    def one(_i: int) -> None:
        with PKCS11_LOCK:
            public, private = store._session().generate_keypair(  # type: ignore[attr-defined]
                P11KeyType.RSA, 2048, store=False)
            private.destroy()
            public.destroy()
    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--count", type=int, default=60, help="key pairs per measurement")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    count = 2 if args.smoke else args.count
    os.environ.setdefault("GOVPKI_KEY_PASSPHRASE", PASSPHRASE)
    results: dict = {"benchmark": "kmc", "count": count, "key_type": "rsa-2048",
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                     "rates_per_s": {}, "ratios": {}, "overhead_ms": {}}
    rates = results["rates_per_s"]
    with tempfile.TemporaryDirectory(prefix="govpki-bench-kmc-") as tmp:
        base = Path(tmp)
        token = softhsm_setup(base / "softhsm")
        pg = None if args.smoke else pg_database("govpki_bench_kmc")
        setups = [("sqlite", "file")]
        if token:
            setups.append(("sqlite", "softhsm"))
            if pg:
                setups.append(("postgres", "softhsm"))
        try:
            for db, key_store in setups:
                home = base / f"home-{db}-{key_store}"
                home.mkdir()
                url = pg if db == "postgres" else f"sqlite:///{home / 'govpki.sqlite3'}"
                assert url
                ctx = build(home, url, key_store, token)
                floor = softhsm_keygen(ctx) if key_store == "softhsm" else pyca_keygen
                escrow_s, floor_s = paired(count, lambda i, ctx=ctx: escrow_one(ctx, i), floor)
                name = f"{db}.{key_store}"
                rates[f"escrow.{name}"] = count / escrow_s
                rates[f"floor.{name}"] = count / floor_s
                results["overhead_ms"][name] = round((escrow_s - floor_s) / count * 1000, 1)
                record = escrow_one(ctx, 10**6)
                transport = rsa.generate_private_key(65537, 2048).public_key()
                rates[f"release.{db}.{key_store}"] = count / timed(
                    count, lambda _i, ctx=ctx, r=record, t=transport: wrap_escrowed(ctx, r, t))
                ctx.close()
        finally:
            if pg:
                drop_pg(pg)
    ratios = results["ratios"]
    for name, value in list(rates.items()):
        if name.startswith("escrow."):
            floor = "floor." + name.split(".", 1)[1]
            ratios[f"{name} / {floor}"] = value / rates[floor]
    results["rates_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""OCSP throughput and latency: govpki's responder under granian against ``openssl ocsp`` as a
responder over the same certificates, in the same run (JSON on stdout).

Load comes from ab (apache2-utils), a C generator that works against both (wrk cannot read the
openssl responder's close-delimited answers), with a new connection per request. Two cases:
``cached`` (one SHA-1 CertID, no nonce: govpki answers from its pre-signed dict) and ``nonce``
(a nonce makes both responders sign each answer). openssl's responder binds every address, so
the run re-executes itself inside ``unshare -n`` with only loopback up; ``--smoke`` runs tiny and
falls back to plain loopback ports when unshare is unavailable.

  .venv/bin/python bench/ocsp.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/ocsp.py --smoke    # a few seconds, for CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

PASSPHRASE = "bench-passphrase"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app():  # type: ignore[no-untyped-def]
    """granian --factory entry point: the responder over the home in GOVPKI_BENCH_HOME."""
    from ca.context import CaContext
    from core.config import AuditConfig, Config
    from hsm.file_store import FileKeyStore
    from hsm.keystore import KeyRing
    from ocsp.wsgi import create_ocsp_app

    home = Path(os.environ["GOVPKI_BENCH_HOME"])
    config = Config(home=home, database_url=f"sqlite:///{home / 'govpki.sqlite3'}",
                    public_base_url="http://127.0.0.1:8600",
                    audit=AuditConfig(key_uri="file:audit"))
    ctx = CaContext.open(config, keyring=KeyRing([FileKeyStore(home / "keys",
                                                               passphrase=PASSPHRASE.encode())]))
    return create_ocsp_app(ctx, listen=False)


def build(home: Path, certificates: int) -> dict[str, Path]:
    """Demo hierarchy, ``certificates`` leaves (a tenth revoked), every answer pre-signed, and
    the same data as files for openssl's responder."""
    from ca.ceremony import load_ceremony, run_ceremony
    from ca.cli import DEMO_CEREMONY
    from ca.context import CaContext, version_locations
    from ca.issuance import CertificateRequest, issue_certificates
    from ca.revocation import revoke
    from ca.status import service_key
    from ca.store import chain_der
    from core import migrate
    from core.config import AuditConfig, Config
    from core.db import make_engine, transaction
    from hsm.file_store import FileKeyStore
    from hsm.keystore import KeyRing
    from ocsp import version_locations as ocsp_versions
    from ocsp.responder import OcspResponder
    from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key

    url = f"sqlite:///{home / 'govpki.sqlite3'}"
    engine = make_engine(url)
    migrate.upgrade(engine, [*version_locations(), *ocsp_versions()])
    engine.dispose()
    config = Config(home=home, database_url=url, public_base_url="http://127.0.0.1:8600",
                    audit=AuditConfig(key_uri="file:audit"))
    store = FileKeyStore(home / "keys", passphrase=PASSPHRASE.encode())
    ctx = CaContext.open(config, keyring=KeyRing([store]))
    run_ceremony(ctx, load_ceremony(DEMO_CEREMONY), key_uri=lambda label: f"file:{label}",
                 actor="bench")
    issued = [c for c in issue_certificates(ctx, [CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN) for _ in range(certificates)]) if not isinstance(c, Exception)]
    revoked = {c.serial for c in issued[::10]}
    for serial in revoked:
        revoke(ctx, serial, "keyCompromise", actor="bench")
    OcspResponder(ctx).presign_all()
    with transaction(ctx.sessions) as session:
        chain = chain_der(session, "officials")
        signer = service_key(session, "officials", "ocsp-signer")
    files = {"issuer": home / "issuer.pem", "signer": home / "signer.pem",
             "key": home / "signer-key.pem", "index": home / "index.txt",
             "leaf": home / "leaf.pem"}
    files["issuer"].write_bytes(x509.load_der_x509_certificate(chain[0]).public_bytes(
        serialization.Encoding.PEM))
    files["signer"].write_bytes(signer.certificate().public_bytes(serialization.Encoding.PEM))
    key = ctx.keyring.get(signer.key_uri).as_private_key()
    files["key"].write_bytes(key.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    lines = []
    for c in issued:
        expiry = c.not_after.strftime("%y%m%d%H%M%SZ")
        serial = c.serial.upper().rjust(len(c.serial) + len(c.serial) % 2, "0")
        if c.serial in revoked:
            when = dt.datetime.now(dt.UTC).strftime("%y%m%d%H%M%SZ")
            lines.append(f"R\t{expiry}\t{when},keyCompromise\t{serial}\tunknown\t"
                         f"/CN=leaf-{c.serial}\n")
        else:
            lines.append(f"V\t{expiry}\t\t{serial}\tunknown\t/CN=leaf-{c.serial}\n")
    files["index"].write_text("".join(lines))
    files["leaf"].write_text(issued[1].pem)
    ctx.close()
    return files


def _requests(files: dict[str, Path], home: Path) -> dict[str, Path]:
    out = {}
    for name, extra in (("cached", ["-no_nonce"]), ("nonce", [])):
        path = home / f"{name}.req"
        subprocess.run(["openssl", "ocsp", "-issuer", str(files["issuer"]), "-cert",
                        str(files["leaf"]), "-reqout", str(path), *extra],
                       check=True, capture_output=True)
        out[name] = path
    return out


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def ab(url: str, request: Path, n: int, concurrency: int, attempts: int = 3,
       before_retry: Callable[[], None] | None = None) -> dict[str, float]:
    """One ab run; a run that ab itself aborts (seen against openssl's single-threaded
    responder: a reset connection ends ab with status 119, or the responder wedges on one
    connection and ab times out) is repeated whole, never patched; ``before_retry`` restarts
    the peer first, since a wedged openssl responder stays wedged."""
    argv = ["ab", "-q", "-r", "-s", "10", "-n", str(n), "-c", str(concurrency), "-p",
            str(request), "-T", "application/ocsp-request", url]
    for attempt in range(attempts):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        print(f"ab exited {result.returncode} against {url} (attempt {attempt + 1}): "
              f"{result.stderr.strip()[-200:]}", file=sys.stderr)
        if before_retry is not None and attempt + 1 < attempts:
            before_retry()
    else:
        raise RuntimeError(f"ab failed {attempts} times against {url}")
    out = result.stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {int(m.group(1)): float(m.group(2))
           for m in re.finditer(r"^\s+(\d+)%\s+(\d+)", out, re.MULTILINE)}
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {"requests_per_s": rps, "p50_ms": pct.get(50, 0.0), "p99_ms": pct.get(99, 0.0),
            "failed": failed, "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def run(smoke: bool) -> dict[str, object]:
    n, concurrency, certificates = (300, 4, 5) if smoke else (20000, 16, 100)
    workers = os.cpu_count() or 1
    results: dict[str, object] = {"host": platform.node(), "cpus": workers,
                                  "python": platform.python_version(), "smoke": smoke,
                                  "requests": n, "concurrency": concurrency,
                                  "network_namespace": os.environ.get("GOVPKI_BENCH_NS") == "1"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        files = build(home, certificates)
        reqs = _requests(files, home)
        ours_port, peer_port = _free_port(), _free_port()
        env = {**os.environ, "GOVPKI_BENCH_HOME": str(home), "PYTHONPATH": str(ROOT)}
        granian = subprocess.Popen(
            [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--factory",
             "--host", "127.0.0.1", "--port", str(ours_port), "--workers", str(workers),
             "--blocking-threads", "1", "--http", "1",
             "--working-dir", str(ROOT), "bench.ocsp:make_app"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peer_log = home / "peer.log"

        def start_peer() -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                ["openssl", "ocsp", "-index", str(files["index"]), "-port", str(peer_port),
                 "-rsigner", str(files["signer"]), "-rkey", str(files["key"]), "-CA",
                 str(files["issuer"]), "-ndays", "1", "-nrequest", str(4 * n + 100)],
                stdout=peer_log.open("wb"), stderr=subprocess.STDOUT)
            # Never probe openssl's responder with a bare connect: it hangs for good on a
            # client that sends nothing (DESIGN.md, Pitfalls). Wait for its "ACCEPT" line.
            deadline = time.monotonic() + 20
            while b"ACCEPT" not in peer_log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("openssl ocsp did not start: "
                                       + peer_log.read_text(errors="replace"))
                time.sleep(0.05)
            return proc

        peers: list[subprocess.Popen[bytes]] = []

        def restart_peer() -> None:
            _stop(peers[-1])
            peers.append(start_peer())

        try:
            _wait_port(ours_port)
            peers.append(start_peer())
            for case, req in reqs.items():
                ab(f"http://127.0.0.1:{ours_port}/ocsp", req, min(n, 200), concurrency)  # warm
                ours = ab(f"http://127.0.0.1:{ours_port}/ocsp", req, n, concurrency)
                theirs = ab(f"http://127.0.0.1:{peer_port}/", req, n, concurrency,
                            attempts=4, before_retry=restart_peer)
                results[case] = {"govpki_granian": ours, "openssl_ocsp": theirs,
                                 "ratio": round(ours["requests_per_s"]
                                                / theirs["requests_per_s"], 2)}
        finally:
            for proc in (granian, *peers):
                _stop(proc)
    return results


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _in_namespace(argv: list[str]) -> bool:
    """Re-run inside ``unshare -n`` with loopback up; False if that is not possible here."""
    if os.environ.get("GOVPKI_BENCH_NS") == "1" or not shutil.which("unshare"):
        return False
    script = 'ip link set lo up && exec "$@"'
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return False
    env = {**os.environ, "GOVPKI_BENCH_NS": "1"}
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", sys.executable,
                           *argv], env=env, check=False)
    sys.exit(proc.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument("--no-unshare", action="store_true",
                        help="use loopback ports in this network namespace")
    args = parser.parse_args()
    if not shutil.which("ab"):
        sys.exit("ab (apache2-utils) is required: apt-get install apache2-utils")
    if not args.no_unshare and os.environ.get("GOVPKI_BENCH_NS") != "1":
        ok = _in_namespace([str(Path(__file__).resolve()), *sys.argv[1:]])
        if not ok and not args.smoke:
            sys.exit("unshare -n is unavailable: run as root, or pass --no-unshare")
    print(json.dumps(run(args.smoke), indent=2))


if __name__ == "__main__":
    main()

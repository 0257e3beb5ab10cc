"""RA throughput end to end: submit + approve + issue per certificate request, through the REST
API over real HTTP (`govpki serve`, i.e. granian), on SQLite and on PostgreSQL (JSON on stdout).

One "flow" is what an RA does for each certificate: ``POST /api/v1/requests`` (new-pair with a
P-256 CSR) by one operator, then ``POST /api/v1/requests/{id}/approve`` by a second, which
approves and issues (pkilint, signing, storage, audit) in the same call. The peer, measured in
the same run on the same home, is the same flow through ra's Python services in-process
(requests.submit / approve / execute, the calls `govpki ra request approve` makes): the ratio
api/service is what HTTP, JSON, bearer-token authentication and the API's extra reads cost on
top of the work itself. Both run with one flow at a time (latency) and with one flow in
flight per worker process (throughput: granian ``--workers N`` against N service processes),
in alternating rounds so that drift over the run falls on both alike.

The server for that ratio is ``govpki serve --only ca`` (the CA/RA node of a split deployment:
pages, REST API, CRLs; no OCSP responder), so both sides do the same work. ``api_full`` is the
embedded default, ``govpki serve`` with everything on one node: there each issued certificate
also gets its OCSP answer pre-signed in the issuing call, and on SQLite every worker polls for
status changes and re-signs them (ocsp/events.py) — real work of that deployment, not API
overhead, hence measured apart.

  .venv/bin/python bench/ra.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/ra.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from bench.pg import drop_pg, pg_database  # noqa: E402

GOVPKI = str(Path(sys.executable).parent / "govpki")
ORG = "630100-BGT"
WARM = 3
#: Seconds to let spawned service processes warm up before they start together, and to let a
#: fresh server finish its start-up jobs; --smoke shortens both.
PAUSE = {"spawn": 8.0, "serve": 5.0}


def csr_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOVPKI_DATABASE_URL", "GOVPKI_KEY_PASSPHRASE")}
    env.update(GOVPKI_HOME=str(home), GOVPKI_ACTOR="bench")
    if db_url:
        env["GOVPKI_DATABASE_URL"] = db_url
    return env


def prepare(home: Path, db_url: str | None, clients: int) -> dict[str, Any]:
    """`govpki init` a home, then (in-process) operators, their tokens and officials."""
    env = _env(home, db_url)
    subprocess.run([GOVPKI, "init"], env=env, cwd=ROOT, check=True, capture_output=True)
    os.environ.clear()
    os.environ.update(env)
    from ca.context import CaContext
    from core.config import load_config
    from ra import api_tokens, operators
    from ra.officials import OfficialInput, create_official

    ctx = CaContext.open(load_config())
    try:
        admin = operators.add_operator(ctx.sessions, None, "bench-admin", org_code="630000",
                                       role="ca-admin")
        clerk = operators.add_operator(ctx.sessions, admin, "bench-clerk", org_code="630100",
                                       role="ra-operator")
        approver = operators.add_operator(ctx.sessions, admin, "bench-approver",
                                          org_code="630100", role="ra-operator")
        officials = [create_official(ctx.sessions, clerk, OfficialInput(
            f"BENCH-{i}", "张三", ORG, "科员", "", "秘书科")).identifier
            for i in range(clients)]
        tokens = {op.username: api_tokens.create_api_token(ctx, op, op.username, "bench")[0]
                  for op in (clerk, approver)}
    finally:
        ctx.close()
    return {"clerk": "bench-clerk", "approver": "bench-approver", "officials": officials,
            "clerk_token": tokens["bench-clerk"], "approver_token": tokens["bench-approver"]}


def _summary(latencies: list[float], wall: float) -> dict[str, Any]:
    """Rate and latency percentiles; ``_latencies`` keeps the raw values for combining."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {"requests_per_s": round(len(ordered) / wall, 2), "flows": len(ordered),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "_latencies": latencies}


# --------------------------------------------------------------------------------------------
# The peer: ra's services in-process


def _service_worker(args: tuple[dict[str, str], dict[str, Any], str, list[str], float | None]
                    ) -> tuple[float, float, list[float]]:
    env, setup, official, csrs, start_at = args
    os.environ.clear()
    os.environ.update(env)
    from ca.context import CaContext
    from core.config import load_config
    from ra import operators, requests

    ctx = CaContext.open(load_config())
    clerk = operators.get_operator(ctx.sessions, setup["clerk"])
    approver = operators.get_operator(ctx.sessions, setup["approver"])

    def flow(csr: str) -> None:
        submitted = requests.submit(ctx, clerk, official, "new-pair", csr=csr.encode())
        approved = requests.approve(ctx, approver, submitted.id)
        issued = requests.execute(ctx, approver, approved.id)
        assert issued.state == "issued"

    for _ in range(WARM):  # warm: profile, lint validator, CA key
        flow(csr_pem())
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    latencies = []
    start = time.time()
    for csr in csrs:
        t0 = time.perf_counter()
        flow(csr)
        latencies.append(time.perf_counter() - t0)
    end = time.time()
    ctx.close()
    return start, end, latencies


def run_service(env: dict[str, str], setup: dict[str, Any], csrs: list[list[str]]
                ) -> dict[str, Any]:
    """One process per list of CSRs, started together (spawned and warmed first)."""
    if len(csrs) == 1:
        start, end, latencies = _service_worker((env, setup, setup["officials"][0], csrs[0],
                                                 None))
        return _summary(latencies, end - start)
    start_at = time.time() + PAUSE["spawn"]
    with mp.get_context("spawn").Pool(len(csrs)) as pool:
        spans = pool.map(_service_worker, [(env, setup, setup["officials"][i], batch, start_at)
                                           for i, batch in enumerate(csrs)])
    wall = max(e for _, e, _ in spans) - min(s for s, _, _ in spans)
    return _summary([x for _, _, lat in spans for x in lat], wall)


# --------------------------------------------------------------------------------------------
# The API over HTTP


class ApiClient:
    """One keep-alive connection, as an API client would hold."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        self.conn.request("POST", "/api/v1" + path, json.dumps(body), {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = json.loads(response.read())
        if response.status >= 300:
            raise RuntimeError(f"POST {path}: {response.status} {data}")
        return data

    def flow(self, setup: dict[str, Any], official: str, csr: str) -> None:
        submitted = self.post("/requests", setup["clerk_token"], {
            "official": official, "kind": "new-pair", "csr": csr})
        issued = self.post(f"/requests/{submitted['id']}/approve", setup["approver_token"], {})
        assert issued["state"] == "issued", issued


def run_api(port: int, setup: dict[str, Any], csrs: list[list[str]]) -> dict[str, Any]:
    """One client thread (one flow in flight) per list of CSRs."""
    results: list[list[float]] = [[] for _ in csrs]
    barrier = threading.Barrier(len(csrs) + 1)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            api = ApiClient(port)
            for _ in range(WARM):  # warm this connection's worker (CA key, lint, caches)
                api.flow(setup, setup["officials"][i], csr_pem())
            barrier.wait()
            for csr in csrs[i]:
                t0 = time.perf_counter()
                api.flow(setup, setup["officials"][i], csr)
                results[i].append(time.perf_counter() - t0)
        except BaseException as exc:  # reported below, after the threads end
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(csrs))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return _summary([x for r in results for x in r], wall)


def serve(home: Path, db_url: str | None, port: int, workers: int, only: str | None
          ) -> subprocess.Popen[bytes]:
    env = _env(home, db_url)
    argv = [GOVPKI, "serve", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(argv + (["--only", only] if only else []), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=(home / "serve.log").open("wb"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("govpki serve did not start: "
                       + (home / "serve.log").read_text(errors="replace")[-2000:])


# --------------------------------------------------------------------------------------------


def _interleaved(env: dict[str, str], setup: dict[str, Any], port: int, count: int,
                 clients: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Service and API with ``clients`` flows in flight, in alternating rounds, so that drift
    over the run (the database growing, the machine's other load: PostgreSQL shares these
    cores) falls on both alike."""
    latencies: tuple[list[float], list[float]] = ([], [])
    walls = [0.0, 0.0]
    per = max(1, count // rounds // clients)
    for _ in range(rounds):
        for side, measure_one in enumerate((
                lambda lists: run_service(env, setup, lists),
                lambda lists: run_api(port, setup, lists))):
            measured = measure_one([[csr_pem() for _ in range(per)] for _ in range(clients)])
            walls[side] += per * clients / measured["requests_per_s"]
            latencies[side].extend(measured.pop("_latencies"))
    return _summary(latencies[0], walls[0]), _summary(latencies[1], walls[1])


def measure(base: Path, db: str, db_url: str | None, count: int, workers: int, rounds: int
            ) -> dict[str, dict[str, float]]:
    home = base / f"home-{db}"
    setup = prepare(home, db_url, workers)
    env = dict(os.environ)
    out: dict[str, dict[str, float]] = {}
    for name, only in (("api", "ca"), ("api_full", None)):
        port = _free_port()
        proc = serve(home, db_url, port, workers, only)
        try:
            time.sleep(PAUSE["serve"])  # the node's start-up jobs (scheduler) are done
            for clients in (1, workers):
                level = f"c{clients}"
                if name == "api":
                    service, api = _interleaved(env, setup, port, count, clients, rounds)
                    out[f"service.{level}"], out[f"api.{level}"] = _strip(service), _strip(api)
                else:
                    per = max(1, count // clients)
                    out[f"{name}.{level}"] = _strip(run_api(
                        port, setup, [[csr_pem() for _ in range(per)] for _ in range(clients)]))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


def _strip(summary: dict[str, Any]) -> dict[str, float]:
    summary.pop("_latencies", None)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--count", type=int, default=300, help="flows per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="granian workers = service processes = concurrent clients")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    count = 4 if args.smoke else args.count
    workers = 2 if args.smoke else args.workers
    rounds = 1 if args.smoke else 3
    if args.smoke:
        PAUSE.update(spawn=4.0, serve=1.0)
    results: dict[str, Any] = {
        "benchmark": "ra", "count": count, "workers": workers, "rounds": rounds,
        "flow": "POST /requests (new-pair, P-256 CSR) + POST /requests/{id}/approve "
                "(approve + issue)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": {}, "ratios": {}}
    saved_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="govpki-bench-ra-") as tmp:
        base = Path(tmp)
        pg = pg_database("govpki_bench_ra")
        setups: list[tuple[str, str | None]] = [("sqlite", None)]
        if pg:
            setups.append(("postgres", pg))
        try:
            for db, url in setups:
                measured = measure(base, db, url, count, workers, rounds)
                os.environ.clear()
                os.environ.update(saved_env)
                results["results"][db] = measured
                for level in ("c1", f"c{workers}"):
                    for name in ("api", "api_full"):
                        results["ratios"][f"{db}.{level} {name}/service"] = round(
                            measured[f"{name}.{level}"]["requests_per_s"]
                            / measured[f"service.{level}"]["requests_per_s"], 3)
        finally:
            if pg:
                drop_pg(pg)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Prometheus metrics at ``/metrics`` (text exposition format, prometheus-client).

Two kinds of numbers, kept apart on purpose:

* **State of the PKI, read from the database at scrape time** — certificates issued and
  refused, status changes and HSM failures (counted from the audit log, so the metrics agree
  with the tamper-evident record), CRL age and numbers per CA, pending reservations (serials
  recorded but not yet issued) and pending RA requests,
  certificates expiring within 30 days, the audit head and checkpoint age. Every worker and
  every node reports the same values, whichever of them Prometheus scrapes: no per-process
  state to add up, nothing lost when a worker restarts. Aggregate them across nodes with
  ``max``, never ``sum``.
  The audit counters are tallied incrementally: each process reads the log once, then only
  the rows after the last ``seq`` it saw (a primary-key range), so a scrape stays cheap on a
  log of millions of rows.
* **What this process saw** — OCSP requests by method and OCSP response status, their
  latency, key-store check failures. Under ``govpki serve --workers N`` a scrape reaches one
  worker at random, so these use prometheus-client's multiprocess mode: ``govpki serve``
  points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh ``GOVPKI_HOME/run/metrics/<pid>`` before the
  workers start, each worker writes its counters there (memory-mapped files), and whichever
  worker answers ``/metrics`` sums them all. Counters of a worker that died stay in the sum, as
  a counter must. Without the variable (tests, an embedding process) the same metrics live in
  this process's own registry.

This module imports ``prometheus_client`` lazily: the variable must be set before its first
import (the library reads it then), and `govpki serve` imports this module to set it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, and_, func, select

from ca.context import CaContext
from core.db import read_only, utcnow

if TYPE_CHECKING:
    from govpki.health import Probe

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
EXPIRY_WINDOW: Final = dt.timedelta(days=30)
# Scrapes within this many seconds share one database read (several Prometheus servers, or
# someone refreshing the page, do not each cost a round of queries).
CACHE_SECONDS: Final = 5.0
# Sub-millisecond buckets: a pre-signed OCSP answer is one dict lookup.
OCSP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                       2.5, 5.0)
# RFC 6960 §4.2.1 OCSPResponseStatus.
OCSP_STATUS: Final = {0: "successful", 1: "malformedRequest", 2: "internalError", 3: "tryLater",
                      5: "sigRequired", 6: "unauthorized"}
PENDING_STATES: Final = ("submitted", "approved")
# The classic text format, which every Prometheus (2.x and 3.x) reads; our names need none of
# format 1.0.0's UTF-8 escaping, so the bytes are the same.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_TALLIED: Final = ("ca.issue", "ca.revoke", "ca.suspend", "ca.release")


# ---------------------------------------------------------------------------------------------
# Multiprocess directory (no prometheus_client import here)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_multiprocess(home: Path) -> Path:
    """For `govpki serve`, before granian starts workers: a fresh metrics directory for this
    server process (directories of servers no longer running are removed). An operator's own
    PROMETHEUS_MULTIPROC_DIR is kept as it is."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(configured)
    base = home / "run" / "metrics"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in base.iterdir():
        if entry.is_dir() and entry.name.isdigit() and not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    path = base / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


# ---------------------------------------------------------------------------------------------
# Per-process metrics


class ProcessMetrics:
    """The counters and histograms this process updates (multiprocess-aware)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # Our own registry, not the library's global one: creating an app twice in one process
        # (tests) must not register the same names twice.
        self.registry = CollectorRegistry(auto_describe=True)
        self.ocsp_requests = Counter(
            "govpki_ocsp_requests", "OCSP requests answered, by HTTP method and OCSP response "
            "status (not-modified: a cached GET revalidated; http-NNN: not an OCSP reply)",
            ["method", "status"], registry=self.registry)
        self.ocsp_duration = Histogram(
            "govpki_ocsp_request_duration_seconds", "Time to answer one OCSP request",
            ["method"], buckets=OCSP_BUCKETS, registry=self.registry)
        self.keystore_failures = Counter(
            "govpki_keystore_check_failures", "Readiness checks that could not open a key "
            "(file missing, token absent, wrong PIN or passphrase)", registry=self.registry)
        self._children: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def observe_ocsp(self, method: str, status: str, seconds: float) -> None:
        child = self._children.get((method, status))
        if child is None:
            child = self._children[(method, status)] = self.ocsp_requests.labels(method, status)
        child.inc()
        duration = self._durations.get(method)
        if duration is None:
            duration = self._durations[method] = self.ocsp_duration.labels(method)
        duration.observe(seconds)


_process: ProcessMetrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> ProcessMetrics:
    global _process
    with _process_lock:
        if _process is None:
            _process = ProcessMetrics()
        return _process


def _ocsp_status(line: str, body: Iterable[bytes]) -> str:
    """The responseStatus of an OCSPResponse body (its first ENUMERATED), without parsing it."""
    if line.startswith("304"):
        return "not-modified"
    if not line.startswith("200"):
        return f"http-{line[:3]}"
    if not isinstance(body, list) or not body:
        return "successful"  # HEAD
    der = body[0]
    if len(der) < 5 or der[0] != 0x30:
        return "unparsed"
    offset = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    if len(der) < offset + 3 or der[offset] != 0x0A or der[offset + 1] != 1:
        return "unparsed"
    return OCSP_STATUS.get(der[offset + 2], "unparsed")


class OcspMetrics:
    """WSGI middleware around the OCSP app: one count and one latency sample per request.

    Attribute lookups fall through to the wrapped app (``close`` and friends)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.metrics = process_metrics()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        started = time.perf_counter()
        status: list[str] = []

        def remember(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(line)
            if exc_info is None:
                return start_response(line, headers)
            return start_response(line, headers, exc_info)

        body = self.app(environ, remember)
        self.metrics.observe_ocsp(environ.get("REQUEST_METHOD", "GET"),
                                  _ocsp_status(status[-1] if status else "000", body),
                                  time.perf_counter() - started)
        return body


# ---------------------------------------------------------------------------------------------
# State read from the database


@dataclass
class AuditTally:
    """Counts of audited outcomes, advanced by the rows after ``last_seq`` on each scrape."""

    last_seq: int = 0
    issued: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    status_changes: dict[tuple[str, str], int] = field(default_factory=dict)
    hsm_failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def advance(self, conn: Connection) -> int:
        """Read the rows committed since the last call; returns the head seq."""
        from core.audit import AuditEvent, AuditHead

        # The head first: every row up to it has committed (the head moves in the same
        # transaction as its rows), so `seq <= head` never reads half of a transaction.
        head = conn.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar() or 0
        with self.lock:
            if head <= self.last_seq:
                return head
            table = AuditEvent.__table__
            rows = conn.execute(
                select(table.c.seq, table.c.action, table.c.object_id, table.c.outcome,
                       table.c.details)
                .where(table.c.seq > self.last_seq, table.c.seq <= head,
                       (table.c.action.in_(_TALLIED)) | (table.c.outcome == "failure"))
                .order_by(table.c.seq).execution_options(yield_per=5000))
            for _seq, action, object_id, outcome, details in rows:
                self._count(action, object_id, outcome, details)
            self.last_seq = head
        return head

    def _count(self, action: str, object_id: str, outcome: str, details_text: str) -> None:
        try:
            details = json.loads(details_text)
        except ValueError:
            details = {}
        if not isinstance(details, dict):
            details = {}
        error = str(details.get("error") or "")
        if outcome == "failure" and error.startswith("hsm"):
            self.hsm_failures[action] = self.hsm_failures.get(action, 0) + 1
        ca = object_id.split("/", 1)[0]
        if action == "ca.issue":
            profile = str(details.get("profile") or "")
            if outcome == "success":
                key = (ca, profile)
                self.issued[key] = self.issued.get(key, 0) + 1
            else:
                rkey = (str(details.get("ca") or ""), profile, outcome, error)
                self.refused[rkey] = self.refused.get(rkey, 0) + 1
        elif action in ("ca.revoke", "ca.suspend", "ca.release") and outcome == "success":
            skey = (ca, action.removeprefix("ca."))
            self.status_changes[skey] = self.status_changes.get(skey, 0) + 1


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # counter | gauge
    documentation: str
    labels: tuple[str, ...]
    values: dict[Any, float]  # label values (a tuple, one per label) → value


class DatabaseCollector:
    """A prometheus-client collector reading the database (through the readiness probe's
    short-timeout engine) at scrape time."""

    def __init__(self, ctx: CaContext, probe: Probe) -> None:
        self.ctx = ctx
        self.probe = probe
        self.tally = AuditTally()
        self.cache_seconds = CACHE_SECONDS
        self._cache: tuple[float, list[Sample]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # names vary with the database's content; skip registration-time checks

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for sample in self.samples():
            family_cls = CounterMetricFamily if sample.kind == "counter" else GaugeMetricFamily
            family = family_cls(sample.name, sample.documentation, labels=sample.labels)
            for labels, value in sorted(sample.values.items()):
                family.add_metric(list(labels), value)
            yield family

    def samples(self) -> list[Sample]:
        with self._lock:
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < self.cache_seconds:
                return self._cache[1]
            samples = self._read()
            self._cache = (now, samples)
            return samples

    def _read(self) -> list[Sample]:
        up = Sample("govpki_database_up", "gauge",
                    "1 when the database answered this scrape's queries", (), {(): 0.0})
        try:
            with read_only(self.probe.engine) as conn:  # no write lock: a scrape only reads
                samples = self._query(conn)
        except Exception:
            return [up]
        up.values[()] = 1.0
        return [up, *samples, *self._checkpoint()]

    def _query(self, conn: Connection) -> list[Sample]:
        from ca.models import Authority, Certificate, PublishedCrl
        from ra.models import Request

        head = self.tally.advance(conn)
        t = self.tally
        with t.lock:
            issued = {k: float(v) for k, v in t.issued.items()}
            refused = {k: float(v) for k, v in t.refused.items()}
            changes = {k: float(v) for k, v in t.status_changes.items()}
            hsm = {(k,): float(v) for k, v in t.hsm_failures.items()}
        names = dict(conn.execute(select(Authority.id, Authority.name)).all())
        now = utcnow()

        # CRLs: the newest full and delta CRL of each CA (index ix_ca_crl_newest).
        newest = (select(PublishedCrl.authority_id, PublishedCrl.is_delta,
                         func.max(PublishedCrl.number).label("number"))
                  .group_by(PublishedCrl.authority_id, PublishedCrl.is_delta).subquery())
        crl_rows = conn.execute(
            select(PublishedCrl.authority_id, PublishedCrl.is_delta, PublishedCrl.number,
                   PublishedCrl.this_update, PublishedCrl.next_update)
            .join(newest, and_(PublishedCrl.authority_id == newest.c.authority_id,
                               PublishedCrl.is_delta == newest.c.is_delta,
                               PublishedCrl.number == newest.c.number))).all()
        crl_age: dict[tuple[str, ...], float] = {}
        crl_left: dict[tuple[str, ...], float] = {}
        crl_number: dict[tuple[str, ...], float] = {}
        for authority_id, is_delta, number, this_update, next_update in crl_rows:
            key = (names.get(authority_id, str(authority_id)), "delta" if is_delta else "full")
            this_update = _aware(this_update)
            crl_age[key] = (now - this_update).total_seconds()
            crl_left[key] = (_aware(next_update) - now).total_seconds()
            crl_number[key] = float(number)

        # Expiring soon: issued, not revoked, not yet expired, expiring within the window
        # (index ix_ca_certificate_authority_not_after).
        expiring = {(name,): 0.0 for name in names.values()}
        for authority_id, count in conn.execute(
                select(Certificate.authority_id, func.count())
                .where(Certificate.state == "issued", Certificate.status != "revoked",
                       Certificate.not_after > now, Certificate.not_after <= now + EXPIRY_WINDOW)
                .group_by(Certificate.authority_id)).all():
            expiring[(names.get(authority_id, str(authority_id)),)] = float(count)

        # Reservations: committed before the key signs, issued right after (ca/issuance.py);
        # one that stays is a crash between the two (index ix_ca_certificate_pending).
        reserved = {(name,): 0.0 for name in names.values()}
        reserved_age = {(name,): 0.0 for name in names.values()}
        for authority_id, count, oldest in conn.execute(
                select(Certificate.authority_id, func.count(), func.min(Certificate.created_at))
                .where(Certificate.state == "pending")
                .group_by(Certificate.authority_id)).all():
            ca_key = (names.get(authority_id, str(authority_id)),)
            reserved[ca_key] = float(count)
            reserved_age[ca_key] = max(0.0, (now - _aware(oldest)).total_seconds())

        pending = {(state,): 0.0 for state in PENDING_STATES}
        try:
            for state, count in conn.execute(
                    select(Request.state, func.count()).where(Request.state.in_(PENDING_STATES))
                    .group_by(Request.state)).all():
                pending[(state,)] = float(count)
        except Exception:  # an installation without the RA's tables
            pending = {}
            conn.rollback()

        return [
            Sample("govpki_certificates_issued", "counter",
                   "Certificates issued (audit log, action ca.issue, outcome success)",
                   ("ca", "profile"), issued),
            Sample("govpki_certificate_requests_refused", "counter",
                   "Certificate requests refused or failed (audit log, ca.issue), by error kind",
                   ("ca", "profile", "outcome", "error"), refused),
            Sample("govpki_certificate_status_changes", "counter",
                   "Revocations, suspensions and releases (audit log)", ("ca", "change"),
                   changes),
            Sample("govpki_hsm_failures", "counter",
                   "Audited actions that failed with a key-store error (hsm-*), by action",
                   ("action",), hsm),
            Sample("govpki_audit_events", "counter", "Events in the audit log (its head seq)",
                   (), {(): float(head)}),
            Sample("govpki_crl_age_seconds", "gauge", "Seconds since the newest CRL's "
                   "thisUpdate", ("ca", "kind"), crl_age),
            Sample("govpki_crl_next_update_seconds", "gauge", "Seconds until the newest CRL's "
                   "nextUpdate (negative: relying parties hold an expired CRL)", ("ca", "kind"),
                   crl_left),
            Sample("govpki_crl_number", "gauge", "CRL number of the newest CRL", ("ca", "kind"),
                   crl_number),
            Sample("govpki_certificates_expiring_30d", "gauge", "Issued certificates, not "
                   "revoked, that expire within 30 days", ("ca",), expiring),
            Sample("govpki_ca_reservations_pending", "gauge", "Serials reserved (TBS recorded) "
                   "and not yet stored as issued; more than a moment means a crash between the "
                   "two", ("ca",), reserved),
            Sample("govpki_ca_reservation_oldest_seconds", "gauge", "Age of the oldest pending "
                   "reservation (0 when there is none)", ("ca",), reserved_age),
            Sample("govpki_ra_requests_pending", "gauge", "RA requests waiting: submitted "
                   "(for approval) or approved (for execution)", ("state",), pending),
        ]

    def _checkpoint(self) -> list[Sample]:
        """Age of the newest signed audit checkpoint (the file's last line)."""
        path = self.ctx.config.path(self.ctx.config.audit.checkpoint_file)
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 4096))
                lines = [line for line in handle.read().splitlines() if line.strip()]
            when = dt.datetime.strptime(json.loads(lines[-1])["time"],
                                        "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return []
        return [Sample("govpki_audit_checkpoint_age_seconds", "gauge",
                       "Seconds since the newest signed audit checkpoint", (),
                       {(): (utcnow() - when).total_seconds()})]


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------
# The /metrics endpoint


class _Registered:
    """Yields the collectors of another registry (this process's, outside multiprocess mode)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


class MetricsApp:
    """``GET /metrics``: the text exposition format (version 0.0.4)."""

    def __init__(self, ctx: CaContext, probe: Probe) -> None:
        from govpki.backup import govpki_version

        self.collector = DatabaseCollector(ctx, probe)
        self.process = process_metrics()
        self.version = govpki_version()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily

        registry = CollectorRegistry(auto_describe=False)
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(registry, path=directory)
        else:
            registry.register(_Registered(self.process.registry))
        registry.register(self.collector)
        info = GaugeMetricFamily("govpki_build_info", "govpki version serving this node",
                                 labels=["version"])
        info.add_metric([self.version], 1.0)
        registry.register(_Static([info]))
        return generate_latest(registry), CONTENT_TYPE

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                      ("Content-Type", "text/plain"),
                                                      ("Content-Length", "19")])
            return [b"method not allowed\n"]
        data, content_type = self.render()
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Content-Length", str(len(data))),
                                  ("Cache-Control", "no-store")])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]


class _Static:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def count_readiness_failures(failed: Iterable[Any]) -> None:
    """ReadinessApp's hook: a failed key-store check is an HSM error this process saw."""
    if any(getattr(check, "name", "") == "keystore" for check in failed):
        process_metrics().keystore_failures.inc()

"""Readiness: may this node take traffic? ``/readyz`` answers 200 or 503 with a problem body.

``/healthz`` (govpki/wsgi.py) says the process is alive and nothing more, so a supervisor
restarts a hung worker. ``/readyz`` says whether requests can succeed, so nginx or a load
balancer stops sending them while they cannot, without restarting anything:

* **database** — a fresh connection (never the pool's: a pooled connection hides a server that
  just went away) answers ``SELECT`` within a short timeout (2 s connect, 2 s statement). SQLite
  is opened read-only, so a probe never creates an empty database where the real one vanished.
* **schema** — the database carries every migration this code needs. A database *ahead* of
  the code stays ready (a rolling upgrade migrates first, then replaces nodes; migrations are
  additive), a database *behind* it does not (the code would query columns that do not exist).
* **keystore** — the current key of every CA, the newest OCSP/TSA service keys and the audit
  key can be opened: a file key's file is there (and its passphrase opened it once), a PKCS#11
  key is found on the token (a lookup on the token each time: a removed token fails it).

Each probe is cheap (one connection, one query, one existence check per key), and its result
carries no secret: key URIs and error messages only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from ca.context import CaContext
from ca.models import Authority, Generation, ServiceKey
from core.db import make_engine, read_only
from core.errors import GovpkiError

TIMEOUT_SECONDS: Final = 2
_PROBLEM_TYPE: Final = "urn:govpki:problem:not-ready"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def probe_engine(database_url: str, timeout: int = TIMEOUT_SECONDS) -> Engine:
    """An engine that opens a new connection per use, with short timeouts; read-only SQLite."""
    if database_url.startswith("sqlite:///"):
        path = database_url[len("sqlite:///"):]
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool,
                             connect_args={"timeout": timeout})
    return make_engine(database_url, poolclass=NullPool, connect_args={
        "connect_timeout": timeout, "options": f"-c statement_timeout={timeout * 1000}"})


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, GovpkiError):
        return exc.message
    text_ = str(getattr(exc, "orig", None) or exc)
    lines = [line for line in text_.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


class Probe:
    """The readiness checks of one serving context; shared by /readyz and /metrics."""

    def __init__(self, ctx: CaContext, code_heads: Iterable[str] | None = None,
                 known_revisions: Iterable[str] | None = None) -> None:
        self.ctx = ctx
        self.engine = probe_engine(ctx.config.database_url)
        if code_heads is None:
            from govpki.backup import script_directory
            from govpki.migrations import all_version_locations

            script = script_directory(all_version_locations())
            code_heads = script.get_heads()
            known_revisions = [r.revision for r in script.walk_revisions()]
        self.code_heads = sorted(code_heads)
        self._known = set(known_revisions or self.code_heads)
        self._key_uris: list[str] = []  # from the last successful database read
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------------------------------

    def database(self) -> tuple[Check, Check]:
        """(database, schema) checks; reads the key URIs for the key store check on the way."""
        try:
            with read_only(self.engine) as conn:  # a probe must not take SQLite's write lock
                revisions = [r for (r,) in conn.execute(
                    text("SELECT version_num FROM alembic_version"))]
                uris = self._current_key_uris(conn)
        except Exception as exc:
            return (Check("database", False, f"unreachable: {_first_line(exc)}"),
                    Check("schema", False, "not checked (database unreachable)"))
        with self._lock:
            self._key_uris = uris
        return Check("database", True, "ok"), self._schema(revisions)

    def _schema(self, revisions: list[str]) -> Check:
        newer = sorted(set(revisions) - self._known)
        if newer:
            # Migrated ahead of this node (a rolling upgrade in progress): revisions are
            # additive, so the old code still works until the node is replaced.
            return Check("schema", True, f"ok (the database is newer: {' '.join(newer)})")
        behind = [h for h in self.code_heads if h not in revisions]
        if behind:
            return Check("schema", False, f"the database is at "
                                          f"{' '.join(sorted(revisions)) or 'no revision'}, "
                                          f"this code needs {' '.join(behind)}: run "
                                          "`govpki db upgrade`")
        return Check("schema", True, "ok")

    def _current_key_uris(self, conn: Any) -> list[str]:
        """The current key of each CA, the newest key of each (CA, service role), the audit key."""
        newest_generation = (select(Generation.authority_id, func.max(Generation.number)
                                    .label("number"))
                             .group_by(Generation.authority_id).subquery())
        uris = set(conn.execute(
            select(Generation.key_uri).join(
                newest_generation,
                (Generation.authority_id == newest_generation.c.authority_id)
                & (Generation.number == newest_generation.c.number))).scalars())
        newest_service = (select(func.max(ServiceKey.id)).group_by(ServiceKey.authority_id,
                                                                   ServiceKey.role))
        uris.update(conn.execute(select(ServiceKey.key_uri)
                                 .where(ServiceKey.id.in_(newest_service))).scalars())
        if conn.execute(select(Authority.id).limit(1)).first() is not None:
            uris.add(self.ctx.config.audit.key_uri)
        return sorted(uris)

    def keystore(self) -> Check:
        with self._lock:
            uris = list(self._key_uris)
        if not uris:
            return Check("keystore", False, "not checked (no key list: database unreachable "
                                            "or no CA yet)")
        keyring = self.ctx.keyring
        for uri in uris:
            try:
                if not keyring.exists(uri):
                    return Check("keystore", False, f"key {uri} not found")
                keyring.get(uri)  # opens once (passphrase, token login); cached afterwards
            except Exception as exc:
                return Check("keystore", False, f"key {uri}: {_first_line(exc)}")
        return Check("keystore", True, f"ok ({len(uris)} keys)")

    def checks(self) -> list[Check]:
        database, schema = self.database()
        return [database, schema, self.keystore()]


class ReadinessApp:
    """``GET /readyz``: 200 with every check, or 503 with an RFC 9457 problem naming the
    failed ones (and ``Retry-After``)."""

    def __init__(self, probe: Probe, on_failure: Any = None) -> None:
        self.probe = probe
        self.on_failure = on_failure

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _json(start_response, "405 Method Not Allowed",
                         {"type": "about:blank", "title": "Method Not Allowed", "status": 405},
                         [("Allow", "GET, HEAD")], environ)
        checks = self.probe.checks()
        failed = [c for c in checks if not c.ok]
        summary = {c.name: c.detail for c in checks}
        if not failed:
            return _json(start_response, "200 OK", {"status": "ready", "checks": summary},
                         [], environ, content_type="application/json")
        if self.on_failure is not None:
            self.on_failure(failed)
        body = {"type": _PROBLEM_TYPE, "title": "not ready", "status": 503,
                "detail": "; ".join(f"{c.name}: {c.detail}" for c in failed),
                "failed": [c.name for c in failed], "checks": summary}
        return _json(start_response, "503 Service Unavailable", body,
                     [("Retry-After", "5")], environ)


def _json(start_response: Any, status: str, body: dict[str, Any],
          headers: list[tuple[str, str]], environ: dict[str, Any],
          content_type: str = "application/problem+json") -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store"), *headers])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]


"""Status-change events: delivered in-process after commit, and between processes via
PostgreSQL LISTEN/NOTIFY.

ca/ publishes, ocsp/ listens, and neither imports the other (DESIGN.md, Revocation and time).
Events are queued on the SQLAlchemy session and only leave after that session commits, so a
listener never sees a change that was rolled back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

STATUS_CHANNEL = "govpki_status"
Listener = Callable[[dict[str, Any]], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def publish(session: Session, payload: dict[str, Any]) -> None:
    """Queue ``payload`` for delivery once ``session`` commits.

    On PostgreSQL the NOTIFY is issued inside the transaction, which PostgreSQL itself holds
    back until commit; in-process listeners are called from the after-commit hook.
    """
    session.info.setdefault("govpki_events", []).append(payload)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": STATUS_CHANNEL, "payload": json.dumps(payload, sort_keys=True)},
        )


@event.listens_for(Session, "after_commit")
def _deliver(session: Session) -> None:
    queued = session.info.pop("govpki_events", None)
    if not queued:
        return
    with _lock:
        listeners = list(_listeners)
    for payload in queued:
        for listener in listeners:
            listener(payload)


@event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    session.info.pop("govpki_events", None)

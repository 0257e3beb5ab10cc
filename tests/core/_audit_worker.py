"""Child-process body for the concurrency tests (spawned, so it imports as little as it can)."""

from __future__ import annotations

from multiprocessing.synchronize import Event

from core.audit import record_event
from core.db import make_engine, make_sessionmaker, transaction


def append_events(url: str, worker: int, count: int, start: Event) -> None:
    """Append ``count`` events, each in a transaction of its own, once every worker is ready."""
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with engine.connect():
        pass  # connect before the start signal, so the appends really overlap
    if not start.wait(60):
        raise TimeoutError("the test never gave the start signal")
    try:
        for i in range(count):
            with transaction(factory) as session:
                record_event(
                    session,
                    actor=f"worker-{worker}",
                    action="test.append",
                    object_type="counter",
                    object_id=str(i),
                    outcome="success",
                    details={"worker": worker, "i": i},
                )
    finally:
        engine.dispose()

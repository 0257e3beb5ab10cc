"""The serving node's periodic jobs: CRLs republished when due, checkpoints only when needed."""

from __future__ import annotations

from core.audit import read_checkpoints
from govpki.scheduler import run_jobs


def test_a_quiet_round_signs_no_new_checkpoint(file_pki) -> None:  # type: ignore[no-untyped-def]
    path = file_pki.ctx.config.path(file_pki.ctx.config.audit.checkpoint_file)
    seq = run_jobs(file_pki.ctx, crl=True, ocsp=False)
    lines = len(read_checkpoints(path))
    assert lines >= 1 and seq > 0
    again = run_jobs(file_pki.ctx, crl=True, ocsp=False, checkpointed_seq=seq)
    assert again == seq  # nothing due, nothing recorded
    assert len(read_checkpoints(path)) == lines

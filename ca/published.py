"""What the CA's public URLs serve, resolved without a web framework.

``/crl/<ca>.crl``, ``/crl/<ca>-delta.crl``, ``/certs/<ca>.crt`` belong to key generation 1;
``/crl/<ca>/gN.crl``, ``/crl/<ca>/gN-delta.crl``, ``/certs/<ca>/gN.crt`` to generation N (ca/plan.py
builds them into certificates). The HTTP views (ca/web.py) and in-process fetchers (a signer on
the CA host embedding revocation data) resolve the same paths here, so they serve the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ca.context import CaContext
from ca.crl import CrlRecord, current_crl
from ca.errors import UnknownCa
from ca.status import authority_names
from ca.store import authority_row, generation_row
from core.db import transaction

DELTA_SUFFIX = "-delta"
_GENERATION = re.compile(r"g([1-9][0-9]{0,5})")


@dataclass(frozen=True)
class CrlPath:
    ca: str
    generation: int
    delta: bool


def parse_crl_path(session: Session, stem: str) -> CrlPath:
    """The CRL a file stem names (``officials``, ``officials-delta``, ``officials/g2``,
    ``officials/g2-delta``; the path below ``/crl/`` without ``.crl``).

    An exact CA name wins over the ``-delta`` reading, so a CA whose own name ends in
    ``-delta`` still gets its full CRL."""
    names = set(authority_names(session))
    head, _, tail = stem.partition("/")
    generation = 1
    if tail:
        delta = tail.endswith(DELTA_SUFFIX)
        match = _GENERATION.fullmatch(tail.removesuffix(DELTA_SUFFIX))
        if head not in names or match is None:
            raise _unknown(stem, names)
        return CrlPath(head, int(match.group(1)), delta)
    if stem in names:
        return CrlPath(stem, generation, False)
    if stem.endswith(DELTA_SUFFIX) and stem[: -len(DELTA_SUFFIX)] in names:
        return CrlPath(stem[: -len(DELTA_SUFFIX)], generation, True)
    raise _unknown(stem, names)


def _unknown(stem: str, names: set[str]) -> UnknownCa:
    known = ", ".join(sorted(names)) or "none"
    ca = stem.partition("/")[0].removesuffix(DELTA_SUFFIX)
    return UnknownCa(f"no CA or key generation published as '{stem}' (CAs: {known})", ca=ca)


def crl_for(ctx: CaContext, stem: str) -> CrlRecord:
    """The CRL to serve for ``/crl/<stem>.crl`` (generated on demand if none is stored)."""
    with transaction(ctx.sessions) as session:
        path = parse_crl_path(session, stem)
    return current_crl(ctx, path.ca, delta=path.delta, generation=path.generation)


def ca_certificate_for(ctx: CaContext, stem: str) -> bytes:
    """DER of the CA certificate ``/certs/<stem>.crt`` names: ``<ca>`` is generation 1 (the
    one its certificates' caIssuers URL names), ``<ca>/gN`` generation N."""
    head, _, tail = stem.partition("/")
    with transaction(ctx.sessions) as session:
        authority = authority_row(session, head)
        generation = 1
        if tail:
            match = _GENERATION.fullmatch(tail)
            if match is None:
                raise _unknown(stem, set(authority_names(session)))
            generation = int(match.group(1))
        return generation_row(session, authority, generation).certificate_der

"""Plain, frozen values that ra's services return: never ORM rows or sessions (STYLE.md 1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Organisation:
    id: int
    code: str
    parent_code: str | None
    name: str
    kind: str
    #: "/630000/630100/630121/": the codes from the root down, for subtree checks.
    path: str

    def contains(self, other: Organisation) -> bool:
        """Whether ``other`` is this organisation or below it."""
        return other.path.startswith(self.path)

    @property
    def depth(self) -> int:
        return self.path.count("/") - 2


@dataclass(frozen=True)
class Operator:
    """An RA account as the authorisation decision sees it: active roles only."""

    id: int
    username: str
    display_name: str
    organisation: Organisation
    roles: frozenset[str]
    active: bool = True
    official_id: int | None = None
    pending_roles: frozenset[str] = frozenset()
    #: The bootstrap administrator (ra.operators: the first account, made locally).
    bootstrap: bool = False


@dataclass(frozen=True)
class Official:
    id: int
    identifier: str
    name: str
    organisation: Organisation
    position: str
    unit: str | None
    contact: str
    status: str

    @property
    def subscriber_ref(self) -> str:
        """What ca/ stores with the certificates issued to this official."""
        return f"ra-official:{self.id}"


@dataclass(frozen=True)
class CertificateRef:
    ca: str
    serial: str


@dataclass(frozen=True)
class RequestRecord:
    id: int
    kind: str
    official: Official
    state: str
    ca: str
    profile: str
    reason: str | None
    required_approvals: int
    approvals: tuple[str, ...]
    submitted_by: str
    submitted_at: dt.datetime
    submit_comment: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_comment: str | None
    executed_by: str | None
    executed_at: dt.datetime | None
    targets: tuple[CertificateRef, ...]
    issued: tuple[CertificateRef, ...]
    encryption_status: str | None
    last_error: str | None
    has_csr: bool


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

"""The records retention policy (policies/retention.yaml) validated once into a frozen object.

The Electronic Signature Law (art. 24) sets the floor: what concerns a certificate is kept at
least five years after it expires. The file may keep records longer, never shorter — a shorter
period is refused when the file is loaded, naming the field, so a typo cannot make the retention
job delete what the law says to keep. The audit log is never deleted (its events form a hash
chain), and the file cannot say otherwise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from policies.errors import PolicyError, ProfileProblem
from policies.validation import Check, child, describe, duplicate_keys, fields

RETENTION_FILE: Final = Path(__file__).resolve().parent / "retention.yaml"
#: Electronic Signature Law of the PRC, art. 24: at least five years after expiry.
LEGAL_MINIMUM_YEARS: Final = 5
#: Kinds of record the retention job may delete, each with its own period.
RECORD_KINDS: Final = ("certificates", "crls", "ra_requests")


class RetentionPolicyInvalid(PolicyError):
    """retention.yaml breaks the format or the law; ``problems`` lists every problem."""

    kind = "retention-policy-invalid"
    http_status = 422

    def __init__(self, source: str, problems: list[ProfileProblem]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class RetentionPolicy:
    """Calendar years each kind of record is kept after the latest expiry it concerns."""

    years: dict[str, int]

    def years_for(self, kind: str) -> int:
        return self.years[kind]


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    """``moment`` plus calendar years; 29 February becomes 1 March (the later day, so a record
    born on a leap day is kept a day longer rather than a day too short)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February into a common year
        return moment.replace(year=moment.year + years, month=3, day=1)


def cutoff(now: dt.datetime, years: int) -> dt.datetime:
    """The latest expiry that may be deleted at ``now``: a record is deletable only when the
    expiry it concerns is *strictly before* this instant, and then ``add_years(expiry, years)``
    is at or before ``now`` (a property test checks it for every date).

    One day earlier than plain calendar arithmetic: 29 February has no counterpart in a common
    year, so no single instant is exact for every leap-day case; keeping a record one day
    longer than the law asks is harmless, deleting it a day too early is not."""
    try:
        back = now.replace(year=now.year - years)
    except ValueError:  # now is 29 February
        back = now.replace(year=now.year - years, day=28)
    return back - dt.timedelta(days=1)


def retention_from_mapping(data: object, source: str = "retention.yaml") -> RetentionPolicy:
    check = Check()
    top = fields(check, data, "", required=("version", "records"),
                 top_level="must be a mapping with version and records")
    years: dict[str, int] = {}
    if top is not None:
        if top.get("version") != 1:
            check.fail("version", f"must be 1, got {describe(top.get('version'))}")
        records = fields(check, top.get("records"), "records",
                         required=(*RECORD_KINDS, "audit_log"))
        if records is not None:
            if "audit_log" in records and records["audit_log"] != "keep":
                check.fail("records.audit_log", "must be 'keep': audit events are never "
                           "deleted, each is a link of the hash chain (docs/audit.md)")
            for kind in RECORD_KINDS:
                path = child("records", kind)
                entry = fields(check, records.get(kind, {}), path,
                               required=("keep_years_after_expiry",))
                if entry is None or "keep_years_after_expiry" not in entry:
                    continue
                value = entry["keep_years_after_expiry"]
                where = child(path, "keep_years_after_expiry")
                if not isinstance(value, int) or isinstance(value, bool):
                    check.fail(where, f"must be a whole number of years, got {describe(value)}")
                elif value < LEGAL_MINIMUM_YEARS:
                    check.fail(where, f"{value} is below the legal minimum of "
                               f"{LEGAL_MINIMUM_YEARS} years after expiry (Electronic "
                               "Signature Law, art. 24)")
                elif value > 100:
                    check.fail(where, f"{value} years is not a retention period")
                else:
                    years[kind] = value
    if check.problems:
        raise RetentionPolicyInvalid(source, check.problems)
    return RetentionPolicy(years)


def retention_from_yaml(text: str, source: str = "retention.yaml") -> RetentionPolicy:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise RetentionPolicyInvalid(source, [ProfileProblem("", f"not valid YAML: {first}")]
                                     ) from None
    duplicates = duplicate_keys(root)
    if duplicates:
        raise RetentionPolicyInvalid(source, duplicates)
    return retention_from_mapping(data, source)


def load_retention_policy(path: Path | None = None) -> RetentionPolicy:
    path = path or RETENTION_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RetentionPolicyInvalid(path.name, [ProfileProblem(
            "", f"cannot read {path}: {exc.strerror}")]) from None
    return retention_from_yaml(text, path.name)


__all__ = [
    "LEGAL_MINIMUM_YEARS",
    "RECORD_KINDS",
    "RETENTION_FILE",
    "RetentionPolicy",
    "RetentionPolicyInvalid",
    "add_years",
    "cutoff",
    "load_retention_policy",
    "retention_from_mapping",
    "retention_from_yaml",
]

"""The RA's authorisation rules (policies/authz.yaml) validated once into frozen objects.

Who may do what is data, reviewed like the certificate profiles, and applied in exactly one
place (ra/authz.py). This module only says what the rules *are*: roles and their actions, each
role's scope (all, an organisation subtree, or the account's own official record), the groups
of roles that one account may not combine (三员分立), and which actions need a second
operator's approval (two-person rule).

Validation is as strict as for profiles, for the same reason: a mistake here silently grants a
power to everyone holding a role. Unknown fields, unknown actions or roles, an auditor holding a
write action, a role listed twice: each is reported with its exact field path, every problem in
one pass (``authz.yaml: roles.auditor.actions[2]: 'official.edit' changes state but the role is
read_only``).
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

from policies.errors import PolicyError, ProfileProblem
from policies.validation import Check, duplicate_keys, fields
from policies.validation import describe as _describe

__all__ = [
    "AUTHZ_FILE",
    "REQUEST_KINDS",
    "SCOPES",
    "ActionSpec",
    "AuthzPolicy",
    "AuthzPolicyInvalid",
    "RoleSpec",
    "SeparationGroup",
    "TwoPersonRule",
    "authz_from_mapping",
    "authz_from_yaml",
    "get_authz_policy",
    "load_authz_policy",
]

AUTHZ_FILE: Final = Path(__file__).resolve().parent / "authz.yaml"
#: all: every organisation; subtree: the operator's organisation and below; self: own record.
SCOPES: Final = ("all", "subtree", "self")
DUTIES: Final = ("system", "security", "audit", "business")
#: The kinds of certificate request the RA workflow knows (ra/requests.py).
REQUEST_KINDS: Final = ("new-pair", "renewal", "re-key", "revocation", "suspension", "release")
#: Kinds whose effect can be undone (a hold is released): the only ones that may skip approval.
REVERSIBLE_KINDS: Final = ("suspension",)


class AuthzPolicyInvalid(PolicyError):
    """authz.yaml breaks the format; ``problems`` lists every problem with its field path."""

    kind = "authz-policy-invalid"
    http_status = 422

    def __init__(
        self, message: str, problems: tuple[ProfileProblem, ...] = (), **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.problems = problems


@dataclass(frozen=True)
class ActionSpec:
    name: str
    read: bool
    en: str
    zh: str


@dataclass(frozen=True)
class RoleSpec:
    """One role: its actions, how far they reach, and which duty of 三员分立 it belongs to."""

    name: str
    en: str
    zh: str
    duty: str
    scope: str
    actions: frozenset[str]
    read_only: bool = False
    #: For self-service roles: the request kinds the role may submit (None: every kind).
    request_kinds: frozenset[str] | None = None


@dataclass(frozen=True)
class SeparationGroup:
    """Roles of which one account may hold at most one."""

    name: str
    zh: str
    roles: frozenset[str]


@dataclass(frozen=True)
class TwoPersonRule:
    """``approvals`` distinct operators, none the initiator, must approve ``action``.

    ``request_kinds`` and ``more_than_certificates`` narrow a request.approve rule to, e.g.,
    bulk revocations; None means "any".
    """

    action: str
    approvals: int
    request_kinds: frozenset[str] | None = None
    more_than_certificates: int | None = None

    def applies(self, action: str, request_kind: str | None, certificates: int) -> bool:
        if action != self.action:
            return False
        if self.request_kinds is not None and request_kind not in self.request_kinds:
            return False
        return self.more_than_certificates is None or certificates > self.more_than_certificates


@dataclass(frozen=True)
class AuthzPolicy:
    actions: Mapping[str, ActionSpec] = field(hash=False)
    roles: Mapping[str, RoleSpec] = field(hash=False)
    separation: tuple[SeparationGroup, ...]
    two_person: tuple[TwoPersonRule, ...]
    #: Request kinds carried out as soon as they are submitted (no approval): only reversible
    #: ones may be listed, so a lost USB key is suspended at once and its revocation is then
    #: confirmed through the two-person rule.
    immediate_request_kinds: frozenset[str] = frozenset()

    def granting_roles(self, action: str, roles: Iterable[str]) -> list[RoleSpec]:
        """The roles among ``roles`` that grant ``action``, in name order (each package then
        applies the scopes to its own objects)."""
        return [self.roles[r] for r in sorted(roles)
                if r in self.roles and action in self.roles[r].actions]

    def refusal_before_scope(self, action: str, *, username: str, active: bool,
                             roles: Iterable[str]) -> str | None:
        """Why ``action`` is refused whatever it acts on — an unknown action, a deactivated
        account, no role granting it — or None, when only the scopes remain to be checked."""
        if action not in self.actions:
            return f"unknown action {action!r}"
        if not active:
            return f"operator {username} is deactivated"
        held = sorted(roles)
        if not self.granting_roles(action, held):
            return f"{action} is not granted to {', '.join(held) or 'no role'}"
        return None

    def conflicts(self, roles: set[str] | frozenset[str]) -> list[SeparationGroup]:
        """The separation groups that ``roles`` held together on one account would break."""
        return [g for g in self.separation if len(g.roles & roles) > 1]

    def approvals_required(self, action: str, *, request_kind: str | None = None,
                           certificates: int = 0) -> int:
        """How many distinct approvers (none the initiator) ``action`` needs; the largest rule
        wins. A request always needs one, the two-person baseline of the workflow."""
        floor = 1 if action == "request.approve" else 0
        return max([floor, *(r.approvals for r in self.two_person
                             if r.applies(action, request_kind, certificates))])


# ---------------------------------------------------------------------------------------------
# Validation


def _fields(check: Check, value: object, path: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any] | None:
    return fields(check, value, path, required=required, optional=optional)


def _text(check: Check, value: object, path: str) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    check.fail(path, f"must be non-empty text, got {_describe(value)}")
    return None


def _names(check: Check, value: object, path: str, known: Mapping[str, object] | tuple[str, ...],
           what: str, *, non_empty: bool = True) -> frozenset[str] | None:
    """A list of known names without repeats, every bad item reported by its index."""
    if not isinstance(value, list):
        check.fail(path, f"must be a list, got {_describe(value)}")
        return None
    if non_empty and not value:
        check.fail(path, "must not be empty")
        return None
    ok = True
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, str) or item not in known:
            close = difflib.get_close_matches(str(item), list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            check.fail(where, f"unknown {what} {_describe(item)}{hint}")
            ok = False
        elif item in value[:index]:
            check.fail(where, f"{item!r} is listed twice")
            ok = False
    return frozenset(value) if ok else None


def _actions(check: Check, value: object) -> dict[str, ActionSpec]:
    out: dict[str, ActionSpec] = {}
    if not isinstance(value, dict) or not value:
        check.fail("actions", f"must be a non-empty mapping, got {_describe(value)}")
        return out
    for name, spec in value.items():
        path = f"actions.{name}"
        if not isinstance(name, str) or not all(part.isidentifier() or part.replace("-", "_")
                                                .isidentifier() for part in name.split(".")):
            check.fail("actions", f"action names are dotted lowercase words, got {name!r}")
            continue
        fields = _fields(check, spec, path, ("read", "en", "zh"))
        if fields is None:
            continue
        read = fields.get("read")
        if not isinstance(read, bool):
            check.fail(f"{path}.read", f"must be true or false, got {_describe(read)}")
            continue
        en = _text(check, fields.get("en"), f"{path}.en") if "en" in fields else None
        zh = _text(check, fields.get("zh"), f"{path}.zh") if "zh" in fields else None
        if en and zh:
            out[name] = ActionSpec(name, read, en, zh)
    return out


def _roles(check: Check, value: object, actions: Mapping[str, ActionSpec]
           ) -> dict[str, RoleSpec]:
    out: dict[str, RoleSpec] = {}
    if not isinstance(value, dict) or not value:
        check.fail("roles", f"must be a non-empty mapping, got {_describe(value)}")
        return out
    for name, spec in value.items():
        path = f"roles.{name}"
        fields = _fields(check, spec, path, ("en", "zh", "duty", "scope", "actions"),
                         ("read_only", "request_kinds"))
        if fields is None:
            continue
        before = len(check.problems)
        en = _text(check, fields.get("en"), f"{path}.en")
        zh = _text(check, fields.get("zh"), f"{path}.zh")
        duty, scope = fields.get("duty"), fields.get("scope")
        if duty not in DUTIES:
            check.fail(f"{path}.duty", f"must be one of {', '.join(DUTIES)}, got {_describe(duty)}")
        if scope not in SCOPES:
            check.fail(f"{path}.scope",
                       f"must be one of {', '.join(SCOPES)}, got {_describe(scope)}")
        granted = _names(check, fields.get("actions"), f"{path}.actions", actions, "action")
        read_only = fields.get("read_only", False)
        if not isinstance(read_only, bool):
            check.fail(f"{path}.read_only", f"must be true or false, got {_describe(read_only)}")
        elif read_only and granted is not None:
            for index, action in enumerate(fields["actions"]):
                if not actions[action].read:
                    check.fail(f"{path}.actions[{index}]",
                               f"{action!r} changes state but the role is read_only")
        kinds = None
        if "request_kinds" in fields:
            kinds = _names(check, fields["request_kinds"], f"{path}.request_kinds",
                           REQUEST_KINDS, "request kind")
        if len(check.problems) == before and en and zh and granted is not None:
            out[str(name)] = RoleSpec(str(name), en, zh, str(duty), str(scope), granted,
                                      bool(read_only), kinds)
    return out


def _separation(check: Check, value: object, roles: Mapping[str, RoleSpec]
                ) -> tuple[SeparationGroup, ...]:
    if not isinstance(value, list):
        check.fail("separation_of_duties", f"must be a list, got {_describe(value)}")
        return ()
    out = []
    for index, spec in enumerate(value):
        path = f"separation_of_duties[{index}]"
        fields = _fields(check, spec, path, ("name", "zh", "roles"))
        if fields is None:
            continue
        name = _text(check, fields.get("name"), f"{path}.name")
        zh = _text(check, fields.get("zh"), f"{path}.zh")
        group = _names(check, fields.get("roles"), f"{path}.roles", roles, "role")
        if group is not None and len(group) < 2:
            check.fail(f"{path}.roles", "a separation group needs at least two roles")
            continue
        if name and zh and group:
            out.append(SeparationGroup(name, zh, group))
    return tuple(out)


def _two_person(check: Check, value: object, actions: Mapping[str, ActionSpec]
                ) -> tuple[TwoPersonRule, ...]:
    if not isinstance(value, list):
        check.fail("two_person", f"must be a list, got {_describe(value)}")
        return ()
    out = []
    for index, spec in enumerate(value):
        path = f"two_person[{index}]"
        fields = _fields(check, spec, path, ("action", "approvals"),
                         ("request_kinds", "more_than_certificates"))
        if fields is None:
            continue
        before = len(check.problems)
        action = fields.get("action")
        if not isinstance(action, str) or action not in actions:
            check.fail(f"{path}.action", f"unknown action {_describe(action)}")
        elif actions[action].read:
            check.fail(f"{path}.action", f"{action!r} changes nothing; it needs no approval")
        approvals = fields.get("approvals")
        if not isinstance(approvals, int) or isinstance(approvals, bool) or not 1 <= approvals <= 5:
            check.fail(f"{path}.approvals", f"must be an integer 1..5, got {_describe(approvals)}")
        elif action != "request.approve" and isinstance(approvals, int) and approvals != 1:
            check.fail(f"{path}.approvals", "only request.approve may ask for more than one "
                                            "approval; other actions take exactly 1")
        kinds = None
        more = fields.get("more_than_certificates")
        if "request_kinds" in fields or "more_than_certificates" in fields:
            if action != "request.approve":
                check.fail(path, "request_kinds and more_than_certificates only narrow "
                                 "request.approve rules")
        if "request_kinds" in fields:
            kinds = _names(check, fields["request_kinds"], f"{path}.request_kinds",
                           REQUEST_KINDS, "request kind")
        if more is not None and (not isinstance(more, int) or isinstance(more, bool) or more < 0):
            check.fail(f"{path}.more_than_certificates",
                       f"must be a non-negative integer, got {_describe(more)}")
        if len(check.problems) == before:
            out.append(TwoPersonRule(str(action), int(approvals), kinds,  # type: ignore[arg-type]
                                     more))
    return tuple(out)


def authz_from_mapping(data: object, *, source: str = "authz.yaml") -> AuthzPolicy:
    """Validate a parsed mapping into an :class:`AuthzPolicy`, or raise with every problem."""
    check = Check()
    fields = _fields(check, data, "", ("actions", "roles", "separation_of_duties",
                                        "two_person"), ("immediate_request_kinds",))
    policy = None
    if fields is not None:
        actions = _actions(check, fields.get("actions"))
        roles = _roles(check, fields.get("roles"), actions)
        separation = _separation(check, fields.get("separation_of_duties"), roles)
        two_person = _two_person(check, fields.get("two_person", []), actions)
        immediate = _names(check, fields.get("immediate_request_kinds", []),
                           "immediate_request_kinds", REVERSIBLE_KINDS,
                           "reversible request kind", non_empty=False)
        policy = AuthzPolicy(MappingProxyType(actions), MappingProxyType(roles), separation,
                             two_person, frozenset(immediate or ()))
    if check.problems or policy is None:
        joined = "; ".join(str(p) for p in check.problems)
        raise AuthzPolicyInvalid(f"{source}: {joined}", tuple(check.problems), source=source,
                                 field=check.problems[0].path if check.problems else "")
    return policy


def authz_from_yaml(text: str, *, source: str = "authz.yaml") -> AuthzPolicy:
    """Parse YAML (safe loader; duplicate keys refused) and validate it."""
    try:
        duplicates = duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        reason = f"not valid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        raise AuthzPolicyInvalid(f"{source}: {reason}", (ProfileProblem("", reason),),
                                 source=source, field="") from None
    if duplicates:
        joined = "; ".join(str(p) for p in duplicates)
        raise AuthzPolicyInvalid(f"{source}: {joined}", tuple(duplicates), source=source,
                                 field=duplicates[0].path)
    return authz_from_mapping(data, source=source)


def load_authz_policy(path: str | os.PathLike[str]) -> AuthzPolicy:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot be read ({exc})"
        raise AuthzPolicyInvalid(f"{file.name}: {reason}", (ProfileProblem("", reason),),
                                 source=file.name, field="") from None
    return authz_from_yaml(text, source=file.name)


@functools.lru_cache(maxsize=1)
def get_authz_policy() -> AuthzPolicy:
    """The packaged rules, validated once per process."""
    return load_authz_policy(AUTHZ_FILE)

"""Every action × every role × in-scope / out-of-scope organisation, through ra.authz.authorize.

The expected grants are written out here by hand, independently of policies/authz.yaml, so a
change to the policy file that widens a role fails this test until someone means it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.audit import AuditEvent
from core.db import transaction
from policies.authz import get_authz_policy
from ra import officials, requests
from ra.authz import authorize
from ra.errors import Forbidden
from ra.officials import OfficialInput
from ra.orgs import get_organisation
from ra.records import Official, Operator
from tests.ra.conftest import make_operator, unique

READS = {"org.view", "official.view", "request.view", "operator.view"}
RA_WORK = {"official.view", "official.create", "official.edit", "official.import",
           "request.view", "request.submit", "request.approve", "request.reject",
           "request.issue", "certificate.revoke", "certificate.suspend", "certificate.release",
           "enrollment.create"}
KMC_USER_RECOVERY = {"kmc.escrow.view", "kmc.recover.user"}
EXPECTED = {
    "ca-admin": RA_WORK | KMC_USER_RECOVERY | {"org.view", "org.load", "operator.view",
                                               "operator.create", "ca.certificate.issue"},
    "security-admin": {"org.view", "operator.view", "operator.create", "operator.role.change",
                       "operator.credentials", "apitoken.manage"},
    "auditor": READS | {"audit.read"},
    "ra-operator": RA_WORK | KMC_USER_RECOVERY | {"org.view"},
    "official": {"official.view", "request.view", "request.submit"},
    "key-recovery-officer": {"org.view", "kmc.escrow.view", "kmc.recover.authorised"},
    # exchange.* are decided by apps/exchange/authz.py (the clerk's own organisation), never
    # by ra: on every RA action the clerk is refused.
    "exchange-clerk": set(),
}
SCOPE_LIMITED = {"ra-operator", "official"}


def test_expected_table_covers_every_role_and_action() -> None:
    policy = get_authz_policy()
    assert set(EXPECTED) == set(policy.roles)
    assert set().union(*EXPECTED.values()) <= set(policy.actions)


def _refusals(sessions, username: str) -> int:
    with transaction(sessions) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.actor == username, AuditEvent.outcome == "refused")) or 0


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_matrix(ra_file_pki, role: str) -> None:
    sessions = ra_file_pki.ctx.sessions
    with transaction(sessions) as session:
        home = get_organisation(session, "632200")
        inside = get_organisation(session, "632200-BGS")
        outside = get_organisation(session, "630100-BGT")
    own = Official(10_001, "own", "张三", inside, "", None, "", "active")
    other = Official(10_002, "other", "李四", outside, "", None, "", "active")
    actor = Operator(0, unique(f"matrix-{role}"), "matrix", home, frozenset({role}),
                     official_id=own.id if role == "official" else None)
    refused = 0
    for action in sorted(get_authz_policy().actions):
        for org, official, in_scope in ((inside, own, True), (outside, other, False)):
            granted = action in EXPECTED[role] and (in_scope or role not in SCOPE_LIMITED)
            try:
                authorize(sessions, actor, action, org, official=official)
                allowed = True
            except Forbidden:
                allowed = False
                refused += 1
            assert allowed == granted, (role, action, org.code)
    assert _refusals(sessions, actor.username) == refused > 0


def test_self_service_only_for_own_record_and_listed_kinds(ra_file_pki) -> None:
    sessions = ra_file_pki.ctx.sessions
    with transaction(sessions) as session:
        org = get_organisation(session, "632200-BGS")
    me = Official(20_001, "me", "张三", org, "", None, "", "active")
    actor = Operator(0, unique("self"), "self", org, frozenset({"official"}), official_id=me.id)
    authorize(sessions, actor, "request.submit", org, official=me, request_kind="suspension")
    authorize(sessions, actor, "request.submit", org, official=me, request_kind="renewal")
    for kind in ("new-pair", "revocation", "release"):
        with pytest.raises(Forbidden):
            authorize(sessions, actor, "request.submit", org, official=me, request_kind=kind)
    colleague = Official(20_002, "colleague", "王五", org, "", None, "", "active")
    with pytest.raises(Forbidden):
        authorize(sessions, actor, "request.submit", org, official=colleague,
                  request_kind="suspension")


def test_inactive_or_roleless_operators_are_refused(ra_file_pki) -> None:
    sessions = ra_file_pki.ctx.sessions
    with transaction(sessions) as session:
        org = get_organisation(session, "630000")
    for actor in (Operator(0, unique("off"), "x", org, frozenset({"ca-admin"}), active=False),
                  Operator(0, unique("none"), "x", org, frozenset())):
        with pytest.raises(Forbidden):
            authorize(sessions, actor, "org.view", org)
    with pytest.raises(Forbidden, match="unknown action"):
        authorize(sessions, Operator(0, "x", "x", org, frozenset({"ca-admin"})), "org.fly", org)


def test_one_department_cannot_see_or_touch_anothers_officials(ra_file_pki) -> None:
    """The service layer, not just the decision: list, get, edit, submit are all refused."""
    pki = ra_file_pki
    sessions = pki.ctx.sessions
    finance = make_operator(pki, "630000-CZT", "ra-operator")
    education = make_operator(pki, "630000-JYT", "ra-operator")
    mine = officials.create_official(sessions, finance, OfficialInput(
        unique("CZT"), "赵六", "630000-CZT", "科员"))
    theirs = officials.create_official(sessions, education, OfficialInput(
        unique("JYT"), "钱七", "630000-JYT", "科员"))

    listed = officials.list_officials(sessions, finance, per_page=500)
    assert mine.identifier in {o.identifier for o in listed.items}
    assert all(o.organisation.code == "630000-CZT" for o in listed.items)
    assert officials.list_officials(sessions, finance, query=theirs.identifier).total == 0

    before = _refusals(sessions, finance.username)
    with pytest.raises(Forbidden):
        officials.get_official(sessions, finance, theirs.identifier)
    with pytest.raises(Forbidden):
        officials.edit_official(sessions, finance, theirs.identifier, position="处长")
    with pytest.raises(Forbidden):
        officials.list_officials(sessions, finance, org_code="630000-JYT")
    with pytest.raises(Forbidden):
        officials.create_official(sessions, finance, OfficialInput(
            unique("X"), "孙八", "630000-JYT"))
    with pytest.raises(Forbidden):
        requests.submit(pki.ctx, finance, theirs.identifier, "suspension", serials=["1"])
    with pytest.raises(Forbidden):
        officials.edit_official(sessions, finance, mine.identifier, org_code="630000-JYT")
    assert _refusals(sessions, finance.username) == before + 6
    assert officials.get_official(sessions, education, theirs.identifier).position == "科员"

"""The ceremony file: validated with the exact field named; a re-run refuses and changes nothing."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ca.ceremony import parse_ceremony, preflight, run_ceremony
from ca.cli import DEMO_CEREMONY
from ca.errors import AlreadyInitialised, CeremonyError
from ca.models import Certificate
from core.audit import AuditEvent
from core.db import transaction

DEMO = yaml.safe_load(DEMO_CEREMONY.read_text(encoding="utf-8"))


def _with(path: list, value: object) -> str:
    data = yaml.safe_load(DEMO_CEREMONY.read_text(encoding="utf-8"))
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True)


def test_demo_ceremony_parses() -> None:
    spec = parse_ceremony(DEMO_CEREMONY.read_text(encoding="utf-8"), "demo.yaml")
    assert [a.name for a in spec.authorities] == ["root", "officials", "devices"]
    assert [(s.role, s.ca) for s in spec.services] == [
        ("ocsp-signer", "officials"), ("ocsp-signer", "devices"), ("tsa", "devices")]
    assert spec.audit_key is not None


@pytest.mark.parametrize("path, value, message", [
    (["authorities", 0, "profile"], "no-such", "authorities[0].profile"),
    (["authorities", 0, "key", "type"], "rsa-1024", "authorities[0].key.type"),
    (["authorities", 1, "key", "type"], "rsa-2048", None),  # allowed: must parse
    (["authorities", 0, "validity_days"], "long", "authorities[0].validity_days"),
    (["authorities", 0, "colour"], "red", "unknown field 'colour'"),
    (["authorities", 2, "name"], "officials", "declared twice"),
    (["authorities", 0, "subject"], KeyError, "missing field 'subject'"),
    (["services", 0, "role"], "crl-signer", "services[0].role"),
    (["services", 2, "key", "label"], "root-ca-1", "used twice"),
    (["services", 0, "profile"], "tsa", None),  # tsa profile on P-256: allowed
    (["official"], True, "unknown field 'official'"),
    (["authorities", 1, "key", "type"], "ed25519", "unknown key type"),
])
def test_invalid_fields_are_named(path, value, message) -> None:
    text = _with(path, value)
    if message is None:
        parse_ceremony(text, "c.yaml")
        return
    with pytest.raises(CeremonyError) as info:
        parse_ceremony(text, "c.yaml")
    assert message in info.value.message
    assert info.value.message.startswith("c.yaml")


def test_not_yaml() -> None:
    with pytest.raises(CeremonyError, match="not valid YAML"):
        parse_ceremony("authorities: [", "bad.yaml")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_ceremony_errors(text: str) -> None:
    try:
        parse_ceremony(text, "fuzz.yaml")
    except CeremonyError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["name", "parent", "profile", "key", "label", "type",
                                       "subject", "validity_days", "authorities", "services",
                                       "role", "ca", "audit_key"]), children, max_size=5),
    max_leaves=20))
def test_arbitrary_structures_only_raise_ceremony_errors(data: object) -> None:
    try:
        parse_ceremony(yaml.safe_dump(data), "fuzz.yaml")
    except CeremonyError:
        pass


def test_rerun_refuses_and_changes_nothing(pki) -> None:
    spec = parse_ceremony(DEMO_CEREMONY.read_text(encoding="utf-8"), "demo.yaml")
    prefix = pki.ctx.config.audit.key_uri.rsplit("audit", 1)[0]
    with transaction(pki.ctx.sessions) as session:
        before = (session.scalar(select(func.count()).select_from(Certificate)),
                  session.scalar(select(func.count()).select_from(AuditEvent)))
    with pytest.raises(AlreadyInitialised, match="changed nothing"):
        preflight(pki.ctx, spec, lambda label: prefix + label)
    with pytest.raises(AlreadyInitialised):
        run_ceremony(pki.ctx, spec, key_uri=lambda label: prefix + label, actor="rerun")
    with transaction(pki.ctx.sessions) as session:
        after = (session.scalar(select(func.count()).select_from(Certificate)),
                 session.scalar(select(func.count()).select_from(AuditEvent)))
        refusal = session.scalars(select(AuditEvent).where(AuditEvent.actor == "rerun")).all()
    assert after == (before[0], before[1] + 1)  # only the refusal is recorded
    assert [(e.action, e.outcome) for e in refusal] == [("ceremony.start", "refused")]


def test_ceremony_steps_are_audited(pki) -> None:
    with transaction(pki.ctx.sessions) as session:
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.actor == "test").order_by(AuditEvent.seq)).all()
    assert actions[0] == "ceremony.start"
    assert actions.count("ceremony.generate-key") == 7  # 3 CAs, 3 services, audit key
    assert actions.count("ca.create") == 3 and actions.count("ca.service-key") == 3
    assert "ceremony.complete" in actions

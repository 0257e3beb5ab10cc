"""Records retention (govpki/retention.py, policies/retention.yaml): younger records are never
deleted, older ones are, the audit hash chain is untouched, and the policy cannot go below the
law's five years. Property tests over dates on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from ca.context import CaContext
from ca.models import Authority, Certificate, Generation, PublishedCrl, ServiceKey
from core import migrate
from core.audit import AuditEvent, record_event, verify_chain, write_checkpoint
from core.config import Config
from core.db import make_engine, transaction
from govpki.migrations import all_version_locations
from govpki.retention import run_retention
from hsm.keystore import KeyRing
from hsm.signer import SoftwareSigner
from kmc.models import Escrow, MasterKey
from ocsp.models import PresignedResponse
from policies.retention import (
    LEGAL_MINIMUM_YEARS,
    RetentionPolicy,
    RetentionPolicyInvalid,
    add_years,
    cutoff,
    load_retention_policy,
    retention_from_yaml,
)
from ra.models import Approval, Official, Organisation, Request, RequestCertificate
from tests.govpki.test_cli import assert_one_line_error, run

YEARS = LEGAL_MINIMUM_YEARS
POLICY = RetentionPolicy({"certificates": YEARS, "crls": YEARS, "ra_requests": YEARS})
_ids = itertools.count(1)
UTC = dt.UTC

# hypothesis takes naive bounds and attaches the time zone itself
dates = st.datetimes(min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001
                     max_value=dt.datetime(2080, 1, 1),  # noqa: DTZ001
                     timezones=st.just(UTC))


# --- the pure rule ----------------------------------------------------------------------------

@settings(max_examples=3000, deadline=None, database=None)
@given(expiry=dates, now=dates, years=st.integers(LEGAL_MINIMUM_YEARS, 40))
def test_cutoff_never_lets_a_younger_record_go(expiry: dt.datetime, now: dt.datetime,
                                               years: int) -> None:
    if expiry < cutoff(now, years):
        assert add_years(expiry, years) <= now
    if add_years(expiry, years) + dt.timedelta(days=2) <= now:
        assert expiry < cutoff(now, years)  # and older ones do go (at most a day late)


def test_leap_days() -> None:
    leap = dt.datetime(2024, 2, 29, 23, tzinfo=UTC)
    assert add_years(leap, 5) == dt.datetime(2029, 3, 1, 23, tzinfo=UTC)
    assert not leap < cutoff(dt.datetime(2029, 3, 1, 12, tzinfo=UTC), 5)
    assert cutoff(dt.datetime(2028, 2, 29, 12, tzinfo=UTC), 5) \
        == dt.datetime(2023, 2, 27, 12, tzinfo=UTC)


# --- the policy file --------------------------------------------------------------------------

def test_the_shipped_policy_keeps_five_years() -> None:
    policy = load_retention_policy()
    assert all(policy.years_for(k) >= 5 for k in ("certificates", "crls", "ra_requests"))


GOOD = """
version: 1
records:
  certificates: {keep_years_after_expiry: 5}
  crls: {keep_years_after_expiry: 7}
  ra_requests: {keep_years_after_expiry: 5}
  audit_log: keep
"""


@pytest.mark.parametrize(("text", "words"), [
    (GOOD.replace("certificates: {keep_years_after_expiry: 5}",
                  "certificates: {keep_years_after_expiry: 4}"),
     "records.certificates.keep_years_after_expiry: 4 is below the legal minimum of 5"),
    (GOOD.replace("audit_log: keep", "audit_log: delete"), "records.audit_log: must be 'keep'"),
    (GOOD.replace("crls:", "crl:"), "unknown field 'crl' (did you mean 'crls'?)"),
    (GOOD.replace("7}", "'7'}"), "must be a whole number of years"),
    (GOOD.replace("7}", "true}"), "must be a whole number of years"),
    (GOOD + "records: {}\n", "duplicate"),
    ("[", "not valid YAML"),
    (GOOD.replace("version: 1", "version: 2"), "version: must be 1"),
])
def test_a_bad_policy_is_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(RetentionPolicyInvalid) as caught:
        retention_from_yaml(text)
    assert words in caught.value.message


def test_a_longer_policy_is_allowed() -> None:
    assert retention_from_yaml(GOOD).years_for("crls") == 7


# --- the job on a database --------------------------------------------------------------------

@dataclass
class Store:
    ctx: CaContext
    org: int
    official: int


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """An empty schema of every package (no keys needed: the job signs nothing)."""
    home = tmp_path_factory.mktemp(f"retention-{request.param}")
    url = request.getfixturevalue("pg_databases").create() if request.param == "postgres" \
        else f"sqlite:///{home / 'govpki.sqlite3'}"
    engine = make_engine(url)
    migrate.upgrade(engine, all_version_locations())
    engine.dispose()
    ctx = CaContext.open(Config(home=home, database_url=url), keyring=KeyRing([]))
    now = dt.datetime(2020, 1, 1, tzinfo=UTC)
    with transaction(ctx.sessions) as session:
        org = Organisation(code="630000", name="青海省", kind="province", path="/630000/")
        session.add(org)
        session.flush()
        official = Official(identifier="QH-RET-1", name="赵六", organisation_id=org.id,
                            position="科员", contact="", status="active", created_at=now,
                            updated_at=now)
        session.add(official)
        session.flush()
        ids = (org.id, official.id)
    yield Store(ctx, *ids)
    ctx.close()


def _authority(session, created: dt.datetime) -> Authority:  # type: ignore[no-untyped-def]
    auth = Authority(name=f"ret-{next(_ids)}", parent_id=None, profile="issuing-ca-officials",
                     created_at=created)
    session.add(auth)
    session.flush()
    return auth


def _certificate(session, auth: Authority, not_after: dt.datetime,  # type: ignore[no-untyped-def]
                 created: dt.datetime | None = None) -> int:
    created = created or not_after - dt.timedelta(days=365)
    row = session.execute(insert(Certificate).returning(Certificate.id).values(
        authority_id=auth.id, generation_id=None, serial=format(next(_ids) + 2**64, "x"),
        profile="official-signing", subject="CN=test", key_type="ec-p256", state="issued",
        tbs_der=b"tbs", certificate_der=b"der", not_before=created, not_after=not_after,
        status="good", requested_by="test", subscriber_ref=None, created_at=created,
        issued_at=created)).scalar_one()
    return int(row)


def _crl(session, auth: Authority, this_update: dt.datetime) -> int:  # type: ignore[no-untyped-def]
    row = PublishedCrl(authority_id=auth.id, number=next(_ids), generation=1, is_delta=False,
                       base_number=None, this_update=this_update,
                       next_update=this_update + dt.timedelta(days=1), entries=0, der=b"crl")
    session.add(row)
    session.flush()
    return row.id


def _request(session, store: Store, auth: Authority, serial: str,  # type: ignore[no-untyped-def]
             when: dt.datetime, state: str = "issued") -> int:
    req = Request(kind="new-pair", official_id=store.official, state=state, ca=auth.name,
                  profile="official-signing", csr=b"csr", required_approvals=1,
                  submitted_by="clerk", submitted_at=when, submit_comment="",
                  decided_by="approver", decided_at=when, executed_by="approver",
                  executed_at=when)
    session.add(req)
    session.flush()
    session.add(Approval(request_id=req.id, operator="approver", comment="材料齐全",
                         approved_at=when))
    session.add(RequestCertificate(request_id=req.id, role="issued", ca=auth.name,
                                   serial=serial))
    session.flush()
    return req.id


def _exists(session, model, row_id: int) -> bool:  # type: ignore[no-untyped-def]
    return session.get(model, row_id) is not None


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(now=st.datetimes(min_value=dt.datetime(2035, 1, 1),  # noqa: DTZ001
                        max_value=dt.datetime(2045, 1, 1),  # noqa: DTZ001
                        timezones=st.just(UTC)),
       ages=st.lists(st.one_of(
           st.integers(-2 * 365 * 86400, 9 * 365 * 86400),          # anywhere
           st.integers((YEARS * 365 - 3) * 86400, (YEARS * 365 + 4) * 86400)),  # the edge
           min_size=1, max_size=6))
def test_younger_records_are_never_deleted_and_older_ones_are(
        store: Store, now: dt.datetime, ages: list[int]) -> None:
    """Certificates expiring ``age`` seconds before ``now``, a CRL after them and an RA request
    for each: after a run, exactly those older than the cutoff are gone, and every one that is
    gone was at least five years past its anchor."""
    edge = cutoff(now, YEARS)
    with transaction(store.ctx.sessions) as session:
        auth = _authority(session, now - dt.timedelta(days=20 * 365))
        expiries = [now - dt.timedelta(seconds=age) for age in ages]
        certs = [_certificate(session, auth, e) for e in expiries]
        serials = dict(session.execute(select(Certificate.id, Certificate.serial).where(
            Certificate.id.in_(certs))).all())
        requests = [_request(session, store, auth, serials[c], e - dt.timedelta(days=300))
                    for c, e in zip(certs, expiries, strict=True)]
        signed_after_all = max(e - dt.timedelta(days=365) for e in expiries) \
            + dt.timedelta(seconds=1)
        old_crl = _crl(session, auth, signed_after_all)
        head_crl = _crl(session, auth, signed_after_all + dt.timedelta(days=1))
        audit_before = session.scalar(select(func.count()).select_from(AuditEvent))

    dry = run_retention(store.ctx, POLICY, actor="test", now=now, dry_run=True)
    with transaction(store.ctx.sessions) as session:
        assert all(_exists(session, Certificate, c) for c in certs)  # a dry run deletes nothing
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before
    report = run_retention(store.ctx, POLICY, actor="test", now=now)
    assert report.deleted["certificates"] >= dry.deleted["certificates"] >= 0

    with transaction(store.ctx.sessions) as session:
        for cert, expiry, req in zip(certs, expiries, requests, strict=True):
            gone = not _exists(session, Certificate, cert)
            assert gone == (expiry < edge), (expiry, now)
            if gone:
                assert add_years(expiry, YEARS) <= now  # never a younger one
            assert (not _exists(session, Request, req)) == (expiry < edge)
        crl_anchor = max(max(expiries), signed_after_all + dt.timedelta(days=1))
        assert (not _exists(session, PublishedCrl, old_crl)) == (crl_anchor < edge)
        assert _exists(session, PublishedCrl, head_crl)  # the one served: always kept
        # Audit rows are never deleted; the run is one more event.
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before + 1


def test_what_is_never_deleted(store: Store, tmp_path: Path) -> None:
    """CA certificates of key generations, service-key certificates, certificates whose key the
    KMC escrows, open requests and the audit log stay, however old; the hash chain verifies."""
    ancient = dt.datetime(2001, 1, 1, tzinfo=UTC)
    now = dt.datetime(2040, 1, 1, tzinfo=UTC)
    signer = SoftwareSigner("file:retention-audit", ec.generate_private_key(ec.SECP256R1()))
    checkpoints = tmp_path / "checkpoints.jsonl"
    with transaction(store.ctx.sessions) as session:
        auth = _authority(session, ancient)
        ca_cert = _certificate(session, auth, ancient)
        session.add(Generation(authority_id=auth.id, number=1, key_uri="file:x",
                               certificate_id=ca_cert, certificate_der=b"der",
                               not_before=ancient, not_after=ancient, created_at=ancient))
        service = _certificate(session, auth, ancient)
        session.add(ServiceKey(role="ocsp-signer", authority_id=auth.id, key_uri="file:y",
                               certificate_id=service, created_at=ancient))
        escrowed = _certificate(session, auth, ancient)
        serial = session.get(Certificate, escrowed).serial  # type: ignore[union-attr]
        master = MasterKey(key_uri=f"file:kmc-{next(_ids)}", mechanism="rsa-oaep",
                           state="active", created_by="test", created_at=ancient)
        session.add(master)
        session.flush()
        session.add(Escrow(
            owner_kind="official", owner_ref="ra-official:1", subscriber_ref="ra-official:1/x",
            organisation_code="630000", organisation_path="/630000/",
            profile="official-encryption", key_type="ec-p256", public_key_der=b"spki",
            public_key_sha256=f"{next(_ids):064x}", master_key_id=master.id,
            wrap_mechanism="rsa-oaep", wrapped_key=b"wrapped", state="delivered",
            certificate_ca=auth.name, certificate_serial=serial, created_by="test",
            created_at=ancient, deliveries=1))
        plain = _certificate(session, auth, ancient)
        plain_serial = session.get(Certificate, plain).serial  # type: ignore[union-attr]
        session.add(PresignedResponse(
            ca=auth.name, generation=1, serial=plain_serial, hash_algorithm="sha256",
            issuer_name_hash=b"n", issuer_key_hash=f"k{next(_ids)}".encode(), status="good",
            revoked_at=None, revocation_reason=None, this_update=ancient,
            next_update=ancient, response_der=b"r", signer_serial="1"))
        open_request = _request(session, store, auth, plain_serial, ancient, state="submitted")
        record_event(session, actor="test", action="test.event", object_type="test",
                     object_id="before", outcome="success")
    with transaction(store.ctx.sessions) as session:
        write_checkpoint(session, signer, checkpoints)

    run_retention(store.ctx, POLICY, actor="test", now=now)

    with transaction(store.ctx.sessions) as session:
        for kept in (ca_cert, service):
            assert _exists(session, Certificate, kept)
        assert _exists(session, Certificate, escrowed)
        assert not _exists(session, Certificate, plain)
        assert session.scalar(select(func.count()).select_from(PresignedResponse).where(
            PresignedResponse.serial == plain_serial)) == 0
        assert _exists(session, Request, open_request)
        write_checkpoint(session, signer, checkpoints)
    with transaction(store.ctx.sessions) as session:
        report = verify_chain(session, checkpoints, signer.public_key())
    assert report.first_problem is None, report.first_problem


# --- the command ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_command_dry_run_and_a_refused_policy(tmp_path: Path) -> None:
    import json

    home = tmp_path / "home"
    run(home, "init")
    out = json.loads(run(home, "retention", "run", "--dry-run", "--json").stdout)
    assert out["dry_run"] is True
    assert out["records"]["certificates"]["deleted"] == 0  # nothing is five years old yet
    bad = tmp_path / "retention.yaml"
    bad.write_text(GOOD.replace("crls: {keep_years_after_expiry: 7}",
                                "crls: {keep_years_after_expiry: 3}"), encoding="utf-8")
    assert_one_line_error(run(home, "retention", "run", "--policy", str(bad), check=False),
                          "below the legal minimum")

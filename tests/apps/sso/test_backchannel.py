"""Back-Channel Logout 1.0 through the outbox (apps/sso/backchannel.py), against real relying
parties on loopback: one that is down at logout and comes up later receives the logout token
on the scheduler's retry; one that never comes up ends as an audited failure; an RP that
refuses the token (400) is not asked again; 204 counts as success (§2.8). Time is passed to
the retry rounds as ``now``, so nothing here waits for a backoff."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, request
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select
from werkzeug.serving import make_server

from apps.sso import backchannel, models
from apps.sso.config import SsoConfig
from core.db import transaction, utcnow
from govpki.scheduler import run_jobs
from tests.apps.sso.conftest import (
    LOCAL,
    audit_events,
    authorize_url,
    certificate_login,
    code_from,
    make_app,
    pkce,
    register,
)


class RelyingParty:
    """An office application's back-channel endpoint: records tokens, answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.tokens: list[str] = []
        self.app = Flask("relying-party")

        @self.app.post("/backchannel")
        def backchannel_logout() -> tuple[str, int]:
            self.tokens.append(request.form["logout_token"])
            return "", self.status


def free_port() -> int:
    """A loopback port nobody listens on (yet): connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def listening(rp: RelyingParty, port: int) -> Iterator[None]:
    server = make_server("127.0.0.1", port, rp.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def log_in_and_out(pki, person, uri: str, **sso: Any) -> tuple[str, str, list[int]]:
    """Certificate login, a code flow for an application with back-channel URI ``uri``,
    then RP-initiated logout with the ID token as hint: (client id, sid, delivery ids)."""
    app = make_app(pki, **sso)
    registered, secret = register(pki, backchannel=uri)
    client = app.test_client()
    certificate_login(client, person)
    verifier, challenge = pkce()
    reply = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge))
    tokens = client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code_from(reply.headers["Location"]),
        "code_verifier": verifier, "redirect_uri": registered.redirect_uris[0],
        "client_id": registered.client_id, "client_secret": secret}).get_json()
    keyset = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    sid = jwt.decode(tokens["id_token"], keyset).claims["sid"]
    out = client.get("/oauth/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert out.status_code == 200  # no redirect asked for: the "logged out" page
    with transaction(pki.ctx.sessions) as session:
        ids = list(session.scalars(select(models.LogoutDelivery.id).where(
            models.LogoutDelivery.client_id == registered.client_id)))
    return registered.client_id, sid, ids


def deliveries(pki, ids: list[int]) -> list[models.LogoutDelivery]:
    with transaction(pki.ctx.sessions) as session:
        rows = list(session.scalars(select(models.LogoutDelivery).where(
            models.LogoutDelivery.id.in_(ids))))
        session.expunge_all()
        return rows


def retry_round(pki, ids: list[int], config: SsoConfig, *, after: dt.timedelta
                ) -> list[backchannel.Outcome]:
    """One scheduler round as it would run ``after`` from now, limited to this test's rows."""
    deliverer = backchannel.Deliverer(pki.ctx, config, _keys(pki), LOCAL)
    return deliverer.deliver(ids, now=utcnow() + after)


def _keys(pki):
    from apps.sso.keys import TokenKeys

    return TokenKeys(pki.ctx)


def test_a_relying_party_down_at_logout_gets_the_token_when_it_comes_up(sso_pki, person
                                                                        ) -> None:
    port = free_port()
    rp = RelyingParty()
    client_id, sid, ids = log_in_and_out(sso_pki, person, f"http://127.0.0.1:{port}/backchannel")
    [row] = deliveries(sso_pki, ids)
    assert row.state == "pending" and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("unreachable")
    assert row.next_attempt_at - row.last_attempt_at == dt.timedelta(seconds=30)
    config = SsoConfig(issuer=LOCAL)
    # Not due yet: a round now leaves it alone.
    assert retry_round(sso_pki, ids, config, after=dt.timedelta(seconds=5)) == []

    with listening(rp, port):
        [outcome] = retry_round(sso_pki, ids, config, after=dt.timedelta(seconds=31))
    assert outcome.state == "delivered" and outcome.attempts == 2
    [token] = rp.tokens
    decoded = jwt.decode(token, _keys(sso_pki).keyset(), algorithms=["ES256"])
    assert decoded.header["typ"] == "logout+jwt"
    claims = decoded.claims
    assert claims["sid"] == sid and claims["aud"] == client_id and claims["iss"] == LOCAL
    assert backchannel.BACKCHANNEL_EVENT in claims["events"] and "nonce" not in claims
    assert abs(claims["iat"] - utcnow().timestamp()) < 60  # signed for this attempt
    [row] = deliveries(sso_pki, ids)
    assert row.state == "delivered" and row.delivered_at is not None and row.last_error is None
    sent = [e for e in audit_events(sso_pki, "sso.backchannel-logout")
            if e["details"].get("delivery") == row.id]
    assert [(e["outcome"], e["details"]["attempts"]) for e in sent] == [("success", 2)]
    with transaction(sso_pki.ctx.sessions) as session:
        note = session.scalar(select(models.SessionClient).where(
            models.SessionClient.client_id == client_id))
        assert note is not None and note.notified_at is not None and note.notify_error is None
    # Delivered is done: later rounds send nothing more.
    assert retry_round(sso_pki, ids, config, after=dt.timedelta(days=1)) == []


def test_a_relying_party_that_never_comes_up_ends_as_an_audited_failure(sso_pki, person
                                                                         ) -> None:
    port = free_port()
    config = SsoConfig(issuer=LOCAL, backchannel_max_attempts=3,
                       backchannel_retry_seconds=10, backchannel_retry_max_seconds=15)
    _client_id, _sid, ids = log_in_and_out(sso_pki, person,
                                           f"http://127.0.0.1:{port}/backchannel",
                                           backchannel_max_attempts=3,
                                           backchannel_retry_seconds=10,
                                           backchannel_retry_max_seconds=15)
    [second] = retry_round(sso_pki, ids, config, after=dt.timedelta(seconds=11))
    assert second.state == "pending" and second.attempts == 2
    [row] = deliveries(sso_pki, ids)
    assert row.next_attempt_at - row.last_attempt_at == dt.timedelta(seconds=15)  # capped
    [third] = retry_round(sso_pki, ids, config, after=dt.timedelta(seconds=40))
    assert third.state == "failed" and third.attempts == 3
    assert third.error is not None and third.error.startswith("unreachable")
    failures = [e for e in audit_events(sso_pki, "sso.backchannel-logout", "failure")
                if e["details"].get("delivery") == row.id]
    assert len(failures) == 1 and failures[0]["details"]["attempts"] == 3
    assert retry_round(sso_pki, ids, config, after=dt.timedelta(days=1)) == []


def test_400_is_final_and_204_is_success(sso_pki, person) -> None:
    """§2.8: 400 means the RP refused the token (sending it again would not help); 204 is
    accepted as 200; a 503 is tried again."""
    port = free_port()
    rp = RelyingParty(status=400)
    with listening(rp, port):
        _cid, _sid, refused = log_in_and_out(sso_pki, person,
                                             f"http://127.0.0.1:{port}/backchannel")
        [row] = deliveries(sso_pki, refused)
        assert row.state == "failed" and row.attempts == 1 and row.last_error == "HTTP 400"
        rp.status = 503
        _cid, _sid, busy = log_in_and_out(sso_pki, person,
                                          f"http://127.0.0.1:{port}/backchannel")
        [row] = deliveries(sso_pki, busy)
        assert row.state == "pending" and row.last_error == "HTTP 503"
        rp.status = 204
        [done] = retry_round(sso_pki, busy, SsoConfig(issuer=LOCAL),
                             after=dt.timedelta(minutes=1))
        assert done.state == "delivered"
    assert len(rp.tokens) == 3


def test_backoff_doubles_up_to_the_maximum() -> None:
    config = SsoConfig(backchannel_retry_seconds=30, backchannel_retry_max_seconds=3600)
    assert [backchannel.backoff(config, n).total_seconds() for n in range(1, 10)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_the_scheduler_round_retries_due_deliveries(sso_pki, person) -> None:
    """govpki's scheduler runs apps/sso/maintenance.run_due where the provider is mounted."""
    port = free_port()
    rp = RelyingParty()
    _cid, _sid, ids = log_in_and_out(sso_pki, person, f"http://127.0.0.1:{port}/backchannel")
    with transaction(sso_pki.ctx.sessions) as session:  # its backoff has passed
        for row in session.scalars(select(models.LogoutDelivery).where(
                models.LogoutDelivery.id.in_(ids))):
            row.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
    with listening(rp, port):
        run_jobs(sso_pki.ctx, crl=False, ocsp=False, sso=True)
    assert len(rp.tokens) == 1
    [row] = deliveries(sso_pki, ids)
    assert row.state == "delivered"

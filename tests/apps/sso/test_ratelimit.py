"""Rate limits on login codes and wrong answers (apps/sso/ratelimit.py): per browser and per
source address, 429 with Retry-After and an RFC 9457 body (a page for the login page), the
first refusal of a window audited; X-Forwarded-For believed only from a trusted proxy.

Each test counts against an address of its own (a random 10.x address as the peer), since
every test shares the database. The counting itself is tested with ``now`` given; the HTTP
tests fill the counters of this window and the next, so they do not depend on when they run.
"""

from __future__ import annotations

import datetime as dt
import secrets

import pytest

from apps.sso import ratelimit
from apps.sso.config import SsoConfig
from apps.sso.errors import RateLimited
from core.db import utcnow
from tests.apps.sso.conftest import LOCAL, audit_events, make_app

WINDOW = 300


def _address() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def _config(**limits: int) -> SsoConfig:
    return SsoConfig(issuer=LOCAL, cookie_secure=False, rate_window_seconds=WINDOW, **limits)


def _fill(pki, config: SsoConfig, bucket: str, subject: ratelimit.Subject, times: int) -> None:
    """``times`` events for ``subject`` in this window and in the next one."""
    for now in (utcnow(), utcnow() + dt.timedelta(seconds=WINDOW)):
        for _ in range(times):
            ratelimit.record(pki.ctx, config, bucket, [subject], now=now)


def _rate_audits(pki, subject: ratelimit.Subject) -> list[dict]:
    return [e for e in audit_events(pki, "sso.rate-limit", "refused")
            if e["object_id"] == subject.digest[:16]]


def test_counting_in_fixed_windows(sso_pki) -> None:
    config = _config(challenges_per_address=2)
    subject = ratelimit.Subject("address", _address())
    start = dt.datetime(2030, 1, 1, 8, 0, 10, tzinfo=dt.UTC)  # 10 s into a window
    for _ in range(2):
        ratelimit.take(sso_pki.ctx, config, ratelimit.CHALLENGE, [subject], client="t",
                       now=start)
    for _ in range(2):  # the third and fourth are refused; only the first refusal is audited
        with pytest.raises(RateLimited) as refused:
            ratelimit.take(sso_pki.ctx, config, ratelimit.CHALLENGE, [subject], client="t",
                           now=start)
        assert refused.value.retry_after == WINDOW - 10 and refused.value.http_status == 429
    [audited] = _rate_audits(sso_pki, subject)
    assert audited["details"]["bucket"] == "challenge" and audited["details"]["limit"] == 2
    # The next window starts from nothing.
    ratelimit.take(sso_pki.ctx, config, ratelimit.CHALLENGE, [subject], client="t",
                   now=start + dt.timedelta(seconds=WINDOW))
    # A day later the scheduler drops the old counters.
    assert ratelimit.purge(sso_pki.ctx, now=start + dt.timedelta(days=2)) >= 2


@pytest.mark.postgres
def test_counting_on_postgresql(pg_file_pki) -> None:
    """The counter is one upsert (INSERT … ON CONFLICT DO UPDATE … RETURNING) per dialect."""
    from tests.apps.sso.conftest import sso_ready

    pki = sso_ready(pg_file_pki)
    config = _config(challenges_per_browser=1)
    subject = ratelimit.Subject("browser", secrets.token_urlsafe(32))
    ratelimit.take(pki.ctx, config, ratelimit.CHALLENGE, [subject], client="t")
    with pytest.raises(RateLimited):
        _fill(pki, config, ratelimit.CHALLENGE, subject, 1)
        ratelimit.take(pki.ctx, config, ratelimit.CHALLENGE, [subject], client="t")


def test_wrong_answers_are_counted_and_then_refused(sso_pki) -> None:
    config = _config(answer_failures_per_address=3)
    subject = ratelimit.Subject("address", _address())
    now = dt.datetime(2030, 1, 1, 9, 0, 0, tzinfo=dt.UTC)
    for _ in range(3):
        ratelimit.check(sso_pki.ctx, config, ratelimit.ANSWER_FAILURE, [subject], client="t",
                        now=now)
        ratelimit.record(sso_pki.ctx, config, ratelimit.ANSWER_FAILURE, [subject], now=now)
    with pytest.raises(RateLimited, match="wrong login codes"):
        ratelimit.check(sso_pki.ctx, config, ratelimit.ANSWER_FAILURE, [subject], client="t",
                        now=now)
    assert len(_rate_audits(sso_pki, subject)) == 1


def test_forwarded_address_only_from_a_trusted_proxy() -> None:
    config = SsoConfig(trusted_proxies=("192.0.2.10",))
    assert ratelimit.source_address("192.0.2.10", "198.51.100.1, 203.0.113.7", config) \
        == "203.0.113.7"
    assert ratelimit.source_address("203.0.113.9", "198.51.100.1", config) == "203.0.113.9"
    assert ratelimit.source_address("192.0.2.10", "not an address", config) == "192.0.2.10"
    assert ratelimit.source_address("192.0.2.10", None, config) == "192.0.2.10"


def test_too_many_login_codes_from_one_address_is_a_429_page(sso_pki) -> None:
    config = _config(challenges_per_address=5)
    app = make_app(sso_pki)
    app.config["GOVPKI_SSO_CONFIG"] = config
    address = _address()
    subject = ratelimit.Subject("address", address)
    _fill(sso_pki, config, ratelimit.CHALLENGE, subject, 5)
    client = app.test_client()
    page = client.get("/sso/login", environ_base={"REMOTE_ADDR": address})
    assert page.status_code == 429
    assert 0 < int(page.headers["Retry-After"]) <= WINDOW
    html = page.get_data(as_text=True)
    assert "请求过于频繁" in html and 'id="challenge-code"' not in html
    assert _rate_audits(sso_pki, subject)[0]["details"]["scope"] == "address"
    # Another address is not affected.
    assert client.get("/sso/login", environ_base={"REMOTE_ADDR": _address()}).status_code == 200


def test_too_many_login_codes_in_one_browser(sso_pki) -> None:
    config = _config(challenges_per_browser=4)
    app = make_app(sso_pki)
    app.config["GOVPKI_SSO_CONFIG"] = config
    browser = secrets.token_urlsafe(32)
    _fill(sso_pki, config, ratelimit.CHALLENGE, ratelimit.Subject("browser", browser), 4)
    client = app.test_client()
    client.set_cookie("govpki_sso_browser", browser, path="/sso")
    page = client.get("/sso/login", environ_base={"REMOTE_ADDR": _address()})
    assert page.status_code == 429 and "Retry-After" in page.headers


def test_wrong_codes_over_http_end_in_429_problem(sso_pki) -> None:
    config = _config(answer_failures_per_address=3)
    app = make_app(sso_pki)
    app.config["GOVPKI_SSO_CONFIG"] = config
    address = _address()
    subject = ratelimit.Subject("address", address)
    # The next window is full already: crossing into it mid-test cannot let a guess through.
    start = utcnow() + dt.timedelta(seconds=WINDOW)
    for _ in range(3):
        ratelimit.record(sso_pki.ctx, config, ratelimit.ANSWER_FAILURE, [subject], now=start)
    client = app.test_client()
    statuses = []
    for _ in range(5):
        code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
        reply = client.post("/sso/challenge", json={"code": code},
                            environ_base={"REMOTE_ADDR": address})
        statuses.append(reply.status_code)
    assert statuses.count(400) <= 3 and statuses[-1] == 429
    assert statuses == sorted(statuses)  # once refused, refused for the rest of the window
    problem = reply.get_json()
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert problem["type"] == "urn:govpki:problem:sso-rate-limited"
    assert problem["status"] == 429 and problem["retry_after"] > 0
    assert int(reply.headers["Retry-After"]) == problem["retry_after"]
    # The answer endpoint too: even a well-formed answer is not looked at.
    answer = client.post("/sso/challenge/answer", json={
        "code": "ABCD-EFGH", "format": "govpki-login-v1", "certificate": "AAAA",
        "signature": "AAAA"}, environ_base={"REMOTE_ADDR": address})
    assert answer.status_code == 429
    assert len(_rate_audits(sso_pki, subject)) == 1


def test_a_trusted_proxy_is_counted_by_the_client_it_names(sso_pki) -> None:
    proxy, behind = _address(), _address()
    config = SsoConfig(issuer=LOCAL, cookie_secure=False, rate_window_seconds=WINDOW,
                       answer_failures_per_address=2, trusted_proxies=(proxy,))
    app = make_app(sso_pki)
    app.config["GOVPKI_SSO_CONFIG"] = config
    _fill(sso_pki, config, ratelimit.ANSWER_FAILURE, ratelimit.Subject("address", behind), 2)
    client = app.test_client()
    via_proxy = client.post("/sso/challenge", json={"code": "ABCD-EFGH"},
                            environ_base={"REMOTE_ADDR": proxy},
                            headers={"X-Forwarded-For": f"198.51.100.1, {behind}"})
    assert via_proxy.status_code == 429
    # The same header from anyone else is not believed: their own address counts.
    direct = client.post("/sso/challenge", json={"code": "ABCD-EFGH"},
                         environ_base={"REMOTE_ADDR": _address()},
                         headers={"X-Forwarded-For": behind})
    assert direct.status_code == 400

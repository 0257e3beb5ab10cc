"""Property tests of the API's JSON input: whatever a client sends to POST /officials and
POST /requests, the answer is a 2xx or a 4xx problem (never a 500), and a refused call writes
no row at all (a created one writes exactly one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.db import transaction
from policies.authz import REQUEST_KINDS
from ra import models
from ra.records import CertificateRef, Official, Operator
from tests.ra.api.conftest import Api, csr_pem, make_operator, new_official

ALLOWED = {200, 201, 400, 403, 404, 409, 413, 415}
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=8)
nasty_text = st.text(st.characters(codec="utf-8") | st.sampled_from(
    ["\x00", "\n", "\u202e", "\ud800", "'", "%", "_", "\\"]), max_size=80)
identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
names = st.text(st.sampled_from("张三李四王五赵六"), min_size=2, max_size=6)
odd_names = st.text(st.sampled_from("张三 ·abcXYZ"), min_size=0, max_size=70)


def _counts(api: Api) -> tuple[int, ...]:
    with transaction(api.pki.ctx.sessions) as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) or 0 for m in (
            models.Official, models.Request, models.RequestCertificate, models.Approval))


def _send(api: Api, token: str, path: str, body: Any, raw: bytes | None = None,
          content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode(
        "utf-8", "surrogatepass")
    return api.call("POST", path, token=token, data=data, content_type=content_type)


@pytest.fixture(scope="module")
def actor(api: Api) -> Operator:
    return make_operator(api.pki, "632500", "ra-operator")


@pytest.fixture(scope="module")
def targets(api: Api, actor: Operator) -> tuple[Official, Official, CertificateRef]:
    """An official in the actor's scope (with a certificate), and one outside it."""
    from ra import requests

    mine = new_official(api.pki, actor, "632500-BGS")
    theirs = new_official(api.pki, make_operator(api.pki, "630100", "ra-operator"),
                          "630100-BGT")
    approver = make_operator(api.pki, "632500", "ra-operator")
    submitted = requests.submit(api.pki.ctx, actor, mine.identifier, "new-pair",
                                csr=csr_pem().encode())
    requests.approve(api.pki.ctx, approver, submitted.id)
    [ref] = requests.execute(api.pki.ctx, approver, submitted.id).issued
    return mine, theirs, ref


BAD = json_values | nasty_text | odd_names


def likely(value: bool) -> st.SearchStrategy[bool]:
    """``value`` about four times in five."""
    return st.sampled_from([value, value, value, value, not value])


@st.composite
def spoiled(draw: st.DrawFn, body: dict[str, Any]) -> Any:
    """``body`` as it is, with one member spoiled or dropped, with an unknown member, or
    replaced by any JSON at all: mostly-valid bodies reach the services' own checks."""
    how = draw(st.sampled_from(["keep", "keep", "spoil", "spoil", "drop", "extra", "any"]))
    if how == "spoil" and body:
        name = draw(st.sampled_from(sorted(body)))
        return {**body, name: draw(BAD)}
    if how == "drop" and body:
        name = draw(st.sampled_from(sorted(body)))
        return {k: v for k, v in body.items() if k != name}
    if how == "extra":
        return {**body, draw(st.text(max_size=8)): draw(json_values)}
    if how == "any":
        return draw(json_values)
    return body


@st.composite
def official_bodies(draw: st.DrawFn) -> Any:
    body = {"identifier": draw(identifiers), "name": draw(names),
            "org_code": draw(st.sampled_from(["632500-BGS", "632500", "630100-BGT", "nope"]))}
    for name, value in (("position", names), ("contact", st.text(max_size=20)),
                        ("unit", st.none() | names)):
        if draw(likely(False)):
            body[name] = draw(value)
    return draw(spoiled(body))


@SETTINGS
@given(body=official_bodies())
def test_post_officials_never_fails_and_never_half_writes(api: Api, actor: Operator,
                                                          body: Any) -> None:
    before = _counts(api)
    response = _send(api, api.token(actor), "/officials", body)
    event(f"status {response.status_code}")
    assert response.status_code in ALLOWED, response.get_data(as_text=True)
    after = _counts(api)
    if response.status_code == 201:
        assert after[0] == before[0] + 1 and after[1:] == before[1:]
        again = api.call("GET", f"/officials/{response.json['identifier']}",
                         token=api.token(actor))
        assert again.json == response.json
    else:
        assert after == before
        assert response.mimetype == "application/problem+json"


@SETTINGS
@given(raw=st.binary(max_size=300),
       content_type=st.sampled_from(["application/json", "text/plain", "",
                                     "application/merge-patch+json", "multipart/form-data"]))
def test_raw_bytes_never_fail(api: Api, actor: Operator, raw: bytes, content_type: str) -> None:
    before = _counts(api)
    for path in ("/officials", "/requests"):
        response = _send(api, api.token(actor), path, None, raw, content_type)
        assert response.status_code in ALLOWED, response.get_data(as_text=True)
    assert _counts(api) == before or response.status_code == 201


CSRS = [csr_pem() for _ in range(2)]


@SETTINGS
@given(data=st.data())
def test_post_requests_never_fails_and_never_half_writes(
        api: Api, actor: Operator, targets: tuple[Official, Official, CertificateRef],
        data: st.DataObject) -> None:
    mine, theirs, ref = targets
    kind = data.draw(st.sampled_from(REQUEST_KINDS), "kind")
    body = {"official": data.draw(st.sampled_from(
        [mine.identifier, mine.identifier, theirs.identifier, "nobody"]), "official"),
        "kind": kind}
    if kind in ("new-pair", "renewal", "re-key"):
        body["csr"] = data.draw(st.sampled_from([*CSRS, "garbage", CSRS[0][:200]]), "csr")
    else:
        body["serials"] = data.draw(st.lists(st.sampled_from(
            [ref.serial, "00" + ref.serial, "zz", "1"]), min_size=1, max_size=2), "serials")
    for name, value in (("ca", st.sampled_from(["officials", "devices", "none"])),
                        ("reason", st.sampled_from(["keyCompromise", "superseded"])),
                        ("comment", names)):
        if data.draw(likely(False), f"{name}?"):
            body[name] = data.draw(value, name)
    body = data.draw(spoiled(body), "spoiled")
    before = _counts(api)
    response = _send(api, api.token(actor), "/requests", body)
    event(f"status {response.status_code}")
    assert response.status_code in ALLOWED, response.get_data(as_text=True)
    after = _counts(api)
    if response.status_code == 201:
        created = response.json
        assert after[1] == before[1] + 1
        assert after[2] == before[2] + len(created["targets"])
        assert created["state"] in ("submitted", "done")
    else:
        assert after == before

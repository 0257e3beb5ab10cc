"""Bad input and refusals over HTTP: each a specific RFC 9457 problem (400 naming the field,
401 with a challenge, 403 audited, 404, 405 with Allow, 409, 413, 415), never a 500, and
nothing written."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from core.audit import AuditEvent
from core.db import transaction
from ra import api_tokens, models
from ra.config import RaConfig
from tests.ra.api.conftest import Api, csr_pem, make_operator, new_official, unique


@pytest.fixture(scope="module")
def clerk(api: Api):  # type: ignore[no-untyped-def]
    return make_operator(api.pki, "632300", "ra-operator")


def _count(api: Api, model: type) -> int:
    with transaction(api.pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _refusals(api: Api, username: str) -> int:
    with transaction(api.pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.actor == username, AuditEvent.outcome == "refused")) or 0


def _problem(response, status: int, kind: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["detail"]
    if kind is not None:
        assert body["type"] == f"urn:govpki:problem:{kind}", body
    return body


# ---------------------------------------------------------------------------------------------
# 401

def test_missing_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    response = api.call("GET", "/officials")
    _problem(response, 401, "authentication-failed")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="govpki"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer gp_nonsense",
                                    "Bearer gp_\x01\x02", "Bearer " + "x" * 500])
def test_bad_credentials_are_401_invalid_token(api: Api, header: str) -> None:
    response = api.call("GET", "/me", headers={"Authorization": header})
    _problem(response, 401, "authentication-failed")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="govpki", error="invalid_token"'


def test_a_revoked_token_stops_working_at_once(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    token, record = api_tokens.create_api_token(api.pki.ctx, clerk, clerk.username, "short")
    assert api.call("GET", "/me", token=token).json["username"] == clerk.username
    revoked = api.call("DELETE", f"/tokens/{record.id}", token=token)
    assert revoked.status_code == 200 and revoked.json["revoked_at"] is not None
    _problem(api.call("GET", "/me", token=token), 401)


def test_enrollment_status_needs_the_enrollment_scheme(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    response = api.call("GET", "/enrollment/1", token=api.token(clerk))
    _problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Enrollment realm="govpki-enrollment"'
    unknown = api.call("POST", "/enrollment", json_body={"code": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE",
                                                         "csr": csr_pem()})
    _problem(unknown, 401, "authentication-failed")
    assert unknown.headers["WWW-Authenticate"].startswith("Enrollment ")


# ---------------------------------------------------------------------------------------------
# 400: the field is named

@pytest.mark.parametrize(("body", "content_type", "field"), [
    (b"{not json", "application/json", "body"),
    (b"\xff\xfe", "application/json", "body"),
    (b"[1, 2]", "application/json", "body"),
    (b'{"identifier": 5, "name": "x", "org_code": "632300-BGS"}', "application/json",
     "identifier"),
    (b'{"identifier": "a", "name": "x", "org_code": "632300-BGS", "colour": "red"}',
     "application/json", "colour"),
    (b'{"identifier": "a", "identifier": "b", "name": "x", "org_code": "632300-BGS"}',
     "application/json", "identifier"),
    (b'{"name": "x", "org_code": "632300-BGS"}', "application/json", "identifier"),
    (b'{"identifier": "a", "name": "x\\u0000", "org_code": "632300-BGS"}',
     "application/json", "name"),
    (b'{"identifier": "a", "name": "\\ud800", "org_code": "632300-BGS"}',
     "application/json", "name"),
    (b'{"identifier": "a", "name": "x", "org_code": "632300-BGS", "unit": NaN}',
     "application/json", "body"),
    (b"[" * 100_000, "application/json", "body"),
    (b'{"identifier": "11010519491231002X", "name": "x", "org_code": "632300-BGS"}',
     "application/json", "identifier"),
])
def test_bad_bodies_name_the_field(api: Api, clerk, body: bytes, content_type: str,  # type: ignore[no-untyped-def]
                                   field: str) -> None:
    before = _count(api, models.Official)
    response = api.call("POST", "/officials", token=api.token(clerk), data=body,
                        content_type=content_type)
    assert _problem(response, 400)["field"] == field
    assert _count(api, models.Official) == before


@pytest.mark.parametrize(("query", "field"), [
    ("?page=0", "page"), ("?page=abc", "page"), ("?per_page=501", "per_page"),
    ("?page=99999999999999999999", "page"), ("?colour=red", "colour"),
    ("?page=1&page=2", "page"), ("?q=%00", "q")])
def test_bad_query_parameters_name_the_parameter(api: Api, clerk, query: str,  # type: ignore[no-untyped-def]
                                                 field: str) -> None:
    response = api.call("GET", "/officials" + query, token=api.token(clerk))
    assert _problem(response, 400)["field"] == field


def test_bad_path_parameters(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    token = api.token(clerk)
    assert _problem(api.call("GET", "/requests/99999999999", token=token),
                    400)["field"] == "request_id"
    assert _problem(api.call("GET", "/officials/a%00b", token=token),
                    400)["field"] == "identifier"


def test_request_validation_by_the_service(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    official = new_official(api.pki, clerk, "632300-BGS")
    token = api.token(clerk)
    before = _count(api, models.Request)
    for body, field in (({"official": official.identifier, "kind": "new-pair",
                          "csr": "garbage"}, "csr"),
                        ({"official": official.identifier, "kind": "re-key"}, "csr"),
                        ({"official": official.identifier, "kind": "revocation"}, "serials"),
                        ({"official": official.identifier, "kind": "burn"}, "kind"),
                        ({"official": official.identifier, "kind": "new-pair",
                          "csr": csr_pem(), "comment": "x" * 2001}, "comment")):
        assert _problem(api.call("POST", "/requests", token=token, json_body=body),
                        400)["field"] == field
    assert _count(api, models.Request) == before
    reject = api.call("POST", "/requests/1/reject", token=token, json_body={})
    assert _problem(reject, 400)["field"] == "comment"


# ---------------------------------------------------------------------------------------------
# 403, 404, 405, 409

def test_forbidden_is_403_and_audited(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    before = _refusals(api, clerk.username)
    response = api.call("POST", "/officials", token=api.token(clerk), json_body={
        "identifier": unique("X"), "name": "李四", "org_code": "630100-BGT"})
    _problem(response, 403, "forbidden")
    assert _refusals(api, clerk.username) == before + 1


def test_unknown_things_are_404(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    token = api.token(clerk)
    _problem(api.call("GET", "/officials/nobody-here", token=token), 404, "ra-not-found")
    _problem(api.call("GET", "/requests/987654", token=token), 404, "ra-not-found")
    _problem(api.call("GET", "/certificates/nope/1a", token=token), 404, "unknown-ca")
    _problem(api.call("GET", "/certificates/officials/zz", token=token), 404,
             "certificate-not-found")
    unknown = api.call("GET", "/no/such/path", token=token)
    assert _problem(unknown, 404)["type"] == "about:blank"


def test_method_not_allowed_is_405_with_allow(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    response = api.call("DELETE", "/officials", token=api.token(clerk))
    _problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_conflicts_are_409(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    official = new_official(api.pki, clerk, "632300-BGS")
    token = api.token(clerk)
    again = api.call("POST", "/officials", token=token, json_body={
        "identifier": official.identifier, "name": "张三", "org_code": "632300-BGS"})
    _problem(again, 409, "duplicate")
    submitted = api.call("POST", "/requests", token=token, json_body={
        "official": official.identifier, "kind": "new-pair", "csr": csr_pem()})
    other = make_operator(api.pki, "632300", "ra-operator")
    rejected = api.call("POST", f"/requests/{submitted.json['id']}/reject",
                        token=api.token(other), json_body={"comment": "照片不清晰"})
    assert rejected.status_code == 200 and rejected.json["state"] == "rejected"
    late = api.call("POST", f"/requests/{submitted.json['id']}/approve",
                    token=api.token(other))
    _problem(late, 409, "invalid-transition")


# ---------------------------------------------------------------------------------------------
# 413, 415

def test_oversized_bodies_are_413_before_and_while_reading(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    token = api.token(clerk)
    api.app.config["GOVPKI_RA_CONFIG"] = RaConfig(max_body_bytes=2048)
    try:
        big = b'{"identifier": "' + b"a" * 4000 + b'"}'
        announced = api.call("POST", "/officials", token=token, data=big,
                             content_type="application/json")
        assert _problem(announced, 413, "body-too-large")["limit"] == 2048
        # No Content-Length (chunked, as a WSGI server passes it on: input terminated): the
        # stream itself stops at the limit.
        chunked = api.client.post("/api/v1/officials", input_stream=io.BytesIO(big),
                                  environ_overrides={"wsgi.input_terminated": True},
                                  headers={"Authorization": f"Bearer {token}",
                                           "Transfer-Encoding": "chunked",
                                           "Content-Type": "application/json"})
        _problem(chunked, 413, "body-too-large")
    finally:
        api.app.config.pop("GOVPKI_RA_CONFIG")


def test_wrong_media_type_is_415(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    token = api.token(clerk)
    form = api.call("POST", "/officials", token=token, data="identifier=a&name=b",
                    content_type="application/x-www-form-urlencoded")
    assert _problem(form, 415, "unsupported-media-type")["field"] == "Content-Type"
    roster = api.call("POST", "/officials/import", token=token, data=b'{"a": 1}',
                      content_type="application/json")
    _problem(roster, 415, "unsupported-media-type")


# ---------------------------------------------------------------------------------------------
# Roster import: all or nothing, the report in the problem

def test_roster_refused_with_a_report_and_nothing_imported(api: Api, clerk) -> None:  # type: ignore[no-untyped-def]
    token = api.token(clerk)
    good, dup = unique("R"), unique("R")
    roster = ("identifier,name,org_code\n"
              f"{good},王五,632300-BGS\n"
              f"{dup},赵六,630100-BGT\n"
              f"{dup},钱七,632300-BGS\n")
    before = _count(api, models.Official)
    refused = api.call("POST", "/officials/import", token=token, data=roster.encode(),
                       content_type="text/csv")
    body = _problem(refused, 400, "import-refused")
    assert {(p["line"], p["field"]) for p in body["problems"]} == {
        (3, "org_code"), (4, "identifier")}
    assert _count(api, models.Official) == before

    fixed = roster.replace("630100-BGT", "632300-BGS").replace(f"{dup},钱七", f"{unique('R')},钱七")
    imported = api.client.post("/api/v1/officials/import", headers={
        "Authorization": f"Bearer {token}"}, data={
        "file": (io.BytesIO(fixed.encode("utf-8-sig")), "roster.csv", "text/csv")})
    assert imported.status_code == 201, imported.get_data(as_text=True)
    assert imported.json["imported"] == 3
    assert _count(api, models.Official) == before + 3
    empty = api.client.post("/api/v1/officials/import", headers={
        "Authorization": f"Bearer {token}"}, data={"other": (io.BytesIO(b"x"), "a.csv")})
    assert _problem(empty, 400)["field"] == "file"

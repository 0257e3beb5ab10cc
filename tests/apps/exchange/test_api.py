"""REST /api/v1/exchange/... through the real application (create_app) with the exchange's
route group registered on ra's extension point: every answer is checked against the OpenAPI
document the application serves. A department's own system submits a package it sealed
itself and uploads a receipt it signed itself; the server-held path seals, opens and signs."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate

from apps.exchange import org_keys, service
from apps.exchange.api import CMS_TYPE, PACKAGE_TYPE, ROUTES
from apps.exchange.header import OrgName
from apps.exchange.package import build_package, open_envelope, parse_package
from apps.exchange.policy import get_policy
from apps.exchange.receipts import make_receipt
from ra.api import register_routes
from tests.apps.exchange.conftest import (
    HAIBEI,
    PROVINCE,
    XINING,
    clerks,
    exchange_ready,
    pdf,
    request,
)
from tests.apps.exchange.helpers import root_pem, verify_receipt
from tests.conftest import Pki
from tests.ra.api.conftest import Api, build_api


@pytest.fixture(scope="module")
def api(file_pki: Pki) -> Iterator[Api]:
    pki = exchange_ready(file_pki)
    register_routes(ROUTES)
    yield from build_api(pki)


def send_body(**overrides: object) -> dict[str, object]:
    req = request()
    body: dict[str, object] = {
        "number": req.number, "title": req.title, "date": "2024-05-20", "urgency": "特急",
        "classification": "非密", "main": [XINING], "copy": [HAIBEI],
        "body_name": "正文.pdf", "body": base64.b64encode(pdf()).decode(),
        "attachment_names": ["附件.txt"], "attachments": [base64.b64encode(b"fu jian").decode()]}
    body.update(overrides)
    return body


def test_the_document_lists_the_exchange(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").get_json()
    validate(doc)
    paths = {p for p in doc["paths"] if p.startswith("/exchange")}
    assert {"/exchange/documents", "/exchange/packages", "/exchange/inbox",
            "/exchange/packages/{message_id}/open",
            "/exchange/packages/{message_id}/receipts/{org}/{kind}"} <= paths


def test_server_held_seal_flow(api: Api, tmp_path) -> None:
    pki = api.pki
    team = clerks(pki)
    province, xining = api.token(team.province), api.token(team.xining)
    body = send_body()
    sent = api.call("POST", "/exchange/documents", token=province, json_body=body)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    message_id = sent.get_json()["package"]["message_id"]
    assert sent.headers["Location"] == f"/api/v1/exchange/packages/{message_id}"
    again = api.call("POST", "/exchange/documents", token=province,
                     json_body={**body, "message_id": message_id})
    assert again.status_code == 200 and again.get_json()["created"] is False

    inbox = api.call("GET", "/exchange/inbox?state=pending&per_page=5", token=xining)
    assert inbox.status_code == 200
    assert message_id in {p["message_id"] for p in inbox.get_json()["items"]}

    first = api.call("GET", f"/exchange/packages/{message_id}/package", token=xining)
    second = api.call("GET", f"/exchange/packages/{message_id}/package", token=xining)
    assert first.mimetype == PACKAGE_TYPE and first.get_data() == second.get_data()

    opened = api.call("POST", f"/exchange/packages/{message_id}/open", token=xining)
    assert opened.status_code == 200, opened.get_data(as_text=True)
    data = opened.get_json()
    assert base64.b64decode(data["body"]["content"]) == pdf()
    assert data["verification"]["valid"] is True and data["receipt"]["kind"] == "delivered"
    assert data["header"]["urgency"] == "特急"

    signed = api.call("POST", f"/exchange/packages/{message_id}/receipts", token=xining,
                      json_body={"kind": "signed-for"})
    assert signed.status_code == 201, signed.get_data(as_text=True)
    repeated = api.call("POST", f"/exchange/packages/{message_id}/receipts", token=xining,
                        json_body={"kind": "signed-for"})
    assert repeated.status_code == 200

    status = api.call("GET", f"/exchange/packages/{message_id}", token=province).get_json()
    states = {d["recipient"]["code"]: d["business_state"] for d in status["package"]["deliveries"]}
    assert states == {XINING: "signed-for", HAIBEI: "none"}
    assert [r["kind"] for r in status["receipts"]] == ["delivered", "signed-for"]

    header = api.call("GET", f"/exchange/packages/{message_id}/header", token=province)
    assert header.mimetype == CMS_TYPE
    (tmp_path / "header.der").write_bytes(header.get_data())
    rct = api.call("GET", f"/exchange/packages/{message_id}/receipts/{XINING}/signed-for",
                   token=province)
    (tmp_path / "rct.der").write_bytes(rct.get_data())
    checked = verify_receipt(tmp_path / "rct.der", tmp_path / "header.der",
                             root_pem(pki, tmp_path))
    assert checked.returncode == 0, checked.stderr

    found = api.call("GET", f"/exchange/search?number={body['number']}", token=province)
    assert [p["message_id"] for p in found.get_json()["items"]] == [message_id]
    outbox = api.call("GET", "/exchange/outbox?per_page=1", token=province)
    assert outbox.status_code == 200 and "Link" in outbox.headers


def test_a_departments_own_system(api: Api) -> None:
    """Sealed on the node, submitted as a package; opened on the node, receipt uploaded."""
    pki = api.pki
    team = clerks(pki)
    policy = get_policy()
    draft = service._draft(pki.ctx, dataclasses.replace(request(copy=()), main=(HAIBEI,)))
    built = build_package(draft, policy, org_keys.seal_key(pki.ctx, PROVINCE, policy),
                          org_keys.encryption_certificates(pki.ctx, [HAIBEI]),
                          receipts_to="https://node.example/receipts")
    submitted = api.call("POST", "/exchange/packages", token=api.token(team.province),
                         data=built.package, content_type=PACKAGE_TYPE)
    assert submitted.status_code == 201, submitted.get_data(as_text=True)
    haibei = api.token(team.haibei)
    fetched = api.call("GET", f"/exchange/packages/{built.message_id}/package", token=haibei)
    parsed = parse_package(fetched.get_data(), policy)
    [(decryptor, certificate)] = org_keys.decryptors(pki.ctx, HAIBEI)[:1]
    body, _attachments = open_envelope(parsed, decryptor, certificate)
    assert body.content == draft.body.content
    statement = make_receipt(parsed.signed_header, message_id=built.message_id,
                             kind="delivered", recipient=OrgName(HAIBEI, "海北藏族自治州人民政府"),
                             seal=org_keys.seal_key(pki.ctx, HAIBEI, policy))
    path = f"/exchange/packages/{built.message_id}/receipts/signed"
    uploaded = api.call("POST", path, token=haibei, data=statement, content_type=CMS_TYPE)
    assert uploaded.status_code == 201, uploaded.get_data(as_text=True)
    assert uploaded.get_json()["kind"] == "delivered"
    assert api.call("POST", path, token=haibei, data=statement,
                    content_type=CMS_TYPE).status_code == 200
    resubmitted = api.call("POST", "/exchange/packages", token=api.token(team.province),
                           data=built.package, content_type=PACKAGE_TYPE)
    assert resubmitted.status_code == 200 and resubmitted.get_json()["created"] is False


def test_problems(api: Api) -> None:
    pki = api.pki
    team = clerks(pki)
    province, xining = api.token(team.province), api.token(team.xining)

    def problem(response, status: int, kind: str) -> None:
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["title"] == kind

    problem(api.call("POST", "/exchange/documents", token=province,
                     json_body=send_body(classification="机密")), 403, "exchange-classified")
    problem(api.call("POST", "/exchange/documents", token=province,
                     json_body=send_body(body="not base64!")), 400, "validation")
    problem(api.call("POST", "/exchange/documents", token=province,
                     json_body=send_body(date="2024-13-01")), 400, "validation")
    problem(api.call("POST", "/exchange/documents", token=xining,
                     json_body=send_body(**{"from": PROVINCE})), 403, "forbidden")
    unknown = "00000000-0000-4000-8000-000000000000"
    problem(api.call("POST", f"/exchange/packages/{unknown}/receipts", token=xining,
                     json_body={"kind": "signed-for"}), 409, "exchange-not-received")
    problem(api.call("GET", f"/exchange/packages/{unknown}", token=xining), 404,
            "exchange-not-found")
    problem(api.call("POST", "/exchange/packages", token=province, data=b"garbage",
                     content_type=PACKAGE_TYPE), 400, "exchange-malformed")
    assert api.call("POST", "/exchange/packages", token=province, data=b"x",
                    content_type="application/pdf").status_code == 415
    assert api.call("GET", "/exchange/inbox").status_code == 401
    problem(api.call("GET", f"/exchange/inbox?org={PROVINCE}", token=xining), 403, "forbidden")
    problem(api.call("POST", f"/exchange/packages/{unknown}/receipts", token=xining,
                     json_body={"kind": "returned", "extra": 1}), 400, "validation")
    assert json.loads(api.call("GET", "/exchange/overdue", token=province).get_data())[
        "total"] >= 0

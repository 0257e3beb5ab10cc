"""The main flows end to end through the real application: register, submit, approve by a
second operator, execute; enrollment with a one-time code; status changes of a certificate."""

from __future__ import annotations

from cryptography import x509

from ca.revocation import status_of
from tests.conftest import Pki
from tests.ra.api.conftest import Api, build_api, csr_pem, make_operator, unique


def _main_flow(api: Api) -> None:
    pki = api.pki
    clerk = make_operator(pki, "630100", "ra-operator")
    approver = make_operator(pki, "630100", "ra-operator")
    identifier = unique("QH")
    made = api.call("POST", "/officials", token=api.token(clerk), json_body={
        "identifier": identifier, "name": "张三", "org_code": "630100-BGT",
        "position": "科员", "unit": "秘书科"})
    assert made.status_code == 201, made.json
    assert made.headers["Location"] == f"/api/v1/officials/{identifier}"
    assert made.json["organisation"]["name"] == "西宁市人民政府办公厅"

    submitted = api.call("POST", "/requests", token=api.token(clerk), json_body={
        "official": identifier, "kind": "new-pair", "csr": csr_pem(), "comment": "新入职"})
    assert submitted.status_code == 201, submitted.json
    request_id = submitted.json["id"]
    assert submitted.json["state"] == "submitted"
    # The submitter cannot approve: two-person rule, 403.
    own = api.call("POST", f"/requests/{request_id}/approve", token=api.token(clerk))
    assert own.status_code == 403 and own.json["type"] == "urn:govpki:problem:two-person-rule"

    approved = api.call("POST", f"/requests/{request_id}/approve", token=api.token(approver),
                        json_body={"comment": "材料齐全"})
    assert approved.status_code == 200, approved.json
    assert approved.json["state"] == "issued"
    assert approved.json["approvals"] == [approver.username]
    # The signing certificate comes first; a second one is the encryption certificate when
    # the key management centre is plugged in and initialised on this database.
    issued = approved.json["issued"][0]
    assert len(approved.json["issued"]) == (2 if approved.json["encryption_status"]
                                            == "escrowed" else 1)

    cert = api.call("GET", f"/certificates/{issued['ca']}/{issued['serial']}",
                    token=api.token(clerk))
    assert cert.status_code == 200
    assert cert.json["official"] == identifier and cert.json["request_id"] == request_id
    parsed = x509.load_pem_x509_certificate(cert.json["certificate_pem"].encode())
    assert parsed.subject.rfc4514_string() == (
        "CN=张三,OU=秘书科,O=西宁市人民政府办公厅,L=西宁市,ST=青海省,C=CN")
    listed = api.call("GET", f"/officials/{identifier}/certificates", token=api.token(clerk))
    assert sorted(c["serial"] for c in listed.json["items"]) == sorted(
        i["serial"] for i in approved.json["issued"])

    revoke = api.call("POST", f"/certificates/{issued['ca']}/{issued['serial']}/revoke",
                      token=api.token(clerk), json_body={"reason": "keyCompromise",
                                                         "comment": "丢失"})
    assert revoke.status_code == 201 and revoke.json["kind"] == "revocation"
    done = api.call("POST", f"/requests/{revoke.json['id']}/approve",
                    token=api.token(approver))
    assert done.json["state"] == "done"
    after = status_of(pki.ctx, issued["serial"], issued["ca"])
    assert after.status == "revoked" and after.revocation_reason == "keyCompromise"


def test_main_flow_on_every_storage(ra_pki: Pki) -> None:
    """SQLite and PostgreSQL × file and SoftHSM2 keys."""
    for api in build_api(ra_pki):
        _main_flow(api)

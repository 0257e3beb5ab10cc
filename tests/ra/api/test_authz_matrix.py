"""The authorisation matrix over HTTP: every endpoint × every role × an object inside and an
object outside the caller's scope.

The caller's organisation is 632200 (海北州); "in" objects belong to 632200-BGS (below it),
"out" objects to 630100-BGT (西宁市, another prefecture). For the self-service ``official``
role, "in" is the official record linked to the account. The expected statuses are written
out here by hand, independently of policies/authz.yaml, so widening a role fails this test
until someone means it. Every 403 must also have left a refusal in the audit log, and lists
must not show what the caller may not see.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from core.audit import AuditEvent
from core.db import transaction
from ra import api_tokens, operators, requests
from ra.records import CertificateRef, Official, Operator
from tests.conftest import Pki
from tests.ra.api.conftest import Api, csr_pem, make_operator, new_official, official_login, unique

ROLES = ("ca-admin", "security-admin", "auditor", "ra-operator", "official",
         "key-recovery-officer", "exchange-clerk")
HOME, IN_ORG, OUT_ORG = "632200", "632200-BGS", "630100-BGT"
SCOPES = ("in", "out")

#: The exchange clerk's column: refused (and audited) on every RA endpoint.
CLERK = [(403, 403)]

# (in, out) per role, in the order of ROLES:
#       [ca-admin,    security-admin, auditor,
#        ra-operator, official,       key-recovery-officer] + exchange-clerk (RA work: never;
#        its actions are the exchange's, tests/apps/exchange)
EXPECTED: dict[str, list[tuple[int, int]]] = {
    "GET /me": [(200, 200)] * 7,
    "GET /openapi.json": [(200, 200)] * 7,
    "GET /orgs?under=":
        [(200, 200), (200, 200), (200, 200),
         (200, 403), (403, 403), (200, 200), *CLERK],
    "GET /orgs/{code}":
        [(200, 200), (200, 200), (200, 200),
         (200, 403), (403, 403), (200, 200), *CLERK],
    "GET /officials?org=":
        [(200, 200), (403, 403), (200, 200),
         (200, 403), (403, 403), (403, 403), *CLERK],
    "POST /officials":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (403, 403), (403, 403), *CLERK],
    "POST /officials/import":
        [(201, 201), (403, 403), (403, 403),
         (201, 400), (403, 403), (403, 403), *CLERK],
    "GET /officials/{id}":
        [(200, 200), (403, 403), (200, 200),
         (200, 403), (200, 403), (403, 403), *CLERK],
    "PATCH /officials/{id}":
        [(200, 200), (403, 403), (403, 403),
         (200, 403), (403, 403), (403, 403), *CLERK],
    "GET /officials/{id}/certificates":
        [(200, 200), (403, 403), (200, 200),
         (200, 403), (200, 403), (403, 403), *CLERK],
    "GET /requests?org=":
        [(200, 200), (403, 403), (200, 200),
         (200, 403), (403, 403), (403, 403), *CLERK],
    "POST /requests new-pair":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (403, 403), (403, 403), *CLERK],
    "POST /requests renewal":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (201, 403), (403, 403), *CLERK],
    "GET /requests/{id}":
        [(200, 200), (403, 403), (200, 200),
         (200, 403), (200, 403), (403, 403), *CLERK],
    "POST /requests/{id}/approve":
        [(200, 200), (403, 403), (403, 403),
         (200, 403), (403, 403), (403, 403), *CLERK],
    "POST /requests/{id}/reject":
        [(200, 200), (403, 403), (403, 403),
         (200, 403), (403, 403), (403, 403), *CLERK],
    "POST /requests/{id}/execute":
        [(200, 200), (403, 403), (403, 403),
         (200, 403), (403, 403), (403, 403), *CLERK],
    "GET /certificates/{ca}/{serial}":
        [(200, 200), (403, 403), (200, 200),
         (200, 403), (200, 403), (403, 403), *CLERK],
    "POST /certificates/.../revoke":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (403, 403), (403, 403), *CLERK],
    "POST /certificates/.../suspend":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (201, 403), (403, 403), *CLERK],
    "POST /certificates/.../release":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (403, 403), (403, 403), *CLERK],
    "POST /enrollment-codes":
        [(201, 201), (403, 403), (403, 403),
         (201, 403), (403, 403), (403, 403), *CLERK],
    "GET /enrollment/{id} (bearer)": [(401, 401)] * 7,
    "POST /enrollment/{id}/encryption-key (bearer)": [(401, 401)] * 7,
    "GET /operators":
        [(200, 200), (200, 200), (200, 200),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "POST /operators":
        [(201, 201), (201, 201), (403, 403),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "POST /operators/{u}/roles":
        [(403, 403), (200, 200), (403, 403),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "POST /operators/{u}/roles/{r}/approve":
        [(403, 403), (200, 200), (403, 403),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "GET /operators/{u}/tokens":
        [(403, 403), (200, 200), (403, 403),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "POST /operators/{u}/tokens":
        [(403, 403), (201, 201), (403, 403),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "DELETE /tokens/{id}":
        [(403, 403), (200, 200), (403, 403),
         (403, 403), (403, 403), (403, 403), *CLERK],
    "GET /audit":
        [(403, 403), (403, 403), (200, 200),
         (403, 403), (403, 403), (403, 403), *CLERK],
}


@dataclass
class World:
    api: Api
    actors: dict[str, Operator]
    officials: dict[str, Official]      # scope → the official "in" / "out"
    clerks: dict[str, Operator]         # scope → an RA operator there (submits)
    approvers: dict[str, Operator]      # scope → a second RA operator there (approves)
    security: Operator                  # grants roles that a case then approves
    certificates: dict[str, CertificateRef]  # scope → a certificate to read

    @property
    def pki(self) -> Pki:
        return self.api.pki

    def org(self, scope: str) -> str:
        return IN_ORG if scope == "in" else OUT_ORG

    def submitted(self, scope: str) -> int:
        return requests.submit(self.pki.ctx, self.clerks[scope],
                               self.officials[scope].identifier, "new-pair",
                               csr=csr_pem().encode()).id

    def approved(self, scope: str) -> int:
        request_id = self.submitted(scope)
        requests.approve(self.pki.ctx, self.approvers[scope], request_id)
        return request_id

    def issued(self, scope: str) -> CertificateRef:
        request_id = self.approved(scope)
        [ref] = requests.execute(self.pki.ctx, self.approvers[scope], request_id).issued
        return ref

    def held(self, scope: str) -> CertificateRef:
        ref = self.issued(scope)
        requests.submit(self.pki.ctx, self.clerks[scope], self.officials[scope].identifier,
                        "suspension", serials=[ref.serial], ca=ref.ca)
        return ref

    def target_operator(self, scope: str) -> Operator:
        return make_operator(self.pki, self.org(scope), "ra-operator")


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    pki = api.pki
    clerks = {s: make_operator(pki, HOME if s == "in" else "630100", "ra-operator")
              for s in SCOPES}
    approvers = {s: make_operator(pki, HOME if s == "in" else "630100", "ra-operator")
                 for s in SCOPES}
    officials = {s: new_official(pki, clerks[s], IN_ORG if s == "in" else OUT_ORG)
                 for s in SCOPES}
    actors = {role: make_operator(pki, "630000" if role != "ra-operator" else HOME, role)
              for role in ROLES if role != "official"}
    actors["official"] = official_login(pki, officials["in"])
    w = World(api, actors, officials, clerks, approvers,
              make_operator(pki, "630000", "security-admin"), {})
    w.certificates = {s: w.issued(s) for s in SCOPES}
    return w


def _refusals(pki: Pki, username: str) -> int:
    with transaction(pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.actor == username, AuditEvent.outcome == "refused")) or 0


Run = Callable[[World, str, str], TestResponse]


def _call(w: World, token: str, method: str, path: str, body: Any = None) -> TestResponse:
    return w.api.call(method, path, token=token, json_body=body)


def _cert_path(ref: CertificateRef, action: str = "") -> str:
    return f"/certificates/{ref.ca}/{ref.serial}{action}"


def _roster(w: World, token: str, scope: str) -> TestResponse:
    csv = f"identifier,name,org_code\n{unique('IM')},孙八,{w.org(scope)}\n"
    return w.api.call("POST", "/officials/import", token=token, data=csv.encode(),
                      content_type="text/csv")


def _grant(w: World, scope: str) -> Operator:
    target = w.target_operator(scope)
    operators.grant_role(w.pki.ctx.sessions, w.security, target.username, "official")
    return target


def _other_token(w: World, scope: str) -> int:
    target = w.target_operator(scope)
    _, record = api_tokens.create_api_token(w.pki.ctx, target, target.username, "theirs")
    return record.id


RUNS: dict[str, Run] = {
    "GET /me": lambda w, t, s: _call(w, t, "GET", "/me"),
    "GET /openapi.json": lambda w, t, s: _call(w, t, "GET", "/openapi.json"),
    "GET /orgs?under=": lambda w, t, s: _call(w, t, "GET", f"/orgs?under={w.org(s)}"),
    "GET /orgs/{code}": lambda w, t, s: _call(w, t, "GET", f"/orgs/{w.org(s)}"),
    "GET /officials?org=": lambda w, t, s: _call(w, t, "GET", f"/officials?org={w.org(s)}"),
    "POST /officials": lambda w, t, s: _call(w, t, "POST", "/officials", {
        "identifier": unique("MX"), "name": "周九", "org_code": w.org(s)}),
    "POST /officials/import": lambda w, t, s: _roster(w, t, s),
    "GET /officials/{id}": lambda w, t, s: _call(
        w, t, "GET", f"/officials/{w.officials[s].identifier}"),
    "PATCH /officials/{id}": lambda w, t, s: _call(
        w, t, "PATCH", f"/officials/{w.officials[s].identifier}", {"position": "副科长"}),
    "GET /officials/{id}/certificates": lambda w, t, s: _call(
        w, t, "GET", f"/officials/{w.officials[s].identifier}/certificates"),
    "GET /requests?org=": lambda w, t, s: _call(w, t, "GET", f"/requests?org={w.org(s)}"),
    "POST /requests new-pair": lambda w, t, s: _call(w, t, "POST", "/requests", {
        "official": w.officials[s].identifier, "kind": "new-pair", "csr": csr_pem()}),
    "POST /requests renewal": lambda w, t, s: _call(w, t, "POST", "/requests", {
        "official": w.officials[s].identifier, "kind": "renewal", "csr": csr_pem()}),
    "GET /requests/{id}": lambda w, t, s: _call(w, t, "GET", f"/requests/{w.submitted(s)}"),
    "POST /requests/{id}/approve": lambda w, t, s: _call(
        w, t, "POST", f"/requests/{w.submitted(s)}/approve"),
    "POST /requests/{id}/reject": lambda w, t, s: _call(
        w, t, "POST", f"/requests/{w.submitted(s)}/reject", {"comment": "不符合要求"}),
    "POST /requests/{id}/execute": lambda w, t, s: _call(
        w, t, "POST", f"/requests/{w.approved(s)}/execute"),
    "GET /certificates/{ca}/{serial}": lambda w, t, s: _call(
        w, t, "GET", _cert_path(w.certificates[s])),
    "POST /certificates/.../revoke": lambda w, t, s: _call(
        w, t, "POST", _cert_path(w.issued(s), "/revoke"), {"reason": "keyCompromise"}),
    "POST /certificates/.../suspend": lambda w, t, s: _call(
        w, t, "POST", _cert_path(w.issued(s), "/suspend")),
    "POST /certificates/.../release": lambda w, t, s: _call(
        w, t, "POST", _cert_path(w.held(s), "/release")),
    "POST /enrollment-codes": lambda w, t, s: _call(w, t, "POST", "/enrollment-codes", {
        "official": w.officials[s].identifier}),
    "GET /enrollment/{id} (bearer)": lambda w, t, s: _call(
        w, t, "GET", f"/enrollment/{w.submitted(s)}"),
    "POST /enrollment/{id}/encryption-key (bearer)": lambda w, t, s: _call(
        w, t, "POST", f"/enrollment/{w.submitted(s)}/encryption-key",
        {"transport_key": "AAAA"}),
    "GET /operators": lambda w, t, s: _call(w, t, "GET", "/operators"),
    "POST /operators": lambda w, t, s: _call(w, t, "POST", "/operators", {
        "username": unique("op"), "org_code": w.org(s), "role": "ra-operator"}),
    "POST /operators/{u}/roles": lambda w, t, s: _call(
        w, t, "POST", f"/operators/{w.target_operator(s).username}/roles",
        {"role": "official"}),
    "POST /operators/{u}/roles/{r}/approve": lambda w, t, s: _call(
        w, t, "POST", f"/operators/{_grant(w, s).username}/roles/official/approve"),
    "GET /operators/{u}/tokens": lambda w, t, s: _call(
        w, t, "GET", f"/operators/{w.target_operator(s).username}/tokens"),
    "POST /operators/{u}/tokens": lambda w, t, s: _call(
        w, t, "POST", f"/operators/{w.target_operator(s).username}/tokens", {"name": "x"}),
    "DELETE /tokens/{id}": lambda w, t, s: _call(w, t, "DELETE", f"/tokens/{_other_token(w, s)}"),
    "GET /audit": lambda w, t, s: _call(w, t, "GET", "/audit"),
}


def test_every_role_is_in_the_matrix() -> None:
    """A new role in policies/authz.yaml without a column here fails."""
    from policies.authz import get_authz_policy

    assert set(ROLES) == set(get_authz_policy().roles)


def test_every_endpoint_is_in_the_matrix(api: Api) -> None:
    """A new route without a row here fails: the matrix covers every endpoint."""
    from ra.api.spec import ROUTES

    covered = {name.split(" ")[1].split("?")[0] for name in EXPECTED}
    normalised = {p.replace("{identifier}", "{id}").replace("{request_id}", "{id}")
                  .replace("{username}", "{u}").replace("{role}", "{r}")
                  .replace("{token_id}", "{id}")
                  .replace("/certificates/{ca}/{serial}/", "/certificates/.../")
                  for p in covered}
    routes = {r.path.replace("{identifier}", "{id}").replace("{request_id}", "{id}")
              .replace("{username}", "{u}").replace("{role}", "{r}").replace("{token_id}", "{id}")
              .replace("/certificates/{ca}/{serial}/", "/certificates/.../")
              for r in ROUTES}
    # POST /enrollment is authenticated by the code alone: no role is involved
    # (test_enrollment_http.py); GET /enrollment/{id} is here to show a token does not open it.
    assert routes - normalised == {"/enrollment"}
    assert set(EXPECTED) == set(RUNS)


@pytest.mark.parametrize("endpoint", list(EXPECTED))
def test_matrix(world: World, endpoint: str) -> None:
    failures = []
    for role, expected in zip(ROLES, EXPECTED[endpoint], strict=True):
        actor = world.actors[role]
        token = world.api.token(actor)
        for scope, status in zip(SCOPES, expected, strict=True):
            before = _refusals(world.pki, actor.username)
            response = RUNS[endpoint](world, token, scope)
            if response.status_code != status:
                failures.append(f"{role} {scope}: {response.status_code} != {status}: "
                                f"{response.get_data(as_text=True)[:200]}")
            elif status == 403 and _refusals(world.pki, actor.username) <= before:
                failures.append(f"{role} {scope}: 403 without an audited refusal")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# Lists show nothing outside the caller's scope


def _identifiers(w: World, token: str, q: str) -> list[str]:
    response = w.api.call("GET", f"/officials?q={q}", token=token)
    assert response.status_code == 200
    return [o["identifier"] for o in response.json["items"]]


@pytest.mark.parametrize(("role", "sees_in", "sees_out"), [
    ("ca-admin", True, True), ("auditor", True, True), ("ra-operator", True, False),
    ("official", True, False)])
def test_lists_are_filtered_to_the_scope(world: World, role: str, sees_in: bool,
                                         sees_out: bool) -> None:
    token = world.api.token(world.actors[role])
    for scope, expected in (("in", sees_in), ("out", sees_out)):
        ident = world.officials[scope].identifier
        assert (_identifiers(world, token, ident) == [ident]) is expected, (role, scope)
    everything = world.api.call("GET", "/requests?per_page=500", token=token).json
    orgs = {r["organisation"] for r in everything["items"]}
    if role == "ra-operator":
        assert orgs and orgs <= {HOME, IN_ORG}
    if role == "official":
        assert {r["official"] for r in everything["items"]} == {
            world.officials["in"].identifier}
    if role != "official":
        tree = world.api.call("GET", "/orgs", token=token).json["items"]
        assert [root["code"] for root in tree] == (["630000"] if sees_out else [HOME])


def test_the_security_admin_sees_no_officials_or_requests(world: World) -> None:
    token = world.api.token(world.actors["security-admin"])
    assert world.api.call("GET", "/officials", token=token).status_code == 403
    assert world.api.call("GET", "/requests", token=token).status_code == 403


def test_anyone_may_manage_their_own_tokens(world: World) -> None:
    for role in ROLES:
        actor = world.actors[role]
        made = world.api.call("POST", f"/operators/{actor.username}/tokens",
                              token=world.api.token(actor), json_body={"name": "own"})
        assert made.status_code == 201, (role, made.json)
        gone = world.api.call("DELETE", f"/tokens/{made.json['id']}", token=made.json["token"])
        assert gone.status_code == 200, role


def test_roster_outside_the_scope_imports_nothing(world: World) -> None:
    token = world.api.token(world.actors["ra-operator"])
    ident = unique("IM")
    csv = (f"identifier,name,org_code\n{unique('IM')},吴十,{IN_ORG}\n"
           f"{ident},郑一,{OUT_ORG}\n")
    refused = world.api.client.post("/api/v1/officials/import", headers={
        "Authorization": f"Bearer {token}"}, data={"file": (io.BytesIO(csv.encode()), "r.csv")})
    assert refused.status_code == 400
    assert refused.json["problems"] == [{"line": 3, "field": "org_code",
                                         "message": f"{OUT_ORG} is outside your scope"}]
    admin = world.api.token(world.actors["ca-admin"])
    assert world.api.call("GET", f"/officials/{ident}", token=admin).status_code == 404

"""Reading through the API: pagination with RFC 8288 links, search, the organisation tree,
the audit log, operators and their tokens."""

from __future__ import annotations

import re

from ra import operators
from tests.ra.api.conftest import Api, csr_pem, make_operator, new_official


def _links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


def test_officials_are_paged_with_link_headers(api: Api) -> None:
    clerk = make_operator(api.pki, "632700", "ra-operator")
    made = [new_official(api.pki, clerk, "632700-BGS", f"张{i}", None).identifier
            for i in range(7)]
    token = api.token(clerk)
    first = api.call("GET", "/officials?org=632700&per_page=3", token=token)
    assert first.status_code == 200
    assert (first.json["total"], first.json["pages"], first.json["page"]) == (7, 3, 1)
    links = _links(first.headers["Link"])
    assert set(links) == {"first", "next", "last"}
    assert links["next"] == "/api/v1/officials?org=632700&per_page=3&page=2"
    seen = [o["identifier"] for o in first.json["items"]]
    url = links["next"]
    while True:
        page = api.call("GET", url.removeprefix("/api/v1"), token=token)
        seen += [o["identifier"] for o in page.json["items"]]
        links = _links(page.headers["Link"])
        assert "prev" in links
        if "next" not in links:
            break
        url = links["next"]
    assert seen == made and page.json["page"] == 3
    beyond = api.call("GET", "/officials?org=632700&per_page=3&page=9", token=token)
    assert beyond.json["items"] == [] and beyond.json["total"] == 7

    found = api.call("GET", f"/officials?q={made[4][:-2]}", token=token)
    assert made[4] in [o["identifier"] for o in found.json["items"]]
    by_name = api.call("GET", "/officials?q=张6", token=token)
    assert [o["identifier"] for o in by_name.json["items"]] == [made[6]]


def test_request_queue_filters_and_pages(api: Api) -> None:
    clerk = make_operator(api.pki, "632700", "ra-operator")
    official = new_official(api.pki, clerk, "632700-BGS")
    token = api.token(clerk)
    ids = [api.call("POST", "/requests", token=token, json_body={
        "official": official.identifier, "kind": "new-pair", "csr": csr_pem()}).json["id"]
        for _ in range(3)]
    page = api.call("GET", "/requests?state=submitted&org=632700-BGS&per_page=2", token=token)
    assert page.json["total"] >= 3 and page.json["per_page"] == 2
    assert "next" in _links(page.headers["Link"])
    everything = api.call("GET", "/requests?state=submitted&org=632700-BGS&per_page=500",
                          token=token)
    assert set(ids) <= {r["id"] for r in everything.json["items"]}
    got = api.call("GET", f"/requests/{ids[0]}", token=token)
    assert got.json["official"] == official.identifier and got.json["has_csr"] is True


def test_organisation_tree_is_the_callers_subtree(api: Api) -> None:
    clerk = make_operator(api.pki, "632200", "ra-operator")
    tree = api.call("GET", "/orgs", token=api.token(clerk))
    [root] = tree.json["items"]
    assert root["code"] == "632200"
    assert [c["code"] for c in root["children"]] == ["632200-BGS"]
    admin_tree = api.call("GET", "/orgs", token=api.token(operators.get_operator(
        api.pki.ctx.sessions, "root-admin")))
    [province] = admin_tree.json["items"]
    assert province["code"] == "630000" and admin_tree.json["total"] > 30
    under = api.call("GET", "/orgs?under=630100", token=api.token(clerk))
    assert under.status_code == 403
    one = api.call("GET", "/orgs/632200-BGS", token=api.token(clerk))
    assert one.json["parent_code"] == "632200"


def test_audit_log_newest_first_with_filters(api: Api) -> None:
    clerk = make_operator(api.pki, "632700", "ra-operator")
    auditor = make_operator(api.pki, "630000", "auditor")
    for name in ("甲", "乙"):
        new_official(api.pki, clerk, "632700-BGS", name)
    response = api.call("GET", f"/audit?action=ra.official&actor={clerk.username}&per_page=1",
                        token=api.token(auditor))
    assert response.status_code == 200 and response.json["total"] == 2
    [newest] = response.json["items"]
    assert newest["action"] == "ra.official.create" and newest["actor"] == clerk.username
    second = api.call("GET", f"/audit?action=ra.official&actor={clerk.username}&per_page=1"
                      "&page=2", token=api.token(auditor))
    assert second.json["items"][0]["seq"] < newest["seq"]
    assert "prev" in _links(second.headers["Link"])
    refused = api.call("GET", "/audit?outcome=refused", token=api.token(auditor))
    assert all(e["outcome"] == "refused" for e in refused.json["items"])


def test_operators_roles_and_tokens(api: Api) -> None:
    pki = api.pki
    security = make_operator(pki, "630000", "security-admin")
    second = make_operator(pki, "630000", "security-admin")
    made = api.call("POST", "/operators", token=api.token(security), json_body={
        "username": "api-made-" + security.username[-8:], "org_code": "632700",
        "role": "ra-operator", "display_name": "受理员"})
    assert made.status_code == 201 and made.json["roles"] == ["ra-operator"]
    username = made.json["username"]

    listed = api.call("GET", "/operators", token=api.token(security))
    assert username in [o["username"] for o in listed.json["items"]]

    granted = api.call("POST", f"/operators/{username}/roles", token=api.token(security),
                       json_body={"role": "auditor"})
    assert granted.status_code == 403  # 三员分立: audit is independent of business
    assert granted.json["type"] == "urn:govpki:problem:separation-of-duties"

    other = make_operator(pki, "630000", "auditor")
    pending = api.call("POST", f"/operators/{other.username}/roles",
                       token=api.token(security), json_body={"role": "official"})
    assert pending.status_code == 200 and pending.json["pending_roles"] == ["official"]
    own = api.call("POST", f"/operators/{other.username}/roles/official/approve",
                   token=api.token(security))
    assert own.status_code == 403  # the granter cannot approve
    approved = api.call("POST", f"/operators/{other.username}/roles/official/approve",
                        token=api.token(second))
    assert approved.status_code == 200 and "official" in approved.json["roles"]

    token = api.call("POST", f"/operators/{username}/tokens", token=api.token(security),
                     json_body={"name": "接口客户端", "days": 30})
    assert token.status_code == 201 and token.json["token"].startswith("gp_")
    me = api.call("GET", "/me", token=token.json["token"])
    assert me.json["username"] == username
    tokens = api.call("GET", f"/operators/{username}/tokens", token=token.json["token"])
    assert [t["id"] for t in tokens.json["items"]] == [token.json["id"]]
    assert "token" not in tokens.json["items"][0]
    gone = api.call("DELETE", f"/tokens/{token.json['id']}", token=api.token(security))
    assert gone.status_code == 200
    assert api.call("GET", "/me", token=token.json["token"]).status_code == 401

"""The OpenAPI document: valid OpenAPI 3.1, served without authentication, and describing
exactly the routes the application serves (both directions) — the RA's own and those that
packages above ra contribute (govpki installs them in create_app)."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from ra.api.openapi import document
from ra.api.spec import ROUTES, route_groups
from tests.ra.api.conftest import API, Api


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises OpenAPIValidationError on any defect


def test_served_without_authentication(api: Api) -> None:
    response = api.call("GET", "/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == api.document
    validate(response.json)  # the contributed routes make a valid document too


def _flask_operations(api: Api) -> set[tuple[str, str]]:
    out = set()
    for rule in api.app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len(API):])
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                out.add((method, path))
    return out


def test_every_served_route_is_documented_and_vice_versa(api: Api) -> None:
    documented = {(method.upper(), path) for path, item in api.document["paths"].items()
                  for method in item}
    served = _flask_operations(api)
    assert served == documented
    contributed = [g for g in route_groups() if g.name != "ra"]
    assert "signing" in {g.name for g in contributed}, "create_app contributes govpki's routes"
    assert len(documented) == len(ROUTES) + sum(len(g.routes) for g in contributed)


def test_every_operation_declares_problems_and_security(api: Api) -> None:
    doc = api.document
    schemes = set(doc["components"]["securitySchemes"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "400" in op["responses"], (method, path)
            for requirement in op["security"]:
                assert set(requirement) <= schemes
            if op["security"]:
                assert "401" in op["responses"], (method, path)
            assert "default" in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                if status == "default" or int(status) >= 400:
                    assert "application/problem+json" in answer["content"], (method, path)

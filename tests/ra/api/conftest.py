"""Fixtures for the REST API: the real application (govpki.wsgi.create_app) on the shared test
PKI, bearer tokens for operators, and a client that checks every answer against the OpenAPI
document the API serves (status declared, media type, body schema).

The scheduler is off: its periodic jobs would write to the shared test database behind the
tests' backs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from werkzeug.test import Client, TestResponse

from govpki.wsgi import create_app
from ra import api_tokens, operators
from ra.api.openapi import APP_KEY, document
from ra.officials import OfficialInput, create_official
from ra.records import Official, Operator
from tests.ca.helpers import make_csr, new_key
from tests.conftest import Pki
from tests.ra.conftest import ensure_admin, make_operator, ra_ready, unique

API = "/api/v1"


_OPERATIONS: dict[int, list[tuple[re.Pattern[str], int, dict[str, Any]]]] = {}


def _operations(doc: dict[str, Any]) -> list[tuple[re.Pattern[str], int, dict[str, Any]]]:
    """(path regex, number of parameters, path item) with static paths tried first."""
    if id(doc) in _OPERATIONS:
        return _OPERATIONS[id(doc)]
    out = []
    for template, item in doc["paths"].items():
        pattern = re.escape(template)
        count = 0
        for name in re.findall(r"\\\{(\w+)\\\}", pattern):
            pattern = pattern.replace(f"\\{{{name}\\}}", "[^/]+")
            count += 1
        out.append((re.compile(pattern + "$"), count, item))
    _OPERATIONS[id(doc)] = sorted(out, key=lambda x: x[1])
    return _OPERATIONS[id(doc)]


def _validator(schema: dict[str, Any], doc: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": doc["components"]})


def check_against_document(method: str, path: str, response: TestResponse,
                           doc: dict[str, Any] | None = None) -> None:
    """The answer is one the document declares for this operation, in its media type, with a
    body that validates against its schema (JSON bodies; a binary body only by its media
    type). Unknown paths and methods get problem bodies. ``doc``: the document the
    application serves (default: the current route table's)."""
    doc = doc if doc is not None else document()
    path = path.split("?", 1)[0]
    assert path.startswith(API)
    local = path[len(API):]
    operation = None
    for pattern, _count, item in _operations(doc):
        if pattern.match(local) and method.lower() in item:
            operation = item[method.lower()]
            break
    status = response.status_code
    if operation is None:
        assert status in (404, 405), (method, path, status)
        declared = {"content": {"application/problem+json": {"schema": {
            "$ref": "#/components/schemas/Problem"}}}}
    elif str(status) in operation["responses"]:
        declared = operation["responses"][str(status)]
    else:
        # Only server-side failures may fall back to "default"; a client error is declared.
        assert status >= 500, f"{method} {path} answered undeclared status {status}: " \
                              f"{response.get_data(as_text=True)[:300]}"
        declared = operation["responses"]["default"]
    content = declared.get("content")
    if content is None:
        assert not response.get_data()
        return
    [(media, spec)] = content.items()
    assert response.mimetype == media, (method, path, status, response.mimetype)
    if media == "application/json" or media.endswith("+json"):
        _validator(spec["schema"], doc).validate(json.loads(response.get_data(as_text=True)))


@dataclass
class Api:
    pki: Pki
    app: Flask
    client: Client
    tokens: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
             data: bytes | str | None = None, headers: Mapping[str, str] | None = None,
             content_type: str | None = None, check: bool = True) -> TestResponse:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False)
            content_type = content_type or "application/json"
        response = self.client.open(API + path, method=method, headers=all_headers,
                                    data=data, content_type=content_type)
        if check:
            check_against_document(method, API + path, response, self.document)
        return response

    @property
    def document(self) -> dict[str, Any]:
        """The OpenAPI document this application serves (the routes it was assembled with)."""
        return cast(dict[str, Any], self.app.extensions[APP_KEY])

    def token(self, operator: Operator) -> str:
        """A bearer token of the operator's own (cached per operator)."""
        if operator.username not in self.tokens:
            token, _ = api_tokens.create_api_token(self.pki.ctx, operator, operator.username,
                                                   "tests")
            self.tokens[operator.username] = token
        return self.tokens[operator.username]


def build_api(pki: Pki) -> Iterator[Api]:
    """The real composition (create_app); afterwards the OCSP app's status subscription and
    listener thread are closed, so they do not outlive the test on the shared context."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVPKI_SCHEDULER", "off")
        wsgi = create_app(ctx=pki.ctx)
    # create_app plugs the KMC in process-wide; every test starts without it (tests/conftest.py,
    # _no_kmc_plugged_in), and so must module fixtures built on this one before the first
    # test's autouse fixture runs (`-k` can make such a fixture the first thing set up).
    from ra import plugins

    plugins.install(None, None)
    try:
        yield Api(pki, wsgi.default, Client(wsgi))
    finally:
        for part in wsgi.routes.values():
            close = getattr(part, "close", None)
            if close is not None:
                close()


@pytest.fixture(scope="module")
def api_pki(file_pki: Pki) -> Pki:
    return ra_ready(file_pki)


@pytest.fixture(scope="module")
def api(api_pki: Pki) -> Iterator[Api]:
    """The real application on SQLite + file keys, once per test module."""
    yield from build_api(api_pki)


def new_official(pki: Pki, actor: Operator, org: str = "632200-BGS", name: str = "张三",
                 unit: str | None = "秘书科") -> Official:
    return create_official(pki.ctx.sessions, actor, OfficialInput(
        unique("QH"), name, org, "科员", "0971-1234567", unit))


def csr_pem() -> str:
    return make_csr(new_key("ec-p256")).decode()


def official_login(pki: Pki, official: Official) -> Operator:
    """An operator account with the self-service official role, linked to ``official``."""
    return operators.add_operator(pki.ctx.sessions, ensure_admin(pki), unique("self"),
                                  org_code=official.organisation.code, role="official",
                                  official_identifier=official.identifier)


__all__ = ["API", "Api", "csr_pem", "ensure_admin", "make_operator", "new_official",
           "official_login", "unique"]

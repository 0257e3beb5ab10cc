"""The extension point: a package above ra contributes routes to /api/v1 (ra.api.register_routes)
and gets the RA's authentication, input checks, body limits, problem bodies and OpenAPI
document — including binary uploads (411/413/415) and binary answers.

The group below stands in for such a package (govpki/signing_api.py, apps/exchange): it is
registered before the application is assembled, as create_app does, and removed afterwards.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from ra.api import (
    BinaryBody,
    BinaryContent,
    Call,
    Param,
    Reply,
    RouteGroup,
    register_routes,
    unregister_routes,
)
from ra.api.openapi import document
from ra.api.spec import RA_GROUP, Body, Field, all_routes, route_groups
from ra.errors import ValidationError
from tests.conftest import Pki
from tests.ra.api.conftest import API, Api, build_api, make_operator

LIMIT = 4096
ECHO = RouteGroup("test-echo", schemas={"EchoDigest": {
    "type": "object", "required": ["sha256", "size", "note", "flag"], "additionalProperties": False,
    "properties": {"sha256": {"type": "string"}, "size": {"type": "integer"},
                   "note": {"type": ["string", "null"]}, "flag": {"type": "boolean"},
                   "operator": {"type": "string"}}}})


@ECHO.route("POST", "/test-echo/digest", operation_id="testEchoDigest",
            summary="Digest of an uploaded document", tag="test-echo",
            params=(Param("note", "query", "A note, required.", required=True, max_length=20),
                    Param("Echo-Flag", "header", "A flag in a header.", "boolean",
                          default=False)),
            binary_body=BinaryBody(("application/pdf", "application/octet-stream"),
                                   "Any document."),
            max_body=LIMIT, responses={200: "EchoDigest"})
def _digest(call: Call) -> Reply:
    """The SHA-256 of the upload, and who sent it."""
    if call.query["note"] == "refuse":
        raise ValidationError("refused on request", field="note")
    return Reply({"sha256": hashlib.sha256(call.upload).hexdigest(), "size": len(call.upload),
                  "note": call.query["note"], "flag": call.headers["Echo-Flag"],
                  "operator": call.operator.username})


@ECHO.route("POST", "/test-echo/reverse", operation_id="testEchoReverse",
            summary="The upload, reversed", tag="test-echo",
            binary_body=BinaryBody(("application/octet-stream",), "Any bytes."),
            max_body=LIMIT, responses={200: BinaryContent("application/x-reversed", "Reversed")},
            response_headers={"Repr-Digest": "RFC 9530 digest of the answer"})
def _reverse(call: Call) -> Reply:
    """The bytes back to front."""
    return Reply.binary(call.upload[::-1], "application/x-reversed",
                        headers={"Repr-Digest": "sha-256=:x:"})


@ECHO.route("GET", "/test-echo/public", operation_id="testEchoPublic",
            summary="No authentication", tag="test-echo", auth="none",
            responses={200: "EchoDigest"})
def _public(call: Call) -> Reply:
    """Answers anyone."""
    return Reply({"sha256": "", "size": 0, "note": None, "flag": True})


@pytest.fixture(scope="module")
def ext_api(api_pki: Pki) -> Iterator[Api]:
    """An application assembled with the test group registered (as create_app would)."""
    register_routes(ECHO)
    try:
        yield from build_api(api_pki)
    finally:
        unregister_routes(ECHO.name)


@pytest.fixture(scope="module")
def token(ext_api: Api) -> str:
    return ext_api.token(make_operator(ext_api.pki, "632300", "ra-operator"))


def _problem(response, status: int, kind: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == f"urn:govpki:problem:{kind}", response.json
    return response.json


# ---------------------------------------------------------------------------------------------
# Served and documented like the RA's own routes

def test_contributed_routes_are_served_and_documented(ext_api: Api) -> None:
    doc = ext_api.call("GET", "/openapi.json").json
    validate(doc)
    op = doc["paths"]["/test-echo/digest"]["post"]
    assert op["security"] == [{"bearerToken": []}]
    assert set(op["requestBody"]["content"]) == {"application/pdf", "application/octet-stream"}
    assert {"401", "403", "411", "413", "415"} <= set(op["responses"])
    assert {(p["name"], p["in"], p["required"]) for p in op["parameters"]} == {
        ("note", "query", True), ("Echo-Flag", "header", False)}
    assert doc["components"]["schemas"]["EchoDigest"] == ECHO.schemas["EchoDigest"]
    reverse = doc["paths"]["/test-echo/reverse"]["post"]["responses"]["200"]
    assert reverse["content"] == {"application/x-reversed": {"schema": {
        "type": "string", "contentMediaType": "application/x-reversed"}}}
    assert "Repr-Digest" in reverse["headers"]
    assert "test-echo" in [t["name"] for t in doc["tags"]]


def test_each_application_keeps_the_table_it_was_assembled_with(ext_api: Api) -> None:
    """Registration counts at assembly: an application assembled after the group is removed
    neither serves nor documents it, while the one assembled with it still does."""
    unregister_routes(ECHO.name)
    try:
        assert "/test-echo/digest" not in document()["paths"]
        without = build_api(ext_api.pki)
        plain = next(without)
        try:
            assert "/test-echo/public" not in plain.document["paths"]
            assert plain.call("GET", "/test-echo/public").status_code == 404
        finally:
            without.close()
        assert "/test-echo/public" in ext_api.document["paths"]
        assert ext_api.call("GET", "/test-echo/public").status_code == 200
    finally:
        register_routes(ECHO)


def test_bearer_authentication_applies(ext_api: Api) -> None:
    response = ext_api.call("POST", "/test-echo/digest?note=a", data=b"%PDF-1.7",
                            content_type="application/pdf")
    _problem(response, 401, "authentication-failed")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="govpki"'
    assert ext_api.call("GET", "/test-echo/public").json["flag"] is True


def test_binary_upload_reaches_the_view_with_checked_parameters(ext_api: Api,
                                                                token: str) -> None:
    body = b"%PDF-1.7 some bytes \x00\xff"
    response = ext_api.call("POST", "/test-echo/digest?note=hello", token=token, data=body,
                            content_type="application/pdf", headers={"Echo-Flag": "true"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["sha256"] == hashlib.sha256(body).hexdigest()
    assert response.json["size"] == len(body) and response.json["flag"] is True
    assert response.json["note"] == "hello" and response.json["operator"]
    assert response.headers["Cache-Control"] == "no-store"


def test_binary_answer(ext_api: Api, token: str) -> None:
    response = ext_api.call("POST", "/test-echo/reverse", token=token, data=b"abc\x00",
                            content_type="application/octet-stream")
    assert response.status_code == 200
    assert response.mimetype == "application/x-reversed"
    assert response.get_data() == b"\x00cba"
    assert response.headers["Repr-Digest"] == "sha-256=:x:"


@pytest.mark.parametrize(("query", "headers", "field"), [
    ("", {}, "note"),
    ("?note=a&note=b", {}, "note"),
    ("?note=" + "x" * 21, {}, "note"),
    ("?note=a&other=1", {}, "other"),
    ("?note=a", {"Echo-Flag": "maybe"}, "Echo-Flag"),
    ("?note=refuse", {}, "note"),
])
def test_bad_parameters_are_400_naming_them(ext_api: Api, token: str, query: str,
                                           headers: dict[str, str], field: str) -> None:
    response = ext_api.call("POST", "/test-echo/digest" + query, token=token, data=b"%PDF-",
                            content_type="application/pdf", headers=headers)
    assert _problem(response, 400, "validation")["field"] == field


def test_wrong_media_type_is_415(ext_api: Api, token: str) -> None:
    response = ext_api.call("POST", "/test-echo/digest?note=a", token=token, data=b"{}",
                            content_type="application/json")
    body = _problem(response, 415, "unsupported-media-type")
    assert body["field"] == "Content-Type"
    assert "application/pdf" in body["detail"]


def test_oversized_body_is_413_before_it_is_read(ext_api: Api, token: str) -> None:
    exact = ext_api.call("POST", "/test-echo/digest?note=a", token=token, data=b"x" * LIMIT,
                         content_type="application/pdf")
    assert exact.status_code == 200
    over = ext_api.call("POST", "/test-echo/digest?note=a", token=token,
                        data=b"x" * (LIMIT + 1), content_type="application/pdf")
    assert _problem(over, 413, "body-too-large")["limit"] == LIMIT
    # A length that announces far more than is sent: refused from the header alone.
    stream = io.BytesIO(b"%PDF-")
    announced = ext_api.client.post(
        API + "/test-echo/digest?note=a", input_stream=stream,
        environ_overrides={"CONTENT_LENGTH": str(64 * 1024 * 1024)},
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    _problem(announced, 413, "body-too-large")
    assert stream.tell() == 0, "nothing of the body was read"


def test_body_without_length_is_411(ext_api: Api, token: str) -> None:
    stream = io.BytesIO(b"%PDF-1.7")
    response = ext_api.client.post(
        API + "/test-echo/digest?note=a", input_stream=stream,
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Authorization": f"Bearer {token}", "Transfer-Encoding": "chunked",
                 "Content-Type": "application/pdf"})
    assert _problem(response, 411, "length-required")["limit"] == LIMIT
    assert stream.tell() == 0
    # Neither Content-Length nor Transfer-Encoding: no body at all (RFC 9112 §6.3), not 411.
    empty = ext_api.call("POST", "/test-echo/digest?note=a", token=token,
                         content_type="application/pdf")
    assert empty.status_code == 200 and empty.json["size"] == 0


# ---------------------------------------------------------------------------------------------
# Declarations that cannot work are refused when they are made

def test_clashes_are_refused_naming_both() -> None:
    clash = RouteGroup("test-clash")

    @clash.route("GET", "/me", operation_id="notMe", summary="s", tag="t")
    def _me(call: Call) -> Reply:
        return Reply({})

    with pytest.raises(ValueError, match="GET /me is served by 'ra' already"):
        register_routes(clash)
    same_id = RouteGroup("test-clash")

    @same_id.route("GET", "/x", operation_id="whoAmI", summary="s", tag="t")
    def _x(call: Call) -> Reply:
        return Reply({})

    with pytest.raises(ValueError, match="operation id whoAmI"):
        register_routes(same_id)
    schema = RouteGroup("test-clash", schemas={"Problem": {}})
    with pytest.raises(ValueError, match="Problem"):
        register_routes(schema)
    body = RouteGroup("test-clash")

    @body.route("POST", "/y", operation_id="testY", summary="s", tag="t",
                body=Body("OfficialCreate", (Field("a", "string", "a"),)))
    def _y(call: Call) -> Reply:
        return Reply({})

    with pytest.raises(ValueError, match="OfficialCreate"):
        register_routes(body)
    with pytest.raises(ValueError, match="ra's own"):
        register_routes(RouteGroup("ra"))
    assert "test-clash" not in [g.name for g in route_groups()]


def test_registering_again_replaces_the_group() -> None:
    first, second = RouteGroup("test-again"), RouteGroup("test-again")

    @first.route("GET", "/test-again/a", operation_id="testAgainA", summary="s", tag="t")
    def _a(call: Call) -> Reply:
        return Reply({})

    @second.route("GET", "/test-again/a", operation_id="testAgainA", summary="s", tag="t")
    def _b(call: Call) -> Reply:
        return Reply({})

    try:
        register_routes(first)
        register_routes(second)  # same name: replaces, no clash with itself
        assert [r.view for r in all_routes() if r.operation_id == "testAgainA"] == [_b]
    finally:
        unregister_routes("test-again")
    assert all(r.operation_id != "testAgainA" for r in all_routes())
    assert route_groups()[0] is RA_GROUP


@pytest.mark.parametrize(("options", "message"), [
    ({"binary_body": BinaryBody(("application/pdf",), "d")}, "needs max_body"),
    ({"binary_body": BinaryBody(("application/pdf",), "d"), "csv_body": True,
      "max_body": 10}, "one kind of body"),
    ({"params": (Param("id", "path", "i"),)}, "path parameters"),
])
def test_bad_declarations_are_refused(options: dict, message: str) -> None:
    group = RouteGroup("test-bad")
    with pytest.raises(ValueError, match=message):
        group.route("POST", "/test-bad", operation_id="testBad", summary="s", tag="t",
                    **options)(lambda call: Reply({}))
    with pytest.raises(ValueError, match="lower-case"):
        RouteGroup("Bad Name")
    with pytest.raises(ValueError, match="at least one media type"):
        BinaryBody((), "d")


# ---------------------------------------------------------------------------------------------
# Whatever arrives, a declared answer (never a 500)

@given(query=st.text(max_size=60), flag=st.text(max_size=20), body=st.binary(max_size=64),
       media=st.sampled_from(["application/pdf", "application/octet-stream", "text/plain",
                              "application/pdf; charset=binary", ""]))
@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_input_gets_a_declared_answer(ext_api: Api, token: str, query: str, flag: str,
                                         body: bytes, media: str) -> None:
    headers = {"Echo-Flag": flag} if flag.isascii() and flag.isprintable() else {}
    response = ext_api.call("POST", "/test-echo/digest?" + quote(query, safe="=&"),
                            token=token, data=body, content_type=media, headers=headers)
    assert response.status_code in (200, 400, 415), response.get_data(as_text=True)

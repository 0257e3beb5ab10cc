"""Property tests for what the exchange pages take from outside: the compose form's fields,
and tokens (ID and logout tokens, their key ids) from the network. Whatever arrives, the
answer is a value or the pages' own typed refusal, never another exception."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from apps.exchange.policy import get_policy
from apps.exchange.web import forms, oidc
from apps.exchange.web.errors import BadLogoutToken, LoginFailed
from core.errors import GovpkiError

TEXT = st.text(max_size=80)


@given(st.dictionaries(st.sampled_from(["number", "title", "date", "urgency",
                                        "classification", "message_id"]), TEXT),
       st.lists(TEXT, max_size=5), st.lists(TEXT, max_size=5))
def test_compose_values_are_read_from_any_form(fields, main, copy) -> None:
    form = MultiDict([*fields.items(), *(("main", m) for m in main),
                      *(("copy", c) for c in copy)])
    values = forms.values_from(form)
    assert str(uuid.UUID(values.message_id)) == values.message_id
    assert values.main == tuple(dict.fromkeys(main))
    if "message_id" in fields:
        try:
            assert values.message_id == str(uuid.UUID(fields["message_id"].strip()))
        except ValueError:
            pass


@given(st.dictionaries(st.sampled_from(["number", "title", "date", "urgency",
                                        "classification"]), TEXT),
       st.lists(st.sampled_from(["630100", "632200", "x"]), max_size=3))
def test_a_form_without_files_is_refused_with_a_typed_error(fields, main) -> None:
    values = forms.values_from(MultiDict([*fields.items(), *(("main", m) for m in main)]))
    with pytest.raises(GovpkiError) as refused:
        forms.send_request(values, {}, "630000", get_policy())
    assert 400 <= refused.value.http_status < 500
    assert refused.value.details.get("field") in {"date", "recipients", "main", "body"}


@given(st.text(max_size=300))
def test_key_ids_are_read_from_any_text(token) -> None:
    kid = oidc._kid_of(token)
    assert kid is None or (isinstance(kid, str) and kid)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWT_LIKE = st.one_of(
    st.text(max_size=200),
    st.builds(lambda kid, payload, signature: ".".join([
        _b64(json.dumps({"alg": "ES256", "kid": kid}).encode()), _b64(payload),
        _b64(signature)]), st.text(min_size=1, max_size=20), st.binary(max_size=200),
        st.binary(max_size=80)),
    st.builds(lambda claims, signature: ".".join([
        _b64(b'{"alg":"none"}'), _b64(json.dumps(claims).encode()), _b64(signature)]),
        st.dictionaries(st.sampled_from(["iss", "aud", "sub", "sid", "nonce", "iat"]),
                        st.one_of(st.integers(), TEXT)), st.binary(max_size=10)))


@pytest.fixture(scope="module")
def relying_party(web):
    from apps.exchange.web import CLIENT_ID

    return oidc.RelyingParty(issuer=web.base, client_id=CLIENT_ID, base_url=web.base)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JWT_LIKE)
def test_tokens_from_the_network_are_refused_with_typed_errors(relying_party, token) -> None:
    with pytest.raises(BadLogoutToken):
        oidc.check_logout_token(relying_party, token)
    with pytest.raises(LoginFailed):
        oidc.check_id_token(relying_party, token, nonce="n")

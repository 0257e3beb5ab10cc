"""The exchange pages' client at the provider: registered by `govpki init` (register_at_init)
and on first use, with exact URIs under the issuer, moved when the issuer moves, once."""

from __future__ import annotations

from apps.exchange.web import CLIENT_ID, RelyingParty
from apps.sso import clients
from govpki.exchange_web import register_at_init, register_exchange_client


def test_registration_is_idempotent_and_follows_the_issuer(web_pki) -> None:
    sessions = web_pki.ctx.sessions
    redirect = register_at_init(web_pki.ctx)
    found = clients.get_client(sessions, CLIENT_ID)
    assert found is not None and found.secret_hash is None  # public: PKCE only
    assert list(found.redirect_uris) == [redirect]
    assert redirect.endswith("/exchange/sso/callback")
    assert register_at_init(web_pki.ctx) == redirect  # again: nothing new
    moved = RelyingParty(issuer="https://sso.example.gov.cn", client_id=CLIENT_ID,
                         base_url="https://docs.example.gov.cn")
    register_exchange_client(sessions, moved.uris)
    again = clients.get_client(sessions, CLIENT_ID)
    assert again is not None
    assert list(again.redirect_uris) == ["https://docs.example.gov.cn/exchange/sso/callback"]
    assert again.backchannel_logout_uri == \
        "https://docs.example.gov.cn/exchange/sso/backchannel-logout"
    assert list(again.post_logout_redirect_uris) == ["https://docs.example.gov.cn/exchange/bye"]
    assert [c.client_id for c in clients.list_clients(sessions)].count(CLIENT_ID) == 1

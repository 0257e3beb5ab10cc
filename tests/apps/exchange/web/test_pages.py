"""The exchange pages over real HTTP on loopback, with the real provider's certificate login:
compose and send, inbox, a received document with its verification, downloads, business
receipts, tracking and search; refusals as pages with their status and nothing stored; CSRF;
login through the provider (PKCE, state) and logout everywhere."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import requests

from apps.exchange import service
from apps.exchange.policy import get_policy
from apps.exchange.web import CLIENT_ID, POLICY_KEY
from ra.operators import get_operator
from tests.apps.exchange.conftest import HAIBEI, PROVINCE, XINING, document_number, pdf
from tests.apps.exchange.web.conftest import compose, csrf, login
from tests.apps.sso.conftest import audit_events


def _sent_id(response: requests.Response) -> str:
    assert response.status_code == 200, response.text[:3000]
    path = urlsplit(response.url).path
    assert path.startswith("/exchange/track/"), response.url
    return path.rsplit("/", 1)[-1]


def _business_state(pki, person, message_id: str) -> str:
    actor = get_operator(pki.ctx.sessions, person.account.username)
    summary = service.status(pki.ctx, actor, message_id)
    return {d.recipient.code: d.business_state for d in summary.deliveries}[
        actor.organisation.code]


def test_send_receive_verify_sign_for_and_track(web, team) -> None:
    province = login(web.base, team.province)
    number = document_number()
    sent = compose(province, web.base, number=number)
    message_id = _sent_id(sent)
    assert "公文已发送" in sent.text and number in sent.text
    # A double submission of the same form (same message id) stores nothing new.
    outbox = province.get(f"{web.base}/exchange/outbox").text
    assert message_id in outbox

    xining = login(web.base, team.xining)
    inbox = xining.get(f"{web.base}/exchange/inbox").text
    row = re.search(rf'<tr[^>]*data-message-id="{message_id}".*?</tr>', inbox, re.S)
    assert row and "加急" in row.group(0) and "待签收" in row.group(0) and "待接收" in row.group(0)

    doc = xining.get(f"{web.base}/exchange/doc/{message_id}")
    assert doc.status_code == 200, doc.text[:3000]
    verdict = re.search(r'id="verification".*?</section>', doc.text, re.S)
    assert verdict is not None
    assert "有效" in verdict.group(0) and "无效" not in verdict.group(0)
    assert 'id="signer-org">青海省人民政府<' in verdict.group(0)
    assert "未吊销" in verdict.group(0) and "可信（链接到根CA）" in verdict.group(0)
    assert "签名后未被修改" in verdict.group(0)
    body = xining.get(f"{web.base}/exchange/doc/{message_id}/files/0")
    assert body.status_code == 200 and body.content == pdf()
    assert body.headers["Content-Type"] == "application/pdf"
    assert "filename*=UTF-8''%E6%AD%A3%E6%96%87.pdf" in body.headers["Content-Disposition"]
    attachment = xining.get(f"{web.base}/exchange/doc/{message_id}/files/1")
    assert attachment.content == "名单：王芳".encode()
    assert xining.get(f"{web.base}/exchange/doc/{message_id}/files/2").status_code == 404

    signed = xining.post(f"{web.base}/exchange/doc/{message_id}/receipt",
                         data={"csrf_token": csrf(doc.text), "kind": "signed-for"})
    assert signed.status_code == 200 and "done=signed-for" in signed.url
    assert "已签收" in signed.text and 'id="complete"' in signed.text
    assert _business_state(web.pki, team.xining, message_id) == "signed-for"

    tracking = province.get(f"{web.base}/exchange/track/{message_id}").text
    xining_row = re.search(rf'<tr data-recipient="{XINING}".*?</tr>', tracking, re.S)
    haibei_row = re.search(rf'<tr data-recipient="{HAIBEI}".*?</tr>', tracking, re.S)
    assert xining_row and "已送达" in xining_row.group(0) and "已签收" in xining_row.group(0)
    assert haibei_row and "待接收" in haibei_row.group(0)
    kinds = re.findall(r'data-recipient="630100" data-kind="([a-z-]+)"', tracking)
    assert kinds == ["delivered", "signed-for"]

    found = province.get(f"{web.base}/exchange/search",
                         params={"number": number[-8:], "q": "1"}).text
    assert message_id in found and f"/exchange/track/{message_id}" in found
    by_title = xining.get(f"{web.base}/exchange/search",
                          params={"title": "公文电子交换", "date_from": "2024-05-20",
                                  "date_to": "2024-05-20"}).text
    assert f"/exchange/doc/{message_id}" in by_title
    later = xining.get(f"{web.base}/exchange/search",
                       params={"number": number, "date_from": "2024-05-21"}).text
    assert message_id not in later


def test_resubmitting_the_same_form_stores_nothing_new(web, team) -> None:
    province = login(web.base, team.province)
    page = province.get(f"{web.base}/exchange/compose").text
    message_id = re.search(r'name="message_id" value="([0-9a-f-]{36})"', page).group(1)
    number = document_number()
    first = compose(province, web.base, number=number, message_id=message_id)
    again = compose(province, web.base, number=number, message_id=message_id)
    assert _sent_id(first) == _sent_id(again) == message_id
    assert "重复提交未产生新公文" in again.text
    actor = get_operator(web.pki.ctx.sessions, team.province.account.username)
    assert service.search(web.pki.ctx, actor, number=number).total == 1


def _refused(response: requests.Response, status: int, title: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:2000])
    assert title in response.text
    return response.text


def test_compose_refusals_are_pages_and_store_nothing(web, team) -> None:
    province = login(web.base, team.province)
    actor = get_operator(web.pki.ctx.sessions, team.province.account.username)

    number = document_number()
    page = _refused(compose(province, web.base, number=number, classification="秘密"), 403,
                    "涉密公文不得在本网交换")
    assert 'id="compose-form"' in page and f'value="{number}"' in page  # the form again
    refusals = audit_events(web.pki, "exchange.send", "refused")
    assert refusals[-1]["details"]["classification"] == "秘密"

    _refused(compose(province, web.base, number=number, files=[]), 400, "正文 (PDF)")
    _refused(compose(province, web.base, number=number, main=[XINING], copy=[XINING]), 400,
             "either a main or a copy recipient")
    _refused(compose(province, web.base, number=number, main=[]), 400, "main recipient")
    _refused(compose(province, web.base, number=number, main=["999999"]), 400,
             "no organisation with code")
    _refused(compose(province, web.base, number=number, date="2024-13-40"), 400,
             "is not a date")
    _refused(compose(province, web.base, number=number, urgency="很急"), 400, "urgency")
    _refused(compose(province, web.base, number=number, main=["632600"]), 409,
             "收文单位无有效加密证书")  # Guoluo has no keys at all
    not_pdf = [("body", ("正文.pdf", b"GIF89a not a pdf", "application/pdf"))]
    _refused(compose(province, web.base, number=number, files=not_pdf), 400, "PDF")
    assert service.search(web.pki.ctx, actor, number=number).total == 0


def test_oversized_uploads_are_refused_by_name(web, team) -> None:
    province = login(web.base, team.province)
    actor = get_operator(web.pki.ctx.sessions, team.province.account.username)
    rules = get_policy()
    small = replace(rules, limits=replace(rules.limits, max_attachment_bytes=1000,
                                          max_package_bytes=20_000))
    web.app.config[POLICY_KEY] = small
    try:
        number = document_number()
        big = [("body", ("正文.pdf", pdf(), "application/pdf")),
               ("attachments", ("大附件.bin", b"x" * 1001, "application/octet-stream"))]
        page = _refused(compose(province, web.base, number=number, files=big), 413,
                        "文件超过大小限制")
        assert "大附件.bin" in page
        huge = [("body", ("正文.pdf", pdf() + b"%" * 1_100_000, "application/pdf"))]
        _refused(compose(province, web.base, number=number, files=huge), 413, "文件过大")
    finally:
        web.app.config.pop(POLICY_KEY)
    assert service.search(web.pki.ctx, actor, number=number).total == 0


def test_receipt_steps_follow_the_state_and_returns_need_a_reason(web, team) -> None:
    province = login(web.base, team.province)
    message_id = _sent_id(compose(province, web.base))
    xining = login(web.base, team.xining)
    doc = xining.get(f"{web.base}/exchange/doc/{message_id}").text
    token = csrf(doc)
    url = f"{web.base}/exchange/doc/{message_id}/receipt"

    _refused(xining.post(url, data={"csrf_token": token, "kind": "completed"}), 409,
             "当前状态不允许此操作")
    _refused(xining.post(url, data={"csrf_token": token, "kind": "returned"}), 400,
             "needs a reason")
    _refused(xining.post(url, data={"csrf_token": token, "kind": "delivered"}), 400,
             "kind must be one of")
    assert _business_state(web.pki, team.xining, message_id) == "none"
    returned = xining.post(url, data={"csrf_token": token, "kind": "returned",
                                      "reason": "附件缺页，请补发"})
    assert returned.status_code == 200 and "已退回" in returned.text
    assert 'id="no-steps"' in returned.text
    tracking = province.get(f"{web.base}/exchange/track/{message_id}").text
    assert "附件缺页，请补发" in tracking

    # Haibei (抄送) may not take Xining's steps, and a never-opened document has no receipt.
    haibei = login(web.base, team.haibei)
    _refused(haibei.post(url, data={"csrf_token": csrf(haibei.get(
        f"{web.base}/exchange/inbox").text), "kind": "signed-for"}), 409, "本单位未收到该公文")


def test_csrf_is_required_for_every_post(web, team) -> None:
    province = login(web.base, team.province)
    message_id = _sent_id(compose(province, web.base))
    xining = login(web.base, team.xining)
    xining.get(f"{web.base}/exchange/doc/{message_id}")
    url = f"{web.base}/exchange/doc/{message_id}/receipt"
    for data in ({"kind": "signed-for"}, {"kind": "signed-for", "csrf_token": "forged" * 8}):
        _refused(xining.post(url, data=data), 400, "页面已过期")
    assert _business_state(web.pki, team.xining, message_id) == "none"
    page = province.get(f"{web.base}/exchange/compose").text
    assert compose(province, web.base, csrf_token="x").status_code == 400
    assert 'name="csrf_token"' in page
    assert xining.post(f"{web.base}/exchange/logout").status_code == 400
    assert xining.get(f"{web.base}/exchange/inbox").url.endswith("/exchange/inbox")


def test_documents_of_other_organisations_stay_closed(web, team) -> None:
    province = login(web.base, team.province)
    message_id = _sent_id(compose(province, web.base, copy=[]))
    haibei = login(web.base, team.haibei)
    # Not addressed to Haibei: as unknown to it as a package that does not exist.
    _refused(haibei.get(f"{web.base}/exchange/doc/{message_id}"), 404, "未找到该公文")
    _refused(haibei.get(f"{web.base}/exchange/track/{message_id}"), 403, "无权操作")
    assert haibei.get(f"{web.base}/exchange/doc/not-a-uuid").status_code == 404
    _refused(haibei.get(f"{web.base}/exchange/doc/{uuid.uuid4()}"), 404, "未找到")
    assert haibei.get(f"{web.base}/exchange/nothing/here").status_code == 404
    listed = haibei.get(f"{web.base}/exchange/search", params={"q": "1"}).text
    assert message_id not in listed


def test_login_is_the_provider_s_code_flow(web, team) -> None:
    ua = requests.Session()
    first = ua.get(f"{web.base}/exchange/inbox?business=none", allow_redirects=False)
    assert first.status_code == 303
    assert first.headers["Location"] == \
        "/exchange/sso/login?next=%2Fexchange%2Finbox%3Fbusiness%3Dnone"
    start = ua.get(f"{web.base}{first.headers['Location']}", allow_redirects=False)
    assert start.status_code == 303
    target = urlsplit(start.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{web.base}/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["client_id"] == CLIENT_ID and query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"{web.base}/exchange/sso/callback"
    assert len(query["code_challenge"]) == 43 and query["nonce"] and query["state"]
    state_cookie = start.headers["Set-Cookie"]
    assert "HttpOnly" in state_cookie and "Path=/exchange/sso" in state_cookie

    # A callback whose state did not start here is refused and audited.
    forged = ua.get(f"{web.base}/exchange/sso/callback?code=abc&state=forged")
    assert forged.status_code == 403 and "登录失败" in forged.text
    assert audit_events(web.pki, "exchange.login", "refused")[-1]["details"]["error"] == \
        "oidc-state"

    # The whole way: provider login, then back with a session cookie of the pages.
    from tests.apps.sso.test_http_client import _user_agent_login

    _user_agent_login(ua, web.base, team.xining)
    hop = ua.get(f"{web.base}/exchange/sso/login?next=/exchange/outbox", allow_redirects=False)
    hop = ua.get(hop.headers["Location"], allow_redirects=False)  # the provider's answer
    assert hop.status_code in (302, 303)
    callback = ua.get(hop.headers["Location"], allow_redirects=False)
    assert callback.status_code == 303 and callback.headers["Location"] == "/exchange/outbox"
    cookie = callback.headers["Set-Cookie"]
    assert "govpki_exchange_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Path=/exchange" in cookie
    landed = ua.get(f"{web.base}/exchange/outbox")
    assert landed.status_code == 200 and "卓玛" in landed.text and "西宁市人民政府" in landed.text
    assert landed.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in landed.headers["Content-Security-Policy"]
    replay = ua.get(hop.headers["Location"])  # the code and state cannot be used twice
    assert replay.status_code == 403
    logins = audit_events(web.pki, "exchange.login", "success")
    assert logins[-1]["actor"] == team.xining.account.username
    assert logins[-1]["details"]["acr"] == "urn:govpki:acr:certificate"


def test_logout_ends_the_pages_and_single_sign_on(web, team) -> None:
    xining = login(web.base, team.xining)
    inbox = xining.get(f"{web.base}/exchange/inbox").text
    out = xining.post(f"{web.base}/exchange/logout", data={"csrf_token": csrf(inbox)})
    # The provider asks to confirm ending the single sign-on session; confirm it.
    assert "/oauth/logout" in out.url
    form = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', out.text))
    assert form["client_id"] == CLIENT_ID
    assert form["post_logout_redirect_uri"] == f"{web.base}/exchange/bye"
    bye = xining.post(f"{web.base}/oauth/logout", data=form)
    assert bye.status_code == 200 and "您已安全退出" in bye.text
    again = xining.get(f"{web.base}/exchange/inbox")
    assert "/sso/login" in again.url  # no exchange session, no provider session


def test_backchannel_logout_from_the_provider_ends_the_session(web, team) -> None:
    haibei = login(web.base, team.haibei)
    portal = haibei.get(f"{web.base}/sso/portal").text
    before = len(audit_events(web.pki, "exchange.logout", "success"))
    # Log out at the provider (another application's logout, say): the provider posts a
    # logout token to every client of the session, the exchange pages among them.
    form = {"csrf_token": csrf(portal), "client_id": "", "post_logout_redirect_uri": ""}
    haibei.post(f"{web.base}/oauth/logout", data={k: v for k, v in form.items() if v})
    events = audit_events(web.pki, "exchange.logout", "success")
    assert len(events) == before + 1
    assert events[-1]["details"] == {"via": "backchannel-logout", "sessions": 1}
    assert events[-1]["actor"] == team.haibei.account.username
    gone = haibei.get(f"{web.base}/exchange/inbox", allow_redirects=False)
    assert gone.status_code == 303 and "/exchange/sso/login" in gone.headers["Location"]


def test_bad_logout_tokens_are_refused(web) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc import jwt
    from joserfc.jwk import ECKey

    url = f"{web.base}/exchange/sso/backchannel-logout"
    for token in ("", "not-a-jwt", "a.b.c"):
        refused = requests.post(url, data={"logout_token": token}, timeout=10)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    # Signed with a key that is not the provider's, under the provider's key id.
    kid = requests.get(f"{web.base}/oauth/jwks", timeout=10).json()["keys"][0]["kid"]
    stranger = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    forged = jwt.encode({"alg": "ES256", "kid": kid}, {
        "iss": web.base, "aud": CLIENT_ID, "iat": 2_000_000_000, "sid": "x", "events": {
            "http://schemas.openid.net/event/backchannel-logout": {}}}, stranger)
    refused = requests.post(url, data={"logout_token": forged}, timeout=10)
    assert refused.status_code == 400 and "signature" in refused.json()["error_description"]
    assert audit_events(web.pki, "exchange.login", "refused")[-1]["details"]["error"] == \
        "logout-token"


def test_english_on_request(web, team) -> None:
    xining = login(web.base, team.xining)
    english = xining.get(f"{web.base}/exchange/lang/en", params={"next": "/exchange/outbox"})
    assert english.url == f"{web.base}/exchange/outbox"
    assert "Outbox" in english.text and 'lang="en"' in english.text
    back = xining.get(f"{web.base}/exchange/lang/zh", params={"next": "https://evil.example/"})
    assert back.url == f"{web.base}/exchange/inbox" and "收件箱" in back.text


def test_a_sender_sees_its_sent_document_in_the_outbox(web, team) -> None:
    province = login(web.base, team.province)
    number = document_number()
    message_id = _sent_id(compose(province, web.base, number=number, urgency="特急"))
    outbox = province.get(f"{web.base}/exchange/outbox").text
    row = re.search(rf'<tr[^>]*data-message-id="{message_id}".*?</tr>', outbox, re.S)
    assert row and number in row.group(0) and "urgency-top" in row.group(0)
    assert PROVINCE not in {d for d in re.findall(r'data-recipient="(\d+)"', outbox)}

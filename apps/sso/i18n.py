"""Every string the SSO pages show, Simplified Chinese first, English beside it (the RA's
convention and core.web.i18n's machinery; terms from shared/GLOSSARY.md: 统一身份认证,
办公门户, 证书…)."""

from __future__ import annotations

from typing import Final

from core.web.i18n import DEFAULT_LANGUAGE, LANGUAGES, Catalogue

__all__ = ["CATALOG", "DEFAULT_LANGUAGE", "LANGUAGES", "has", "translate"]

_ENTRIES: Final[dict[str, tuple[str, str]]] = {
    "app.name": ("统一身份认证", "Single sign-on"),
    "app.emblem": ("证", "ID"),
    "app.subtitle": ("省级政务数字证书认证体系", "Provincial government PKI"),
    "lang.switch": ("English", "中文"),
    "footer.note": ("省级政务数字证书认证体系 · 统一身份认证 (OpenID Connect)",
                    "Provincial government PKI · single sign-on (OpenID Connect)"),
    "nav.portal": ("办公门户", "Office portal"),
    "nav.clients": ("应用接入管理", "Applications"),
    "nav.logout": ("退出", "Log out"),
    "login.title": ("登录", "Log in"),
    "login.heading": ("统一身份认证登录", "Single sign-on"),
    "login.intro": ("一次登录，即可进入各项办公应用。请使用 USB Key 中的数字证书登录。",
                    "Log in once for every office application, with the certificate on your "
                    "USB key."),
    "login.for": ("登录后将进入：{name}", "After logging in you continue to: {name}"),
    "login.challenge.heading": ("USB Key 证书登录", "Log in with your USB key"),
    "login.challenge.code": ("登录码", "Login code"),
    "login.challenge.how": ("在本机插入 USB Key，运行以下命令并输入 PIN 口令：",
                            "With your USB key inserted, run this command and enter its PIN:"),
    "login.challenge.expires": ("登录码 {minutes} 分钟内有效，仅可使用一次。",
                                "The code is valid for {minutes} minutes and works once."),
    "login.challenge.waiting": ("等待签名……签名完成后本页将自动登录。",
                                "Waiting for the signature… this page continues by itself."),
    "login.challenge.continue": ("已完成签名，继续", "I have signed: continue"),
    "login.challenge.expired": ("登录码已过期，请刷新页面获取新的登录码。",
                                "The code has expired: reload the page for a new one."),
    "login.challenge.renew": ("获取新的登录码", "Get a new code"),
    "login.mtls.heading": ("浏览器证书登录", "Log in with the browser's certificate"),
    "login.mtls.intro": ("已检测到您浏览器提交的客户端证书。", "Your browser presented a client "
                         "certificate."),
    "login.mtls.submit": ("使用此证书登录", "Log in with this certificate"),
    "login.password.heading": ("口令 + 动态口令（仅限初始管理员）",
                               "Password + one-time code (first administrator only)"),
    "login.password.submit": ("登录", "Log in"),
    "login.acr_required": ("该应用要求使用数字证书登录。",
                           "This application requires a certificate login."),
    "login.failed": ("登录失败：", "Login failed: "),
    "login.certificate_only": ("口令登录仅保留给初始管理员，请使用上方的 USB Key 证书登录。",
                               "Password login is kept for the bootstrap administrator only: "
                               "log in with your USB key above."),
    "login.password_failed": ("登录失败：用户名、口令或动态口令不正确。",
                              "Login failed: the user name, password or one-time code is "
                              "wrong."),
    "login.expired": ("会话已超时，请重新登录。", "Your session has expired. Please log in again."),
    "login.help": ("仅限授权人员使用。所有登录均记入审计日志。",
                   "For authorised staff only. Every login is recorded in the audit log."),
    "refused.revoked": ("证书已被吊销，不能用于登录。请联系注册审核机构。",
                        "The certificate has been revoked and cannot log in. Contact your RA."),
    "refused.suspended": ("证书已被冻结，不能用于登录。如 USB Key 已找回，请联系注册审核机构解冻。",
                          "The certificate is suspended. If the USB key has turned up, ask "
                          "your RA to release it."),
    "refused.expired": ("证书已过期或尚未生效。", "The certificate has expired or is not yet "
                        "valid."),
    "refused.foreign": ("该证书不是本省证书认证机构签发的。",
                        "The certificate was not issued by this province's CA."),
    "refused.untrusted-chain": ("证书的签发链不受信任。", "The certificate's chain is not "
                                "trusted."),
    "refused.not-client-auth": ("该证书不能用于身份认证（缺少 clientAuth 用途），请使用签名证书。",
                                "The certificate is not for client authentication: use the "
                                "signing certificate."),
    "refused.no-account": ("证书有效，但未关联可登录的账号。请联系注册审核机构。",
                           "The certificate is valid, but no account is linked to it. Ask your "
                           "RA."),
    "refused.untrusted-proxy": ("客户端证书信息来自不受信任的地址，已拒绝。",
                                "The client certificate came from an untrusted address."),
    "refused.malformed": ("客户端证书信息无法识别。", "The client certificate cannot be read."),
    "refused.bad-signature": ("签名验证失败。", "The signature does not verify."),
    "refused.replayed": ("该登录码已被使用，请刷新页面获取新的登录码。",
                         "This code has already been used: reload the page for a new one."),
    "refused.expired-code": ("登录码已过期。", "The code has expired."),
    "refused.unknown": ("登录码无效。", "The code is not valid."),
    "portal.heading": ("办公门户", "Office portal"),
    "portal.welcome": ("{name}，您好。所属单位：{org}", "Hello {name} ({org})"),
    "portal.login_info": ("本次登录方式：{how}；登录时间：{time}",
                          "Logged in with {how} at {time}"),
    "portal.acr.urn:govpki:acr:certificate": ("数字证书", "certificate"),
    "portal.acr.urn:govpki:acr:password-totp": ("口令 + 动态口令", "password + one-time code"),
    "portal.apps": ("办公应用", "Office applications"),
    "portal.none": ("暂无已接入的办公应用。", "No office application is registered yet."),
    "portal.open": ("进入", "Open"),
    "clients.heading": ("应用接入管理", "Registered applications"),
    "clients.intro": ("接入统一身份认证的办公应用（OIDC 客户端）。回调地址按字符逐一精确比对。",
                      "Office applications using single sign-on (OIDC clients). Redirect URIs "
                      "are compared exactly."),
    "clients.col.name": ("应用名称", "Name"),
    "clients.col.client_id": ("客户端标识", "Client ID"),
    "clients.col.redirect": ("回调地址", "Redirect URIs"),
    "clients.col.backchannel": ("后端注销地址", "Back-channel logout"),
    "clients.col.type": ("类型", "Type"),
    "clients.public": ("公开客户端 (PKCE)", "Public (PKCE)"),
    "clients.confidential": ("机密客户端", "Confidential"),
    "clients.add": ("接入新应用", "Register an application"),
    "clients.field.name": ("应用名称", "Name"),
    "clients.field.redirect_uris": ("回调地址（每行一个）", "Redirect URIs (one per line)"),
    "clients.field.post_logout": ("注销后跳转地址（每行一个，可选）",
                                  "Post-logout redirect URIs (one per line, optional)"),
    "clients.field.backchannel": ("后端注销地址（可选）", "Back-channel logout URI (optional)"),
    "clients.field.initiate": ("门户入口地址（可选）", "Portal entry URI (optional)"),
    "clients.field.public": ("公开客户端（无客户端密钥）", "Public client (no secret)"),
    "clients.submit": ("保存", "Save"),
    "clients.created": ("已接入应用 {name}，客户端标识 {client_id}。",
                        "Registered {name} as {client_id}."),
    "clients.secret": ("客户端密钥只显示这一次，请通过安全渠道交给应用管理员：",
                       "The client secret is shown this once; hand it over securely:"),
    "clients.none": ("尚未接入任何应用。", "No application is registered."),
    "logout.heading": ("退出登录", "Log out"),
    "logout.confirm": ("确定要退出统一身份认证吗？退出后，各办公应用的登录也将一并结束。",
                       "Log out of single sign-on? Every office application's session ends "
                       "too."),
    "logout.submit": ("退出", "Log out"),
    "logout.done": ("您已安全退出，各办公应用的登录已一并结束。",
                    "You have logged out; every office application's session has ended."),
    "logout.again": ("重新登录", "Log in again"),
    "error.back": ("返回", "Back"),
    "error.title": ("请求有误", "Bad request"),
    "error.forbidden": ("无权执行此操作", "Forbidden"),
    "error.rate_limited": ("请求过于频繁，请稍后再试", "Too many requests: try again later"),
    "error.not_found": ("未找到", "Not found"),
    "error.client": ("应用接入信息有误", "Unknown application or redirect URI"),
    "error.client.detail": ("该应用未接入统一身份认证，或回调地址与登记的不一致。"
                            "为安全起见，不会跳转回该应用。",
                            "The application is not registered, or its redirect URI does not "
                            "match the registered one. For safety you are not sent back to it."),
    "error.csrf": ("表单已失效，请返回页面刷新后重试。",
                   "The form has expired: go back, reload the page and try again."),
    "error.internal": ("系统内部错误", "Internal error"),
}

_CATALOGUE: Final = Catalogue(_ENTRIES, label="SSO page")
#: key → {"zh": …, "en": …}
CATALOG: Final = _CATALOGUE.entries
has = _CATALOGUE.has
translate = _CATALOGUE.translate

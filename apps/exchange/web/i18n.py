"""Every string the exchange pages show, in Simplified Chinese (the default) and English.

The RA pages' approach and machinery (core.web.i18n): one dictionary with both languages side
by side, a test that every key has both and that the templates hold no text outside it. Terms follow
shared/GLOSSARY.md: 公文交换, 收件箱, 发送, 签收, 退回, 办结, 文号, 紧急程度, 密级, 电子印章.
Messages that come from the exchange's services (a refusal's explanation) stay in English
under a translated title: they name documents, organisations and rules precisely.
"""

from __future__ import annotations

from typing import Final

from core.web.i18n import DEFAULT_LANGUAGE, LANGUAGES, Catalogue, other_language

__all__ = ["CATALOG", "DEFAULT_LANGUAGE", "LANGUAGES", "error_title_key", "field_label", "has",
           "other_language", "translate"]

_ENTRIES: Final[dict[str, tuple[str, str]]] = {
    # Frame
    "app.name": ("公文交换系统", "Official Document Exchange"),
    "app.emblem": ("文", "DX"),
    "app.subtitle": ("省政府办公厅 · 电子公文交换", "Provincial government office"),
    "lang.switch": ("English", "中文"),
    "nav.label": ("主导航", "Main navigation"),
    "nav.inbox": ("收件箱", "Inbox"),
    "nav.outbox": ("发件箱", "Outbox"),
    "nav.compose": ("发送公文", "Send a document"),
    "nav.search": ("公文检索", "Search"),
    "nav.logout": ("退出", "Log out"),
    "footer.note": ("仅限非密公文 · 时间均为北京时间 (UTC+8) · 所有操作均记入审计日志",
                    "Non-classified documents only · Beijing time (UTC+8) · every action is "
                    "audited"),
    "session.acting_for": ("收发单位：{org}", "Acting for: {org}"),
    "session.certificate": ("数字证书登录", "certificate login"),
    # Paging and common words
    "pager.label": ("分页", "Pages"),
    "pager.summary": ("共 {total} 件，第 {page}/{pages} 页",
                      "{total} in all, page {page} of {pages}"),
    "pager.prev": ("上一页", "Previous"),
    "pager.next": ("下一页", "Next"),
    "empty": ("没有公文。", "No documents."),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "overdue": ("超期", "Overdue"),
    "form.has_errors": ("未发送：请按提示修改后重新提交（附件须重新选择）。",
                        "Not sent: correct the form and submit again (choose the files "
                        "again)."),
    # Columns and fields
    "col.urgency": ("紧急程度", "Urgency"),
    "col.number": ("文号", "Document number"),
    "col.title": ("标题", "Title"),
    "col.sender": ("发文单位", "Issued by"),
    "col.sent_at": ("发送时间", "Sent"),
    "col.deadline": ("签收时限", "Sign-for deadline"),
    "col.state": ("状态", "State"),
    "col.recipients": ("收文单位", "Recipients"),
    "col.recipient": ("收文单位", "Recipient"),
    "col.role": ("主送/抄送", "Main/copy"),
    "col.transport": ("传输状态", "Transport"),
    "col.delivered_at": ("送达时间", "Delivered"),
    "col.business": ("办理状态", "Handling"),
    "col.business_at": ("办理时间", "Handled"),
    "col.reason": ("退回理由", "Reason for return"),
    "col.kind": ("回执", "Receipt"),
    "col.seal": ("签章证书", "Seal certificate"),
    "col.by": ("经办人", "By"),
    "col.at": ("时间", "Time"),
    "col.file": ("文件", "File"),
    "col.size": ("大小", "Size"),
    "col.sha256": ("SHA-256", "SHA-256"),
    "col.organisation": ("单位", "Organisation"),
    "field.number": ("文号", "Document number"),
    "field.title": ("标题", "Title"),
    "field.date": ("成文日期", "Document date"),
    "field.urgency": ("紧急程度", "Urgency"),
    "field.classification": ("密级", "Classification"),
    "field.issuer": ("发文单位", "Issuing organisation"),
    "field.main": ("主送", "Main recipients"),
    "field.copy": ("抄送", "Copy recipients"),
    "field.recipients": ("收文单位", "Recipients"),
    "field.organisation": ("单位", "Organisation"),
    "field.body": ("正文 (PDF)", "Body (PDF)"),
    "field.attachments": ("附件", "Attachments"),
    "field.attachment": ("附件", "Attachment"),
    "field.message_id": ("消息标识", "Message id"),
    "field.reason": ("退回理由", "Reason for return"),
    "field.kind": ("回执类型", "Receipt kind"),
    "field.page": ("页码", "Page"),
    "field.date_from": ("成文日期自", "Date from"),
    "field.date_to": ("至", "to"),
    "field.sent_at": ("发送时间", "Sent"),
    "field.deadline": ("签收时限", "Sign-for deadline"),
    "field.size": ("大小", "Size"),
    "field.submitted_by": ("发送人", "Sent by"),
    "field.business_state": ("办理状态", "Handling"),
    "field.state": ("传输状态", "Transport"),
    # States
    "transport.pending": ("待接收", "not yet fetched"),
    "transport.fetched": ("已取回", "fetched"),
    "transport.delivered": ("已送达", "delivered and verified"),
    "business.none": ("待签收", "awaiting sign-for"),
    "business.signed-for": ("已签收", "signed for"),
    "business.returned": ("已退回", "returned"),
    "business.completed": ("已办结", "completed"),
    "role.main": ("主送", "main"),
    "role.copy": ("抄送", "copy"),
    "receipt.delivered": ("送达回执（技术回执）", "delivery receipt (technical)"),
    "receipt.signed-for": ("签收", "signed for"),
    "receipt.returned": ("退回", "returned"),
    "receipt.completed": ("办结", "completed"),
    # Inbox
    "inbox.title": ("收件箱", "Inbox"),
    "inbox.filter.all": ("全部", "All"),
    "inbox.filter.none": ("待签收", "To sign for"),
    "inbox.filter.signed-for": ("已签收", "Signed for"),
    "inbox.filter.returned": ("已退回", "Returned"),
    "inbox.filter.completed": ("已办结", "Completed"),
    "inbox.overdue_note": ("标记“超期”的公文已过签收时限，请尽快签收。",
                           "Documents marked overdue have passed their sign-for deadline."),
    # Outbox
    "outbox.title": ("发件箱", "Outbox"),
    "outbox.track": ("跟踪", "Track"),
    # Compose
    "compose.title": ("发送公文", "Send a document"),
    "compose.intro": ("公文以本单位电子印章签章，并按各收文单位的加密证书加密；"
                      "交换中心只转发，不能阅读正文。"
                      "仅限非密公文。",
                      "The document is sealed with your organisation's electronic seal and "
                      "encrypted to each recipient's encryption certificate; the exchange hub "
                      "forwards it without being able to read it. Non-classified documents "
                      "only."),
    "compose.issuer_note": ("以本单位电子印章签章", "sealed with this organisation's seal"),
    "compose.not_allowed": ("不得交换", "may not be exchanged"),
    "compose.no_key": ("无加密证书", "no encryption certificate"),
    "compose.limits": ("正文不超过 {body}，每个附件不超过 {attachment}，"
                       "附件最多 {count} 个，合计不超过 {total}。",
                       "Body at most {body}, each attachment at most {attachment}, at most "
                       "{count} attachments, {total} in all."),
    "compose.recipients_hint": ("每个单位选择主送或抄送之一。",
                                "Choose main or copy for each organisation."),
    "compose.submit": ("签章并发送", "Seal and send"),
    "compose.sent": ("公文已发送，交换中心已存储。",
                     "Sent: the exchange hub has stored the document."),
    "compose.resent": ("该公文此前已发送（重复提交未产生新公文）。",
                       "This document had been sent already (the repeated submission stored "
                       "nothing new)."),
    # Document (received)
    "doc.title": ("公文", "Document"),
    "doc.header": ("公文信息", "Header"),
    "doc.verification": ("签章验证", "Seal verification"),
    "doc.valid": ("有效", "Valid"),
    "doc.invalid": ("无效", "Invalid"),
    "doc.signer_org": ("签章单位", "Sealing organisation"),
    "doc.signer_subject": ("签章证书主题", "Seal certificate subject"),
    "doc.signer_serial": ("证书序列号", "Certificate serial"),
    "doc.signer_issuer": ("签发CA", "Issuing CA"),
    "doc.chain": ("证书链", "Certificate chain"),
    "doc.chain_ok": ("可信（链接到根CA）", "trusted (chains to the root CA)"),
    "doc.chain_bad": ("不可信", "not trusted"),
    "doc.revocation": ("吊销状态", "Revocation"),
    "doc.revocation.good": ("未吊销", "not revoked"),
    "doc.revocation.revoked": ("已吊销", "revoked"),
    "doc.revocation.unknown": ("未知", "unknown"),
    "doc.revocation.not-checked": ("未检查", "not checked"),
    "doc.integrity": ("完整性", "Integrity"),
    "doc.integrity_ok": ("签名后未被修改，正文与公文信息一致",
                         "unchanged since sealing; the body matches the header"),
    "doc.integrity_bad": ("签名后被修改", "modified after signing"),
    "doc.signing_time": ("签章时间", "Sealed at"),
    "doc.verified_at": ("验证时间", "Verified at"),
    "doc.reasons": ("问题", "Problems"),
    "doc.files": ("正文与附件", "Body and attachments"),
    "doc.body": ("正文", "Body"),
    "doc.attachment": ("附件", "Attachment"),
    "doc.download": ("下载", "Download"),
    "doc.handling": ("签收办理", "Sign for and handle"),
    "doc.technical_receipt": ("送达回执已发送（{at}）", "Delivery receipt sent ({at})"),
    "doc.sign_for": ("签收", "Sign for"),
    "doc.return": ("退回", "Return"),
    "doc.complete": ("办结", "Complete"),
    "doc.return_hint": ("退回须填写理由。", "A return needs a reason."),
    "doc.no_more_steps": ("本公文已办理完毕。", "Nothing more to do for this document."),
    "doc.done.signed-for": ("已签收，签收回执已以本单位电子印章签发。",
                            "Signed for: the receipt was sealed with your organisation's seal."),
    "doc.done.returned": ("已退回。", "Returned."),
    "doc.done.completed": ("已办结。", "Completed."),
    "doc.tracking_link": ("查看跟踪", "Tracking"),
    # Tracking
    "track.title": ("公文跟踪", "Tracking"),
    "track.deliveries": ("各收文单位办理情况", "Per recipient"),
    "track.receipts": ("回执", "Receipts"),
    "track.no_receipts": ("尚无回执。", "No receipts yet."),
    # Search
    "search.title": ("公文检索", "Search documents"),
    "search.submit": ("查询", "Search"),
    "search.hint": ("按文号、标题（包含）和成文日期检索本单位发送和接收的公文。",
                    "Documents your organisation sent or received, by number and title "
                    "(contains) and document date."),
    # Login and logout
    "bye.title": ("已退出", "Logged out"),
    "bye.text": ("您已退出公文交换系统和统一身份认证。",
                 "You have logged out of the exchange and of single sign-on."),
    "bye.again": ("重新登录", "Log in again"),
    # Errors
    "error.title": ("出错了", "Something went wrong"),
    "error.back": ("返回收件箱", "Back to the inbox"),
    "error.field": ("相关字段：{field}", "Field: {field}"),
    "error.csrf": ("页面已过期", "The page has expired"),
    "error.csrf.detail": ("表单的安全令牌缺失或不匹配，未作任何更改。请返回刷新页面后重试。",
                          "The form's security token is missing or does not match; nothing "
                          "was changed. Reload the page and try again."),
    "error.too_large": ("上传的文件超过大小限制（合计不超过 {limit}），未作任何更改。",
                        "The upload is over the size limit ({limit} in all); nothing was "
                        "changed."),
    "error.status.400": ("输入有误", "Bad input"),
    "error.status.403": ("无权操作", "Not allowed"),
    "error.status.404": ("未找到", "Not found"),
    "error.status.405": ("不支持的操作", "Method not allowed"),
    "error.status.409": ("与当前状态冲突", "Conflicts with the current state"),
    "error.status.413": ("文件过大", "Too large"),
    "error.status.422": ("验证失败", "Verification failed"),
    "error.status.500": ("系统错误", "Server error"),
    "error.status.500.detail": ("服务器出错，错误已记入日志。",
                                "The server failed; the error is in its log."),
    "error.status.503": ("服务暂不可用", "Service unavailable"),
    "error.kind.validation": ("输入有误", "Bad input"),
    "error.kind.forbidden": ("无权操作", "Not allowed"),
    "error.kind.exchange-classified": ("涉密公文不得在本网交换",
                                       "Classified documents may not be exchanged here"),
    "error.kind.exchange-too-large": ("文件超过大小限制", "Over the size limit"),
    "error.kind.exchange-malformed": ("公文包格式错误", "Malformed package"),
    "error.kind.exchange-signature-invalid": ("签章验证失败", "The seal does not verify"),
    "error.kind.exchange-tampered": ("公文已被篡改", "The document was tampered with"),
    "error.kind.exchange-recipient-key": ("收文单位无有效加密证书",
                                          "A recipient has no valid encryption certificate"),
    "error.kind.exchange-org-key-missing": ("本单位密钥不可用", "Organisation key unavailable"),
    "error.kind.exchange-duplicate-number": ("文号重复", "Duplicate document number"),
    "error.kind.exchange-message-id-conflict": ("消息标识冲突", "Message id already used"),
    "error.kind.exchange-not-found": ("未找到该公文", "No such document"),
    "error.kind.exchange-not-received": ("本单位未收到该公文", "Not received by your organisation"),
    "error.kind.exchange-invalid-transition": ("当前状态不允许此操作",
                                               "Not allowed in the current state"),
    "error.kind.exchange-receipt-invalid": ("回执无效", "Invalid receipt"),
    "error.kind.exchange-login": ("登录失败", "Login failed"),
    "error.kind.exchange-provider-unavailable": ("统一身份认证暂不可用",
                                                 "Single sign-on is unavailable"),
}

_CATALOGUE: Final = Catalogue(_ENTRIES, label="exchange page")
#: key → {"zh": …, "en": …}
CATALOG: Final = _CATALOGUE.entries
has = _CATALOGUE.has
translate = _CATALOGUE.translate
field_label = _CATALOGUE.field_label
error_title_key = _CATALOGUE.error_title_key

"""Every string the RA pages show, in Simplified Chinese (the default) and English.

A plain dictionary rather than gettext catalogues: the pages have a few hundred strings, both
languages sit side by side where a reviewer can compare them, and a test checks that every key
has both and that the templates hold no text outside this catalogue. Terms follow
shared/GLOSSARY.md (证书申请, 吊销, 冻结/解冻, 工作人员, 审计日志 …).

Keys are English, dotted by page or kind; ``{name}`` placeholders are filled by
:func:`translate` (the machinery is core.web.i18n's, shared with the SSO and exchange
pages). Messages that come from the services (a validation error's explanation) stay in
English after a translated title: they name fields and rules precisely, and the field itself
is shown by its translated label.
"""

from __future__ import annotations

from typing import Final

from core.web.i18n import DEFAULT_LANGUAGE, LANGUAGES, Catalogue, other_language
from policies.authz import get_authz_policy

__all__ = ["CATALOG", "DEFAULT_LANGUAGE", "LANGUAGES", "error_title_key", "field_label", "has",
           "other_language", "role_name", "translate"]

_ENTRIES: Final[dict[str, tuple[str, str]]] = {
    # Frame
    "app.name": ("政务数字证书注册审核系统", "Government Certificate Registration Authority"),
    "app.emblem": ("证", "RA"),
    "app.subtitle": ("注册审核机构 (RA)", "Registration authority (RA)"),
    "lang.switch": ("English", "中文"),
    "nav.label": ("主导航", "Main navigation"),
    "nav.dashboard": ("工作台", "Dashboard"),
    "nav.orgs": ("单位", "Organisations"),
    "nav.officials": ("工作人员", "Officials"),
    "nav.requests": ("证书申请", "Certificate requests"),
    "nav.operators": ("操作员", "Operators"),
    "nav.audit": ("审计日志", "Audit log"),
    "nav.logout": ("退出", "Log out"),
    "footer.note": ("省级政务数字证书认证体系 · 时间均为北京时间 (UTC+8)",
                    "Provincial government PKI · all times are Beijing time (UTC+8)"),
    # Paging and common actions
    "pager.label": ("分页", "Pages"),
    "pager.summary": ("共 {total} 条，第 {page}/{pages} 页",
                      "{total} in all, page {page} of {pages}"),
    "pager.first": ("首页", "First"),
    "pager.prev": ("上一页", "Previous"),
    "pager.next": ("下一页", "Next"),
    "pager.last": ("末页", "Last"),
    "action.search": ("查询", "Search"),
    "action.save": ("保存", "Save"),
    "action.cancel": ("取消", "Cancel"),
    "action.edit": ("修改", "Edit"),
    "action.import": ("导入", "Import"),
    "action.submit_request": ("提交申请", "Submit request"),
    "action.approve": ("批准", "Approve"),
    "action.reject": ("驳回", "Reject"),
    "action.execute": ("执行", "Carry out"),
    "form.has_errors": ("表单有误，请修改标红的字段后重新提交。",
                        "The form has errors: correct the marked fields and submit again."),
    "form.choose": ("请选择", "Choose"),
    # Notices after a completed action (?done=…)
    "done.created": ("已登记工作人员。", "The official has been registered."),
    "done.updated": ("已保存修改。", "The changes have been saved."),
    "done.submitted": ("证书申请已提交。", "The certificate request has been submitted."),
    "done.approved": ("已批准；尚需其他审核员批准。",
                      "Approved; further approvals are still needed."),
    "done.approved-executed": ("已批准并执行。", "Approved and carried out."),
    "done.executed": ("已执行。", "Carried out."),
    "done.rejected": ("已驳回。", "Rejected."),
    # Login
    "login.title": ("登录", "Log in"),
    "login.heading": ("操作员登录", "Operator login"),
    "login.intro": ("请输入用户名、口令和动态口令（身份验证器中的 6 位数字）。",
                    "Enter your user name, password and the 6-digit code from your "
                    "authenticator."),
    "login.method.password-totp": ("口令 + 动态口令", "Password + one-time code"),
    "login.submit": ("登录", "Log in"),
    "login.failed": ("登录失败：用户名、口令或动态口令不正确。",
                     "Login failed: the user name, password or one-time code is wrong."),
    "login.locked": ("账号因多次登录失败已被暂时锁定，请稍后再试或联系安全保密管理员。",
                     "The account is locked after repeated failed logins. Try again later "
                     "or ask a security administrator."),
    "login.expired": ("会话已超时，请重新登录。", "Your session has expired. Please log in again."),
    "login.bye": ("您已安全退出。", "You have logged out."),
    "dashboard.expiring.by_org": ("按单位查看", "by organisation"),
    "login.sso": ("统一身份认证登录（USB Key）", "Single sign-on (USB key)"),
    "login.intro.sso": ("操作员请插入 USB Key，使用其中的数字证书登录。",
                        "Operators log in with the certificate on their USB key."),
    "login.bootstrap_password": ("初始管理员口令登录", "Bootstrap administrator: password login"),
    "login.bootstrap_note": ("口令 + 动态口令登录仅限初始管理员；其他操作员请使用 USB Key 登录。",
                             "Password + one-time code is for the bootstrap administrator "
                             "only; other operators log in with their USB key."),
    "login.certificate_only": ("口令登录仅保留给初始管理员。请使用 USB Key 中的数字证书，"
                               "通过统一身份认证登录。",
                               "Password login is kept for the bootstrap administrator only. "
                               "Log in with the certificate on your USB key (single sign-on)."),
    "login.sso_or_password": ("或使用口令和动态口令登录：",
                              "or log in with password and one-time code:"),
    "login.help": ("仅限授权操作员使用。所有操作均记入审计日志。",
                   "For authorised operators only. Every action is recorded in the audit log."),
    # Fields (also used to name the field of a validation error)
    "field.identifier": ("人员标识", "Identifier"),
    "field.name": ("姓名", "Name"),
    "field.org_code": ("单位", "Organisation"),
    "field.unit": ("内设机构", "Unit"),
    "field.position": ("职务", "Position"),
    "field.contact": ("联系方式", "Contact"),
    "field.status": ("状态", "Status"),
    "field.kind": ("申请类型", "Request type"),
    "field.csr": ("证书请求 (CSR)", "Certificate signing request (CSR)"),
    "field.comment": ("说明", "Comment"),
    "field.reason": ("吊销原因", "Revocation reason"),
    "field.file": ("文件", "File"),
    "field.username": ("用户名", "User name"),
    "field.password": ("口令", "Password"),
    "field.totp": ("动态口令", "One-time code"),
    "field.serials": ("证书", "Certificates"),
    "field.official": ("工作人员", "Official"),
    "field.row": ("行", "Row"),
    "field.page": ("页码", "Page"),
    "field.state": ("状态", "State"),
    "field.role": ("角色", "Role"),
    "field.header": ("表头", "Header"),
    "field.code": ("单位代码", "Code"),
    "field.parent_code": ("上级单位代码", "Parent code"),
    # Table columns
    "col.request": ("申请编号", "Request"),
    "col.kind": ("类型", "Type"),
    "col.official": ("工作人员", "Official"),
    "col.organisation": ("单位", "Organisation"),
    "col.approvals": ("批准数", "Approvals"),
    "col.submitted_by": ("提交人", "Submitted by"),
    "col.submitted_at": ("提交时间", "Submitted"),
    "col.serial": ("序列号", "Serial number"),
    "col.ca": ("签发CA", "Issuing CA"),
    "col.profile": ("证书模板", "Profile"),
    "col.not_before": ("生效时间", "Valid from"),
    "col.not_after": ("到期时间", "Valid until"),
    "col.status": ("证书状态", "Status"),
    "col.state": ("申请状态", "State"),
    "col.subject": ("证书主题", "Subject"),
    # Request states and kinds, certificate status, revocation reasons
    "state.submitted": ("已提交", "Submitted"),
    "state.approved": ("已批准", "Approved"),
    "state.rejected": ("已驳回", "Rejected"),
    "state.issued": ("已签发", "Issued"),
    "state.done": ("已办结", "Done"),
    "kind.new-pair": ("新办证书", "New certificate pair"),
    "kind.renewal": ("证书更新", "Renewal"),
    "kind.re-key": ("换发(密钥更新)", "Re-key"),
    "kind.revocation": ("证书吊销", "Revocation"),
    "kind.suspension": ("证书冻结", "Suspension"),
    "kind.release": ("证书解冻", "Release"),
    "status.good": ("有效", "Valid"),
    "status.hold": ("已冻结", "Suspended"),
    "status.revoked": ("已吊销", "Revoked"),
    "reason.unspecified": ("未指明", "Unspecified"),
    "reason.keyCompromise": ("密钥泄露", "Key compromise"),
    "reason.cACompromise": ("CA 密钥泄露", "CA compromise"),
    "reason.affiliationChanged": ("隶属关系变更", "Affiliation changed"),
    "reason.superseded": ("已被取代", "Superseded"),
    "reason.cessationOfOperation": ("停止使用", "Cessation of operation"),
    "reason.privilegeWithdrawn": ("权限撤销", "Privilege withdrawn"),
    "reason.aACompromise": ("属性机构密钥泄露", "AA compromise"),
    "reason.certificateHold": ("冻结", "Certificate hold"),
    "encryption.pending-kmc": ("加密证书待密钥管理中心签发",
                               "Encryption pair pending the key management centre"),
    "official.status.active": ("在职", "Active"),
    "official.status.left": ("已离职", "Left"),
    "orgkind.province": ("省", "Province"),
    "orgkind.prefecture": ("州(地、市)", "Prefecture"),
    "orgkind.county": ("县", "County"),
    "orgkind.department": ("部门", "Department"),
    "outcome.success": ("成功", "Success"),
    "outcome.refused": ("拒绝", "Refused"),
    "outcome.failure": ("失败", "Failure"),
    # Dashboard
    "dashboard.heading": ("工作台", "Dashboard"),
    "dashboard.welcome": ("{name}，您好。所属单位：{org}", "Hello {name} ({org})"),
    "dashboard.nothing": ("您的角色不涉及证书申请业务，请从左侧菜单进入相应功能。",
                          "Your roles do not include certificate requests: use the menu on "
                          "the left."),
    "dashboard.pending": ("待审批申请", "Requests awaiting approval"),
    "dashboard.approved": ("已批准待执行", "Approved, not yet carried out"),
    "dashboard.expiring": ("30 天内到期证书", "Certificates expiring within 30 days"),
    "dashboard.pending.heading": ("待审批的证书申请", "Certificate requests awaiting approval"),
    "dashboard.all_pending": ("查看全部 {n} 条待审批申请", "See all {n} waiting requests"),
    "dashboard.no_pending": ("当前没有待审批的申请。", "No request is waiting for approval."),
    "dashboard.expiring.heading": ("即将到期的证书（30 天内）",
                                   "Certificates expiring within 30 days"),
    "dashboard.no_expiring": ("30 天内没有到期的证书。", "No certificate expires within 30 days."),
    # Organisations
    "orgs.heading": ("单位", "Organisations"),
    "orgs.intro": ("本级及下级单位。点击单位名称展开或收起下级单位。",
                   "Your organisation and those below it. Click a name to open or close it."),
    "orgs.officials": ("{n} 名工作人员", "{n} officials"),
    # Officials
    "officials.heading": ("工作人员", "Officials"),
    "officials.new": ("登记工作人员", "Register an official"),
    "officials.edit": ("修改工作人员信息", "Edit official"),
    "officials.import": ("批量导入", "Bulk import"),
    "officials.search": ("姓名或标识", "Name or identifier"),
    "officials.search.placeholder": ("输入姓名或人员标识", "Name or identifier"),
    "officials.all_orgs": ("全部单位", "All organisations"),
    "officials.none": ("没有符合条件的工作人员。", "No official matches."),
    "officials.identifier.hint": ("单位内部人员编号，不得使用身份证号码。",
                                  "The internal staff number; never a resident identity "
                                  "number."),
    "official.certificates": ("数字证书", "Certificates"),
    "official.no_certificates": ("尚未签发证书。", "No certificate has been issued yet."),
    "official.requests": ("证书申请记录", "Certificate requests"),
    "official.no_requests": ("暂无证书申请。", "No certificate request yet."),
    "official.request_new": ("申请证书", "Request a certificate"),
    "request_new.intro": ("为 {name}（{org}）提交证书申请。证书主题由登记信息生成，不取自 CSR。",
                          "Request a certificate for {name} ({org}). The subject comes from "
                          "the registered record, not from the CSR."),
    "request_new.csr.hint": ("上传 PKCS#10 证书请求文件（PEM 或 DER），或在下方粘贴 PEM 文本。",
                             "Upload a PKCS#10 request (PEM or DER) or paste the PEM text "
                             "below."),
    "request_new.csr.paste": ("粘贴 PEM 格式的证书请求", "Paste the PEM request"),
    # USB-key enrollment codes
    "enrollment.heading": ("USB Key 注册码", "USB-key enrollment code"),
    "enrollment.intro": ("为工作人员发放一次性注册码：工作人员在本机插入 USB Key 后运行 "
                         "govpki token enroll 输入注册码，即在 USB Key 内生成密钥并提交证书申请。",
                         "Hand the official a one-time code: on their own machine, with the "
                         "USB key inserted, govpki token enroll generates the key on the token "
                         "and submits the certificate request."),
    "enrollment.create": ("发放注册码", "Hand out a code"),
    "enrollment.for": ("{name} 的注册码（{kind}）：", "Enrollment code for {name} ({kind}):"),
    "enrollment.once": ("注册码只显示这一次，请当面或通过安全渠道交给本人；{expires} 前有效，"
                        "使用一次后失效。再次发放将使此前未用的注册码作废。",
                        "The code is shown this once: hand it to the official in person or "
                        "through a secure channel. It is valid until {expires} and works once; "
                        "handing out another cancels any unused one."),
    "enrollment.how": ("工作人员在本机插入 USB Key，运行 govpki token enroll，按提示输入注册码。",
                       "The official inserts the USB key, runs govpki token enroll on their "
                       "own machine and types the code when asked."),
    "enrollment.back": ("返回工作人员信息", "Back to the official"),
    # Import
    "import.upload": ("上传花名册", "Upload a roster"),
    "import.intro": ("CSV 文件（UTF-8 编码）或 Excel 工作簿（.xlsx，第一个工作表），首行为列名：",
                     "A CSV file (UTF-8) or an Excel workbook (.xlsx, first sheet) whose "
                     "first row names the columns:"),
    "import.all_or_nothing": ("整份导入：任何一行有误则全部不导入，并列出每行的问题。",
                              "All or nothing: if any row is wrong nothing is imported and "
                              "every problem is listed."),
    "import.done": ("已导入 {n} 名工作人员。", "{n} officials imported."),
    "import.more": ("另有 {n} 名未列出。", "{n} more not listed."),
    "import.refused": ("花名册未导入：发现 {n} 处问题，请修改后重新上传。",
                       "Roster refused, nothing imported: {n} problem(s). Fix them and upload "
                       "it again."),
    "import.col.line": ("行号", "Line"),
    "import.col.field": ("字段", "Field"),
    "import.col.problem": ("问题", "Problem"),
    # Requests
    "requests.heading": ("证书申请", "Certificate requests"),
    "requests.filter": ("按状态筛选", "Filter by state"),
    "requests.all": ("全部", "All"),
    "requests.none": ("没有符合条件的申请。", "No request matches."),
    "request.heading": ("申请 #{id}", "Request #{id}"),
    "request.submit_comment": ("申请说明", "Submitted with"),
    "request.decided": ("决定人", "Decided by"),
    "request.decision_comment": ("审批意见", "Decision comment"),
    "request.executed": ("执行人", "Carried out by"),
    "request.csr_attached": ("已附证书请求", "Attached"),
    "request.targets": ("涉及证书", "Certificates"),
    "request.issued": ("已签发证书", "Issued certificates"),
    "request.encryption": ("加密证书", "Encryption pair"),
    "request.last_error": ("最近一次执行错误", "Last error"),
    "request.approve": ("批准", "Approve"),
    "request.approve.hint": ("达到所需批准数后将立即签发证书或变更证书状态。",
                             "Once enough operators approve, the certificate is issued (or "
                             "its status changed) at once."),
    "request.own": ("本申请由您提交，须由其他审核员批准（双人控制）。",
                    "You submitted this request: another operator must approve it "
                    "(two-person rule)."),
    "request.already_approved": ("您已批准本申请，尚需其他审核员批准。",
                                 "You have approved this request; another operator must too."),
    "request.reject": ("驳回", "Reject"),
    "request.reject.reason": ("驳回理由（必填）", "Reason (required)"),
    "request.execute": ("执行", "Carry out"),
    "request.execute.hint": ("申请已批准，尚未执行（或上次执行失败）。",
                             "The request is approved but not yet carried out (or the last "
                             "attempt failed)."),
    "request.execute_failed": ("执行失败：", "Carrying out failed:"),
    # Certificates
    "certificate.heading": ("数字证书", "Certificate"),
    "certificate.fingerprint": ("SHA-256 指纹", "SHA-256 fingerprint"),
    "certificate.download": ("下载", "Download"),
    "certificate.download.pem": ("证书文件 (PEM)", "Certificate (PEM)"),
    "certificate.requests": ("相关申请", "Related requests"),
    "certificate.action.revocation": ("吊销证书", "Revoke"),
    "certificate.action.revocation.hint": ("提交吊销申请，经其他审核员批准后吊销，不可恢复。",
                                           "Opens a revocation request; once another operator "
                                           "approves it the certificate is revoked for good."),
    "certificate.action.suspension": ("冻结证书", "Suspend"),
    "certificate.action.suspension.hint": ("提交冻结申请，批准后暂停证书使用，可解冻恢复。",
                                           "Opens a suspension request; once approved the "
                                           "certificate is on hold until released."),
    "certificate.action.suspension.hint.immediate": (
        "USB Key 遗失等情况下立即暂停证书使用（无需审批），可解冻恢复。",
        "Puts the certificate on hold at once, without approval (a lost USB key); it can be "
        "released again."),
    "certificate.action.release": ("解冻证书", "Release"),
    "certificate.action.release.hint": ("提交解冻申请，批准后证书恢复有效。",
                                        "Opens a release request; once approved the "
                                        "certificate is valid again."),
    "certificate.submit.revocation": ("提交吊销申请", "Request revocation"),
    "certificate.submit.suspension": ("提交冻结申请", "Request suspension"),
    "certificate.submit.suspension.immediate": ("立即冻结", "Suspend now"),

    "certificate.submit.release": ("提交解冻申请", "Request release"),
    # Audit log
    "audit.heading": ("审计日志", "Audit log"),
    "audit.intro": ("防篡改审计日志（只读），最新记录在前。",
                    "The tamper-evident audit log (read-only), newest first."),
    "audit.seq": ("序号", "Seq"),
    "audit.time": ("时间", "Time"),
    "audit.actor": ("操作人", "Actor"),
    "audit.action": ("操作", "Action"),
    "audit.object": ("对象", "Object"),
    "audit.outcome": ("结果", "Outcome"),
    "audit.details": ("详情", "Details"),
    "audit.none": ("没有符合条件的审计记录。", "No audit event matches."),
    # Operators
    "operators.heading": ("操作员", "Operators"),
    "operators.intro": ("操作员账号及其角色（三员分立）。", "Operator accounts and their roles."),
    "operators.display_name": ("显示名称", "Display name"),
    "operators.roles": ("角色", "Roles"),
    "operators.pending": ("待批准角色", "Roles awaiting approval"),
    "operators.active": ("启用", "Active"),
    "operators.inactive": ("停用", "Deactivated"),
    "operators.none": ("没有可显示的操作员。", "No operator to show."),
    "operators.bootstrap": ("初始管理员（可口令登录）", "bootstrap administrator (password login)"),
    # Errors
    "error.back": ("返回工作台", "Back to the dashboard"),
    "error.field": ("有误的字段：{field}", "Field: {field}"),
    "error.csrf": ("表单已失效", "The form has expired"),
    "error.csrf.detail": ("表单的安全令牌缺失或不匹配，未做任何更改。请返回页面刷新后重试。",
                          "The form's security token is missing or does not match; nothing "
                          "was changed. Go back, reload the page and try again."),
    "error.status.400": ("请求有误", "Bad request"),
    "error.status.401": ("需要登录", "Login required"),
    "error.status.403": ("无权执行此操作", "Forbidden"),
    "error.status.404": ("未找到", "Not found"),
    "error.status.405": ("不支持的请求方式", "Method not allowed"),
    "error.status.409": ("操作与当前状态冲突", "Conflict with the current state"),
    "error.status.413": ("上传内容过大", "Upload too large"),
    "error.status.500": ("系统内部错误", "Internal error"),
    "error.status.500.detail": ("服务器处理失败，错误已记入日志。请联系系统管理员。",
                                "The server failed; the error is in its log. Please tell the "
                                "system administrator."),
    "error.kind.forbidden": ("无权执行此操作", "Forbidden"),
    "error.kind.two-person-rule": ("违反双人控制规则", "Two-person rule"),
    "error.kind.separation-of-duties": ("违反三员分立规则", "Separation of duties"),
    "error.kind.invalid-transition": ("申请当前状态不允许此操作",
                                      "The request's state does not allow this step"),
    "error.kind.duplicate": ("记录已存在", "Already exists"),
    "error.kind.validation": ("输入有误", "Invalid input"),
    "error.kind.import-refused": ("花名册未导入", "Roster refused"),
    "error.kind.ra-not-found": ("未找到", "Not found"),
    "error.kind.not-found": ("未找到", "Not found"),
    "error.kind.certificate-not-found": ("未找到该证书", "No such certificate"),
    "error.kind.ambiguous-serial": ("序列号不唯一", "Ambiguous serial number"),
    "error.kind.unknown-ca": ("未知的 CA", "Unknown CA"),
    "error.kind.invalid-status-change": ("证书当前状态不允许此操作",
                                         "The certificate's status does not allow this"),
    "error.kind.account-locked": ("账号已锁定", "Account locked"),
    "error.kind.authentication-failed": ("身份验证失败", "Authentication failed"),
}

_CATALOGUE: Final = Catalogue(_ENTRIES, label="RA page")
#: key → {"zh": …, "en": …}
CATALOG: Final = _CATALOGUE.entries
has = _CATALOGUE.has
translate = _CATALOGUE.translate
field_label = _CATALOGUE.field_label
error_title_key = _CATALOGUE.error_title_key


def role_name(role: str, lang: str) -> str:
    """A role as policies/authz.yaml names it in each language (安全审计员 …)."""
    spec = get_authz_policy().roles.get(role)
    if spec is None:
        return role
    return spec.zh if lang == "zh" else spec.en

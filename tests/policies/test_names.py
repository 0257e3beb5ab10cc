"""Subject names: RFC 4514 parsing, canonical order, Chinese kept intact, every rule enforced."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.errors import SubjectRuleViolation
from policies.names import (
    ATTRIBUTE_ORDER,
    SubjectAltNameRules,
    SubjectRules,
    check_subject,
    check_subject_alt_names,
    contains_national_id,
    escape_value,
    format_subject,
    parse_subject,
)
from policies.profiles import get_profile

OFFICIAL = get_profile("official-signing").subject_rules
SERVER = get_profile("server-tls").subject_rules
ZHANG_SAN = "CN=张三,OU=办公室,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"
EXPECTED = [
    ("C", "CN"), ("ST", "青海省"), ("L", "西宁市"), ("O", "青海省人民政府办公厅"),
    ("OU", "办公室"), ("CN", "张三"),
]
REST = "O=青海省人民政府办公厅,ST=青海省,C=CN"  # what every official subject needs besides CN


def test_chinese_subject_kept_intact_in_c_to_cn_order() -> None:
    assert parse_subject(ZHANG_SAN, OFFICIAL) == EXPECTED


def test_either_order_and_loose_spacing_give_the_same_subject() -> None:
    reversed_dn = ",".join(reversed(ZHANG_SAN.split(",")))
    assert parse_subject(reversed_dn, OFFICIAL) == EXPECTED
    spaced = "CN = 张三 , OU=办公室,  O=青海省人民政府办公厅, L=西宁市, ST=青海省, C=CN "
    assert parse_subject(spaced, OFFICIAL) == EXPECTED


def test_attribute_type_aliases() -> None:
    dn = "commonName=张三,2.5.4.10=青海省人民政府办公厅,S=青海省,c=CN"
    assert parse_subject(dn, OFFICIAL) == [
        ("C", "CN"), ("ST", "青海省"), ("O", "青海省人民政府办公厅"), ("CN", "张三"),
    ]


@pytest.mark.parametrize(
    ("written", "value"),
    [
        (r"青海省财政厅\, 预算处", "青海省财政厅, 预算处"),
        (r"A\+B", "A+B"),
        (r"say \"hi\"", 'say "hi"'),
        (r"back\\slash", "back\\slash"),
        (r"\#1 办公室", "#1 办公室"),
        (r"semi\;colon \<x\> a\=b", "semi;colon <x> a=b"),
        (r"\E5\BC\A0三", "张三"),  # UTF-8 hex escapes for 张
        (r"\41\42C", "ABC"),
        (r"x=y", "x=y"),
    ],
)
def test_escapes(written: str, value: str) -> None:
    assert parse_subject(f"CN={written},{REST}", OFFICIAL)[-1] == ("CN", value)


def test_server_subject_needs_no_cn() -> None:
    assert parse_subject(REST, SERVER) == [
        ("C", "CN"), ("ST", "青海省"), ("O", "青海省人民政府办公厅"),
    ]


VIOLATIONS = {
    "missing-required": ("CN=张三,ST=青海省,C=CN", "O", "required"),
    "foreign-country": ("CN=张三,O=青海省人民政府办公厅,ST=青海省,C=US", "C", "country"),
    "too-long-cn": (f"CN={'张' * 65},{REST}", "CN", "max-length"),
    "national-id-in-cn": (f"CN=张三630102199003071234,{REST}", "CN", "national-id"),
    "national-id-with-x": (f"CN=张三 11010519491231002X,{REST}", "CN", "national-id"),
    "legacy-national-id": (f"OU=630102900307123,CN=张三,{REST}", "OU", "national-id"),
    "full-width-national-id": (
        f"CN=张三６３０１０２１９９００３０７１２３４,{REST}", "CN", "national-id",
    ),
    "hyphenated-national-id": (f"CN=630102-19900307-1234,{REST}", "CN", "national-id"),
    "control-character": (f"CN=张\x07三,{REST}", "CN", "control-character"),
    "escaped-nul": (f"CN=张\\00三,{REST}", "CN", "control-character"),
    "bidi-override": (f"CN=张\u202e三,{REST}", "CN", "control-character"),
    "lone-surrogate": (f"CN=张\ud800,{REST}", "CN", "control-character"),
    "unknown-attribute": (f"DC=gov,CN=张三,{REST}", "DC", "unknown-attribute"),
    "multi-valued-rdn": (f"CN=张三+OU=办公室,{REST}", "CN", "multi-valued-rdn"),
    "serial-number-not-allowed": (f"serialNumber=A1,CN=张三,{REST}", "serialNumber", "not-allowed"),
    "email-not-allowed": (f"E=a@b.cn,CN=张三,{REST}", "emailAddress", "not-allowed"),
    "duplicate-attribute": (f"OU=一处,OU=二处,CN=张三,{REST}", "OU", "duplicate"),
    "leading-space": (f"CN=\\ 张三,{REST}", "CN", "surrounding-space"),
    "trailing-ideographic-space": (f"CN=张三\u3000,{REST}", "CN", "surrounding-space"),
    "empty-value": (f"CN=,{REST}", "CN", "empty"),
    "bad-utf8-escape": (f"CN=\\FF,{REST}", "CN", "syntax"),
    "hex-ber-value": (f"CN=#0c03616263,{REST}", "CN", "syntax"),
    "unescaped-quote": (f'CN=a"b,{REST}', "CN", "syntax"),
    "semicolon-separator": ("CN=张三;O=青海省人民政府办公厅", "CN", "syntax"),
    "lone-backslash": ("CN=张三\\", "CN", "syntax"),
    "invalid-escape": (f"CN=a\\qb,{REST}", "CN", "syntax"),
    "lower-case-country": ("CN=张三,O=青海省人民政府办公厅,ST=青海省,C=cn", "C", "country"),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_violation_names_the_attribute(case: str) -> None:
    dn, attribute, rule = VIOLATIONS[case]
    with pytest.raises(SubjectRuleViolation) as info:
        parse_subject(dn, OFFICIAL)
    assert info.value.attribute == attribute
    assert info.value.rule == rule
    assert info.value.message.startswith(f"{attribute}: ")
    assert info.value.kind == "subject-rule-violation" and info.value.http_status == 400
    assert info.value.problem()["attribute"] == attribute


@pytest.mark.parametrize(
    "dn", ["", "   ", "张三", "CN", ",CN=张三", "=张三", "CN=张三,", "CN=a,,O=b"]
)
def test_syntax_errors(dn: str) -> None:
    with pytest.raises(SubjectRuleViolation) as info:
        parse_subject(dn, OFFICIAL)
    assert info.value.rule == "syntax"


def test_id_number_is_not_repeated_in_the_message() -> None:
    with pytest.raises(SubjectRuleViolation) as info:
        parse_subject(f"CN=张三630102199003071234,{REST}", OFFICIAL)
    assert "630102" not in info.value.message


def test_limits_follow_rfc5280_appendix_a() -> None:
    ok = f"CN={'张' * 64},OU={'处' * 64},O={'厅' * 64},L={'市' * 128},ST={'省' * 128},C=CN"
    assert len(parse_subject(ok, OFFICIAL)) == 6
    for attribute, limit in (("OU", 64), ("O", 64), ("L", 128), ("ST", 128)):
        pairs = dict(parse_subject(ok, OFFICIAL))
        pairs[attribute] = "字" * (limit + 1)
        with pytest.raises(SubjectRuleViolation) as info:
            check_subject(pairs, OFFICIAL)
        assert info.value.attribute == attribute and f"limit is {limit}" in info.value.message


def test_check_subject_takes_fields() -> None:
    fields = {"CN": "张三", "O": "青海省人民政府办公厅", "ST": "青海省", "C": "CN"}
    assert [a for a, _ in check_subject(fields, OFFICIAL)] == ["C", "ST", "O", "CN"]


def test_a_profile_may_allow_serial_number_and_email() -> None:
    rules = SubjectRules(required=("CN", "C"), optional=("serialNumber", "emailAddress"))
    assert rules.required == ("C", "CN")
    assert rules.encoding("C") == "printableString" and rules.encoding("CN") == "utf8String"
    assert rules.encoding("emailAddress") == "ia5String"
    got = parse_subject("emailAddress=zhangsan@gov.qh,serialNumber=EMP-0042,CN=张三,C=CN", rules)
    assert got == [
        ("C", "CN"), ("CN", "张三"), ("serialNumber", "EMP-0042"),
        ("emailAddress", "zhangsan@gov.qh"),
    ]
    with pytest.raises(SubjectRuleViolation, match="PrintableString"):
        parse_subject("serialNumber=工号1,CN=张三,C=CN", rules)
    with pytest.raises(SubjectRuleViolation, match="e-mail"):
        parse_subject("emailAddress=张三@gov.qh,CN=张三,C=CN", rules)


def test_rules_refuse_unknown_attributes() -> None:
    with pytest.raises(ValueError, match="DC"):
        SubjectRules(required=("DC",))


# --- national identity numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("630102199003071234", True),
        ("11010519491231002X", True),
        ("11010519491231002x", True),
        ("身份证号：110105194912310021。", True),
        ("630102900307123", True),  # legacy 15 digits
        ("６３０１０２１９９００３０７１２３４", True),  # full-width, as IMEs type them
        ("630102 19900307 1234", True),
        ("63010219900307", False),  # 14 digits
        ("电话 0971-8123456", False),
        ("青海省人民政府办公厅", False),
        ("", False),
    ],
)
def test_contains_national_id(text: str, found: bool) -> None:
    assert contains_national_id(text) is found


def test_checksum_mode_only_counts_valid_numbers() -> None:
    assert contains_national_id("11010519491231002X", require_checksum=True)  # GB 11643 example
    assert not contains_national_id("110105194912310021", require_checksum=True)
    assert not contains_national_id("630102199003071234", require_checksum=True)
    assert contains_national_id("a630102900307123b", require_checksum=True)
    assert not contains_national_id("123456789012345678", require_checksum=True)


# --- subject alternative names ---------------------------------------------------------------


def test_server_san_required_and_normalised() -> None:
    rules = get_profile("server-tls").san_rules
    assert check_subject_alt_names(
        [("dns", "RA.Gov.QH"), ("ip", "10.001.2.3".replace(".001", ".1")), ("ip", "fd00::0:1")],
        rules,
    ) == [("dns", "ra.gov.qh"), ("ip", "10.1.2.3"), ("ip", "fd00::1")]
    with pytest.raises(SubjectRuleViolation, match="required") as info:
        check_subject_alt_names([], rules)
    assert info.value.attribute == "subjectAltName"


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        (("dns", "*.gov.qh"), "dns-name"),
        (("dns", "政府.cn"), "dns-name"),
        (("dns", "bad_name.gov.qh"), "dns-name"),
        (("dns", "-x.gov.qh"), "dns-name"),
        (("ip", "10.1.2"), "ip-address"),
        (("ip", "fe80::1%eth0"), "ip-address"),
        (("email", "a@b.cn"), "not-allowed"),
        (("uri", "https://x"), "not-allowed"),
        (("dns", "630102199003071234.gov.qh"), "national-id"),
    ],
)
def test_bad_san_entries(entry: tuple[str, str], rule: str) -> None:
    with pytest.raises(SubjectRuleViolation) as info:
        check_subject_alt_names([entry], get_profile("server-tls").san_rules)
    assert info.value.rule == rule


def test_san_refused_where_the_profile_has_none() -> None:
    assert check_subject_alt_names([], None) == []
    with pytest.raises(SubjectRuleViolation, match="no subject alternative name"):
        check_subject_alt_names([("dns", "a.gov.qh")], get_profile("official-signing").san_rules)
    rules = SubjectAltNameRules(required=False, types=("email",))
    assert check_subject_alt_names([("email", "zhangsan@gov.qh")], rules) == [
        ("email", "zhangsan@gov.qh")
    ]


# --- property tests --------------------------------------------------------------------------

_dn_alphabet = st.sampled_from(
    [*"CNOUSTLcn=,+;\\\"#<> 0123456789abcdefABCDEFXx张三省", "\x00", "\x07", "\u202e", "\ud800"]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet=_dn_alphabet, max_size=60))
def test_parse_subject_raises_only_subject_rule_violation(text: str) -> None:
    for rules in (OFFICIAL, SERVER):
        try:
            pairs = parse_subject(text, rules)
        except SubjectRuleViolation as exc:
            assert exc.message and exc.rule
        else:
            assert [a for a, _ in pairs] == [a for a in ATTRIBUTE_ORDER if a in dict(pairs)]


def _acceptable(value: str) -> bool:
    return value == value.strip() and not contains_national_id(value)


_values = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"), max_codepoint=0x2FFFF
    ) | st.sampled_from(list(',+"\\;<>=# 张三')),
    min_size=1, max_size=64,
).filter(_acceptable)


@settings(max_examples=200, deadline=None)
@given(cn=_values, ou=_values, org=_values)
def test_escaped_values_round_trip(cn: str, ou: str, org: str) -> None:
    pairs = [("C", "CN"), ("ST", "青海省"), ("O", org), ("OU", ou), ("CN", cn)]
    assert parse_subject(format_subject(pairs), OFFICIAL) == pairs


@settings(max_examples=100, deadline=None)
@given(cn=_values)
def test_hex_escaped_utf8_round_trips(cn: str) -> None:
    hexed = "".join(f"\\{byte:02X}" for byte in cn.encode("utf-8"))
    assert parse_subject(f"CN={hexed},{REST}", OFFICIAL)[-1] == ("CN", cn)


def test_escape_value_examples() -> None:
    assert escape_value("#a b ") == "\\#a b\\ "
    assert escape_value('a,b+c"d\\e;f<g>h') == 'a\\,b\\+c\\"d\\\\e\\;f\\<g\\>h'
    assert format_subject(EXPECTED) == ZHANG_SAN

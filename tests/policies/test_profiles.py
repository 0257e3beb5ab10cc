"""Profiles: every shipped file loads, and every kind of broken file is refused by field path."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from policies import oids
from policies.errors import KeyTypeNotAllowed, ProfileInvalid, ProfileNotFound
from policies.profiles import (
    KEY_TYPE_FAMILIES,
    PROFILES_DIR,
    CrlPolicy,
    Profile,
    get_profile,
    load_profile,
    load_profiles,
    profile_from_mapping,
    profile_from_yaml,
)

SHIPPED = sorted(PROFILES_DIR.glob("*.yaml"))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"

END_ENTITY_POLICY = {
    "official-signing": oids.POLICY_OFFICIAL_SIGNING,
    "official-encryption": oids.POLICY_OFFICIAL_ENCRYPTION,
    "org-encryption": oids.POLICY_ORG_ENCRYPTION,
    "department-seal": oids.POLICY_DEPARTMENT_SEAL,
    "server-tls": oids.POLICY_SERVER,
    "ocsp-signer": oids.POLICY_OCSP,
    "tsa": oids.POLICY_TSA,
    "sso-signing": oids.POLICY_SSO,
}
CA_PROFILES = ("root-ca", "issuing-ca-officials", "issuing-ca-devices")


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((PROFILES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))


# --- shipped profiles ------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.description.en and profile.description.zh
    for key_type in profile.key_types:
        assert profile.allows_key_type(key_type)
        assert profile.key_usage_for(KEY_TYPE_FAMILIES[key_type]).critical


def test_the_profile_set() -> None:
    names = set(load_profiles())
    assert set(END_ENTITY_POLICY) | set(CA_PROFILES) <= names
    assert names == {p.stem for p in SHIPPED}


def test_ca_profiles_give_crl_validity() -> None:
    """The CA profiles say how long their CRLs last; end-entity profiles publish none."""
    assert get_profile("root-ca").crl == CrlPolicy(168, 24)
    for name in CA_PROFILES[1:]:
        assert get_profile(name).crl == CrlPolicy(24, 4)
    assert all(get_profile(p.stem).crl is None for p in SHIPPED if p.stem not in CA_PROFILES)


def test_crl_section_is_optional_on_ca_profiles(tmp_path: Path) -> None:
    path = tmp_path / "issuing-ca-officials.yaml"
    data = _changed("issuing-ca-officials", {"crl": DELETE})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert load_profile(path).crl is None


def test_key_type_strings_match_the_hsm_registry() -> None:
    """policies may not import hsm, so it repeats the strings; they must not drift apart."""
    from hsm.algorithms import REGISTRY, KeyType

    assert {k.value: REGISTRY[k].family for k in KeyType} == dict(KEY_TYPE_FAMILIES)


def test_policy_arc_arcs_fit_32_bits() -> None:
    """Decoders (pkilint, several relying-party stacks) refuse arcs of 2^32 and above."""
    for oid in (oids.GOVPKI_ARC, *(p for prof in load_profiles().values()
                                   for p in prof.certificate_policies)):
        assert all(int(arc) < 2**32 for arc in oid.split(".")), oid
    for number, oid in enumerate(oids.GOVPKI_POLICIES, start=1):
        assert oid == f"{oids.GOVPKI_ARC}.1.{number}"


@pytest.mark.parametrize("name", sorted(END_ENTITY_POLICY))
def test_end_entity_profiles_name_their_allocated_policy(name: str) -> None:
    assert get_profile(name).certificate_policies == (END_ENTITY_POLICY[name],)


def test_docs_carry_the_arc_every_policy_and_every_profile() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert oids.GOVPKI_ARC in text
    for oid in oids.GOVPKI_POLICIES:
        assert f"`.1.{oid.rsplit('.', 1)[1]}`" in text
    for path in SHIPPED:
        assert f"`{path.stem}`" in text


def test_ca_profiles() -> None:
    root = get_profile("root-ca")
    assert root.is_ca and root.path_length == 1
    assert not (root.crl_distribution_point or root.aia_ocsp or root.aia_ca_issuers)
    for name in CA_PROFILES:
        profile = get_profile(name)
        assert profile.is_ca
        for policy in profile.key_usage.values():
            assert {"keyCertSign", "cRLSign"} <= set(policy.usages) and policy.critical
    for name in CA_PROFILES[1:]:
        assert get_profile(name).path_length == 0
        assert oids.POLICY_CA in get_profile(name).certificate_policies


def test_no_shipped_ec_key_usage_encrypts() -> None:
    """pkilint refuses keyEncipherment/dataEncipherment on an EC key (RFC 8813)."""
    for profile in load_profiles().values():
        if "ec" in profile.key_usage:
            usages = set(profile.key_usage_for("ec").usages)
            assert not usages & {"keyEncipherment", "dataEncipherment"}, profile.name


def test_server_tls_key_usage_follows_the_key_type() -> None:
    profile = get_profile("server-tls")
    assert profile.key_usage_for("ec").usages == ("digitalSignature",)
    assert profile.key_usage_for("rsa").usages == ("digitalSignature", "keyEncipherment")
    assert profile.extended_key_usage is not None
    assert profile.extended_key_usage.oids == (oids.EKU_OIDS["serverAuth"],)
    assert profile.san_rules is not None and profile.san_rules.required
    assert "CN" in profile.subject_rules.optional


def test_encryption_profiles_are_rsa_only() -> None:
    for name in ("official-encryption", "org-encryption"):
        profile = get_profile(name)
        assert set(profile.key_usage) == {"rsa"}
        assert "keyEncipherment" in profile.key_usage_for("rsa").usages
        assert not profile.allows_key_type("ec-p256")
        with pytest.raises(KeyTypeNotAllowed, match="ec"):
            profile.key_usage_for("ec")


def test_signing_profiles() -> None:
    signing = get_profile("official-signing")
    assert signing.extended_key_usage is not None
    assert "clientAuth" in signing.extended_key_usage.usages
    for name in ("official-signing", "department-seal"):
        for policy in get_profile(name).key_usage.values():
            assert policy.usages == ("digitalSignature", "nonRepudiation")
    seal = get_profile("department-seal").extended_key_usage
    assert seal is not None and "1.3.6.1.5.5.7.3.36" in seal.oids


def test_tsa_and_ocsp_signer() -> None:
    tsa = get_profile("tsa").extended_key_usage
    assert tsa is not None and tsa.critical and tsa.usages == ("timeStamping",)
    ocsp = get_profile("ocsp-signer")
    assert ocsp.ocsp_nocheck and not ocsp.aia_ocsp
    assert ocsp.extended_key_usage is not None
    assert ocsp.extended_key_usage.usages == ("OCSPSigning",)


def test_key_usage_flags_build_a_pyca_key_usage() -> None:
    policy = get_profile("server-tls").key_usage_for("rsa")
    usage = x509.KeyUsage(**policy.x509_flags())
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileNotFound) as info:
        get_profile("official-sign")
    assert "official-sign" in info.value.message
    assert "official-signing" in info.value.message and "server-tls" in info.value.message
    assert info.value.kind == "profile-not-found" and info.value.http_status == 404


def test_profiles_are_frozen_and_hashable() -> None:
    profile = get_profile("tsa")
    with pytest.raises(AttributeError):
        profile.validity_days = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile.key_usage["rsa"] = profile.key_usage["ec"]  # type: ignore[index]
    assert hash(profile) == hash(get_profile("tsa"))


# --- invalid files ---------------------------------------------------------------------------

DELETE = object()


def _changed(base: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The shipped profile ``base`` with dotted-path fields replaced (or deleted)."""
    data = copy.deepcopy(_raw(base))
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return data


SIG = "official-signing"
INVALID = {
    "ec-key-encipherment": (
        SIG, {"key_usage.ec": ["digitalSignature", "keyEncipherment"]},
        "official-signing.yaml: key_usage.ec[1]: 'keyEncipherment' is not allowed on EC keys",
    ),
    "rsa-key-agreement": (
        SIG, {"key_usage.rsa": ["digitalSignature", "keyAgreement"]},
        "key_usage.rsa[1]: 'keyAgreement' is not allowed on RSA keys",
    ),
    "negative-validity": (
        SIG, {"validity_days": -5},
        "official-signing.yaml: validity_days: must be a positive integer, got -5",
    ),
    "boolean-validity": (SIG, {"validity_days": True}, "validity_days: must be a positive integer"),
    "misspelt-field": (
        SIG, {"extended_key_usages": {"usages": ["clientAuth"]}},
        "official-signing.yaml: unknown field 'extended_key_usages' "
        "(did you mean 'extended_key_usage'?)",
    ),
    "misspelt-nested-field": (
        SIG, {"key_usage.crtical": True},
        "key_usage: unknown field 'crtical' (did you mean 'critical'?)",
    ),
    "missing-required-field": (
        SIG, {"crl_distribution_point": DELETE},
        "official-signing.yaml: crl_distribution_point: required field is missing",
    ),
    "missing-chinese-description": (
        SIG, {"description.zh": DELETE}, "description.zh: required field is missing",
    ),
    "unknown-key-type": (
        SIG, {"key_types": ["ec-p256", "rsa-1024"]}, "key_types[1]: unknown key type 'rsa-1024'",
    ),
    "key-type-twice": (
        SIG, {"key_types": ["ec-p256", "ec-p256"]}, "key_types[1]: 'ec-p256' is listed twice",
    ),
    "key-types-not-a-list": (
        SIG, {"key_types": "ec-p256"}, "key_types: must be a list, got 'ec-p256'",
    ),
    "unknown-key-usage": (
        SIG, {"key_usage.rsa": ["digitalSig"]},
        "key_usage.rsa[0]: unknown key usage 'digitalSig' (did you mean 'digitalSignature'?)",
    ),
    "key-cert-sign-without-ca": (
        SIG, {"key_usage.rsa": ["digitalSignature", "nonRepudiation", "keyCertSign"]},
        "key_usage.rsa[2]: 'keyCertSign' is only for CA profiles",
    ),
    "encipher-only-without-key-agreement": (
        SIG, {"key_usage.ec": ["digitalSignature", "encipherOnly"]},
        "key_usage.ec: 'encipherOnly' means nothing without 'keyAgreement'",
    ),
    "family-entry-missing": (
        SIG, {"key_usage.ec": DELETE},
        "key_usage.ec: required for the allowed key types ec-p256, ec-p384",
    ),
    "family-entry-without-key-types": (
        SIG, {"key_types": ["rsa-2048"]},
        "key_usage.ec: key_types allows no EC key, so this entry must go",
    ),
    "unknown-eku": (
        SIG, {"extended_key_usage.usages": ["clientAuthentication"]},
        "extended_key_usage.usages[0]: unknown purpose 'clientAuthentication' "
        "(did you mean 'clientAuth'?)",
    ),
    "eku-inconsistent-with-key-usage": (
        "official-encryption", {"extended_key_usage.usages": ["serverAuth", "clientAuth"]},
        "extended_key_usage.usages[1]: 'clientAuth' needs one of digitalSignature, keyAgreement "
        "in key_usage.rsa",
    ),
    "eku-twice-as-name-and-oid": (
        SIG, {"extended_key_usage.usages": ["clientAuth", "1.3.6.1.5.5.7.3.2"]},
        "extended_key_usage.usages[1]: '1.3.6.1.5.5.7.3.2' is listed twice",
    ),
    "policy-oid-leading-zero": (
        SIG, {"certificate_policies": ["2.25.01"]},
        "certificate_policies[0]: '2.25.01' is not a dotted-decimal OID",
    ),
    "policy-oid-bad-first-arc": (
        SIG, {"certificate_policies": ["3.1.2"]},
        "certificate_policies[0]: '3.1.2' is not a valid OID: the first arc is 0, 1 or 2",
    ),
    "policy-oid-read-as-number": (
        SIG, {"certificate_policies": [1.5]},
        "certificate_policies[0]: must be a non-empty string, got 1.5 (quote the OID",
    ),
    "any-policy-in-end-entity": (
        SIG, {"certificate_policies": [oids.POLICY_OFFICIAL_SIGNING, oids.ANY_POLICY]},
        "certificate_policies[1]: anyPolicy belongs in CA certificates only",
    ),
    "is-ca-not-boolean": (SIG, {"is_ca": "maybe"}, "is_ca: must be true or false, got 'maybe'"),
    "path-length-on-end-entity": (
        SIG, {"path_length": 0}, "path_length: only CA profiles have a path length",
    ),
    "ca-without-path-length": (
        "issuing-ca-officials", {"path_length": DELETE},
        "path_length: CA profiles must give path_length (null for no limit)",
    ),
    "negative-path-length": (
        "issuing-ca-officials", {"path_length": -1},
        "path_length: must be a non-negative integer or null, got -1",
    ),
    "ca-without-crl-sign": (
        "issuing-ca-officials", {"key_usage.ec": ["digitalSignature", "keyCertSign"]},
        "issuing-ca-officials.yaml: key_usage.ec: CA profiles must include 'cRLSign'",
    ),
    "ca-key-usage-not-critical": (
        "root-ca", {"key_usage.critical": False},
        "key_usage.critical: must be true for CA profiles (RFC 5280 §4.2.1.3)",
    ),
    "tsa-eku-not-critical": (
        "tsa", {"extended_key_usage.critical": False},
        "tsa.yaml: extended_key_usage.critical: must be true with timeStamping (RFC 3161 §2.3)",
    ),
    "tsa-eku-not-alone": (
        "tsa", {"extended_key_usage.usages": ["timeStamping", "clientAuth"]},
        "extended_key_usage.usages: a TSA certificate has timeStamping as its only purpose",
    ),
    "ocsp-nocheck-with-aia-ocsp": (
        "ocsp-signer", {"aia_ocsp": True}, "aia_ocsp: must be false with ocsp_nocheck",
    ),
    "ocsp-nocheck-without-ocsp-signing": (
        SIG, {"ocsp_nocheck": True, "aia_ocsp": False},
        "ocsp_nocheck: only an OCSP signer (extended_key_usage OCSPSigning)",
    ),
    "unknown-subject-attribute": (
        SIG, {"subject.optional": ["L", "DC"]},
        "subject.optional[1]: unknown subject attribute 'DC'",
    ),
    "subject-attribute-required-and-optional": (
        SIG, {"subject.optional": ["CN"]},
        "subject.optional[0]: 'CN' is already in subject.required",
    ),
    "subject-not-a-mapping": (
        SIG, {"subject": ["C", "CN"]}, "subject: must be a mapping, got a list",
    ),
    "unknown-san-type": (
        "server-tls", {"subject_alt_name.types": ["dns", "url"]},
        "subject_alt_name.types[1]: unknown name type 'url'",
    ),
    "crl-on-end-entity": (
        SIG, {"crl": {"next_update_hours": 24, "delta_next_update_hours": 4}},
        "crl: only CA profiles publish CRLs",
    ),
    "crl-not-a-mapping": (
        "issuing-ca-officials", {"crl": 24}, "crl: must be a mapping, got 24",
    ),
    "crl-unknown-field": (
        "issuing-ca-officials", {"crl.next_update_days": 1},
        "crl: unknown field 'next_update_days' (did you mean 'next_update_hours'?)",
    ),
    "crl-missing-delta": (
        "issuing-ca-officials", {"crl.delta_next_update_hours": DELETE},
        "crl.delta_next_update_hours: required field is missing",
    ),
    "crl-zero-hours": (
        "issuing-ca-officials", {"crl.next_update_hours": 0},
        "crl.next_update_hours: must be a positive integer (hours), got 0",
    ),
    "crl-hours-as-text": (
        "root-ca", {"crl.delta_next_update_hours": "4h"},
        "crl.delta_next_update_hours: must be a positive integer (hours), got '4h'",
    ),
    "crl-hours-bool": (
        "root-ca", {"crl.next_update_hours": True},
        "crl.next_update_hours: must be a positive integer (hours), got true",
    ),
    "crl-too-long": (
        "root-ca", {"crl.next_update_hours": 9000},
        "crl.next_update_hours: must be at most 8784 (366 days), got 9000",
    ),
    "crl-delta-longer-than-full": (
        "issuing-ca-devices", {"crl.delta_next_update_hours": 48},
        "crl.delta_next_update_hours: must not exceed next_update_hours (24)",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_profile_file_names_the_field(case: str, tmp_path: Path) -> None:
    base, changes, expected = INVALID[case]
    path = tmp_path / f"{base}.yaml"
    path.write_text(yaml.safe_dump(_changed(base, changes), allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProfileInvalid) as info:
        load_profile(path)
    assert expected in info.value.message
    assert info.value.kind == "profile-invalid"
    assert "\n" not in info.value.message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = _changed(SIG, {
        "validity_days": -5,
        "key_usage.ec": ["digitalSignature", "keyEncipherment"],
        "extended_key_usages": [],
    })
    path = tmp_path / "official-signing.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProfileInvalid) as info:
        load_profile(path)
    assert {p.path for p in info.value.problems} == {"", "validity_days", "key_usage.ec[1]"}
    assert info.value.problem()["source"] == "official-signing.yaml"


RAW_INVALID = {
    "duplicate-key": (
        "validity_days: 1\nvalidity_days: 2\n", "duplicate key 'validity_days' (line 2)"
    ),
    "duplicate-nested-key": (
        "key_usage:\n  rsa: [digitalSignature]\n  rsa: [keyEncipherment]\n",
        "key_usage: duplicate key 'rsa' (line 3)",
    ),
    "syntax-error": ("key_types: [ec-p256\n", "not valid YAML: line"),
    "impossible-date": ("validity_days: 2024-13-45\n", "not valid YAML"),
    "python-tag": ("validity_days: !!python/object:os.system {}\n", "not valid YAML"),
    "top-level-list": ("- a\n- b\n", "the profile must be a mapping of fields, got a list"),
    "empty-file": ("", "the profile must be a mapping of fields, got null"),
}


@pytest.mark.parametrize("case", sorted(RAW_INVALID))
def test_invalid_yaml_text(case: str, tmp_path: Path) -> None:
    text, expected = RAW_INVALID[case]
    path = tmp_path / "tsa.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileInvalid) as info:
        load_profile(path)
    assert info.value.message.startswith("tsa.yaml: ")
    assert expected in info.value.message


def test_file_name_is_the_profile_name(tmp_path: Path) -> None:
    path = tmp_path / "Official_Signing.yaml"
    path.write_text((PROFILES_DIR / "official-signing.yaml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    with pytest.raises(ProfileInvalid, match="profile name 'Official_Signing' must be"):
        load_profile(path)


def test_directory_loading(tmp_path: Path) -> None:
    (tmp_path / "tsa.yaml").write_text((PROFILES_DIR / "tsa.yaml").read_text(encoding="utf-8"),
                                       encoding="utf-8")
    (tmp_path / "README.md").write_text("not a profile", encoding="utf-8")
    assert set(load_profiles(tmp_path)) == {"tsa"}
    assert get_profile("tsa", tmp_path).name == "tsa"
    with pytest.raises(ProfileNotFound, match=r"known: tsa\)"):
        get_profile("server-tls", tmp_path)
    (tmp_path / "server-tls.yml").write_text("{}", encoding="utf-8")
    with pytest.raises(ProfileInvalid, match=r"server-tls.yml: profile files end in \.yaml"):
        load_profiles(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles(tmp_path / "missing")
    with pytest.raises(ProfileNotFound):
        load_profile(tmp_path / "absent.yaml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tsa.yaml"
    path.write_bytes("description: 时间戳".encode("gb18030"))
    with pytest.raises(ProfileInvalid, match=r"tsa\.yaml: not UTF-8"):
        load_profile(path)


# --- property tests --------------------------------------------------------------------------

_FIELDS = [
    "description", "key_types", "validity_days", "is_ca", "path_length", "key_usage",
    "extended_key_usage", "ocsp_nocheck", "certificate_policies", "crl_distribution_point",
    "aia_ocsp", "aia_ca_issuers", "subject", "subject_alt_name", "rsa", "ec", "critical",
    "usages", "required", "optional", "types", "en", "zh",
]
_WORDS = [
    *KEY_TYPE_FAMILIES, "digitalSignature", "keyEncipherment", "keyCertSign", "cRLSign",
    "keyAgreement", "encipherOnly", "timeStamping", "OCSPSigning", "serverAuth", "C", "CN", "O",
    "dns", "ip", oids.POLICY_TSA, oids.ANY_POLICY, "1.2", "",
]
_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True) | st.text(max_size=12) | st.sampled_from(_WORDS)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=12,
)


def _outcome(call: Any) -> Profile | None:
    try:
        return call()
    except ProfileInvalid as exc:
        assert exc.message and exc.problems
        return None


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), _values, max_size=10))
def test_loader_on_arbitrary_mappings_raises_only_profile_invalid(data: dict[Any, Any]) -> None:
    _outcome(lambda: profile_from_mapping(data, "fuzz"))


_FIELD_PATHS = [
    "description", "description.en", "key_types", "validity_days", "is_ca", "path_length",
    "key_usage", "key_usage.rsa", "key_usage.ec", "key_usage.critical", "extended_key_usage",
    "extended_key_usage.usages", "extended_key_usage.critical", "ocsp_nocheck",
    "certificate_policies", "crl_distribution_point", "aia_ocsp", "subject", "subject.required",
    "subject.optional", "subject_alt_name",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["official-signing", "tsa", "root-ca", "server-tls", "ocsp-signer"]),
    st.dictionaries(st.sampled_from(_FIELD_PATHS), _values | st.just(DELETE), max_size=3),
)
def test_loader_on_mutated_profiles_raises_only_profile_invalid(
    base: str, changes: dict[str, Any]
) -> None:
    try:
        data = _changed(base, changes)
    except (KeyError, TypeError):
        return  # a parent was replaced by a scalar earlier in this mutation
    profile = _outcome(lambda: profile_from_mapping(data, base))
    if profile is not None:
        assert profile.name == base and profile.key_types


@settings(max_examples=150, deadline=None)
@given(_values)
def test_loader_on_arbitrary_yaml_raises_only_profile_invalid(data: Any) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    _outcome(lambda: profile_from_yaml(text, "fuzz"))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc: -[]{}&*!|>'\"#%@,?\n\t 0123\\")), max_size=60))
def test_loader_on_arbitrary_text_raises_only_profile_invalid(text: str) -> None:
    _outcome(lambda: profile_from_yaml(text, "fuzz"))


def test_problem_paths_are_well_formed() -> None:
    """Paths are dotted names with [index] suffixes — what the RA and the docs quote."""
    with pytest.raises(ProfileInvalid) as info:
        profile_from_mapping(_changed(SIG, {"key_usage.ec": [1, "x"]}), SIG)
    for problem in info.value.problems:
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)*(\[\d+\])?|", problem.path)


def test_docs_table_lists_each_profiles_key_types() -> None:
    """docs/profiles.md's table says which key types each shipped profile allows: the same
    list, in the same order, as the YAML file (the rsa-2048 issuing CAs once went missing)."""
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    for path in SHIPPED:
        profile = load_profile(path)
        assert rows.get(profile.name) == ", ".join(str(k) for k in profile.key_types), \
            profile.name

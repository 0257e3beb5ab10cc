"""policies/authz.yaml and its loader: exact-field errors, like the profile loader's."""

from __future__ import annotations

import copy

import pytest
import yaml

from policies.authz import (
    AUTHZ_FILE,
    AuthzPolicyInvalid,
    authz_from_mapping,
    authz_from_yaml,
    get_authz_policy,
)

RAW = yaml.safe_load(AUTHZ_FILE.read_text(encoding="utf-8"))


def broken(edit) -> AuthzPolicyInvalid:
    data = copy.deepcopy(RAW)
    edit(data)
    with pytest.raises(AuthzPolicyInvalid) as info:
        authz_from_mapping(data)
    return info.value


def test_packaged_policy_loads() -> None:
    policy = get_authz_policy()
    assert {"ca-admin", "security-admin", "auditor", "ra-operator", "official"} <= set(
        policy.roles)
    assert policy.roles["ra-operator"].scope == "subtree"
    assert all(policy.actions[a].read for a in policy.roles["auditor"].actions)


def test_three_duties_cannot_be_combined() -> None:
    policy = get_authz_policy()
    for pair in ({"ca-admin", "auditor"}, {"ca-admin", "security-admin"},
                 {"security-admin", "auditor"}, {"auditor", "ra-operator"}):
        assert policy.conflicts(pair), pair
    assert not policy.conflicts({"ca-admin", "ra-operator"})


def test_two_person_rule_per_action() -> None:
    policy = get_authz_policy()
    assert policy.approvals_required("request.approve", request_kind="new-pair") == 1
    assert policy.approvals_required("request.approve", request_kind="revocation",
                                     certificates=1) == 1
    assert policy.approvals_required("request.approve", request_kind="revocation",
                                     certificates=2) == 2
    assert policy.approvals_required("operator.role.change") == 1
    assert policy.approvals_required("official.create") == 0


def test_unknown_field_is_named_with_a_hint() -> None:
    exc = broken(lambda d: d["roles"]["ra-operator"].update(scoep="all"))
    assert exc.problems[0].path == "roles.ra-operator"
    assert "unknown field 'scoep' (did you mean 'scope'?)" in exc.message


def test_read_only_role_with_a_write_action() -> None:
    exc = broken(lambda d: d["roles"]["auditor"]["actions"].append("official.edit"))
    assert "roles.auditor.actions[5]: 'official.edit' changes state but the role is " \
           "read_only" in exc.message


def test_unknown_action_role_and_kind() -> None:
    def edit(d):
        d["roles"]["ra-operator"]["actions"][0] = "org.veiw"
        d["separation_of_duties"][0]["roles"].append("root")
        d["two_person"][0]["request_kinds"] = ["revoke"]
        d["roles"]["ra-operator"]["scope"] = "everything"
    exc = broken(edit)
    paths = {p.path for p in exc.problems}
    assert {"roles.ra-operator.actions[0]", "separation_of_duties[0].roles[3]",
            "two_person[0].request_kinds[0]", "roles.ra-operator.scope"} <= paths
    assert "did you mean 'org.view'" in exc.message


def test_two_person_rule_shape() -> None:
    exc = broken(lambda d: d["two_person"].append({"action": "audit.read", "approvals": 0}))
    index = len(load_default_two_person())
    assert {p.path for p in exc.problems} == {f"two_person[{index}].action",
                                              f"two_person[{index}].approvals"}


def test_duplicate_keys_and_bad_yaml() -> None:
    text = AUTHZ_FILE.read_text(encoding="utf-8").replace(
        "    duty: audit\n", "    duty: audit\n    duty: system\n")
    with pytest.raises(AuthzPolicyInvalid, match="duplicate key 'duty'"):
        authz_from_yaml(text)
    with pytest.raises(AuthzPolicyInvalid, match="not valid YAML"):
        authz_from_yaml("roles: [")
    with pytest.raises(AuthzPolicyInvalid, match="must be a mapping"):
        authz_from_yaml("- 1")


def load_default_two_person() -> list[object]:
    import yaml

    return list(yaml.safe_load(AUTHZ_FILE.read_text(encoding="utf-8"))["two_person"])

"""policies/exchange.yaml: the packaged file loads; mistakes are reported with their paths."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.exchange.errors import ClassifiedRefused, ExchangePolicyInvalid, ValidationError
from apps.exchange.policy import POLICY_FILE, get_policy, policy_from_yaml


def test_the_packaged_policy() -> None:
    policy = get_policy()
    assert set(policy.urgencies) == {"特急", "加急", "平急"}
    assert [c.name for c in policy.classifications.values() if c.allowed] == ["非密"]
    sent = dt.datetime(2024, 5, 20, 8, 0, tzinfo=dt.UTC)
    assert policy.deadline("特急", sent) < policy.deadline("加急", sent) \
        < policy.deadline("平急", sent)
    with pytest.raises(ClassifiedRefused, match="绝密"):
        policy.check_classification("绝密")
    with pytest.raises(ValidationError, match="urgency must be one of"):
        policy.urgency("缓办")


def test_mistakes_are_reported_with_their_paths() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8")
    broken = (text.replace("hours: 4}", "hours: -4}")
              .replace("max_attachments: 20", "max_attachmnets: 20")
              .replace("max_number_chars: 64", "max_number_chars: 500")
              .replace("非密: {en: non-classified, allowed: true}",
                       "非密: {en: non-classified, allowed: yes please}"))
    with pytest.raises(ExchangePolicyInvalid) as caught:
        policy_from_yaml(broken)
    message = caught.value.message
    assert "urgencies.特急.hours: must be a positive integer" in message
    assert "did you mean 'max_attachments'" in message
    assert "limits.max_number_chars: must be at most 128" in message
    assert "classifications.非密.allowed: must be true or false" in message
    with pytest.raises(ExchangePolicyInvalid, match="duplicate key"):
        policy_from_yaml(text + "\nca: devices\n")
    with pytest.raises(ExchangePolicyInvalid, match="not valid YAML"):
        policy_from_yaml("ca: [")

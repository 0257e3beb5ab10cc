"""The TSA's clock check: every source, the cache, and TsaConfig's validation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.errors import ConfigError
from signing import clock
from signing.clock import ClockCheck, check_ntp, clock_status, parse_chrony_tracking
from signing.config import TsaConfig

# `chronyc tracking` as chrony 4.3 prints it, synchronised to a local server.
CHRONY_SYNCED = """\
Reference ID    : 0A010203 (10.1.2.3)
Stratum         : 3
Ref time (UTC)  : Mon Mar 02 08:12:44 2026
System time     : 0.000021774 seconds slow of NTP time
Last offset     : -0.000005215 seconds
RMS offset      : 0.000034181 seconds
Frequency       : 7.563 ppm slow
Residual freq   : -0.000 ppm
Skew            : 0.021 ppm
Root delay      : 0.001034812 seconds
Root dispersion : 0.000401232 seconds
Update interval : 64.4 seconds
Leap status     : Normal
"""
# ... and right after start, before the first server answered.
CHRONY_UNSYNCED = """\
Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 0.000000000 seconds fast of NTP time
Last offset     : +0.000000000 seconds
Leap status     : Not synchronised
"""


def test_chrony_synchronised() -> None:
    ok, detail = parse_chrony_tracking(CHRONY_SYNCED, 100)
    assert ok, detail
    assert "0.022 ms slow" in detail and "0A010203" in detail


def test_chrony_not_synchronised() -> None:
    ok, detail = parse_chrony_tracking(CHRONY_UNSYNCED, 100)
    assert not ok and "Not synchronised" in detail


def test_chrony_offset_beyond_bound() -> None:
    text = CHRONY_SYNCED.replace("0.000021774 seconds slow", "0.250000000 seconds fast")
    ok, detail = parse_chrony_tracking(text, 100)
    assert not ok and "250.000 ms fast" in detail and "beyond 100 ms" in detail


@pytest.mark.parametrize("text", ["", "506 Cannot talk to daemon\n",
                                  "Leap status     : Normal\n",
                                  "Leap status : Normal\nSystem time : soon\n"])
def test_chrony_unparsable_output_is_not_synchronised(text: str) -> None:
    assert parse_chrony_tracking(text, 100)[0] is False


def test_chrony_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ok, detail = clock.check_chrony(100)
    assert not ok and "not found" in detail


def test_chrony_source_through_a_stand_in_chronyc(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "chronyc"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{CHRONY_SYNCED}EOF\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert ClockCheck(TsaConfig(clock_source="chrony")).status()["synchronised"] is True


def test_ntp_reads_the_kernel_state() -> None:
    """No time daemon runs here, so the answer is whatever the kernel says; it must say it."""
    ok, detail = check_ntp(100)
    assert isinstance(ok, bool)
    assert "offset" in detail
    if ok:
        assert detail.startswith("kernel clock synchronised")
    else:
        assert "not synchronised" in detail or "beyond" in detail


def test_command_sources() -> None:
    assert clock.check_command("true") == (True, "clock command exited 0")
    assert clock.check_command("false") == (False, "clock command exited 1")
    ok, detail = clock.check_command("/nonexistent/check-clock --strict")
    assert not ok and "not found" in detail


def test_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "COMMAND_TIMEOUT_S", 0.2)
    ok, detail = clock.check_command("sleep 5")
    assert not ok and "did not answer" in detail


def test_none_warns_once_per_check(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="signing.clock"):
        check = ClockCheck(TsaConfig(clock_source="none"))
        for _ in range(3):
            assert check.status() == {"source": "none", "synchronised": True,
                                      "detail": "clock check disabled (clock_source = none): "
                                                "time is not verified"}
    assert sum("clock check is disabled" in r.message for r in caplog.records) == 1


def test_result_is_reused_within_the_recheck_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake(command: str) -> tuple[bool, str]:
        calls.append(command)
        return True, "ok"

    monkeypatch.setattr(clock, "check_command", fake)
    cached = ClockCheck(TsaConfig(clock_source="command", clock_command="x",
                                  clock_recheck_ms=60_000))
    for _ in range(5):
        cached.state()
    assert len(calls) == 1
    every_time = ClockCheck(TsaConfig(clock_source="command", clock_command="x",
                                      clock_recheck_ms=0))
    for _ in range(5):
        every_time.state()
    assert len(calls) == 6


def test_a_crashing_check_means_not_synchronised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(max_offset_ms: int) -> tuple[bool, str]:
        raise OSError("boom")

    monkeypatch.setattr(clock, "check_ntp", broken)
    state = ClockCheck(TsaConfig(clock_source="ntp")).state()
    assert not state.synchronised and "OSError" in state.detail


def test_clock_status_function() -> None:
    assert clock_status(TsaConfig(clock_source="command", clock_command="true")) == {
        "source": "command", "synchronised": True, "detail": "clock command exited 0"}


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"clock_source": "gps"}, "tsa.clock_source"),
    ({"clock_source": "command"}, "tsa.clock_command"),
    ({"clock_source": "command", "clock_command": "'unterminated"}, "tsa.clock_command"),
    ({"max_offset_ms": 0}, "tsa.max_offset_ms"),
    ({"max_offset_ms": True}, "tsa.max_offset_ms"),
    ({"accuracy_seconds": 0}, "tsa.accuracy_seconds"),
    ({"accuracy_seconds": 1.5}, "tsa.accuracy_seconds"),
    ({"clock_recheck_ms": -1}, "tsa.clock_recheck_ms"),
    ({"max_offset_ms": 1500, "accuracy_seconds": 1}, "tsa.max_offset_ms"),
])
def test_config_refusals_name_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        TsaConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.details["key"] == key
    assert key in info.value.message

"""deploy/systemd: the unit files are valid for systemd (systemd-analyze verify, which also
checks that ExecStart's program exists and runs), and what the deployment test starts is what
they say. No systemd is running here; tests/deploy/harness.py runs their ExecStart with their
Environment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.deploy.harness import DEPLOY, GOVPKI, Unit, render

UNITS = ("govpki.service", "govpki-refresh.service", "govpki-refresh.timer")


def test_units_verify(tmp_path: Path) -> None:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze (package systemd)")
    for name in UNITS:
        (tmp_path / name).write_text(render(DEPLOY / "systemd" / name, {
            "/opt/govpki/venv/bin/govpki": GOVPKI} if name.endswith(".service") else {}))
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)],
                            capture_output=True, text=True, timeout=120, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["govpki.service", "govpki-refresh.service"])
def test_units_keep_secrets_out_of_the_command_line(name: str) -> None:
    unit = Unit.read(DEPLOY / "systemd" / name)
    assert unit.exec_start[0] == "/opt/govpki/venv/bin/govpki"
    assert unit.environment["GOVPKI_HOME"] == "/var/lib/govpki"
    assert unit.environment_files == ["/etc/govpki/secrets.env"]  # the PIN: 0600, root
    assert not any("PIN" in arg or "PASS" in arg for arg in unit.exec_start)
    if name == "govpki.service":
        # Jobs run from the timer, not inside the serving processes.
        assert unit.environment["GOVPKI_SCHEDULER"] == "off"
        assert unit.exec_reload == ["/bin/kill", "-HUP", "$MAINPID"]

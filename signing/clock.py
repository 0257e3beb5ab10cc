"""Is the system clock fit to stamp documents? Checked before every time-stamp.

The government network has no Internet time: the province runs its own NTP servers and each TSA
host follows them with chrony or another NTP daemon. A TSA whose host has lost them must not go
on signing times it can no longer vouch for, so the TSA asks this module first and answers
PKIFailureInfo timeNotAvailable (RFC 3161 §2.4.2) when the clock is not synchronised. The state
is also a health signal (:meth:`ClockCheck.status`) for the load balancer and the monitoring.

Sources (``TsaConfig.clock_source``):

- ``ntp``: the kernel's own view through ``adjtimex(2)`` (ctypes, no subprocess). Whatever
  daemon disciplines the clock (chrony, ntpd, systemd-timesyncd) clears STA_UNSYNC while it is
  in control; ``timedatectl``'s NTPSynchronized is read from the same flag.
- ``chrony``: ``chronyc -n tracking``; leap status Normal and the system-time offset within
  ``max_offset_ms``.
- ``command``: any command; exit status 0 means synchronised (site-specific checks, GPS
  receivers, a hardware clock card).
- ``none``: always synchronised, with a warning logged once per check object: only for the
  embedded demo and containers, which cannot tell.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from signing.config import TsaConfig

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0

# <sys/timex.h>
_STA_UNSYNC = 0x0040
_STA_NANO = 0x2000
_TIME_ERROR = 5


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex of Linux (208 bytes on LP64); modes=0 only reads."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class ClockState:
    """One check's outcome; ``detail`` says why, in words an operator can act on."""

    source: str
    synchronised: bool
    detail: str
    checked_at: float = field(default=0.0, compare=False)  # time.monotonic()

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "synchronised": self.synchronised, "detail": self.detail}


def check_ntp(max_offset_ms: int) -> tuple[bool, str]:
    """The kernel's synchronisation state via adjtimex(2) (read-only: modes = 0)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False, "adjtimex: C library not found"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    tx = _Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        return False, f"adjtimex failed (errno {ctypes.get_errno()})"
    offset_ms = tx.offset / (1e6 if tx.status & _STA_NANO else 1e3)
    facts = (f"offset {offset_ms:.3f} ms, estimated error {tx.esterror / 1000:.3f} ms, "
             f"maximum error {tx.maxerror / 1000:.3f} ms")
    if state == _TIME_ERROR or tx.status & _STA_UNSYNC:
        return False, f"kernel clock not synchronised (STA_UNSYNC; {facts})"
    if abs(offset_ms) > max_offset_ms:
        return False, f"kernel clock offset beyond {max_offset_ms} ms ({facts})"
    return True, f"kernel clock synchronised ({facts})"


_CHRONY_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$")
_CHRONY_SYSTEM_TIME = re.compile(r"^([0-9.]+) seconds (fast|slow) of NTP time$")


def parse_chrony_tracking(text: str, max_offset_ms: int) -> tuple[bool, str]:
    """Judge ``chronyc tracking`` output: leap status Normal and |system time| in bound.

    Pure, so it is tested on recorded outputs without a chrony daemon.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = _CHRONY_FIELD.match(line)
        if m:
            fields[m.group(1).lower()] = m.group(2)
    leap = fields.get("leap status")
    if leap is None:
        return False, "chronyc tracking: no 'Leap status' line"
    if leap != "Normal":
        return False, f"chrony leap status is {leap!r}, not 'Normal'"
    m = _CHRONY_SYSTEM_TIME.match(fields.get("system time", ""))
    if m is None:
        return False, "chronyc tracking: no parsable 'System time' line"
    offset_ms = float(m.group(1)) * 1000
    reference = fields.get("reference id", "?")
    if offset_ms > max_offset_ms:
        return False, (f"system clock {offset_ms:.3f} ms {m.group(2)} of NTP time, beyond "
                       f"{max_offset_ms} ms (reference {reference})")
    return True, (f"chrony synchronised, system clock {offset_ms:.3f} ms {m.group(2)} of NTP "
                  f"time (reference {reference})")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | str:
    """Run a check command; a string is the reason it could not run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        return f"{argv[0]!r} not found"
    except subprocess.TimeoutExpired:
        return f"{argv[0]!r} did not answer within {COMMAND_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"{argv[0]!r} could not run: {exc.strerror or exc}"


def check_chrony(max_offset_ms: int) -> tuple[bool, str]:
    result = _run(["chronyc", "-n", "tracking"])
    if isinstance(result, str):
        return False, f"chronyc tracking: {result}"
    if result.returncode != 0:
        return False, f"chronyc tracking exited {result.returncode}: {result.stderr.strip()[:200]}"
    return parse_chrony_tracking(result.stdout, max_offset_ms)


def check_command(command: str) -> tuple[bool, str]:
    result = _run(shlex.split(command))
    if isinstance(result, str):
        return False, f"clock command: {result}"
    if result.returncode != 0:
        return False, f"clock command exited {result.returncode}"
    return True, "clock command exited 0"


class ClockCheck:
    """The configured check, its result reused for ``clock_recheck_ms`` (thread-safe)."""

    def __init__(self, config: TsaConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._state: ClockState | None = None
        if config.clock_source == "none":
            log.warning("TSA clock check is disabled (tsa.clock_source = none): time-stamps "
                        "will be issued whether or not the system clock is synchronised; "
                        "configure chrony, ntp or command in production")

    def _measure(self) -> tuple[bool, str]:
        cfg = self.config
        if cfg.clock_source == "ntp":
            return check_ntp(cfg.max_offset_ms)
        if cfg.clock_source == "chrony":
            return check_chrony(cfg.max_offset_ms)
        if cfg.clock_source == "command":
            return check_command(cfg.clock_command)
        return True, "clock check disabled (clock_source = none): time is not verified"

    def state(self) -> ClockState:
        """The current state, measured anew once the cached one is older than the recheck."""
        with self._lock:
            now = time.monotonic()
            cached = self._state
            if cached is not None and now - cached.checked_at < self.config.clock_recheck_ms / 1000:
                return cached
            try:
                ok, detail = self._measure()
            except Exception as exc:  # a broken check means we cannot vouch for the time
                log.exception("TSA clock check failed")
                ok, detail = False, f"clock check failed: {type(exc).__name__}"
            if not ok and (cached is None or cached.synchronised):
                log.error("TSA clock not synchronised: %s", detail)
            elif ok and cached is not None and not cached.synchronised:
                log.warning("TSA clock synchronised again: %s", detail)
            self._state = ClockState(self.config.clock_source, ok, detail, now)
            return self._state

    def status(self) -> dict[str, Any]:
        """Health signal: ``{"source", "synchronised", "detail"}``."""
        return self.state().as_dict()


def clock_status(config: TsaConfig) -> dict[str, Any]:
    """One-off health check for callers without a running TSA (CLI, readiness probes)."""
    return ClockCheck(config).status()

"""TSA settings: a frozen dataclass validated when it is built, naming the offending key.

The composition root will fill it from a ``[tsa]`` section of govpki.toml; until then callers
pass it in. Every field has a default of the type the TOML loader expects (core/config.py
checks values against ``type(default)``), so the same class can be built from TOML unchanged.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from core.errors import ConfigError

CLOCK_SOURCES = ("chrony", "ntp", "command", "none")


def _int_field(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"configuration key 'tsa.{name}' must be int", key=f"tsa.{name}")
    if value < minimum:
        raise ConfigError(f"configuration key 'tsa.{name}' must be at least {minimum}",
                          key=f"tsa.{name}")


@dataclass(frozen=True)
class TsaConfig:
    """How the TSA decides it may tell the time, and what it promises about it.

    ``clock_source``: ``chrony`` (``chronyc tracking``: leap status Normal and offset within
    ``max_offset_ms``), ``ntp`` (the kernel's adjtimex state: synchronised and PLL offset within
    ``max_offset_ms``), ``command`` (``clock_command`` exits 0 when synchronised) or ``none``
    (always answers, with a warning: only for demos and machines without a time daemon).
    ``accuracy_seconds`` goes into every TSTInfo; it must cover ``max_offset_ms``.
    ``clock_recheck_ms``: how long one check result is reused, so a subprocess-based check does
    not run once per request (0 checks every request).
    """

    # Strict by default: a production TSA must know its clock is synchronised (the kernel's
    # NTP state). The embedded demo writes clock_source = "none" with a warning (govpki init).
    clock_source: str = "ntp"
    clock_command: str = ""
    max_offset_ms: int = 100
    accuracy_seconds: int = 1
    clock_recheck_ms: int = 1000

    def __post_init__(self) -> None:
        if self.clock_source not in CLOCK_SOURCES:
            raise ConfigError(
                f"configuration key 'tsa.clock_source' must be one of {', '.join(CLOCK_SOURCES)}"
                f" (got {self.clock_source!r})", key="tsa.clock_source")
        if not isinstance(self.clock_command, str):
            raise ConfigError("configuration key 'tsa.clock_command' must be str",
                              key="tsa.clock_command")
        if self.clock_source == "command":
            try:
                argv = shlex.split(self.clock_command)
            except ValueError as exc:
                raise ConfigError(f"configuration key 'tsa.clock_command' does not parse: {exc}",
                                  key="tsa.clock_command") from None
            if not argv:
                raise ConfigError("configuration key 'tsa.clock_command' is required when "
                                  "tsa.clock_source is 'command'", key="tsa.clock_command")
        _int_field("max_offset_ms", self.max_offset_ms, 1)
        _int_field("accuracy_seconds", self.accuracy_seconds, 1)
        _int_field("clock_recheck_ms", self.clock_recheck_ms, 0)
        if self.max_offset_ms > self.accuracy_seconds * 1000:
            raise ConfigError(
                "configuration key 'tsa.max_offset_ms' exceeds tsa.accuracy_seconds: the "
                "accuracy stated in each token would not hold", key="tsa.max_offset_ms")


def tsa_config_from(sections: Mapping[str, Mapping[str, Any]]) -> TsaConfig:
    """The [tsa] table of govpki.toml (core keeps it as data) as a validated TsaConfig."""
    data = dict(sections.get("tsa", {}))
    known = {f.name for f in fields(TsaConfig)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown configuration key 'tsa.{key}'", key=f"tsa.{key}")
    return TsaConfig(**data)

"""RA settings: the ``[ra]`` table of govpki.toml as a frozen dataclass, validated when built.

Defaults follow what operators of a mature RA expect (EJBCA/Keycloak): a 15-minute idle and
8-hour absolute web session, lockout after 5 failed logins for 15 minutes, secure cookies (a
deployment behind nginx terminates TLS; the embedded demo on plain http://127.0.0.1 still
works because browsers treat loopback as a secure context), 1 MiB request bodies, and
enrollment codes valid for 3 days.

``password_login`` says who may still log in with a password and TOTP once certificate login
through single sign-on exists: ``"bootstrap"`` (the default) only the bootstrap administrator,
the first account, created before any certificate could be issued (ra.operators marks it);
``"all"`` every operator (an installation without the SSO provider, or tests about something
else); ``"none"`` nobody (every login is a certificate login).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from core.errors import ConfigError

_MINIMA = {"session_idle_minutes": 1, "session_absolute_hours": 1, "lockout_threshold": 1,
           "lockout_minutes": 1, "max_body_bytes": 1024, "enrollment_code_hours": 1,
           "api_token_days": 1}
PASSWORD_LOGIN = ("bootstrap", "all", "none")


@dataclass(frozen=True)
class RaConfig:
    session_idle_minutes: int = 15
    session_absolute_hours: int = 8
    lockout_threshold: int = 5
    lockout_minutes: int = 15
    cookie_secure: bool = True
    max_body_bytes: int = 1_048_576
    enrollment_code_hours: int = 72
    api_token_days: int = 90
    password_login: str = "bootstrap"  # noqa: S105 (who may use passwords, not one)

    def session_timed_out(self, now: dt.datetime, created_at: dt.datetime,
                          last_seen: dt.datetime) -> bool:
        """Whether a web session started at ``created_at`` and last seen at ``last_seen`` has
        passed the idle or the absolute timeout (the RA's pages and the exchange's share them)."""
        return (now - last_seen > dt.timedelta(minutes=self.session_idle_minutes)
                or now - created_at > dt.timedelta(hours=self.session_absolute_hours))

    def __post_init__(self) -> None:
        for name, minimum in _MINIMA.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"configuration key 'ra.{name}' must be int", key=f"ra.{name}")
            if value < minimum:
                raise ConfigError(f"configuration key 'ra.{name}' must be at least {minimum}",
                                  key=f"ra.{name}")
        if not isinstance(self.cookie_secure, bool):
            raise ConfigError("configuration key 'ra.cookie_secure' must be bool",
                              key="ra.cookie_secure")
        if self.password_login not in PASSWORD_LOGIN:
            raise ConfigError(f"configuration key 'ra.password_login' must be one of "
                              f"{', '.join(repr(v) for v in PASSWORD_LOGIN)}",
                              key="ra.password_login")

    def password_allowed(self, *, bootstrap: bool) -> bool:
        """Whether an account (the bootstrap administrator or not) may use password login."""
        return {"all": True, "bootstrap": bootstrap, "none": False}[self.password_login]

    @property
    def certificate_first(self) -> bool:
        """Whether operators are sent to certificate login (passwords are not for everyone)."""
        return self.password_login != "all"  # noqa: S105 (a policy name)

    @property
    def any_password_login(self) -> bool:
        """Whether the password + TOTP form is offered at all."""
        return self.password_login != "none"  # noqa: S105 (a policy name)


def ra_config_from(sections: Mapping[str, Mapping[str, Any]]) -> RaConfig:
    """The [ra] table of govpki.toml (core keeps it as data) as a validated RaConfig."""
    data = dict(sections.get("ra", {}))
    known = {f.name for f in fields(RaConfig)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown configuration key 'ra.{key}'", key=f"ra.{key}")
    return RaConfig(**data)

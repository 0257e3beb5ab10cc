"""SSO settings: the ``[sso]`` table of govpki.toml as a frozen dataclass, validated when built.

Defaults: an 8-hour absolute and 30-minute idle provider session (a working day; the RA's own
pages keep their shorter idle timeout), authorization codes valid 2 minutes (RFC 6749 §4.1.2
recommends at most 10), access tokens 15 minutes, ID tokens 10 minutes, login challenges
2 minutes. ``issuer`` defaults to the public base URL, which is what the certificates name, so
the demo's provider is the demo's own address. ``trusted_proxies`` is empty by default: no
``Client-Cert`` header is believed until an operator names the proxy that sets it.

Back-channel logout tokens are posted with a short timeout (3 s: a logout page waits for the
first attempt) and, when a client is unreachable or answers 5xx, retried by the scheduler
after 30 s, doubling up to an hour apart, 8 attempts in all (the last about an hour after the
logout) before the failure is final and audited. Login challenges are rate limited per fixed
window of ``rate_window_seconds`` (5 minutes): new codes per browser (30) and per source
address (300: an office behind one NAT address shares it), and wrong codes or answers per
source address (20) and per browser (10) — an 8-character code has 32^8 ≈ 1.1·10^12 values,
so at 20 guesses per 5 minutes, hitting one of even a thousand waiting codes takes one
address about 500 years.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from core.errors import ConfigError

_MINIMA = {"session_idle_minutes": 1, "session_absolute_hours": 1, "code_seconds": 10,
           "access_token_seconds": 60, "id_token_seconds": 60, "challenge_seconds": 30,
           "backchannel_timeout_seconds": 1, "logout_token_seconds": 30,
           "backchannel_max_attempts": 1, "backchannel_retry_seconds": 1,
           "backchannel_retry_max_seconds": 1, "rate_window_seconds": 10,
           "challenges_per_browser": 1, "challenges_per_address": 1,
           "answer_failures_per_browser": 1, "answer_failures_per_address": 1}
_MAXIMA = {"code_seconds": 600, "challenge_seconds": 900, "backchannel_timeout_seconds": 30,
           "backchannel_max_attempts": 50, "rate_window_seconds": 86400}
KEY_TYPES = ("ec-p256",)


@dataclass(frozen=True)
class SsoConfig:
    issuer: str = ""
    session_idle_minutes: int = 30
    session_absolute_hours: int = 8
    code_seconds: int = 120
    access_token_seconds: int = 900
    id_token_seconds: int = 600
    challenge_seconds: int = 120
    logout_token_seconds: int = 120
    backchannel_timeout_seconds: int = 3
    #: Back-channel logout retries (apps/sso/backchannel.py): attempts in all, the delay
    #: before the second, doubling up to the maximum.
    backchannel_max_attempts: int = 8
    backchannel_retry_seconds: int = 30
    backchannel_retry_max_seconds: int = 3600
    #: Rate limits on login challenges (apps/sso/ratelimit.py), per fixed window.
    rate_window_seconds: int = 300
    challenges_per_browser: int = 30
    challenges_per_address: int = 300
    answer_failures_per_browser: int = 10
    answer_failures_per_address: int = 20
    cookie_secure: bool = True
    key_type: str = "ec-p256"
    #: Addresses (or CIDR networks) of the TLS-terminating proxies allowed to send Client-Cert.
    trusted_proxies: tuple[str, ...] = ()
    #: Names of the root CAs whose chains a login certificate must lead to (empty: every root
    #: CA of this installation).
    trust_roots: tuple[str, ...] = ()
    #: The RA web pages' client (apps/sso/ra_client.py): its registered client id.
    ra_client_id: str = "govpki-ra"
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, minimum in _MINIMA.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"configuration key 'sso.{name}' must be int",
                                  key=f"sso.{name}")
            if value < minimum or value > _MAXIMA.get(name, 10**9):
                raise ConfigError(f"configuration key 'sso.{name}' must be between {minimum} "
                                  f"and {_MAXIMA.get(name, 10**9)}", key=f"sso.{name}")
        if self.backchannel_retry_max_seconds < self.backchannel_retry_seconds:
            raise ConfigError("configuration key 'sso.backchannel_retry_max_seconds' must be "
                              "at least sso.backchannel_retry_seconds",
                              key="sso.backchannel_retry_max_seconds")
        if not isinstance(self.cookie_secure, bool):
            raise ConfigError("configuration key 'sso.cookie_secure' must be bool",
                              key="sso.cookie_secure")
        if self.key_type not in KEY_TYPES:
            raise ConfigError(f"configuration key 'sso.key_type' must be one of "
                              f"{', '.join(KEY_TYPES)} (ES256)", key="sso.key_type")
        if self.issuer and not self.issuer.startswith(("https://", "http://")):
            raise ConfigError("configuration key 'sso.issuer' must be an http(s) URL",
                              key="sso.issuer")
        networks = []
        for entry in self.trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except (TypeError, ValueError):
                raise ConfigError(f"configuration key 'sso.trusted_proxies' holds {entry!r}, "
                                  "which is not an IP address or network",
                                  key="sso.trusted_proxies") from None
        object.__setattr__(self, "networks", tuple(networks))

    def issuer_for(self, public_base_url: str) -> str:
        return (self.issuer or public_base_url).rstrip("/")

    def is_trusted_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def sso_config_from(sections: Mapping[str, Mapping[str, Any]]) -> SsoConfig:
    """The [sso] table of govpki.toml (core keeps it as data) as a validated SsoConfig."""
    data = dict(sections.get("sso", {}))
    known = {f.name for f in fields(SsoConfig) if f.init}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown configuration key 'sso.{key}'", key=f"sso.{key}")
    for key in ("trusted_proxies", "trust_roots"):
        if key in data:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"configuration key 'sso.{key}' must be a list of strings",
                                  key=f"sso.{key}")
            data[key] = tuple(value)
    for key in ("issuer", "key_type", "ra_client_id"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"configuration key 'sso.{key}' must be str", key=f"sso.{key}")
    return SsoConfig(**data)

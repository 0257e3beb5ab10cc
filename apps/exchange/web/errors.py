"""Errors of the exchange pages' login (the document errors are apps/exchange/errors.py)."""

from __future__ import annotations

from apps.exchange.errors import ExchangeError


class LoginFailed(ExchangeError):
    """The provider's answer cannot be accepted: a state that did not start here, a refused
    code, an ID token that fails its checks, an account unknown to the RA."""

    kind = "exchange-login"
    http_status = 403


class ProviderUnavailable(ExchangeError):
    """The single sign-on provider cannot be reached or answers nonsense (a deployment or
    network problem; the pages cannot log anyone in until it is back)."""

    kind = "exchange-provider-unavailable"
    http_status = 503


class BadLogoutToken(ExchangeError):
    """A back-channel logout token that fails Back-Channel Logout 1.0 §2.6's checks."""

    kind = "exchange-logout-token"
    http_status = 400

"""Response headers and the CSRF token comparison of every govpki page.

One function builds the Content-Security-Policy so the three UIs cannot drift apart: nothing
but our own origin (the network is air-gapped: no external assets), no inline script or style,
no <base>, no plugins, no framing (pages hold approve/revoke/sign buttons: clickjacking
matters). The only knob is ``form-action``: a page whose form ends in a redirect to the SSO
provider (logout) must allow that origin, as CSP checks redirects after a form submission.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from werkzeug.datastructures import Headers

SELF: Final = "'self'"


def content_security_policy(form_action: Iterable[str] = (SELF,)) -> str:
    """The CSP of a page; ``form_action`` lists the sources forms may submit (and redirect) to."""
    sources = " ".join(form_action) or SELF
    return ("default-src 'self'; base-uri 'none'; form-action " + sources + "; "
            "frame-ancestors 'none'; object-src 'none'")


def set_transport_headers(headers: Headers) -> None:
    """Headers every answer gets, stylesheets and JSON included: no MIME sniffing, no
    Referer (page URLs carry serial numbers and document ids)."""
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"


def set_page_headers(headers: Headers, *, form_action: Iterable[str] = (SELF,)) -> None:
    """The headers of an HTML page: the transport ones, the CSP, no framing (X-Frame-Options
    for browsers older than frame-ancestors) and a browsing context of its own (COOP)."""
    set_transport_headers(headers)
    headers["Content-Security-Policy"] = content_security_policy(form_action)
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"


def tokens_match(expected: str | None, submitted: str | None) -> bool:
    """Whether a form repeated its CSRF token: both present, compared in constant time."""
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())

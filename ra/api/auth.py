"""Who is calling: a bearer API token (RFC 6750) or a one-time enrollment code.

API clients send ``Authorization: Bearer gp_...``; ra.api_tokens decides whether the token is
good and audits a bad one. The USB-key tool (`govpki token enroll`) has no account and no
certificate yet: it proves itself with the one-time code the RA operator handed out, in the
body of ``POST /enrollment`` and as ``Authorization: Enrollment <code>`` when it asks how its
request went; ra.enrollment checks the code. This module only reads the header — it never
decides what the caller may do (ra.authz does, inside each service).
"""

from __future__ import annotations

import re
from typing import Final

from flask import g, request

from ca.context import CaContext
from ra.api_tokens import authenticate_api_token
from ra.errors import AuthenticationFailed
from ra.records import Operator

BEARER_REALM: Final = "govpki"
ENROLLMENT_REALM: Final = "govpki-enrollment"
#: Longer credentials are no credential of ours (tokens are 46 characters, codes 29).
MAX_CREDENTIAL: Final = 128
_PRINTABLE_ASCII: Final = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


def challenge(auth: str, *, presented: bool) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 9110 §11.6.1; RFC 6750 §3 for Bearer)."""
    if auth == "bearer":
        error = ', error="invalid_token"' if presented else ""
        return f'Bearer realm="{BEARER_REALM}"{error}'
    return f'Enrollment realm="{ENROLLMENT_REALM}"'


def _credentials(scheme: str, example: str) -> str:
    header = request.headers.get("Authorization", "").strip()
    g.ra_api_presented = bool(header)
    if not header:
        raise AuthenticationFailed(f"this endpoint needs Authorization: {scheme} {example}")
    given, _, value = header.partition(" ")
    value = value.strip()
    if given.lower() != scheme.lower() or not value:
        raise AuthenticationFailed(f"expected Authorization: {scheme} {example}")
    if len(value) > MAX_CREDENTIAL or not _PRINTABLE_ASCII.fullmatch(value):
        raise AuthenticationFailed(f"the {scheme} credential is malformed")
    return value


def authenticate(ctx: CaContext, auth: str) -> tuple[Operator | None, str]:
    """(the operator of a bearer token, the enrollment code) as the route's ``auth`` asks."""
    if auth == "bearer":
        token = _credentials("Bearer", "<API token>")
        return authenticate_api_token(ctx, token, client=request.remote_addr or ""), ""
    if auth == "enrollment":
        return None, _credentials("Enrollment", "<enrollment code>")
    return None, ""

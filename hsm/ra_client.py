"""The RA's enrollment endpoints as the official's machine calls them (`govpki token ...`).

Standard library only (urllib): the tool runs on officials' desktops, and the call is two small
JSON requests. Authentication is the one-time enrollment code alone (POST /api/v1/enrollment
carries it in the body; GET /api/v1/enrollment/{id} in ``Authorization: Enrollment <code>``),
because the official has no certificate yet. Errors come back as RFC 9457 problem bodies; their
``detail`` is what the official is shown. The code is never put in a URL (proxies log URLs).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from hsm.errors import HsmError

MAX_REPLY: Final = 1024 * 1024


class RaUnreachable(HsmError):
    """The RA could not be reached or answered something that is not the API's JSON."""

    kind = "ra-unreachable"
    http_status = 502


class RaRefused(HsmError):
    """The RA answered with a problem body: ``detail`` says why (code used, CSR refused...)."""

    kind = "ra-refused"
    http_status = 400


@dataclass(frozen=True)
class EnrollmentReply:
    request_id: int
    state: str
    message: str
    certificate_pem: str | None
    chain_pem: tuple[str, ...]
    encryption_status: str | None


class RaEnrollmentClient:
    def __init__(self, base_url: str, code: str, *, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise RaUnreachable(f"the RA address must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._code = code
        self.timeout = timeout

    def submit(self, csr_pem: bytes) -> EnrollmentReply:
        body = json.dumps({"code": self._code, "csr": csr_pem.decode("ascii")}).encode()
        return self._reply(self._call("POST", "/api/v1/enrollment", body))

    def status(self, request_id: int) -> EnrollmentReply:
        return self._reply(self._call("GET", f"/api/v1/enrollment/{int(request_id)}", None))

    def encryption_key(self, request_id: int, transport_spki_der: bytes) -> dict[str, Any]:
        """The escrowed encryption key wrapped to the token's transport key (KMC delivery):
        the KMC's JSON form, read by hsm.key_transport.WrappedKey.from_json."""
        body = json.dumps({"transport_key": base64.b64encode(transport_spki_der).decode()})
        return self._call("POST", f"/api/v1/enrollment/{int(request_id)}/encryption-key",
                          body.encode())

    def _call(self, method: str, path: str, body: bytes | None) -> dict[str, Any]:
        return call_json(method, self.base_url + path, body, timeout=self.timeout,
                         headers={"Authorization": f"Enrollment {self._code}"}, peer="the RA")

    @staticmethod
    def _reply(data: dict[str, Any]) -> EnrollmentReply:
        try:
            chain = data.get("chain_pem") or []
            return EnrollmentReply(
                request_id=int(data["request_id"]), state=str(data["state"]),
                message=str(data.get("message") or ""),
                certificate_pem=(str(data["certificate_pem"]) if data.get("certificate_pem")
                                 else None),
                chain_pem=tuple(str(p) for p in chain),
                encryption_status=(str(data["encryption_status"])
                                   if data.get("encryption_status") else None))
        except (KeyError, TypeError, ValueError):
            raise RaUnreachable("the RA's answer lacks request_id/state: is the address "
                                "that of a govpki RA?") from None


def call_json(method: str, url: str, body: bytes | None, *, timeout: float,
              headers: dict[str, str] | None = None, peer: str = "the RA") -> dict[str, Any]:
    """One JSON call to a govpki service (http/https only: callers check the scheme); a
    problem body becomes RaRefused with its ``detail``, anything else RaUnreachable."""
    request = urllib.request.Request(  # noqa: S310 (the scheme was checked by the caller)
        url, data=body, method=method,
        headers={"Accept": "application/json, application/problem+json",
                 "Content-Type": "application/json", **(headers or {})})
    base = url.split("/api/", 1)[0]
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _json(response.read(MAX_REPLY + 1), base)
    except urllib.error.HTTPError as exc:
        problem = _json(exc.read(MAX_REPLY + 1), base, strict=False)
        detail = str(problem.get("detail") or exc.reason or f"HTTP {exc.code}")
        raise RaRefused(f"{peer} refused: {detail}", status=exc.code,
                        problem=str(problem.get("type", ""))) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RaUnreachable(f"cannot reach {peer} at {base}: {reason}") from None


def _json(raw: bytes, where: str, *, strict: bool = True) -> dict[str, Any]:
    if len(raw) > MAX_REPLY:
        raise RaUnreachable(f"the answer from {where} is larger than {MAX_REPLY} bytes")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        if not strict:
            return {}
        raise RaUnreachable(f"{where} did not answer with JSON: is it a govpki RA?") from None
    if not isinstance(value, dict):
        if not strict:
            return {}
        raise RaUnreachable(f"{where} answered JSON that is not an object")
    return value

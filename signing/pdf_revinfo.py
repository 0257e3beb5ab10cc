"""Revocation data and certificates for PDF signing and validation, from govpki's own services.

pyHanko (through pyhanko-certvalidator) gathers OCSP responses, CRLs and issuer certificates
from the URLs in the certificates (AIA ocsp/caIssuers, CRL distribution points). On the isolated
government network those URLs are govpki's: ``{public_base_url}/ocsp``, ``/crl/<ca>.crl``,
``/certs/<ca>.crt``. This module gives pyHanko a fetcher backend over a :class:`Transport`:

* :class:`HttpTransport` — plain HTTP to the URLs as named (a remote signer or verifier);
* :class:`WsgiTransport` — the same requests answered in-process by a WSGI application mounted
  under a base URL (the host that runs govpki passes its own app: no socket, no second copy of
  the protocol logic), falling back to another transport for other URLs.

Both go through the same fetchers, so what a B-LT document embeds does not depend on where the
answers came from. pyHanko's bundled fetchers need aiohttp sessions or ``requests``; these use
the standard library and honour pyHanko's :class:`FetchLimits` the same way.

Also here: the signer's certificate status for the refusal check (:class:`OcspStatusSource`,
verifying the responder's signature; :class:`StoreStatusSource`, reading ca/'s store directly)
and chain completion over AIA caIssuers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from asn1crypto import cms as asn1_cms
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.fetchers.api import (
    DEFAULT_USER_AGENT,
    CertificateFetcher,
    CRLFetcher,
    FetcherBackend,
    Fetchers,
    FetchLimits,
    OCSPFetcher,
)
from pyhanko_certvalidator.fetchers.common_utils import (
    FetchBudget,
    FetchKind,
    cap_aia_urls,
    complete_certificate_fetch_jobs,
    crl_job_results_as_completed,
    enumerate_delivery_point_urls,
    format_ocsp_request,
    gather_aia_issuer_urls,
    ocsp_job_get_earliest,
    process_ocsp_response_data,
    queue_fetch_task,
    unpack_cert_content,
)
from pyhanko_certvalidator.util import get_ocsp_urls, get_relevant_crl_dps, issuer_serial

from ca.errors import CaError
from ca.published import ca_certificate_for, crl_for
from ca.store import find_certificate
from core.db import transaction
from core.errors import GovpkiError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a province-wide CRL is tens of MB; bound it anyway
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
CRL_TYPES = ("application/pkix-crl",)
CERT_TYPES = ("application/pkix-cert", "application/x-x509-ca-cert", "application/pkcs7-mime",
              "application/x-pkcs7-certificates")


class TransportError(Exception):
    """A fetch failed (network, HTTP status, size, unsupported URL). Message names the URL."""


class Transport(Protocol):
    """How the fetchers reach a URL. ``blocking`` transports run in a worker thread."""

    blocking: bool

    def get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        """(body, content type) of a GET."""
        ...

    def post(self, url: str, body: bytes, content_type: str,
             accept: Iterable[str]) -> tuple[bytes, str]:
        """(body, content type) of a POST."""
        ...


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        # Never file:, ftp:, ldap: — URLs come from certificates others made.
        raise TransportError(f"refusing to fetch {url!r}: only http and https URLs are fetched")


class HttpTransport:
    """HTTP(S) with the standard library: a timeout and a bound on the response size."""

    blocking = True

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S,
                 max_bytes: int = MAX_RESPONSE_BYTES, user_agent: str = DEFAULT_USER_AGENT):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = f"govpki ({user_agent})"

    def _do(self, request: urllib.request.Request, url: str) -> tuple[bytes, str]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(self.max_bytes + 1)
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise TransportError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"cannot reach {url}: {reason}") from None
        if len(body) > self.max_bytes:
            raise TransportError(f"{url} sent more than {self.max_bytes} bytes")
        return body, content_type.split(";", 1)[0].strip().lower()

    def get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        _check_url(url)
        request = urllib.request.Request(url, headers={  # noqa: S310 (checked above)
            "Accept": ",".join(accept), "User-Agent": self.user_agent})
        return self._do(request, url)

    def post(self, url: str, body: bytes, content_type: str,
             accept: Iterable[str]) -> tuple[bytes, str]:
        _check_url(url)
        request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310
            "Accept": ",".join(accept), "User-Agent": self.user_agent,
            "Content-Type": content_type})
        return self._do(request, url)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RefuseTransport:
    """Fetches nothing: for in-process setups that must not reach out to other hosts."""

    blocking = False

    def get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        raise TransportError(f"not fetched: {url} is not served in this process")

    def post(self, url: str, body: bytes, content_type: str,
             accept: Iterable[str]) -> tuple[bytes, str]:
        raise TransportError(f"not fetched: {url} is not served in this process")


class WsgiTransport:
    """Answers URLs under ``base_url`` by calling a WSGI app in this process.

    The host that runs govpki passes its own application (OCSP, CRLs and CA certificates), so
    signing there gathers revocation data "from the store directly" (DESIGN.md, Interfaces)
    through the very code that serves it over HTTP. URLs elsewhere go to ``fallback`` (none:
    refused; pass :class:`HttpTransport` to reach other hosts).
    """

    blocking = False

    def __init__(self, base_url: str, app: WsgiApp,
                 fallback: Transport | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self._scheme = parts.scheme
        self._netloc = parts.netloc.lower()
        self._prefix = parts.path
        self.app = app
        self.fallback: Transport = fallback if fallback is not None else RefuseTransport()

    def _local_path(self, url: str) -> str | None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != self._scheme or parts.netloc.lower() != self._netloc:
            return None
        if not parts.path.startswith(self._prefix):
            return None
        path = parts.path[len(self._prefix):] or "/"
        return path if not parts.query else f"{path}?{parts.query}"

    def _call(self, method: str, path: str, body: bytes, content_type: str,
              accept: Iterable[str], url: str) -> tuple[bytes, str]:
        path_only, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path_only,
            "RAW_URI": path, "REQUEST_URI": path,
            "QUERY_STRING": query, "SERVER_NAME": self._netloc.split(":")[0],
            "SERVER_PORT": self._netloc.split(":")[1] if ":" in self._netloc else "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": self._netloc,
            "HTTP_ACCEPT": ",".join(accept), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": content_type, "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0), "wsgi.url_scheme": self._scheme,
            "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        state: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            state["status"] = int(status.split(" ", 1)[0])
            state["headers"] = {k.lower(): v for k, v in headers}
            return lambda _data: None

        result = self.app(environ, start_response)
        try:
            chunks = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if state.get("status") != 200:
            raise TransportError(f"{url} answered HTTP {state.get('status')} (in-process)")
        ctype = str(state["headers"].get("content-type", "")).split(";", 1)[0].strip().lower()
        return chunks, ctype

    def get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        path = self._local_path(url)
        if path is None:
            return self.fallback.get(url, accept)
        return self._call("GET", path, b"", "", accept, url)

    def post(self, url: str, body: bytes, content_type: str,
             accept: Iterable[str]) -> tuple[bytes, str]:
        path = self._local_path(url)
        if path is None:
            return self.fallback.post(url, body, content_type, accept)
        return self._call("POST", path, body, content_type, accept, url)


class CaStoreTransport:
    """CRLs and CA certificates answered from ca/'s store in this process, for URLs under the
    configured public base URL (``/crl/<ca>.crl``, ``/crl/<ca>-delta.crl``,
    ``/certs/<ca>.crt``: the same bytes ``govpki serve`` sends); everything else (OCSP, other
    hosts) goes to ``fallback``. A signer on the CA host thus embeds CRLs without a server."""

    blocking = False

    def __init__(self, ctx: Any, fallback: Transport | None = None) -> None:
        self.ctx = ctx
        self.base = ctx.config.public_base_url.rstrip("/")
        self.fallback = fallback if fallback is not None else HttpTransport()

    def _local(self, url: str) -> tuple[bytes, str] | None:
        if not url.startswith(self.base + "/"):
            return None
        path = url[len(self.base):]
        # The same path rules as the HTTP views (ca/published.py: per key generation).
        if path.startswith("/crl/") and path.endswith(".crl"):
            try:
                record = crl_for(self.ctx, path[len("/crl/"):-len(".crl")])
            except GovpkiError as exc:
                raise TransportError(f"{url}: {exc.message} (in-process)") from None
            return record.der, "application/pkix-crl"
        if path.startswith("/certs/") and path.endswith(".crt"):
            try:
                der = ca_certificate_for(self.ctx, path[len("/certs/"):-len(".crt")])
            except GovpkiError as exc:
                raise TransportError(f"{url}: {exc.message} (in-process)") from None
            return der, "application/pkix-cert"
        return None

    def get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        local = self._local(url)
        if local is not None:
            return local
        return self.fallback.get(url, accept)

    def post(self, url: str, body: bytes, content_type: str,
             accept: Iterable[str]) -> tuple[bytes, str]:
        # Called inline (this transport is non-blocking): an HTTP fallback blocks the event
        # loop for its bounded request, which a one-document signing can afford.
        return self.fallback.post(url, body, content_type, accept)


# -- pyHanko fetchers over a transport ------------------------------------------------------------


class _Base:
    def __init__(self, transport: Transport, budget: FetchBudget) -> None:
        self._transport = transport
        self._budget = budget
        self._results: dict[Any, Any] = {}
        self._events: dict[Any, asyncio.Event] = {}

    async def _run(self, fn: Callable[[], tuple[bytes, str]]) -> tuple[bytes, str]:
        if self._transport.blocking:
            return await asyncio.to_thread(fn)
        return fn()

    async def _get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        accept = tuple(accept)
        return await self._run(lambda: self._transport.get(url, accept))

    async def _post(self, url: str, body: bytes, content_type: str,
                    accept: Iterable[str]) -> tuple[bytes, str]:
        accept = tuple(accept)
        return await self._run(lambda: self._transport.post(url, body, content_type, accept))

    async def _perform(self, tag: Any, job: Callable[[], Any]) -> Any:
        return await queue_fetch_task(self._results, self._events, tag, job)

    def _values(self) -> set[Any]:
        return {v for v in self._results.values() if not isinstance(v, Exception)}


class _OcspFetcher(_Base, OCSPFetcher):
    """One OCSP request per certificate (SHA-1 CertID, no nonce: RFC 5019, so govpki's
    responder answers from its pre-signed cache)."""

    async def fetch(self, cert: asn1_x509.Certificate | asn1_cms.AttributeCertificateV2,
                    authority: Authority) -> asn1_ocsp.OCSPResponse:
        tag = (issuer_serial(cert), authority.hashable)
        result: asn1_ocsp.OCSPResponse = await self._perform(
            tag, lambda: self._fetch(cert, authority))
        return result

    async def _fetch(self, cert: Any, authority: Authority) -> asn1_ocsp.OCSPResponse:
        request = format_ocsp_request(cert, authority, certid_hash_algo="sha1",
                                      request_nonces=False)
        urls = get_ocsp_urls(cert)
        if not urls:
            raise cv_errors.OCSPFetchError("No URLs to fetch OCSP responses from")

        async def one(url: str) -> asn1_ocsp.OCSPResponse:
            self._budget.charge(FetchKind.OCSP)
            try:
                body, _ctype = await self._post(url, request.dump(), OCSP_REQUEST,
                                                (OCSP_RESPONSE,))
            except TransportError as exc:
                raise cv_errors.OCSPFetchError(str(exc)) from exc
            return process_ocsp_response_data(body, ocsp_request=request, ocsp_url=url)

        response: asn1_ocsp.OCSPResponse = await ocsp_job_get_earliest(one(u) for u in urls)
        return response

    def fetched_responses(self) -> Iterable[asn1_ocsp.OCSPResponse]:
        return self._values()

    def fetched_responses_for_cert(self, cert: Any) -> Iterable[asn1_ocsp.OCSPResponse]:
        target = issuer_serial(cert)
        return {v for (subject, _), v in self._results.items()
                if subject == target and not isinstance(v, Exception)}


class _CrlFetcher(_Base, CRLFetcher):
    def __init__(self, transport: Transport, budget: FetchBudget) -> None:
        super().__init__(transport, budget)
        self._by_cert: dict[Any, list[asn1_crl.CertificateList]] = {}

    async def fetch(self, cert: Any, *, use_deltas: Any = True
                    ) -> Iterable[asn1_crl.CertificateList]:
        key = issuer_serial(cert)
        if key in self._by_cert:
            return self._by_cert[key]
        results: list[asn1_crl.CertificateList] = []
        jobs = (self._one(url) for dp in get_relevant_crl_dps(cert, use_deltas=use_deltas)
                for url in enumerate_delivery_point_urls(dp))
        async for crl in crl_job_results_as_completed(jobs):
            results.append(crl)
        self._by_cert[key] = results
        return results

    async def _one(self, url: str) -> asn1_crl.CertificateList:
        async def job() -> asn1_crl.CertificateList:
            self._budget.charge(FetchKind.CRL)
            try:
                body, _ctype = await self._get(url, CRL_TYPES)
                if asn1_pem.detect(body):
                    _, _, body = asn1_pem.unarmor(body)
                return asn1_crl.CertificateList.load(body)
            except (TransportError, ValueError) as exc:
                raise cv_errors.CRLFetchError(f"Failure to fetch CRL from URL {url}") from exc

        result: asn1_crl.CertificateList = await self._perform(url, job)
        return result

    def fetched_crls(self) -> Iterable[asn1_crl.CertificateList]:
        return self._values()

    def fetched_crls_for_cert(self, cert: Any) -> Iterable[asn1_crl.CertificateList]:
        return self._by_cert[issuer_serial(cert)]


class _CertFetcher(_Base, CertificateFetcher):
    async def fetch_certs(self, url: str, url_origin_type: str
                          ) -> list[asn1_x509.Certificate]:
        async def job() -> list[asn1_x509.Certificate]:
            self._budget.charge(FetchKind.CERT)
            try:
                body, ctype = await self._get(url, CERT_TYPES)
                return list(unpack_cert_content(body, ctype or None, url, True))
            except (TransportError, ValueError) as exc:
                raise cv_errors.CertificateFetchError(
                    f"Failed to fetch certificate(s) from url {url}.") from exc

        result: list[asn1_x509.Certificate] = await self._perform(url, job)
        return result

    def fetch_cert_issuers(self, cert: Any) -> AsyncGenerator[asn1_x509.Certificate, None]:
        jobs = [self.fetch_certs(url, "certificate")
                for url in cap_aia_urls(self._budget, gather_aia_issuer_urls(cert))]
        generator: AsyncGenerator[asn1_x509.Certificate, None] = (
            complete_certificate_fetch_jobs(jobs))
        return generator

    def fetch_crl_issuers(self, certificate_list: Any
                          ) -> AsyncGenerator[asn1_x509.Certificate, None]:
        jobs = [self.fetch_certs(url, "CRL")
                for url in cap_aia_urls(self._budget, certificate_list.issuer_cert_urls)]
        generator: AsyncGenerator[asn1_x509.Certificate, None] = (
            complete_certificate_fetch_jobs(jobs))
        return generator

    def fetched_certs(self) -> Iterable[asn1_x509.Certificate]:
        return {c for v in self._values() for c in v}


class GovpkiFetcherBackend(FetcherBackend):
    """pyhanko-certvalidator fetchers over a :class:`Transport`; each :meth:`get_fetchers`
    call starts a fresh :class:`FetchLimits` budget, as pyHanko's own backends do."""

    def __init__(self, transport: Transport | None = None,
                 limits: FetchLimits | None = None) -> None:
        self.transport: Transport = transport if transport is not None else HttpTransport()
        self.limits = limits or FetchLimits()

    def get_fetchers(self) -> Fetchers:
        budget = FetchBudget(self.limits)
        return Fetchers(ocsp_fetcher=_OcspFetcher(self.transport, budget),
                        crl_fetcher=_CrlFetcher(self.transport, budget),
                        cert_fetcher=_CertFetcher(self.transport, budget))

    async def close(self) -> None:
        return None


# -- the signer's own status, for the refusal check ---------------------------------------------


@dataclass(frozen=True)
class CertStatus:
    """``status``: good | revoked | hold | unknown; ``source`` says where it came from."""

    status: str
    source: str
    reason: str | None = None
    revoked_at: dt.datetime | None = None
    detail: str = ""


class StatusSource(Protocol):
    def status(self, cert: x509.Certificate, issuer: x509.Certificate) -> CertStatus: ...


def _ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def _verify_with(public_key: Any, signature: bytes, data: bytes,
                 hash_algorithm: hashes.HashAlgorithm | None) -> bool:
    if hash_algorithm is None:
        return False
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class OcspStatusSource:
    """Asks the OCSP responder the certificate names (through a transport) and checks the
    answer: right certificate, signed by the issuer or by a responder the issuer delegated to
    (id-kp-OCSPSigning), still current. Anything else is ``unknown``, never ``good``."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport: Transport = transport if transport is not None else HttpTransport()

    def status(self, cert: x509.Certificate, issuer: x509.Certificate) -> CertStatus:
        urls = _ocsp_urls(cert)
        if not urls:
            return CertStatus("unknown", "ocsp", detail="the certificate names no OCSP responder")
        request = ocsp.OCSPRequestBuilder().add_certificate(
            cert, issuer, hashes.SHA1()).build()  # noqa: S303 (RFC 5019 CertID)
        body = request.public_bytes(serialization.Encoding.DER)
        problems = []
        for url in urls:
            try:
                reply, _ctype = self.transport.post(url, body, OCSP_REQUEST, (OCSP_RESPONSE,))
                return self._judge(reply, cert, issuer, url)
            except TransportError as exc:
                problems.append(str(exc))
            except ValueError as exc:
                problems.append(f"{url} sent an unreadable OCSP response ({exc})")
        return CertStatus("unknown", "ocsp", detail="; ".join(problems))

    @staticmethod
    def _judge(reply: bytes, cert: x509.Certificate, issuer: x509.Certificate,
               url: str) -> CertStatus:
        source = f"OCSP {url}"
        response = ocsp.load_der_ocsp_response(reply)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return CertStatus("unknown", source,
                              detail=f"responder answered {response.response_status.name}")
        responder = issuer
        for candidate in response.certificates:
            if (_issued_by(candidate, issuer) and _has_ocsp_signing(candidate)):
                responder = candidate
                break
        if not _verify_with(responder.public_key(), response.signature,
                            response.tbs_response_bytes, response.signature_hash_algorithm):
            return CertStatus("unknown", source, detail="the OCSP response's signature does not "
                                                        "verify")
        now = dt.datetime.now(dt.UTC)
        for single in response.responses:
            if single.serial_number != cert.serial_number:
                continue
            if single.next_update_utc is not None and single.next_update_utc < now:
                return CertStatus("unknown", source, detail="the OCSP answer is out of date")
            if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
                return CertStatus("good", source)
            if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                reason = single.revocation_reason
                if reason == x509.ReasonFlags.certificate_hold:
                    return CertStatus("hold", source, "certificateHold",
                                      single.revocation_time_utc)
                return CertStatus("revoked", source, reason.value if reason else None,
                                  single.revocation_time_utc)
            return CertStatus("unknown", source, detail="the responder does not know the "
                                                        "certificate")
        return CertStatus("unknown", source, detail="the OCSP response is about another "
                                                    "certificate")


def _has_ocsp_signing(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in eku


class StoreStatusSource:
    """The status as ca/'s certificate store records it (a host running govpki): no network,
    and a revocation counts the moment it commits."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def status(self, cert: x509.Certificate, issuer: x509.Certificate) -> CertStatus:
        der = cert.public_bytes(serialization.Encoding.DER)
        try:
            with transaction(self.ctx.sessions) as session:
                record = find_certificate(session, cert.serial_number)
        except CaError as exc:
            return CertStatus("unknown", "store", detail=exc.message)
        if record.certificate_der != der:
            return CertStatus("unknown", "store",
                              detail="this CA's store did not issue the certificate")
        return CertStatus(record.status, "store", record.revocation_reason, record.revoked_at)


# -- chains --------------------------------------------------------------------------------------


def _ca_issuer_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def _load_any(body: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in body:
        return x509.load_pem_x509_certificates(body)
    try:
        return [x509.load_der_x509_certificate(body)]
    except ValueError:
        from cryptography.hazmat.primitives.serialization import pkcs7

        return pkcs7.load_der_pkcs7_certificates(body)


def complete_chain(cert: x509.Certificate, known: Iterable[x509.Certificate] = (),
                   transport: Transport | None = None, max_depth: int = 8
                   ) -> list[x509.Certificate]:
    """``[cert, issuer, ..., root]`` from ``known`` certificates, fetching missing issuers from
    AIA caIssuers through ``transport`` (when given). Stops at a self-signed certificate or
    when no issuer can be found; the caller decides whether a short chain is acceptable."""
    pool = list(known)
    chain = [cert]
    current = cert
    for _ in range(max_depth):
        if current.issuer == current.subject and _issued_by(current, current):
            break
        issuer = next((c for c in pool if _issued_by(current, c)), None)
        if issuer is None and transport is not None:
            for url in _ca_issuer_urls(current):
                try:
                    body, _ctype = transport.get(url, CERT_TYPES)
                    fetched = _load_any(body)
                except (TransportError, ValueError) as exc:
                    log.info("cannot fetch the issuer of %s from %s: %s",
                             current.subject.rfc4514_string(), url, exc)
                    continue
                pool.extend(fetched)
                issuer = next((c for c in fetched if _issued_by(current, c)), None)
                if issuer is not None:
                    break
        if issuer is None or issuer in chain:
            break
        chain.append(issuer)
        current = issuer
    return chain


def iter_certs(data: bytes) -> Iterator[x509.Certificate]:
    """Every certificate in a PEM bundle or one DER certificate."""
    yield from _load_any(data)

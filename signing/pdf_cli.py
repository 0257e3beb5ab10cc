"""`govpki sign pdf` and `govpki verify pdf`: PAdES signing and validation from the command line.

Two click groups, :data:`sign_group` and :data:`verify_group`, each with a ``pdf`` command; the
composition root (govpki/cli.py) mounts them and adds the ``file`` commands of the CMS module.
Errors are :class:`core.errors.GovpkiError`s that the root prints as one line (exit 1).

Secrets never come from argv (a command line is visible to every user of the machine and kept
in shell history): the USB key's PIN from ``GOVPKI_TOKEN_PIN`` or a hidden prompt, a key file's
passphrase from ``GOVPKI_KEY_FILE_PASSPHRASE`` or a prompt, an encrypted document's password
from ``GOVPKI_PDF_PASSWORD``.

Which key signs (``--key``/``--key-file``):

* ``--key-file KEY.pem``: an encrypted development key;
* ``--key file:<name>``: the server's key store in GOVPKI_HOME (a department seal key);
* ``--key pkcs11:token=<label>;object=<label>``: the server's HSM when the token is the one
  govpki.toml configures, otherwise an official's USB key (module from ``--module`` or
  ``GOVPKI_PKCS11_MODULE``);
* ``--key id:<hex>`` / ``label:<text>`` / a bare label with ``--token <label>``: a key on an
  official's USB key, named as ``govpki token list`` shows it.

Where time and revocation data come from: on a host with an initialised GOVPKI_HOME the TSA is
called in-process and the signer's status and CRLs come from the store (:data:`LOCAL_TRANSPORT`
lets the composition root answer OCSP in-process too); elsewhere everything goes over HTTP to
the URLs in the certificates (``--tsa-url`` or ``GOVPKI_TSA_URL`` override the TSA's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from ca.context import CaContext
from hsm.errors import InvalidKeyUri, MissingSecret
from hsm.pkcs11_uri import parse_pkcs11_uri
from signing.appearance import (
    CrossPagePlacement,
    ImageSeal,
    PagePlacement,
    Placement,
    RoundSeal,
    parse_box,
)
from signing.pades import CertifyPermits, Level, PadesOptions, SigningServices, sign_pdf
from signing.pdf_errors import PdfError, SealImageError, TrustConfigError
from signing.pdf_limits import read_pdf_file
from signing.pdf_revinfo import (
    GovpkiFetcherBackend,
    HttpTransport,
    OcspStatusSource,
    Transport,
)
from signing.pdf_signer import (
    HttpTimeStamper,
    SigningKey,
    load_key_file,
    read_certificate_file,
)
from signing.pdf_verify import PdfVerification, VerifyOptions, verify_pdf

PIN_ENV = "GOVPKI_TOKEN_PIN"
KEY_FILE_PASSPHRASE_ENV = "GOVPKI_KEY_FILE_PASSPHRASE"  # noqa: S105 (a variable name)
PDF_PASSWORD_ENV = "GOVPKI_PDF_PASSWORD"  # noqa: S105
TSA_URL_ENV = "GOVPKI_TSA_URL"
TRUST_ENV = "GOVPKI_TRUST_ROOTS"

LocalTransportHook = Callable[[CaContext], Transport]
LOCAL_TRANSPORT: list[LocalTransportHook] = []
"""The composition root may append one hook that builds an in-process transport over the whole
govpki application (OCSP included) for a context; without it CRLs and CA certificates are
produced in-process and OCSP goes over HTTP."""


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise MissingSecret(f"{prompt} is needed: set {env} (no terminal to prompt on)")
    return str(click.prompt(prompt, hide_input=True))


def _quiet_libraries() -> None:
    """pyHanko logs validation failures with stack traces at WARNING; the CLI reports them
    itself, in one line per problem."""
    for name in ("pyhanko", "pyhanko_certvalidator", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _local_context() -> Iterator[CaContext | None]:
    """The CA context when GOVPKI_HOME is initialised here, else None (a remote signer)."""
    from ca.setup import is_initialised
    from core.config import load_config

    config = load_config()  # a broken govpki.toml is an error, not "no CA here"
    try:
        initialised = is_initialised(config)
    except Exception:  # no database reachable: this machine is not a CA host
        initialised = False
    if not initialised:
        yield None
        return
    ctx = CaContext.open(config)
    try:
        yield ctx
    finally:
        ctx.close()


def _services(ctx: CaContext | None, tsa_url: str | None, cert: x509.Certificate
              ) -> SigningServices:
    if ctx is not None:
        transport = LOCAL_TRANSPORT[-1](ctx) if LOCAL_TRANSPORT else None
        services = SigningServices.in_process(ctx, transport=transport)
        if tsa_url:
            services.timestamper = HttpTimeStamper(tsa_url, services.transport)
        return services
    transport = HttpTransport()
    url = tsa_url or _tsa_from_certificate(cert)
    return SigningServices(timestamper=HttpTimeStamper(url, transport) if url else None,
                           fetcher=GovpkiFetcherBackend(transport),
                           status=OcspStatusSource(transport))


def _tsa_from_certificate(cert: x509.Certificate) -> str | None:
    """govpki's services share one base URL: the TSA is ``<base>/tsa`` beside ``<base>/ocsp``."""
    from cryptography.x509.oid import AuthorityInformationAccessOID

    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        url = desc.access_location.value
        if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(url, str) \
                and url.endswith("/ocsp"):
            return url[: -len("/ocsp")] + "/tsa"
    return None


def _server_token(ctx: CaContext | None, uri: str) -> bool:
    if ctx is None or not uri.startswith("pkcs11:"):
        return False
    configured = ctx.config.keystore.token_label
    try:
        token = parse_pkcs11_uri(uri).token
    except InvalidKeyUri:
        return False
    return bool(configured) and token == configured


def _open_key(ctx: CaContext | None, stack: contextlib.ExitStack, key_uri: str | None,
              key_file: Path | None, module: str | None, token_label: str | None,
              certs: list[x509.Certificate]) -> SigningKey:
    cert, chain = certs[0], tuple(certs[1:])
    if (key_uri is None) == (key_file is None):
        raise click.UsageError("give exactly one of --key and --key-file")
    if key_file is not None:
        passphrase = _secret(KEY_FILE_PASSPHRASE_ENV, f"passphrase of {key_file}")
        signer = load_key_file(key_file, passphrase.encode("utf-8"))
        return SigningKey(signer, cert, chain, description=f"key file {key_file.name}")
    assert key_uri is not None
    if key_uri.startswith("file:") or _server_token(ctx, key_uri):
        if ctx is None:
            raise click.UsageError(f"{key_uri} names a key in the server's key store, and "
                                   f"GOVPKI_HOME is not initialised here")
        return SigningKey(ctx.keyring.get(key_uri), cert, chain, description=key_uri)
    from hsm.token import open_token

    if key_uri.startswith("pkcs11:"):
        label = parse_pkcs11_uri(key_uri).token
        if not label:
            raise click.UsageError("the pkcs11: URI names no token=; add token=<label>")
        token_label = token_label or label
    if not token_label:
        raise click.UsageError("give --token <label> for a key reference on a USB key")
    if not module:
        raise click.UsageError("give --module (or GOVPKI_PKCS11_MODULE) for the USB key")
    pin = _secret(PIN_ENV, f"PIN of USB key {token_label}")
    usb = stack.enter_context(open_token(module, token_label, pin))
    del pin
    token_key = usb.find_key(key_uri)
    return SigningKey(usb.signer(token_key), cert, chain,
                      description=f"USB key {token_label} ({token_key.label})")


def _placement(page: int | None, box: str | None, cross_page: bool,
               visible: bool) -> Placement | None:
    if cross_page:
        if page is not None or box is not None:
            raise click.UsageError("--cross-page places the seal on every page; drop "
                                   "--page/--box")
        if not visible:
            raise click.UsageError("--cross-page needs a seal (--seal or --seal-org)")
        return CrossPagePlacement()
    if page is not None or box is not None:
        if not visible:
            raise click.UsageError("--page/--box place a visible seal: add --seal or --seal-org")
        return PagePlacement(page if page is not None else -1,
                             parse_box(box) if box is not None else None)
    return None


_LEVELS = click.Choice([lvl.value for lvl in Level], case_sensitive=False)


@click.group("sign")
def sign_group() -> None:
    """Sign documents: PAdES for PDF papers. (签名/电子签章)"""


@sign_group.command("pdf")
@click.argument("input_path", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cert", "cert_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Signer's certificate (PEM; the issuing chain may follow it).")
@click.option("--key", "key_uri", default=None,
              help="file:<name>, pkcs11:token=..;object=.., or a USB-key reference.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Encrypted PEM key (development; passphrase from "
                   f"{KEY_FILE_PASSPHRASE_ENV} or a prompt).")
@click.option("--module", envvar="GOVPKI_PKCS11_MODULE", default=None,
              help="PKCS#11 module of the USB key (or GOVPKI_PKCS11_MODULE).")
@click.option("--token", "token_label", default=None, help="USB key token label.")
@click.option("--level", type=_LEVELS, default=Level.B_LT.value, show_default=True,
              help="PAdES baseline level.")
@click.option("--seal", "seal_image", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Seal image (PNG with transparency).")
@click.option("--seal-org", default=None, help="Draw the round seal with this organisation's "
                                               "name (Chinese).")
@click.option("--seal-text", default="", help="Line under the star of the round seal.")
@click.option("--page", type=int, default=None, help="Page of the seal (1-based; -1 = last).")
@click.option("--box", default=None, help="Seal box x1,y1,x2,y2 in PDF points.")
@click.option("--field", "field_name", default=None, help="Sign this (existing or new) field.")
@click.option("--reason", default=None, help="Reason for signing.")
@click.option("--location", default=None, help="Where it was signed.")
@click.option("--certify", is_flag=True,
              help="Lock the document: a DocMDP certification signature if it is the first, "
                   "else a field lock; nothing may change afterwards.")
@click.option("--certify-allow", type=click.Choice([p.value for p in CertifyPermits]),
              default=CertifyPermits.NOTHING.value, show_default=True,
              help="With --certify on a first signature: what remains allowed.")
@click.option("--cross-page", is_flag=True, help="Cross-page seal (骑缝章) on every page edge.")
@click.option("--tsa-url", default=None, envvar=TSA_URL_ENV,
              help=f"TSA URL (default: govpki's own; {TSA_URL_ENV}).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def sign_pdf_cmd(input_path: Path, output_path: Path, cert_path: Path, key_uri: str | None,
                 key_file: Path | None, module: str | None, token_label: str | None,
                 level: str, seal_image: Path | None, seal_org: str | None, seal_text: str,
                 page: int | None, box: str | None, field_name: str | None,
                 reason: str | None, location: str | None, certify: bool, certify_allow: str,
                 cross_page: bool, tsa_url: str | None, force: bool) -> None:
    """Sign the PDF IN into OUT (PAdES B-B/B-T/B-LT/B-LTA; B-LT by default)."""
    _quiet_libraries()
    if output_path.exists() and not force:
        raise click.UsageError(f"{output_path} exists; add --force to overwrite it")
    if output_path.resolve() == input_path.resolve():
        raise click.UsageError("OUT must differ from IN (the original is kept)")
    if seal_image is not None and seal_org is not None:
        raise click.UsageError("give --seal or --seal-org, not both")
    appearance: ImageSeal | RoundSeal | None = None
    if seal_image is not None:
        try:
            appearance = ImageSeal(seal_image.read_bytes())
        except OSError as exc:
            raise SealImageError(f"cannot read {seal_image}: {exc.strerror or exc}") from None
    elif seal_org is not None:
        appearance = RoundSeal(seal_org, seal_text)
    elif seal_text:
        raise click.UsageError("--seal-text goes with --seal-org")
    # --field names the signature field: an existing empty one is used where it is, a new
    # one goes where --page/--box (or the default seal position) say.
    placement = _placement(page, box, cross_page, appearance is not None)
    options = PadesOptions(level=Level(level.upper()), field_name=field_name,
                           appearance=appearance, placement=placement, reason=reason,
                           location=location, certify=certify,
                           certify_permits=CertifyPermits(certify_allow))
    data = read_pdf_file(input_path)
    certs = read_certificate_file(cert_path)
    password = os.environ.get(PDF_PASSWORD_ENV) or None
    with contextlib.ExitStack() as stack:
        ctx = stack.enter_context(_local_context())
        key = _open_key(ctx, stack, key_uri, key_file, module, token_label, certs)
        services = _services(ctx, tsa_url, certs[0])
        signed = sign_pdf(data, key, options, services, password=password)
    _write_atomically(output_path, signed)
    click.echo(f"signed {input_path} → {output_path} ({options.level.value}, "
               f"{certs[0].subject.rfc4514_string()})", err=True)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename: a failure leaves no OUT."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise PdfError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- verify --------------------------------------------------------------------------------------


def _trust_roots(paths: tuple[Path, ...], ctx: CaContext | None) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    env = os.environ.get(TRUST_ENV)
    files = list(paths) or ([Path(p) for p in env.split(os.pathsep) if p] if env else [])
    for path in files:
        try:
            roots.extend(read_certificate_file(path))
        except PdfError as exc:
            raise TrustConfigError(f"trust roots: {exc.message}") from None
    if not roots and ctx is not None:
        from ca.store import list_authorities
        from core.db import transaction

        with transaction(ctx.sessions) as session:
            roots = [a.certificate() for a in list_authorities(session) if a.parent is None]
    if not roots:
        raise TrustConfigError("no trust roots: give --trust ROOT.pem (or "
                               f"{TRUST_ENV}), or run on a host with GOVPKI_HOME initialised")
    return roots


@click.group("verify")
def verify_group() -> None:
    """Verify signed documents. (签名验证)"""


@verify_group.command("pdf")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option("--trust", "trust", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help=f"Trusted root certificate(s) (PEM); default {TRUST_ENV} or the local CA.")
@click.option("--offline", is_flag=True,
              help="Use only revocation data embedded in the document (no fetching).")
def verify_pdf_cmd(path: Path, as_json: bool, trust: tuple[Path, ...], offline: bool) -> None:
    """Verify every signature in FILE; exit status 1 unless all are valid."""
    _quiet_libraries()
    data = read_pdf_file(path)
    with _local_context() as ctx:
        roots = _trust_roots(trust, ctx)
        fetcher = None
        if not offline:
            transport: Transport
            if ctx is not None:
                from signing.pdf_revinfo import CaStoreTransport

                transport = (LOCAL_TRANSPORT[-1](ctx) if LOCAL_TRANSPORT
                             else CaStoreTransport(ctx))
            else:
                transport = HttpTransport()
            fetcher = GovpkiFetcherBackend(transport)
        report = verify_pdf(data, VerifyOptions(
            trust_roots=roots, fetcher=fetcher,
            password=os.environ.get(PDF_PASSWORD_ENV) or None))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        _print_report(path, report)
    if not report.valid:
        sys.exit(1)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value is not None else "-"


def _print_report(path: Path, report: PdfVerification) -> None:
    verdict = "VALID (有效)" if report.valid else "NOT VALID (无效)"
    click.echo(f"{path}: {verdict}")
    if report.error:
        click.echo(f"  {report.error}")
    for i, sig in enumerate(report.signatures, 1):
        state = "valid (有效)" if sig.valid else "NOT valid (无效)"
        if sig.kind == "document-timestamp":
            click.echo(f"#{i} document time-stamp {sig.field_name}: {state}, "
                       f"{_when(sig.timestamp_time)} by {sig.signer_name or '?'}")
        else:
            who = sig.signer_name or "?"
            org = f" ({sig.signer_organisation})" if sig.signer_organisation else ""
            click.echo(f"#{i} {sig.field_name}: {state} — {who}{org}, {sig.level or '?'}")
            click.echo(f"   signed (claimed) {_when(sig.claimed_signing_time)}; time-stamp "
                       f"{_when(sig.timestamp_time)}")
            click.echo(f"   integrity {'ok' if sig.intact and sig.signature_valid else 'BROKEN'}"
                       f"; trust {'ok' if sig.trusted else 'no'}"
                       f"; revocation {sig.revocation} ({sig.revocation_source})"
                       f"; covers {sig.coverage}"
                       f"; changed after: {sig.modification or '-'}"
                       f"{'' if sig.modifications_allowed in (True, None) else ' (FORBIDDEN)'}")
        for problem in sig.problems:
            click.echo(f"   problem: {problem}")


__all__ = ["LOCAL_TRANSPORT", "sign_group", "verify_group"]

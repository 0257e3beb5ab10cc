"""`govpki sign file` and `govpki verify file`: CMS signatures for any file.

Two click commands, :data:`sign_file_command` and :data:`verify_file_command`, mounted by
govpki/cli.py under the ``sign`` and ``verify`` groups; errors are GovpkiErrors that the
``govpki`` edge prints as one line with exit status 1 (never a stack trace).

Keys: ``--key pkcs11:token=...;object=...`` opens an official's USB key (or any PKCS#11 token)
through :func:`hsm.token.open_token` with the module from ``--module`` / GOVPKI_PKCS11_MODULE;
``--key file:<name>`` is a key in GOVPKI_HOME's software store; ``--key-file KEY.pem`` is a
PEM/DER private key for development. The PIN (GOVPKI_TOKEN_PIN) and key passphrase
(GOVPKI_KEY_PASSPHRASE) come from the environment or a hidden prompt, never from argv, which
every user of the machine can read.

Exit status of ``verify file``: 0 valid, 1 invalid or refused (the reasons are printed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsm.signer import Signer, SoftwareSigner
from signing.cms import (
    MAX_SIGNATURE_BYTES,
    CmsVerification,
    RevocationChecker,
    http_timestamper,
    load_certificates,
    sign_cms,
    store_revocation,
    verify_cms,
)
from signing.cms_errors import InputTooLarge, InputUnreadable, KeyFileError

PIN_ENV = "GOVPKI_TOKEN_PIN"
PASSPHRASE_ENV = "GOVPKI_KEY_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_CERT_FILE_BYTES = 1024**2
EXIT_INVALID = 1


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return str(click.prompt(prompt, hide_input=True))


def _read_small(path: Path, limit: int, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputTooLarge(f"{what} {path} is {size} bytes; a {what} is at most {limit}")
        return path.read_bytes()
    except OSError as exc:
        raise InputUnreadable(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _load_key_file(path: Path) -> Signer:
    data = _read_small(path, MAX_KEY_FILE_BYTES, "key file")
    pem = b"-----BEGIN" in data

    def load(password: bytes | None) -> Any:
        if pem:
            return serialization.load_pem_private_key(data, password)
        return serialization.load_der_private_key(data, password)

    try:
        key = load(None)
    except TypeError:  # encrypted: ask for the passphrase (never on argv)
        passphrase = _secret(PASSPHRASE_ENV, f"passphrase for {path.name}").encode("utf-8")
        try:
            key = load(passphrase)
        except (ValueError, TypeError):
            raise KeyFileError(f"cannot decrypt {path}: wrong passphrase") from None
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM or DER private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}: CMS signing needs an RSA or "
                           f"EC key")
    return SoftwareSigner(f"key-file:{path.name}", key)


def _file_store_signer(uri: str) -> Signer:
    """A ``file:`` key from GOVPKI_HOME's software store (a server-held seal, the demo)."""
    from core.config import load_config
    from hsm.file_store import FileKeyStore

    config = load_config()
    ks = config.keystore
    passphrase_file = config.path(ks.passphrase_file) if ks.passphrase_file else None
    passphrase: bytes | None = None
    if not os.environ.get(ks.passphrase_env) and passphrase_file is None:
        passphrase = _secret(ks.passphrase_env, "key store passphrase").encode("utf-8")
    store = FileKeyStore(config.path(ks.directory), passphrase=passphrase,
                         passphrase_env=ks.passphrase_env, passphrase_file=passphrase_file)
    return store.get(uri)


@contextmanager
def open_signer(key_uri: str | None, key_file: Path | None,
                module: str | None) -> Iterator[Signer]:
    """The signer named on the command line, open for as long as the block runs."""
    if (key_uri is None) == (key_file is None):
        raise click.UsageError("give exactly one of --key KEY_URI and --key-file KEY.pem")
    if key_file is not None:
        yield _load_key_file(key_file)
        return
    assert key_uri is not None
    if key_uri.startswith("file:"):
        yield _file_store_signer(key_uri)
        return
    if not key_uri.lower().startswith("pkcs11:"):
        raise click.UsageError(f"--key must be a pkcs11: or file: URI, not {key_uri!r}")
    from hsm.token import open_token, parse_key_reference

    reference = parse_key_reference(key_uri)
    if reference.token is None:
        raise click.UsageError("the pkcs11: URI must name the token (token=<label>)")
    if not module:
        raise click.UsageError("--module (or GOVPKI_PKCS11_MODULE) must name the PKCS#11 "
                               "module of the token")
    pin = _secret(PIN_ENV, "USB key PIN")
    with open_token(module, reference.token, pin) as usb:
        del pin
        yield usb.signer(usb.find_key(reference))


def _write_atomically(path: Path, data: bytes) -> None:
    """All or nothing: a failure leaves no partial OUT behind."""
    directory = path.resolve().parent
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _certificates(paths: tuple[Path, ...], what: str) -> list[Any]:
    out: list[Any] = []
    for p in paths:
        out.extend(load_certificates(_read_small(p, MAX_CERT_FILE_BYTES, what), f"{what} {p}"))
    return out


@click.command("file")
@click.argument("input_path", metavar="IN",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cert", "cert_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Signer certificate (PEM/DER); further PEM certificates in it are the chain.")
@click.option("--chain", "chain_paths", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Issuing CA certificates to include (repeatable).")
@click.option("--key", "key_uri", default=None,
              help="Key URI: pkcs11:token=...;object=... (USB key) or file:<name> (key store).")
@click.option("--key-file", "key_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM/DER private key file (development); passphrase from "
                   "GOVPKI_KEY_PASSPHRASE or a prompt.")
@click.option("--module", envvar="GOVPKI_PKCS11_MODULE", default=None,
              help="PKCS#11 module for pkcs11: keys (or GOVPKI_PKCS11_MODULE); PIN from "
                   "GOVPKI_TOKEN_PIN or a prompt.")
@click.option("--attached", is_flag=True,
              help="Encapsulate the file in the signature (default: detached).")
@click.option("--digest", type=click.Choice(["sha256", "sha384", "sha512"]), default="sha256",
              show_default=True)
@click.option("--timestamp-url", default=None,
              help="RFC 3161 TSA to timestamp the signature, e.g. http://127.0.0.1:8600/tsa.")
@click.option("--pem", "as_pem", is_flag=True, help="Write PEM (-----BEGIN CMS-----), not DER.")
def sign_file_command(input_path: Path, output_path: Path, cert_path: Path,
                      chain_paths: tuple[Path, ...], key_uri: str | None, key_file: Path | None,
                      module: str | None, attached: bool, digest: str,
                      timestamp_url: str | None, as_pem: bool) -> None:
    """Sign any file: CMS SignedData (RFC 5652) with signing time and signing certificate,
    optionally timestamped. (文件签名)"""
    if output_path.resolve() == input_path.resolve():
        raise click.UsageError("OUT must not be IN: the signature would overwrite the file")
    certs = _certificates((cert_path,), "certificate")
    if not certs:
        raise click.UsageError(f"{cert_path} holds no certificate")
    chain = certs[1:] + _certificates(chain_paths, "chain certificate")
    timestamper = http_timestamper(timestamp_url) if timestamp_url else None
    with open_signer(key_uri, key_file, module) as signer:
        signature = sign_cms(input_path, signer, certs[0], chain, detached=not attached,
                             digest=digest, timestamp=timestamper)
    if as_pem:
        import base64
        import textwrap

        body = "\n".join(textwrap.wrap(base64.b64encode(signature).decode("ascii"), 64))
        signature = f"-----BEGIN CMS-----\n{body}\n-----END CMS-----\n".encode("ascii")
    _write_atomically(output_path, signature)
    form = "attached" if attached else "detached"
    stamped = ", timestamped" if timestamper else ""
    click.echo(f"signed {input_path.name}: {form} CMS signature{stamped} written to "
               f"{output_path} ({len(signature)} bytes), signer "
               f"{certs[0].subject.rfc4514_string()}", err=True)


def _parse_at(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time "
                                 f"(e.g. 2025-03-01T08:00:00+08:00)", param_hint="--at") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _report(result: CmsVerification) -> list[str]:
    lines = [("valid" if result.valid else "INVALID") + f": {len(result.signers)} signer(s), "
             + ("detached" if result.detached else "attached") + " CMS signature"]
    for s in result.signers:
        lines.append(f"  signer: {s.subject or 'unknown'}"
                     + (f" (serial {s.certificate.serial_number:x})" if s.certificate else ""))
        if s.signing_time:
            lines.append(f"  signing time (claimed): {s.signing_time.isoformat()}")
        if s.timestamp:
            state = "valid" if s.timestamp.valid else "INVALID"
            lines.append(f"  timestamp ({state}): "
                         f"{s.timestamp.time.isoformat() if s.timestamp.time else '?'} "
                         f"by {s.timestamp.tsa_subject}")
        lines.append(f"  integrity: {'ok' if s.integrity else 'FAILED'}; chain: "
                     f"{'ok' if s.chain_valid else 'FAILED'}; revocation: {s.revocation.value}")
        if s.chain:
            lines.append("  chain: " + " → ".join(c.subject.rfc4514_string() for c in s.chain))
        lines.extend(f"  warning: {w}" for w in s.warnings)
    lines.extend(f"reason: {r}" for r in result.reasons)
    return lines


@click.command("file")
@click.argument("signature_path", metavar="SIG",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The signed file (required for a detached signature).")
@click.option("--trust", "trust_paths", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust root certificate(s), PEM or DER (repeatable).")
@click.option("--at", "at_text", default=None,
              help="Validate at this time (ISO 8601) instead of the timestamp's time or now.")
@click.option("--check-revocation", is_flag=True,
              help="Ask GOVPKI_HOME's CA store whether the certificates are revoked.")
@click.option("--extract", "extract_path", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write the encapsulated content of a valid attached signature here.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify_file_command(signature_path: Path, data_path: Path | None,
                        trust_paths: tuple[Path, ...], at_text: str | None,
                        check_revocation: bool, extract_path: Path | None,
                        as_json: bool) -> None:
    """Verify a CMS signature of any file against trust roots; exit 1 when it is not valid.
    (文件验签)"""
    signature = _read_small(signature_path, MAX_SIGNATURE_BYTES, "signature")
    roots = _certificates(trust_paths, "trust root")
    at = _parse_at(at_text)
    with _revocation_checker(check_revocation) as checker:
        result = verify_cms(signature, data_path, trust_roots=roots, at=at,
                            revocation=checker)
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    else:
        for line in _report(result):
            click.echo(line)
    if not result.valid:
        sys.exit(EXIT_INVALID)
    if extract_path is not None:
        if result.content is None:
            raise click.UsageError("--extract needs an attached signature (this one is "
                                   "detached)")
        _write_atomically(extract_path, result.content)


@contextmanager
def _revocation_checker(enabled: bool) -> Iterator[RevocationChecker | None]:
    if not enabled:
        yield None
        return
    from ca.context import CaContext
    from core.config import load_config
    from hsm.keystore import KeyRing

    ctx = CaContext.open(load_config(), keyring=KeyRing([]))  # status only: no keys opened
    try:
        yield store_revocation(ctx)
    finally:
        ctx.close()

"""`govpki token ...`: the official's USB key (证书介质), on the official's own machine.

PINs and enrollment codes come from the environment (GOVPKI_TOKEN_PIN, GOVPKI_ENROLLMENT_CODE)
or a hidden prompt, never from argv (a command line is visible to every user of the machine
and kept in shell history). The PKCS#11 module and the RA's address can come from
GOVPKI_PKCS11_MODULE and GOVPKI_RA_URL. Exit status: 0 done, 1 refused or failed (nothing left
half-written), 75 (EX_TEMPFAIL) still waiting for approval (resume later).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hsm import enroll
from hsm.algorithms import KeyType
from hsm.key_transport import WrappedKey
from hsm.kmc_unwrap import ReceiveEncryptionKey, create_transport_key, unwrap_into_token
from hsm.ra_client import RaEnrollmentClient
from hsm.token import LABEL_PREFIX, UsbToken, list_tokens, open_token

EXIT_PENDING = 75
_MODULE = click.option("--module", "module", envvar="GOVPKI_PKCS11_MODULE", required=True,
                       help="PKCS#11 module of the USB key (or GOVPKI_PKCS11_MODULE).")
_TOKEN = click.option("--token", "token_label", required=True,
                      help="Label of the USB key's token.")
_RA = click.option("--ra", "ra_url", envvar="GOVPKI_RA_URL", required=True,
                   help="The RA's address, e.g. https://ra.example.gov.cn (or GOVPKI_RA_URL).")


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return str(click.prompt(prompt, hide_input=True))


@click.group("token")
def token_group() -> None:
    """The official's USB key: enroll, renew, list. (证书介质)"""


@token_group.command("list")
@_MODULE
@click.option("--token", "token_label", default=None,
              help="Show what this token holds (needs its PIN); without it, list the tokens.")
def token_list(module: str, token_label: str | None) -> None:
    """List the tokens of a module, or the keys and certificates on one token."""
    if token_label is None:
        for t in list_tokens(module):
            state = " (PIN locked)" if t.user_pin_locked else ""
            click.echo(f"{t.label:32} {t.manufacturer} {t.model} serial {t.serial}{state}")
        return
    pin = _secret("GOVPKI_TOKEN_PIN", "USB key PIN")
    with open_token(module, token_label, pin) as usb:
        objects = usb.list_objects()
        space = usb.free_space()
    for o in objects:
        if o.kind == "certificate":
            until = f" until {o.not_after:%Y-%m-%d}" if o.not_after else ""
            click.echo(f"certificate  id:{o.id_hex:32} {o.label}  {o.subject}{until}"
                       f" [{o.category or 'user'}]")
        else:
            extra = f" {o.key_type}" if o.key_type else ""
            if o.kind == "private-key":
                extra += " non-extractable" if o.extractable is False else " EXTRACTABLE"
            click.echo(f"{o.kind:12} id:{o.id_hex:32} {o.label}{extra}")
    if space.free_public is not None:
        click.echo(f"free memory: {space.free_public} bytes public, "
                   f"{space.free_private} bytes private")


def _enroll(module: str, token_label: str, ra_url: str, key_type: str, wait: float,
            poll: float, resume: int | None, key_ref: str | None, *, kind: str) -> None:
    if (resume is None) != (key_ref is None):
        raise click.UsageError("--resume and --key go together (the first run printed both)")
    pin = _secret("GOVPKI_TOKEN_PIN", "USB key PIN")
    code = _secret("GOVPKI_ENROLLMENT_CODE", "enrollment code from the RA operator")
    client = RaEnrollmentClient(ra_url, code)
    with open_token(module, token_label, pin) as usb:
        state = enroll.Enrollment(usb, client, key_type=key_type, request_id=resume)
        old = _previous_keys(usb) if kind == "renew" else []
        def fetch(spki_der: bytes) -> WrappedKey:
            assert state.request_id is not None
            return WrappedKey.from_json(client.encryption_key(state.request_id, spki_der))

        steps = enroll.default_steps(wait_seconds=wait, poll_seconds=poll, resume_key=key_ref,
                                     encryption_step=ReceiveEncryptionKey(fetch))
        try:
            enroll.run_steps(steps, state, lambda name: click.echo(f"… {name}", err=True))
        except enroll.EnrollmentPending as exc:
            click.echo(exc.message, err=True)
            sys.exit(EXIT_PENDING)
        assert state.key is not None and state.certificate is not None
        replaced = _remove_replaced(usb, old, state.certificate)
    cert = state.certificate
    click.echo(f"enrolled: certificate {cert.serial_number:x} for "
               f"{cert.subject.rfc4514_string()}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
               f", on token {token_label} as id:{state.key.id_hex}")
    for label in replaced:
        click.echo(f"removed the replaced key {label}")
    for note in state.notes:
        click.echo(note, err=True)


def _previous_keys(usb: UsbToken) -> list[tuple[str, str]]:
    """(id, subject) of the signing keys that already have a certificate: what a renewal
    replaces. Encryption keys stay: old documents must still open."""
    objects = usb.list_objects()
    return [(o.id_hex, o.subject or "") for o in objects
            if o.kind == "certificate" and (o.category or "token-user") != "authority"
            and o.label.startswith(LABEL_PREFIX)]


def _remove_replaced(usb: UsbToken, old: list[tuple[str, str]], new: x509.Certificate
                     ) -> list[str]:
    """After a renewal: remove earlier keys certified for the same subject (the RA revoked
    their certificates as superseded)."""
    subject = new.subject.rfc4514_string()
    removed = []
    for id_hex, old_subject in old:
        if old_subject == subject:
            usb.delete_key(usb.find_key(f"id:{id_hex}"))
            removed.append(f"id:{id_hex}")
    return removed


_KEY_TYPES = click.Choice([k.value for k in KeyType if not k.value.startswith("ed")])


@token_group.command("enroll")
@_MODULE
@_TOKEN
@_RA
@click.option("--key-type", type=_KEY_TYPES, default="ec-p256", show_default=True)
@click.option("--wait", type=float, default=600, show_default=True,
              help="Seconds to wait for an operator's approval before stopping (resumable).")
@click.option("--poll", type=float, default=3, show_default=True, help="Seconds between polls.")
@click.option("--resume", type=int, default=None, help="Finish an earlier enrollment: request id.")
@click.option("--key", "key_ref", default=None, help="With --resume: the key it printed (id:…).")
def token_enroll(module: str, token_label: str, ra_url: str, key_type: str, wait: float,
                 poll: float, resume: int | None, key_ref: str | None) -> None:
    """Generate the signing key on the USB key, request its certificate with the one-time
    enrollment code, and write the certificate and chain onto the key once approved."""
    _enroll(module, token_label, ra_url, key_type, wait, poll, resume, key_ref, kind="enroll")


@token_group.command("renew")
@_MODULE
@_TOKEN
@_RA
@click.option("--key-type", type=_KEY_TYPES, default="ec-p256", show_default=True)
@click.option("--wait", type=float, default=600, show_default=True)
@click.option("--poll", type=float, default=3, show_default=True)
def token_renew(module: str, token_label: str, ra_url: str, key_type: str, wait: float,
                poll: float) -> None:
    """Re-key: a new signing key and certificate (with a renewal or re-key code); the
    replaced key is removed from the token once the new certificate is on it."""
    _enroll(module, token_label, ra_url, key_type, wait, poll, None, None, kind="renew")


@token_group.command("transport-key")
@_MODULE
@_TOKEN
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the transport public key (PEM), for the KMC operator.")
def token_transport_key(module: str, token_label: str, out: Path) -> None:
    """Make an unwrap-only transport key on a (new) USB key, for a key recovery: the KMC
    wraps the escrowed encryption key to it (`govpki kmc recover-user --transport-key`)."""
    if out.exists():
        raise click.UsageError(f"{out} exists; refusing to overwrite it")
    pin = _secret("GOVPKI_TOKEN_PIN", "USB key PIN")
    with open_token(module, token_label, pin) as usb:
        transport = create_transport_key(usb)
    out.write_bytes(transport.public_key.public_bytes(Encoding.PEM,
                                                      PublicFormat.SubjectPublicKeyInfo))
    click.echo(f"transport key {transport.sha256[:16]} on token {token_label}: give {out} to "
               "the key management centre's operator")


@token_group.command("receive-key")
@click.argument("wrapped_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_MODULE
@_TOKEN
def token_receive_key(wrapped_file: Path, module: str, token_label: str) -> None:
    """Unwrap a recovered encryption key (the file `govpki kmc release` wrote) inside the USB
    key that made its transport key; the key never exists in the clear outside a token."""
    try:
        wrapped = WrappedKey.from_json(json.loads(wrapped_file.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError):
        raise click.UsageError(f"{wrapped_file} is not a wrapped key file (JSON from "
                               "`govpki kmc release`)") from None
    pin = _secret("GOVPKI_TOKEN_PIN", "USB key PIN")
    with open_token(module, token_label, pin) as usb:
        key = unwrap_into_token(usb, wrapped)
    click.echo(f"encryption key recovered onto token {token_label} as id:{key.id_hex}")


@token_group.command("sign-challenge")
@click.argument("code")
@_MODULE
@_TOKEN
@click.option("--provider", "provider_url", envvar="GOVPKI_SSO_URL", required=True,
              help="The SSO provider's address, e.g. https://sso.example.gov.cn "
                   "(or GOVPKI_SSO_URL).")
@click.option("--key", "key_ref", default=None,
              help="The key to log in with (id:…); default: the client-authentication "
                   "certificate valid longest.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def token_sign_challenge(code: str, module: str, token_label: str, provider_url: str,
                         key_ref: str | None, yes: bool) -> None:
    """Log in at the SSO provider: sign the challenge that the login page shows as CODE with
    the USB key (统一身份认证 证书登录)."""
    from hsm.challenge import ChallengeClient

    client = ChallengeClient(provider_url)
    challenge = client.fetch(code)
    click.echo(f"login at {challenge.origin}, asked from {challenge.requested_from or '?'} "
               f"at {challenge.requested_at or '?'}", err=True)
    if not yes and not click.confirm("Is this your own login, on the screen in front of you?",
                                     err=True):
        raise click.Abort()
    pin = _secret("GOVPKI_TOKEN_PIN", "USB key PIN")
    with open_token(module, token_label, pin) as usb:
        certificate_der, signature = client.sign(usb, challenge, key_ref)
    reply = client.answer(code, certificate_der, signature)
    click.echo(f"signed in as {reply.get('name', '?')} ({reply.get('username', '?')}): the "
               "browser continues by itself")

"""``govpki ocsp``: pre-sign answers and renew the delegated signers (mounted by govpki/cli.py)."""

from __future__ import annotations

import json

import click

from ca.cli import ca_context
from ca.context import default_actor
from core.errors import GovpkiError
from ocsp.responder import OcspResponder
from ocsp.signer import ensure_fresh


@click.group("ocsp")
def ocsp_group() -> None:
    """OCSP responder: pre-signed answers and signer renewal. (在线证书状态协议)"""


@ocsp_group.command("presign")
@click.option("--ca", "ca", default=None, help="Only this CA (default: every CA with a signer).")
@click.option("--force", is_flag=True, help="Re-sign even answers that are not yet due.")
def presign_cmd(ca: str | None, force: bool) -> None:
    """Sign (and store) the answers of every unexpired certificate now."""
    try:
        with ca_context() as ctx:
            responder = OcspResponder(ctx)
            responder.load()
            count = responder.presign_all(
                ca, force=force, progress=lambda n: click.echo(f"  {n} signed", err=True))
    except GovpkiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"signed {count} answer(s)")


@ocsp_group.command("renew-signers")
@click.option("--ca", "ca", default=None, help="Only this CA.")
@click.option("--force", is_flag=True, help="Renew even if more than a third of validity remains.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def renew_cmd(ca: str | None, force: bool, as_json: bool) -> None:
    """Re-certify OCSP signers with less than a third of their validity left (new key)."""
    try:
        with ca_context() as ctx:
            renewed = ensure_fresh(ctx, actor=default_actor(), force=force, ca=ca)
    except GovpkiError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps([{"ca": r.ca, "old_serial": r.old_serial,
                                "new_serial": r.new_serial, "key_uri": r.key_uri,
                                "not_after": r.not_after.isoformat()} for r in renewed]))
        return
    if not renewed:
        click.echo("no OCSP signer is due for renewal")
    for r in renewed:
        click.echo(f"{r.ca}: signer {r.old_serial} → {r.new_serial} ({r.key_uri}), "
                   f"valid until {r.not_after:%Y-%m-%d}")

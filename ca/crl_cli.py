"""`govpki crl ...`: publish CRLs by hand (the server republishes on a schedule through
ca.crl.republish_due). Errors surface as GovpkiError; govpki/cli.py maps them to one-line
messages and exit codes."""

from __future__ import annotations

import click

from ca.cli import ca_context
from ca.context import default_actor
from ca.crl import CrlRecord, publish_crls, publish_delta, republish_due
from hsm.keystore import open_pkcs11_store


def _line(record: CrlRecord) -> str:
    kind = f"delta CRL #{record.number} on #{record.base_number}" if record.is_delta \
        else f"full CRL #{record.number}"
    name = record.ca if record.generation == 1 else f"{record.ca}/g{record.generation}"
    return (f"{name:12} {kind:28} {record.entries:>8} entries  "
            f"{record.this_update:%Y-%m-%d %H:%M:%SZ} → {record.next_update:%Y-%m-%d %H:%M:%SZ}")


@click.group("crl")
def crl_group() -> None:
    """Certificate revocation lists: full and delta, per CA (证书吊销列表)."""


@crl_group.command("publish")
@click.option("--ca", "ca_name", default=None, help="Only this CA (default: every CA).")
@click.option("--delta-only", is_flag=True,
              help="Only a delta CRL on the newest full CRL.")
@click.option("--if-due", is_flag=True,
              help="Only where the newest CRL is older than half its validity (for cron).")
@click.option("--pkcs11-module", default=None,
              help="Sign with a key on this module's token instead of the configured one "
                   "(the offline root's token, brought out for the purpose); needs --ca.")
@click.option("--token-label", default=None, help="Label of that token.")
@click.option("--pin-env", default="GOVPKI_ROOT_PIN", show_default=True,
              help="Environment variable holding that token's PIN (never on the command line).")
def publish_cmd(ca_name: str | None, delta_only: bool, if_due: bool,
                pkcs11_module: str | None, token_label: str | None, pin_env: str) -> None:
    """Sign and store a full CRL and a delta CRL now (发布证书吊销列表)."""
    if delta_only and if_due:
        raise click.UsageError("--delta-only and --if-due cannot be combined")
    if bool(pkcs11_module) != bool(token_label):
        raise click.UsageError("--pkcs11-module and --token-label go together")
    if pkcs11_module and ca_name is None:
        raise click.UsageError("--pkcs11-module needs --ca: that token holds one CA's key")
    actor = default_actor()
    with ca_context() as ctx:
        signer = None
        if pkcs11_module and token_label and ca_name:
            from ca.store import get_authority
            from core.db import transaction

            with transaction(ctx.sessions) as session:
                key_uri = get_authority(session, ca_name).key_uri
            signer = open_pkcs11_store(pkcs11_module, token_label, pin_env).get(key_uri)
        if if_due:
            records = republish_due(ctx, ca_name, actor=actor, signer=signer)
        elif delta_only:
            records = publish_delta(ctx, ca_name, actor=actor, signer=signer)
        else:
            records = publish_crls(ctx, ca_name, actor=actor, signer=signer)
    for record in records:
        click.echo(_line(record))
    if not records:
        click.echo("nothing was due", err=True)

"""`govpki crl ...`: publish CRLs by hand (the server republishes on a schedule through
ca.crl.republish_due). Errors surface as GovpkiError; govpki/cli.py maps them to one-line
messages and exit codes."""

from __future__ import annotations

import click

from ca.cli import ca_context
from ca.context import default_actor
from ca.crl import CrlRecord, publish_crls, publish_delta, republish_due


def _line(record: CrlRecord) -> str:
    kind = f"delta CRL #{record.number} on #{record.base_number}" if record.is_delta \
        else f"full CRL #{record.number}"
    return (f"{record.ca:12} {kind:28} {record.entries:>8} entries  "
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
def publish_cmd(ca_name: str | None, delta_only: bool, if_due: bool) -> None:
    """Sign and store a full CRL and a delta CRL now (发布证书吊销列表)."""
    if delta_only and if_due:
        raise click.UsageError("--delta-only and --if-due cannot be combined")
    actor = default_actor()
    with ca_context() as ctx:
        if if_due:
            records = republish_due(ctx, ca_name, actor=actor)
        elif delta_only:
            records = publish_delta(ctx, ca_name, actor=actor)
        else:
            records = publish_crls(ctx, ca_name, actor=actor)
    for record in records:
        click.echo(_line(record))
    if not records:
        click.echo("nothing was due", err=True)

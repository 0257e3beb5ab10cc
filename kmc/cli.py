"""`govpki kmc ...`: the key management centre's commands (密钥管理中心).

The acting operator is GOVPKI_ACTOR, resolved to an RA operator by the composition root
(kmc does not import ra): govpki/cli.py mounts :func:`kmc_group_with` with the RA's resolver.
The HSM's PIN comes from the environment variable the key store names (GOVPKI_PKCS11_PIN by
default) or a hidden prompt, never argv. Released keys are written as JSON envelopes wrapped
for the target token's transport key (0600, never overwritten): they are useless without that
token. Errors are GovpkiError subclasses; govpki/cli.py turns them into one-line messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import click
from sqlalchemy.orm import Session, sessionmaker

from ca.cli import ca_context
from ca.context import CaContext, default_actor
from core.config import load_config
from kmc import escrow, keys, recovery
from kmc.authz import ESCROW_VIEW, Actor, authorize, visible_path
from kmc.errors import KmcError

ActorResolver = Callable[[sessionmaker[Session], str], Actor]

#: How commands open the CA context; tests replace it with their own.
open_context: Callable[[], AbstractContextManager[CaContext]] = ca_context
_resolver: ActorResolver | None = None


def kmc_group_with(resolve_actor: ActorResolver) -> click.Group:
    """The `kmc` group, with the operator resolver of the RA (wired by govpki/cli.py)."""
    global _resolver
    _resolver = resolve_actor
    return kmc_group


@contextmanager
def _context() -> Iterator[CaContext]:
    if open_context is ca_context:
        _ask_for_pin()
    with open_context() as ctx:
        yield ctx


def _ask_for_pin() -> None:
    """A PKCS#11 key store takes its PIN from the environment: prompt (hidden) if it is not
    set, for this process only."""
    ks = load_config().keystore
    if (ks.type == "pkcs11" or ks.pkcs11_module) and not os.environ.get(ks.pin_env):
        os.environ[ks.pin_env] = str(click.prompt(f"HSM user PIN ({ks.pin_env})",
                                                  hide_input=True))


def _actor(ctx: CaContext) -> Actor:
    if _resolver is None:
        raise KmcError("the kmc commands need the RA's operators: run them as `govpki kmc`")
    return _resolver(ctx.sessions, default_actor())


@click.group("kmc")
def kmc_group() -> None:
    """Key management centre: escrow and recovery of encryption keys. (密钥管理中心)"""


@kmc_group.command("init")
@click.option("--key-uri", default=None,
              help="Where to create the master key (default: kmc-master on the configured "
                   "PKCS#11 token, else file:kmc-master).")
def init_cmd(key_uri: str | None) -> None:
    """Create the KMC master key (once; part of the key ceremony)."""
    with _context() as ctx:
        record, info = keys.init_master_key(ctx, actor=default_actor(), key_uri=key_uri)
    click.echo(f"KMC master key {record.key_uri} created ({record.mechanism})")
    for name, value in sorted(info.protection.items()):
        click.echo(f"  {name} = {value}")


@kmc_group.command("escrow-list")
@click.option("--owner", default=None, help="Only this owner (ra-official:<id>, ra-org:<code>).")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def escrow_list_cmd(owner: str | None, page: int, as_json: bool) -> None:
    """Escrowed keys you may see (public data only)."""
    with _context() as ctx:
        items, total = escrow.list_escrows(ctx, _actor(ctx), owner_ref=owner, page=page)
    if as_json:
        click.echo(json.dumps({"total": total, "items": [{
            "id": r.id, "owner": r.owner_ref, "organisation": r.organisation_code,
            "profile": r.profile, "key_type": r.key_type, "state": r.state,
            "certificate": f"{r.certificate_ca}/{r.certificate_serial}"
            if r.certificate_serial else None, "public_key_sha256": r.public_key_sha256,
            "created_at": r.created_at.isoformat(), "deliveries": r.deliveries}
            for r in items]}, ensure_ascii=False))
        return
    for r in items:
        cert = f"{r.certificate_ca}/{r.certificate_serial}" if r.certificate_serial else "-"
        click.echo(f"{r.id:6} {r.state:10} {r.owner_ref:24} {r.organisation_code:12} "
                   f"{r.key_type:9} {cert}  key {r.public_key_sha256[:16]}")
    click.echo(f"{total} escrowed keys", err=True)


def _recover(kind: str, escrow_id: int | None, serial: str | None, ca: str | None,
             transport_key: Path, reason: str) -> None:
    if (escrow_id is None) == (serial is None):
        raise click.UsageError("name the key with --escrow ID or --certificate SERIAL")
    with _context() as ctx:
        record = recovery.submit(ctx, _actor(ctx), kind,
                                 transport_public_key=transport_key.read_bytes(), reason=reason,
                                 escrow_id=escrow_id, ca=ca, serial=serial)
    click.echo(f"recovery {record.id} submitted for escrowed key {record.escrow_id} "
               f"({record.owner_ref}) to transport key {record.transport_key_sha256[:16]}; "
               f"it needs {record.required_approvals} approval(s) by another operator "
               f"(`govpki kmc approve {record.id}`)")


_ESCROW = click.option("--escrow", "escrow_id", type=int, default=None, help="Escrowed key id.")
_CERT = click.option("--certificate", "serial", default=None,
                     help="Or the serial of the key's encryption certificate.")
_CA = click.option("--ca", default=None, help="The certificate's CA (if the serial is ambiguous).")
_TRANSPORT = click.option("--transport-key", type=click.Path(exists=True, dir_okay=False,
                          path_type=Path), required=True,
                          help="The target token's transport public key (PEM/DER SPKI).")


@kmc_group.command("recover-user")
@_ESCROW
@_CERT
@_CA
@_TRANSPORT
@click.option("--reason", required=True, help="What happened to the USB key.")
def recover_user_cmd(escrow_id: int | None, serial: str | None, ca: str | None,
                     transport_key: Path, reason: str) -> None:
    """Ask to recover an official's key onto their new USB key (two-person rule)."""
    _recover("user", escrow_id, serial, ca, transport_key, reason)


@kmc_group.command("recover-authorised")
@_ESCROW
@_CERT
@_CA
@_TRANSPORT
@click.option("--reason", required=True,
              help="The legal basis (case, warrant, archive order): recorded verbatim.")
def recover_authorised_cmd(escrow_id: int | None, serial: str | None, ca: str | None,
                           transport_key: Path, reason: str) -> None:
    """Ask to release a key to your recovery token for a legal reason (two-person rule)."""
    _recover("authorised", escrow_id, serial, ca, transport_key, reason)


@kmc_group.command("approve")
@click.argument("recovery_id", type=int)
@click.option("--comment", default="", help="Why you agree.")
def approve_cmd(recovery_id: int, comment: str) -> None:
    """Approve someone else's recovery request."""
    with _context() as ctx:
        record = recovery.approve(ctx, _actor(ctx), recovery_id, comment)
    click.echo(f"recovery {record.id}: {record.state} ({len(record.approvals)} of "
               f"{record.required_approvals} approvals)")


@kmc_group.command("reject")
@click.argument("recovery_id", type=int)
@click.option("--comment", required=True, help="Why (recorded).")
def reject_cmd(recovery_id: int, comment: str) -> None:
    """Reject a recovery request."""
    with _context() as ctx:
        record = recovery.reject(ctx, _actor(ctx), recovery_id, comment)
    click.echo(f"recovery {record.id}: {record.state}")


@kmc_group.command("release")
@click.argument("recovery_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the wrapped key (JSON; refused if it exists).")
def release_cmd(recovery_id: int, out: Path) -> None:
    """Take an approved recovery: the key wrapped for the target token's transport key."""
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{out} exists; refusing to overwrite it") from None
    try:
        with _context() as ctx:
            wrapped = recovery.release(ctx, _actor(ctx), recovery_id)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(wrapped.to_json(), fh)
    except BaseException:
        os.unlink(out)
        raise
    click.echo(f"recovery {recovery_id} released to {out}: unwrap it on the target token "
               f"(transport key {wrapped.transport_key_sha256[:16]})")


@kmc_group.command("recoveries")
@click.option("--state", type=click.Choice(["submitted", "approved", "rejected", "released"]),
              default=None)
def recoveries_cmd(state: str | None) -> None:
    """Recovery requests and where they stand (needs kmc.escrow.view)."""
    with _context() as ctx:
        actor = _actor(ctx)
        items = recovery.list_recoveries(ctx, state=state)
        visible = visible_path(actor, ESCROW_VIEW)
        if visible is None:
            authorize(ctx.sessions, actor, ESCROW_VIEW, actor.organisation.path,
                      object_type="kmc-recovery", object_id="")
            visible = actor.organisation.path
    for r in items:
        if not r.organisation_path.startswith(visible):
            continue
        click.echo(f"{r.id:6} {r.kind:10} {r.state:9} escrow {r.escrow_id} {r.owner_ref} "
                   f"by {r.submitted_by} approvals {len(r.approvals)}/{r.required_approvals}"
                   f"  {r.reason[:60]}")

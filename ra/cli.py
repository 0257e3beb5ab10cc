"""`govpki ra ...`: the RA operator's commands.

The acting operator is GOVPKI_ACTOR (ca.context.default_actor). Bootstrap: on a fresh
installation `govpki ra orgs load` and then `govpki ra operator add NAME --org CODE --role
ca-admin` work without an operator, once; after that every command needs GOVPKI_ACTOR to name an
operator allowed to run it. Errors are GovpkiError subclasses; govpki/cli.py turns them into
one-line messages and exit codes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

import click

from ca.cli import ca_context
from ca.context import CaContext, default_actor
from core.db import transaction
from ra import api_tokens, credentials, enrollment, operators, orgs, requests
from ra import officials as officials_mod
from ra.config import ra_config_from
from ra.errors import ImportRefused
from ra.records import Operator

#: How commands open the CA context; tests replace it with their own.
open_context: Callable[[], AbstractContextManager[CaContext]] = ca_context


def _actor(ctx: CaContext) -> Operator:
    return operators.resolve_actor(ctx.sessions, default_actor())


@click.group("ra")
def ra_group() -> None:
    """Registration authority: organisations, officials, operators, requests. (注册审核机构)"""


@ra_group.group("orgs")
def orgs_group() -> None:
    """The organisation tree (单位)."""


@orgs_group.command("load")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False,
                                                        path_type=Path))
def orgs_load(file: Path | None) -> None:
    """Load or update the tree from CSV (default: the packaged ra/data/orgs.csv)."""
    with open_context() as ctx:
        actor = "bootstrap"
        if operators.operator_count(ctx.sessions):
            operator = _actor(ctx)
            from ra.authz import authorize

            authorize(ctx.sessions, operator, "org.load", None)
            actor = operator.username
        text = file.read_text(encoding="utf-8") if file else None
        created, updated = orgs.load_organisations(ctx.sessions, text, actor=actor)
    click.echo(f"organisations: {created} created, {updated} updated")


@orgs_group.command("list")
@click.option("--tree", is_flag=True, help="Indent by depth.")
def orgs_list(tree: bool) -> None:
    """Organisations you may see."""
    from ra.authz import authorize, visible_path

    with open_context() as ctx:
        actor = _actor(ctx)
        prefix = visible_path(actor, "org.view")
        if prefix is None:
            authorize(ctx.sessions, actor, "org.view", actor.organisation)
            return
        with transaction(ctx.sessions) as session:
            items = orgs.list_organisations(session, prefix)
    for org in items:
        indent = "  " * org.depth if tree else ""
        click.echo(f"{indent}{org.code:12} {org.kind:10} {org.name}")


@ra_group.group("operator")
def operator_group() -> None:
    """Operator accounts and roles (操作员)."""


@operator_group.command("add")
@click.argument("username")
@click.option("--org", "org_code", required=True, help="Organisation code of the account.")
@click.option("--role", required=True, help="Role from policies/authz.yaml.")
@click.option("--name", "display_name", default=None, help="Display name.")
@click.option("--official", "official", default=None,
              help="Official identifier (for the self-service official role).")
def operator_add(username: str, org_code: str, role: str, display_name: str | None,
                 official: str | None) -> None:
    """Create an account. With no operator yet, creates the first ca-admin (bootstrap)."""
    with open_context() as ctx:
        actor = _actor(ctx) if operators.operator_count(ctx.sessions) else None
        op = operators.add_operator(ctx.sessions, actor, username, org_code=org_code,
                                    role=role, display_name=display_name,
                                    official_identifier=official)
    click.echo(f"operator {op.username} ({', '.join(sorted(op.roles))}) at "
               f"{op.organisation.code}")


@operator_group.command("grant")
@click.argument("username")
@click.argument("role")
def operator_grant(username: str, role: str) -> None:
    """Add a role to an account (pending a second operator when the policy says so)."""
    with open_context() as ctx:
        op = operators.grant_role(ctx.sessions, _actor(ctx), username, role)
    state = "pending approval" if role in op.pending_roles else "active"
    click.echo(f"{username}: role {role} {state}")


@operator_group.command("approve")
@click.argument("username")
@click.argument("role")
def operator_approve(username: str, role: str) -> None:
    """Approve another operator's pending role grant (two-person rule)."""
    with open_context() as ctx:
        operators.approve_role(ctx.sessions, _actor(ctx), username, role)
    click.echo(f"{username}: role {role} active")


@operator_group.command("list")
def operator_list() -> None:
    with open_context() as ctx:
        items = operators.list_operators(ctx.sessions, _actor(ctx))
    for op in items:
        pending = f" (pending: {', '.join(sorted(op.pending_roles))})" if op.pending_roles else ""
        click.echo(f"{op.username:20} {op.organisation.code:12} "
                   f"{','.join(sorted(op.roles))}{pending}")


def _new_password() -> str:
    """GOVPKI_NEW_PASSWORD, or a hidden prompt asked twice: never argv (it would show in ps)."""
    value = os.environ.get("GOVPKI_NEW_PASSWORD")
    if value:
        return value
    return str(click.prompt("new password", hide_input=True, confirmation_prompt=True))


@operator_group.command("set-password")
@click.argument("username")
def operator_set_password(username: str) -> None:
    """Set or reset an account's password (from GOVPKI_NEW_PASSWORD or a prompt).

    On one's own account, or as a security administrator on anyone's; before any login
    exists (bootstrap on the CA machine) the first accounts' passwords are set locally."""
    with open_context() as ctx:
        actor = _local_actor(ctx)
        credentials.set_password(ctx, actor, username, _new_password())
    click.echo(f"{username}: password set; other sessions of the account ended")


@operator_group.command("totp")
@click.argument("username")
def operator_totp(username: str) -> None:
    """Enrol a new TOTP second factor and print its otpauth:// URI (once: scan or type it)."""
    with open_context() as ctx:
        uri = credentials.enroll_totp(ctx, _local_actor(ctx), username)
    click.echo(uri)


def _local_actor(ctx: CaContext) -> Operator | None:
    """GOVPKI_ACTOR when set; unset, the local bootstrap on the CA machine (None)."""
    return _actor(ctx) if os.environ.get("GOVPKI_ACTOR") else None


@ra_group.group("api-token")
def api_token_group() -> None:
    """Bearer tokens for REST API clients (接口令牌)."""


@api_token_group.command("create")
@click.argument("username")
@click.argument("name")
@click.option("--days", type=int, default=90, show_default=True)
def api_token_create(username: str, name: str, days: int) -> None:
    """Create a token acting as USERNAME; it is printed once."""
    with open_context() as ctx:
        token, record = api_tokens.create_api_token(ctx, _actor(ctx), username, name,
                                                    days=days)
    click.echo(token)
    click.echo(f"# token {record.id} for {username}, expires {record.expires_at:%Y-%m-%d}",
               err=True)


@api_token_group.command("list")
@click.argument("username")
def api_token_list(username: str) -> None:
    with open_context() as ctx:
        items = api_tokens.list_api_tokens(ctx, _actor(ctx), username)
    for t in items:
        state = "revoked" if t.revoked_at else f"expires {t.expires_at:%Y-%m-%d}"
        click.echo(f"{t.id:6} {t.prefix}…  {t.name:24} {state}")


@api_token_group.command("revoke")
@click.argument("token_id", type=int)
def api_token_revoke(token_id: int) -> None:
    with open_context() as ctx:
        api_tokens.revoke_api_token(ctx, _actor(ctx), token_id)
    click.echo(f"token {token_id} revoked")


@ra_group.command("enrollment-code")
@click.argument("official")
@click.option("--kind", type=click.Choice(["new-pair", "renewal", "re-key"]),
              default="new-pair", show_default=True)
def enrollment_code(official: str, kind: str) -> None:
    """Hand out a one-time code for `govpki token enroll` (注册码), printed once."""
    with open_context() as ctx:
        code, record = enrollment.create_enrollment_code(
            ctx, _actor(ctx), official, kind=kind, config=ra_config_from(ctx.config.sections))
    click.echo(code)
    click.echo(f"# for {official} ({kind}), valid until {record.expires_at:%Y-%m-%d %H:%M} UTC",
               err=True)


@ra_group.group("official")
def official_group() -> None:
    """Officials (工作人员)."""


@official_group.command("add")
@click.argument("identifier")
@click.option("--name", required=True)
@click.option("--org", "org_code", required=True)
@click.option("--position", default="")
@click.option("--contact", default="")
@click.option("--unit", default=None, help="OU in the certificate subject (optional).")
def official_add(identifier: str, name: str, org_code: str, position: str, contact: str,
                 unit: str | None) -> None:
    """Register an official."""
    with open_context() as ctx:
        o = officials_mod.create_official(ctx.sessions, _actor(ctx), officials_mod.OfficialInput(
            identifier, name, org_code, position, contact, unit))
    click.echo(f"official {o.identifier} {o.name} at {o.organisation.code}")


@official_group.command("list")
@click.option("--org", "org_code", default=None)
@click.option("--search", "query", default=None, help="Name contains / identifier starts with.")
@click.option("--page", default=1, show_default=True)
@click.option("--per-page", default=50, show_default=True)
def official_list(org_code: str | None, query: str | None, page: int, per_page: int) -> None:
    with open_context() as ctx:
        result = officials_mod.list_officials(ctx.sessions, _actor(ctx), org_code=org_code,
                                              query=query, page=page, per_page=per_page)
    for o in result.items:
        click.echo(f"{o.identifier:20} {o.name:10} {o.organisation.code:12} {o.status:6} "
                   f"{o.position}")
    click.echo(f"page {result.page}/{result.pages}, {result.total} official(s)", err=True)


@official_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def official_import(file: Path) -> None:
    """Bulk import from a CSV or XLSX roster: all rows or none, with a per-row report."""
    with open_context() as ctx:
        try:
            created = officials_mod.import_officials(ctx.sessions, _actor(ctx),
                                                     file.read_bytes())
        except ImportRefused as exc:
            click.echo(exc.report(), err=True)
            raise
    click.echo(f"imported {len(created)} official(s)")


@ra_group.group("request")
def request_group() -> None:
    """Certificate requests (证书申请)."""


@request_group.command("submit")
@click.argument("official")
@click.option("--kind", required=True, type=click.Choice(requests.REQUEST_KINDS))
@click.option("--csr", "csr_file", type=click.File("rb"), default=None)
@click.option("--serial", "serials", multiple=True, help="Certificate serial. Repeatable.")
@click.option("--ca", "ca_name", default=None)
@click.option("--reason", default=None, help="RFC 5280 reason (revocation).")
@click.option("--comment", default="")
def request_submit(official: str, kind: str, csr_file: BinaryIO | None,
                   serials: tuple[str, ...], ca_name: str | None, reason: str | None,
                   comment: str) -> None:
    with open_context() as ctx:
        csr = csr_file.read() if csr_file is not None else None
        r = requests.submit(ctx, _actor(ctx), official, kind, csr=csr, serials=serials,
                            ca=ca_name, reason=reason, comment=comment)
    click.echo(f"request {r.id} submitted ({r.kind}, needs {r.required_approvals} "
               "approval(s))")


@request_group.command("approve")
@click.argument("request_id", type=int)
@click.option("--comment", default="")
@click.option("--no-execute", is_flag=True, help="Only approve; execute later.")
def request_approve(request_id: int, comment: str, no_execute: bool) -> None:
    """Approve; once approved, issue (or revoke/suspend/release) at once."""
    with open_context() as ctx:
        actor = _actor(ctx)
        r = requests.approve(ctx, actor, request_id, comment)
        if r.state == "approved" and not no_execute:
            r = requests.execute(ctx, actor, request_id)
    _show(r)


@request_group.command("execute")
@click.argument("request_id", type=int)
def request_execute(request_id: int) -> None:
    """Carry out an approved request (again, after a failure)."""
    with open_context() as ctx:
        r = requests.execute(ctx, _actor(ctx), request_id)
    _show(r)


@request_group.command("reject")
@click.argument("request_id", type=int)
@click.option("--comment", required=True, help="Why (the official is told).")
def request_reject(request_id: int, comment: str) -> None:
    with open_context() as ctx:
        _show(requests.reject(ctx, _actor(ctx), request_id, comment))


@request_group.command("list")
@click.option("--state", default=None)
@click.option("--page", default=1, show_default=True)
def request_list(state: str | None, page: int) -> None:
    with open_context() as ctx:
        result = requests.list_requests(ctx, _actor(ctx), state=state, page=page)
    for r in result.items:
        _show(r)


def _show(r: requests.RequestRecord) -> None:
    issued = ",".join(f"{c.ca}/{c.serial}" for c in r.issued)
    extra = f" issued={issued}" if issued else ""
    enc = f" encryption={r.encryption_status}" if r.encryption_status else ""
    click.echo(f"{r.id:6} {r.kind:10} {r.state:9} {r.official.identifier:16} "
               f"approvals={len(r.approvals)}/{r.required_approvals}{extra}{enc}")



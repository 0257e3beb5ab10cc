"""`govpki sso ...`: clients (office applications) and ID-token keys.

The acting operator is GOVPKI_ACTOR (ca.context.default_actor), who must be a ca-admin for
clients and keys. A client secret is printed once, to stdout, and never put on a command line
(the registrar passes it on through a secure channel).
"""

from __future__ import annotations

import click

from apps.sso import clients, keys
from ca.cli import ca_context
from ca.context import CaContext, default_actor
from ra.operators import resolve_actor
from ra.records import Operator


def _actor(ctx: CaContext) -> Operator:
    return resolve_actor(ctx.sessions, default_actor())


@click.group("sso")
def sso_group() -> None:
    """Single sign-on: registered applications and token keys (统一身份认证)."""


@sso_group.group("client")
def client_group() -> None:
    """Office applications that log users in through the provider (应用接入)."""


@client_group.command("add")
@click.argument("name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="An exact redirect URI (repeat for several).")
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True,
              help="Where RP-initiated logout may return (repeatable).")
@click.option("--backchannel-logout-uri", default=None,
              help="Where logout tokens are POSTed (Back-Channel Logout 1.0).")
@click.option("--initiate-login-uri", default=None,
              help="The application's entry the office portal links to.")
@click.option("--client-id", default=None, help="Choose the client id (default: generated).")
@click.option("--public", is_flag=True, help="A public client: no secret, PKCE alone.")
def client_add(name: str, redirect_uris: tuple[str, ...], post_logout: tuple[str, ...],
               backchannel_logout_uri: str | None, initiate_login_uri: str | None,
               client_id: str | None, public: bool) -> None:
    """Register an application; prints its client id (and secret, once)."""
    with ca_context() as ctx:
        client, secret = clients.add_client(
            ctx.sessions, _actor(ctx), name, redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout,
            backchannel_logout_uri=backchannel_logout_uri,
            initiate_login_uri=initiate_login_uri, public=public, client_id=client_id)
    click.echo(f"client_id: {client.client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("the secret is shown this once; only its hash is kept", err=True)


@client_group.command("list")
def client_list() -> None:
    """Registered applications and their exact redirect URIs."""
    with ca_context() as ctx:
        items = clients.list_clients(ctx.sessions, include_inactive=True)
    for c in items:
        state = "" if c.active else " (disabled)"
        kind = "public" if c.public else "confidential"
        click.echo(f"{c.client_id:24} {c.name}{state} [{kind}]")
        for uri in c.redirect_uris:
            click.echo(f"    redirect   {uri}")
        if c.backchannel_logout_uri:
            click.echo(f"    logout     {c.backchannel_logout_uri}")


@client_group.command("disable")
@click.argument("client_id")
def client_disable(client_id: str) -> None:
    """Stop an application from logging anyone in (its registration is kept)."""
    with ca_context() as ctx:
        clients.set_active(ctx.sessions, _actor(ctx), client_id, False)
    click.echo(f"{client_id} disabled")


@sso_group.group("key")
def key_group() -> None:
    """ID-token signing keys (ES256) in the key store."""


@key_group.command("rotate")
@click.option("--key-uri", default=None,
              help="Adopt an existing EC P-256 key (file:… or pkcs11:…) instead of generating.")
def key_rotate(key_uri: str | None) -> None:
    """Make a new current key; the current one stays in the JWKS as previous."""
    with ca_context() as ctx:
        actor = _actor(ctx)
        clients.require_admin(ctx.sessions, actor, "sso.key.rotate", key_uri or "")
        record = keys.rotate(ctx, actor=actor.username, key_uri=key_uri)
    click.echo(f"current key {record.kid} ({record.key_uri})")


@key_group.command("list")
def key_list() -> None:
    """Keys the JWKS lists (current, previous) and retired ones."""
    with ca_context() as ctx:
        records = keys.list_keys(ctx, include_retired=True)
    for r in records:
        click.echo(f"{r.status:9} {r.kid} {r.alg} {r.key_uri} {r.created_at:%Y-%m-%d %H:%M}")

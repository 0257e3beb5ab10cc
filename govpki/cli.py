"""The `govpki` command: mounts every package's click group; the one place where errors
become one-line messages and exit codes (never a stack trace)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from apps.exchange.cli import exchange_group
from apps.sso.cli import sso_group
from ca.cli import (
    CONTEXT_HOOKS,
    DEMO_CEREMONY,
    MIGRATION_LOCATIONS,
    SUBSCRIBER_LOOKUPS,
    ca_context,
    ca_group,
    run_ceremony_file,
)
from ca.context import CaContext
from ca.crl_cli import crl_group
from core.errors import GovpkiError
from govpki.backup import backup_cmd, restore_cmd
from govpki.kmc_wiring import install_kmc
from govpki.migrations import all_version_locations
from govpki.refresh import refresh_cmd
from govpki.retention import retention_group
from govpki.subscribers import official_to_notify
from hsm.token_cli import token_group
from kmc.cli import kmc_group_with
from ocsp.cli import ocsp_group
from ra.cli import ra_group
from ra.operators import resolve_actor as resolve_ra_operator
from signing.cms_cli import sign_file_command, verify_file_command
from signing.pdf_cli import sign_group, verify_group

EXIT_ERROR = 1
EXIT_INTERNAL = 3
#: Below deploy/systemd/govpki.service's TimeoutStopSec (30 s), so granian ends its own workers.
WORKERS_KILL_TIMEOUT = 25


class GovpkiGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GovpkiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `govpki ... | head`: the reader left; stop quietly like any Unix tool.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except Exception as exc:
            # Never a stack trace for the operator; GOVPKI_DEBUG=1 shows it to a developer.
            if os.environ.get("GOVPKI_DEBUG") == "1":
                raise
            first = (str(exc).splitlines() or [""])[0]
            click.echo(f"error: unexpected {type(exc).__name__}: {first} "
                       "(GOVPKI_DEBUG=1 shows details)", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=GovpkiGroup)
@click.version_option(package_name="govpki")
def cli() -> None:
    """govpki — 青海省电子政务数字证书系统 (provincial government PKI)."""
    install_kmc()


cli.add_command(ca_group)
cli.add_command(ocsp_group)
cli.add_command(crl_group)
cli.add_command(ra_group)
cli.add_command(token_group)
cli.add_command(kmc_group_with(resolve_ra_operator))
cli.add_command(sso_group)
cli.add_command(exchange_group)
# `govpki sign pdf|file`, `govpki verify pdf|file` (signing/: PAdES and CMS)
sign_group.add_command(sign_file_command)
verify_group.add_command(verify_file_command)
cli.add_command(sign_group)
cli.add_command(verify_group)
cli.add_command(backup_cmd)
cli.add_command(restore_cmd)
cli.add_command(refresh_cmd)
cli.add_command(retention_group)
SUBSCRIBER_LOOKUPS.append(official_to_notify)  # `ca compromise` reports whom to notify


def _ocsp_signs_in_this_process(ctx: CaContext) -> Callable[[], None]:
    """Revoking from the CLI re-signs the OCSP answer before the command returns (issue 4)."""
    from ocsp.events import install

    return install(ctx, listen=False).close


CONTEXT_HOOKS.append(_ocsp_signs_in_this_process)
MIGRATION_LOCATIONS.extend(all_version_locations())


@cli.command("init")
@click.option("--ceremony", "ceremony_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None, help="Ceremony file (default: the demo hierarchy).")
@click.option("--if-empty", is_flag=True,
              help="Do nothing (exit 0) when the home already holds a CA, as `make run` needs.")
def init_cmd(ceremony_file: Path | None, if_empty: bool) -> None:
    """Initialise an empty GOVPKI_HOME: schema, then the demo key ceremony (初始化)."""
    from ca.setup import is_initialised
    from core.config import home_from_env

    home = home_from_env()
    if if_empty and is_initialised():
        click.echo(f"{home} is already initialised", err=True)
        return
    click.echo(f"initialising {home}", err=True)
    file = ceremony_file or DEMO_CEREMONY
    # The demo runs on file keys; without GOVPKI_KEY_PASSPHRASE a 0600 passphrase file is made.
    run_ceremony_file(file, None, None, "GOVPKI_PKCS11_PIN", demo=True,
                      locations=all_version_locations())
    _load_demo_organisations()
    _register_exchange_client()
    from core.config import load_config
    from signing.config import tsa_config_from

    if tsa_config_from(load_config().sections).clock_source == "none":
        click.echo("warning: the demo TSA does not check that the clock is synchronised "
                   "(govpki.toml [tsa] clock_source = \"none\"); production uses \"ntp\", "
                   "\"chrony\" or \"command\"", err=True)


def _load_demo_organisations() -> None:
    """The demo home gets the province's organisation tree (ra/data/orgs.csv), so the RA has
    something to register officials under from the first minute."""
    from ca.context import default_actor
    from ra.orgs import load_organisations

    with ca_context() as ctx:
        created, _updated = load_organisations(ctx.sessions, actor=default_actor())
    click.echo(f"organisation tree: {created} organisations loaded", err=True)


def _register_exchange_client() -> None:
    """The exchange pages' OIDC client at the provider (updated again on first use)."""
    from govpki.exchange_web import register_at_init

    with ca_context() as ctx:
        redirect_uri = register_at_init(ctx)
    click.echo(f"exchange pages registered at single sign-on ({redirect_uri})", err=True)


@cli.group("db")
def db_group() -> None:
    """Database schema (alembic migrations of every package)."""


def _upgrade() -> None:
    from core import migrate
    from core.config import load_config
    from core.db import make_engine

    config = load_config()
    config.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    try:
        migrate.upgrade(engine, all_version_locations())
    finally:
        engine.dispose()


@db_group.command("upgrade")
def db_upgrade_cmd() -> None:
    """Create or upgrade the schema to the newest revision."""
    _upgrade()
    click.echo("database schema is up to date")


@cli.group("audit")
def audit_group() -> None:
    """Tamper-evident audit log (审计日志)."""


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True)
def audit_verify_cmd(as_json: bool) -> None:
    """Walk the hash chain against the signed checkpoints; name the first problem."""
    import dataclasses
    import json

    from core.audit import verify_chain
    from core.db import transaction

    with ca_context() as ctx:
        public_key = ctx.keyring.get(ctx.config.audit.key_uri).public_key()
        with transaction(ctx.sessions) as session:
            report = verify_chain(
                session, ctx.config.path(ctx.config.audit.checkpoint_file), public_key
            )
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), ensure_ascii=False))
    else:
        state = "OK" if report.ok else "FAILED"
        click.echo(f"audit log {state}: {report.events_checked} events, "
                   f"{report.checkpoints_checked} checkpoints, last seq {report.last_seq}, "
                   f"checkpointed up to {report.checkpointed_seq}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        if report.first_problem:
            click.echo(f"first problem: {report.first_problem}")
    if not report.ok:
        sys.exit(EXIT_ERROR)


@audit_group.command("checkpoint")
def audit_checkpoint_cmd() -> None:
    """Sign the chain head now (run from a timer; archive the checkpoint file)."""
    from ca.cli import checkpoint

    with ca_context() as ctx:
        checkpoint(ctx)
    click.echo("checkpoint written")


@cli.command("serve")
@click.option("--host", default=None, help="Listen address (default from govpki.toml).")
@click.option("--port", type=int, default=None, help="Listen port (default from govpki.toml).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Threads per worker (default 8; 1 for --only ocsp, whose answers never wait "
                   "on I/O and run fastest without GIL contention — docs/PERFORMANCE.md).")
@click.option("--only", type=click.Choice(["ca", "ocsp", "tsa"]), default=None,
              help="Serve one part alone (e.g. an OCSP responder node).")
def serve_cmd(host: str | None, port: int | None, workers: int, threads: int | None,
              only: str | None) -> None:
    """Serve the HTTP endpoints with granian (CA certificates now; CRL, OCSP, TSA and the RA
    come with their issues)."""
    from granian import Granian
    from granian.constants import Interfaces

    from ca.setup import require_initialised
    from core.config import load_config

    config = load_config()
    require_initialised(config)  # fail here, in one line, not in every worker
    if only:
        os.environ["GOVPKI_SERVE_ONLY"] = only  # read by create_app in each worker
    from govpki.metrics import prepare_multiprocess

    prepare_multiprocess(config.home)  # workers' metrics add up (govpki/metrics.py)
    Granian(
        "govpki.wsgi:create_app", factory=True, interface=Interfaces.WSGI,
        address=host or config.listen_host, port=port or config.listen_port,
        workers=workers, blocking_threads=threads or (1 if only == "ocsp" else 8),
        # A worker that dies (an HSM or database not there yet at start-up) is started again
        # rather than taking the node down; a crash loop still ends the process, for systemd
        # to restart. A worker still finishing its requests after SIGTERM/SIGHUP is ended
        # after WORKERS_KILL_TIMEOUT s (granian 2 never stops one signalled while it loads).
        respawn_failed_workers=True, workers_kill_timeout=WORKERS_KILL_TIMEOUT,
    ).serve()


def main() -> None:
    cli(prog_name="govpki")


if __name__ == "__main__":
    main()

"""The `govpki` command: mounts every package's click group; the one place where errors
become one-line messages and exit codes (never a stack trace)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from gettext import gettext as _
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core.errors import GovpkiError

if TYPE_CHECKING:
    from ca.context import CaContext

EXIT_ERROR = 1
EXIT_INTERNAL = 3
#: Below deploy/systemd/govpki.service's TimeoutStopSec (30 s), so granian ends its own workers.
WORKERS_KILL_TIMEOUT = 25


class GovpkiGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            register_hooks()
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


#: Every package's command, mounted without importing it: name -> ("module:attribute", the
#: command's one-line help for `govpki --help`). The attribute is the click command, or a
#: function of no arguments that builds it. Importing them all cost 3-4 s of every start
#: (pkilint, pyHanko, aiohttp, Flask; docs/PERFORMANCE.md "CLI start-up"); a command now pays
#: for its own package only. tests/govpki/test_cli_startup.py keeps the help equal to the
#: commands' own.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "backup": ("govpki.backup:backup_cmd",
               "Write one archive (0600): database snapshot, configuration, encrypted keys, "
               "audit checkpoints, sealed RA secret, manifest (备份)."),
    "ca": ("ca.cli:ca_group",
           "Certificate authority: ceremony, profiles, issuance, revocation."),
    "crl": ("ca.crl_cli:crl_group",
            "Certificate revocation lists: full and delta, per CA (证书吊销列表)."),
    "exchange": ("apps.exchange.cli:exchange_group",
                 "Official-document exchange: send, inbox, fetch, receipts, tracking."),
    "kmc": ("govpki.cli:_kmc_group",
            "Key management centre: escrow and recovery of encryption keys."),
    "ocsp": ("ocsp.cli:ocsp_group", "OCSP responder: pre-signed answers and signer renewal."),
    "ra": ("ra.cli:ra_group",
           "Registration authority: organisations, officials, operators, requests."),
    "refresh": ("govpki.refresh:refresh_cmd",
                "Run the periodic jobs once: CRLs that are due, OCSP signers near expiry, an "
                "audit checkpoint (for a timer on every node; nodes on one database take "
                "turns)."),
    "restore": ("govpki.backup:restore_cmd",
                "Restore an archive onto an empty GOVPKI_HOME and empty database, then migrate "
                "(恢复)."),
    "retention": ("govpki.retention:retention_group",
                  "Records retention under the Electronic Signature Law (记录保存期限)."),
    "sign": ("govpki.cli:_sign_group", "Sign documents: PAdES for PDF papers."),
    "sso": ("apps.sso.cli:sso_group",
            "Single sign-on: registered applications and token keys (统一身份认证)."),
    "token": ("hsm.token_cli:token_group", "The official's USB key: enroll, renew, list."),
    "verify": ("govpki.cli:_verify_group", "Verify signed documents."),
}


class LazyGroup(GovpkiGroup):
    """click's "lazily loading subcommands" pattern: a command's module is imported when the
    command is resolved, and `govpki --help` is written from the table alone."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, tuple[str, str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            command = load_command(self.lazy_commands[cmd_name][0])
            self.add_command(command, cmd_name)  # once per process
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, with a stand-in carrying the table's help for each command
        not loaded yet (click shortens it to the terminal width the same way)."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(
                name, help=self.lazy_commands[name][1])
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _command in rows)
            with formatter.section(_("Commands")):
                formatter.write_dl([(name, command.get_short_help_str(limit))
                                    for name, command in rows])


def load_command(target: str) -> click.Command:
    """``module:attribute`` -> the click command (or what the function there builds)."""
    module_name, _sep, attribute = target.partition(":")
    found = getattr(import_module(module_name), attribute)
    command = found() if callable(found) and not isinstance(found, click.Command) else found
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


def _kmc_group() -> click.Command:
    from kmc.cli import kmc_group_with
    from ra.operators import resolve_actor as resolve_ra_operator

    return kmc_group_with(resolve_ra_operator)


def _sign_group() -> click.Command:
    """`govpki sign pdf|file` (signing/: PAdES and CMS)."""
    from signing.cms_cli import sign_file_command
    from signing.pdf_cli import sign_group

    sign_group.add_command(sign_file_command)
    return sign_group


def _verify_group() -> click.Command:
    """`govpki verify pdf|file`."""
    from signing.cms_cli import verify_file_command
    from signing.pdf_cli import verify_group

    verify_group.add_command(verify_file_command)
    return verify_group


def _ocsp_signs_in_this_process(ctx: CaContext) -> Callable[[], None]:
    """Revoking from the CLI re-signs the OCSP answer before the command returns (issue 4)."""
    from ocsp.events import install

    return install(ctx, listen=False).close


def register_hooks() -> None:
    """What ca/ takes from the composition root without importing the packages above it:
    the OCSP answer re-signed on revocation, every package's migrations for a ceremony, the
    RA's lookup of whom `ca compromise` notifies. GovpkiGroup.invoke calls it before any
    command runs; a second call adds nothing."""
    from ca.cli import CONTEXT_HOOKS, MIGRATION_LOCATIONS, SUBSCRIBER_LOOKUPS
    from govpki.migrations import all_version_locations
    from govpki.subscribers import official_to_notify

    if official_to_notify not in SUBSCRIBER_LOOKUPS:
        SUBSCRIBER_LOOKUPS.append(official_to_notify)
    if _ocsp_signs_in_this_process not in CONTEXT_HOOKS:
        CONTEXT_HOOKS.append(_ocsp_signs_in_this_process)
    MIGRATION_LOCATIONS.extend([location for location in all_version_locations()
                                if location not in MIGRATION_LOCATIONS])


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS)
@click.version_option(package_name="govpki")
def cli() -> None:
    """govpki — 青海省电子政务数字证书系统 (provincial government PKI)."""
    from govpki.kmc_wiring import install_kmc

    install_kmc()


@cli.command("init")
@click.option("--ceremony", "ceremony_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None, help="Ceremony file (default: the demo hierarchy).")
@click.option("--if-empty", is_flag=True,
              help="Do nothing (exit 0) when the home already holds a CA, as `make run` needs.")
def init_cmd(ceremony_file: Path | None, if_empty: bool) -> None:
    """Initialise an empty GOVPKI_HOME: schema, then the demo key ceremony (初始化)."""
    from ca.cli import DEMO_CEREMONY, run_ceremony_file
    from ca.setup import is_initialised
    from core.config import home_from_env
    from govpki.migrations import all_version_locations

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
    from ca.cli import ca_context
    from ca.context import default_actor
    from ra.orgs import load_organisations

    with ca_context() as ctx:
        created, _updated = load_organisations(ctx.sessions, actor=default_actor())
    click.echo(f"organisation tree: {created} organisations loaded", err=True)


def _register_exchange_client() -> None:
    """The exchange pages' OIDC client at the provider (updated again on first use)."""
    from ca.cli import ca_context
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
    from govpki.migrations import all_version_locations

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

    from ca.cli import ca_context
    from core.audit import verify_chain
    from core.db import read_transaction

    with ca_context() as ctx:
        public_key = ctx.keyring.get(ctx.config.audit.key_uri).public_key()
        # a snapshot: issuance goes on while a long log is walked, and the walk sees one state
        with read_transaction(ctx.sessions) as session:
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
    from ca.cli import ca_context, checkpoint

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

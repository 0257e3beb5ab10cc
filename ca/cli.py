"""`govpki ca ...`: the CA administrator's commands. Errors surface as GovpkiError; the
composition root (govpki/cli.py) turns them into one-line messages and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import revocation
from ca.ceremony import load_ceremony, run_ceremony
from ca.context import CaContext, default_actor
from ca.issuance import CertificateRequest, issue_certificate
from ca.store import find_certificate, list_authorities, list_certificates
from core.db import transaction
from hsm.algorithms import KeyType
from hsm.keystore import KeyRing, open_keyring, open_pkcs11_store
from hsm.signer import Signer
from policies.profiles import load_profiles

DEMO_CEREMONY = Path(__file__).resolve().parent.parent / "policies" / "ceremonies" / "demo.yaml"


# Called with every context a CLI command opens. The composition root (govpki/cli.py) adds the
# services that must hear status changes in this process — the OCSP responder signs the new
# answer before `govpki ca revoke` returns — without ca/ importing them.
ContextHook = Callable[[CaContext], Callable[[], None]]
CONTEXT_HOOKS: list[ContextHook] = []
# Every package's migration directories, set by the composition root: a ceremony on a home
# whose schema `govpki db upgrade` made already must know all of its revisions, not ca's only.
MIGRATION_LOCATIONS: list[str] = []
# Who to notify about a certificate, from its subscriber_ref: `ca compromise` adds what the
# first lookup that knows the reference returns to each affected certificate of its report.
# The composition root adds the RA's (an official's name, organisation and contact), so ca/
# never imports ra/.
SubscriberLookup = Callable[[CaContext, str], dict[str, str] | None]
SUBSCRIBER_LOOKUPS: list[SubscriberLookup] = []


@contextmanager
def ca_context() -> Iterator[CaContext]:
    from ca.setup import require_initialised
    from core.config import load_config

    config = load_config()
    require_initialised(config)
    ctx = CaContext.open(config)
    closers = [hook(ctx) for hook in CONTEXT_HOOKS]
    head = audit_head(ctx)
    try:
        yield ctx
        if audit_head(ctx) != head:
            checkpoint(ctx)  # whatever the command recorded is signed before it returns
    finally:
        for close in reversed(closers):
            close()
        ctx.close()


def audit_head(ctx: CaContext) -> int:
    from sqlalchemy import select

    from core.audit import AuditHead

    with transaction(ctx.sessions) as session:
        return session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0


@click.group("ca")
def ca_group() -> None:
    """Certificate authority: ceremony, profiles, issuance, revocation. (证书认证机构)"""


@ca_group.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def profiles_cmd(as_json: bool) -> None:
    """List certificate profiles (policies/profiles/*.yaml)."""
    profiles = load_profiles()
    if as_json:
        click.echo(json.dumps({n: {"key_types": list(p.key_types),
                                   "validity_days": p.validity_days,
                                   "description": {"en": p.description.en,
                                                   "zh": p.description.zh}}
                               for n, p in sorted(profiles.items())}, ensure_ascii=False))
        return
    for name, p in sorted(profiles.items()):
        click.echo(f"{name:24} {','.join(p.key_types):38} {p.validity_days:>5}d  {p.description}")


@ca_group.command("issue")
@click.option("--ca", "ca_name", required=True, help="Issuing CA name, e.g. officials.")
@click.option("--profile", required=True, help="Profile name (see `govpki ca profiles`).")
@click.option("--csr", "csr_file", required=True, type=click.File("rb"),
              help="PKCS#10 request, PEM or DER ('-' for stdin).")
@click.option("--subject", required=True,
              help="Subject DN, RFC 4514, from the subscriber record (the CSR's is ignored).")
@click.option("--san-dns", multiple=True, help="DNS name (server-tls). Repeatable.")
@click.option("--san-ip", multiple=True, help="IP address (server-tls). Repeatable.")
@click.option("--san-email", multiple=True, help="E-mail address. Repeatable.")
@click.option("--days", type=int, default=None, help="Validity, at most the profile's.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the certificate PEM here instead of standard output.")
def issue_cmd(ca_name: str, profile: str, csr_file: BinaryIO, subject: str,
              san_dns: tuple[str, ...], san_ip: tuple[str, ...], san_email: tuple[str, ...],
              days: int | None, out: str | None) -> None:
    """Issue a certificate from a CSR (签发证书)."""
    with ca_context() as ctx:
        issued = issue_certificate(ctx, CertificateRequest(
            ca=ca_name, profile=profile, csr=csr_file.read(), subject=subject,
            san_dns=san_dns, san_ip=san_ip, san_email=san_email, validity_days=days,
            requested_by=default_actor(),
        ))
    if out:
        Path(out).write_text(issued.pem, encoding="ascii")
        click.echo(f"issued serial {issued.serial} → {out}", err=True)
    else:
        click.echo(issued.pem, nl=False)


@ca_group.command("export-chain")
@click.option("--ca", "ca_name", required=True)
def export_chain_cmd(ca_name: str) -> None:
    """PEM of the CA's current certificate, then each parent up to the root."""
    from ca.store import chain_der

    with ca_context() as ctx, transaction(ctx.sessions) as session:
        chain = chain_der(session, ca_name)
    for der in chain:
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        click.echo(pem.decode("ascii"), nl=False)


@ca_group.command("list")
@click.option("--ca", "ca_name", default=None, help="Certificates of this CA instead of the CAs.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--pending", is_flag=True,
              help="Only reservations never signed (a crash between reserve and sign).")
def list_cmd(ca_name: str | None, limit: int, pending: bool) -> None:
    """Without --ca: the CAs. With --ca (or --pending): certificates, newest first."""
    with ca_context() as ctx, transaction(ctx.sessions) as session:
        if pending:
            for c in list_certificates(session, ca_name, limit, state="pending"):
                click.echo(f"{c.ca:12} {c.serial:32} {c.profile:20} reserved by "
                           f"{c.requested_by}  {c.subject}")
            return
        if ca_name is None:
            for a in list_authorities(session):
                click.echo(f"{a.name:12} parent={a.parent or '-':10} gen={a.generation} "
                           f"{a.status:8} until {a.not_after:%Y-%m-%d}  {a.key_uri}  "
                           f"{a.certificate().subject.rfc4514_string()}")
            return
        for c in list_certificates(session, ca_name, limit):
            click.echo(f"{c.serial:32} {c.profile:20} {c.state:8} {c.status:8} "
                       f"{c.not_after:%Y-%m-%d}  {c.subject}")


@ca_group.command("show")
@click.argument("serial")
@click.option("--ca", "ca_name", default=None, help="Needed when the serial is ambiguous.")
@click.option("--pem", is_flag=True, help="Print the certificate PEM instead of a summary.")
def show_cmd(serial: str, ca_name: str | None, pem: bool) -> None:
    """One certificate by serial (hex)."""
    with ca_context() as ctx, transaction(ctx.sessions) as session:
        c = find_certificate(session, serial, ca_name)
    if pem:
        click.echo(c.certificate().public_bytes(Encoding.PEM).decode("ascii"), nl=False)
        return
    click.echo(json.dumps({
        "ca": c.ca, "serial": c.serial, "profile": c.profile, "subject": c.subject,
        "key_type": c.key_type, "state": c.state, "status": c.status,
        "not_before": c.not_before.isoformat(), "not_after": c.not_after.isoformat(),
        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
        "revocation_reason": c.revocation_reason, "requested_by": c.requested_by,
    }, ensure_ascii=False, indent=2))


@ca_group.command("revoke")
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              type=click.Choice(revocation.REVOCATION_REASONS),
              help="RFC 5280 §5.3.1 reason.")
@click.option("--ca", "ca_name", default=None)
def revoke_cmd(serial: str, reason: str, ca_name: str | None) -> None:
    """Revoke a certificate (吊销)."""
    with ca_context() as ctx:
        change = revocation.revoke(ctx, serial, reason, ca=ca_name, actor=default_actor())
    click.echo(f"revoked {change.ca}/{change.serial} ({reason}) at {change.at.isoformat()}")


@ca_group.command("suspend")
@click.argument("serial")
@click.option("--ca", "ca_name", default=None)
def suspend_cmd(serial: str, ca_name: str | None) -> None:
    """Suspend a certificate: certificateHold (冻结)."""
    with ca_context() as ctx:
        change = revocation.suspend(ctx, serial, ca=ca_name, actor=default_actor())
    click.echo(f"suspended {change.ca}/{change.serial} at {change.at.isoformat()}")


@ca_group.command("release")
@click.argument("serial")
@click.option("--ca", "ca_name", default=None)
def release_cmd(serial: str, ca_name: str | None) -> None:
    """Release a suspended certificate (解冻)."""
    with ca_context() as ctx:
        change = revocation.release(ctx, serial, ca=ca_name, actor=default_actor())
    click.echo(f"released {change.ca}/{change.serial}")


@ca_group.command("ceremony")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pkcs11-module", default=None,
              help="PKCS#11 module path: keys are generated on this token instead of files.")
@click.option("--token-label", default=None, help="Token label (with --pkcs11-module).")
@click.option("--pin-env", default="GOVPKI_PKCS11_PIN", show_default=True,
              help="Environment variable holding the token PIN (never on the command line).")
def ceremony_cmd(file: Path, pkcs11_module: str | None, token_label: str | None,
                 pin_env: str) -> None:
    """Run a key ceremony from a declarative file (密钥生成仪式)."""
    run_ceremony_file(file, pkcs11_module, token_label, pin_env,
                      locations=MIGRATION_LOCATIONS or None)


def run_ceremony_file(file: Path, pkcs11_module: str | None, token_label: str | None,
                      pin_env: str, *, demo: bool = False,
                      locations: list[str] | None = None) -> None:
    from ca.setup import prepare_home

    spec = load_ceremony(file)
    token_store = None
    if pkcs11_module and token_label:
        # Log in before anything is written: a wrong PIN or label must leave the home untouched.
        token_store = open_pkcs11_store(pkcs11_module, token_label, pin_env)
    config, key_uri = prepare_home(pkcs11_module, token_label, pin_env,
                                   audit_label=spec.audit_key.label if spec.audit_key else None,
                                   demo=demo, locations=locations)
    keyring = open_keyring(config) if token_store is None else KeyRing(
        [*open_keyring(config, with_pkcs11=False).stores, token_store])
    ctx = CaContext.open(config, keyring=keyring)
    try:
        result = run_ceremony(ctx, spec, key_uri=key_uri, actor=default_actor(),
                              progress=lambda m: click.echo(f"  {m}", err=True))
        checkpoint(ctx)
    finally:
        ctx.close()
    for name, cert in result.authorities.items():
        click.echo(f"CA {name}: serial {cert.serial}, {cert.subject}")
    for spec_s, cert in result.services:
        click.echo(f"{spec_s.role} for {spec_s.ca}: serial {cert.serial}")


def checkpoint(ctx: CaContext) -> None:
    """Sign the audit chain head into the checkpoint file, when the audit key exists."""
    from core.audit import write_checkpoint

    uri = ctx.config.audit.key_uri
    if not ctx.keyring.exists(uri):
        return
    signer = ctx.keyring.get(uri)
    with transaction(ctx.sessions) as session:
        write_checkpoint(session, signer, ctx.config.path(ctx.config.audit.checkpoint_file))



# ---------------------------------------------------------------------------------------------
# Key generations: rollover, retirement, compromise (ca/rollover.py, ca/compromise.py)


def _parent_signer(ctx: CaContext, ca: str, module: str | None, token: str | None,
                   pin_env: str) -> Signer | None:
    """The parent CA's key from a token this home's configuration does not name (an offline
    root brought out for the event); None to use the configured key store."""
    if not module and not token:
        return None
    if not (module and token):
        raise click.UsageError("--parent-pkcs11-module and --parent-token-label go together")
    from ca.store import get_authority

    with transaction(ctx.sessions) as session:
        parent_name = get_authority(session, ca).parent
        if parent_name is None:
            return None  # a root: rollover() refuses it with the reason
        parent_uri = get_authority(session, parent_name).key_uri
    return open_pkcs11_store(module, token, pin_env).get(parent_uri)


def _sibling(ctx: CaContext, ca: str, label: str | None) -> str | None:
    from ca.rollover import sibling_key_uri
    from ca.store import get_authority

    if label is None:
        return None
    with transaction(ctx.sessions) as session:
        return sibling_key_uri(get_authority(session, ca).key_uri, label)


@ca_group.command("rollover")
@click.argument("ca_name", metavar="CA")
@click.option("--key-label", default=None,
              help="Label of the new CA key, beside the current one (default <CA>-ca-<N>).")
@click.option("--key-type", default=None, type=click.Choice([k.value for k in KeyType]),
              help="Default: the current key's type.")
@click.option("--days", type=int, default=None, help="Validity (default: the CA profile's).")
@click.option("--ocsp-key-label", default=None,
              help="Label of the new generation's OCSP signer key (default <CA>-ocsp-<N>).")
@click.option("--parent-pkcs11-module", default=None,
              help="PKCS#11 module of the token that holds the parent (root) CA key, when it "
                   "is not the configured key store.")
@click.option("--parent-token-label", default=None, help="Label of that token.")
@click.option("--parent-pin-env", default="GOVPKI_ROOT_PIN", show_default=True,
              help="Environment variable holding that token's PIN (never on the command line).")
@click.option("--reason", default="scheduled", show_default=True,
              help="Why (recorded in the audit log).")
def rollover_cmd(ca_name: str, key_label: str | None, key_type: str | None, days: int | None,
                 ocsp_key_label: str | None, parent_pkcs11_module: str | None,
                 parent_token_label: str | None, parent_pin_env: str, reason: str) -> None:
    """New key generation for an issuing CA, certified by its parent (CA密钥更新).

    The CA issues under the new key at once; the previous generation keeps signing its CRL
    and OCSP answers until the last certificate it issued expires (docs/crl.md)."""
    from ca.rollover import rollover

    with ca_context() as ctx:
        result = rollover(
            ctx, ca_name, actor=default_actor(), key_uri=_sibling(ctx, ca_name, key_label),
            key_type=KeyType(key_type) if key_type else None, validity_days=days,
            ocsp_key_uri=_sibling(ctx, ca_name, ocsp_key_label),
            parent_signer=_parent_signer(ctx, ca_name, parent_pkcs11_module,
                                         parent_token_label, parent_pin_env),
            reason=reason, progress=lambda m: click.echo(f"  {m}", err=True))
    click.echo(f"CA {result.ca}: generation {result.generation} (was {result.previous_generation})"
               f", serial {result.certificate.serial}, key {result.key_uri}, until "
               f"{result.certificate.not_after:%Y-%m-%d}")
    if result.ocsp_signer is not None:
        click.echo(f"ocsp-signer for {result.ca} generation {result.generation}: serial "
                   f"{result.ocsp_signer.serial}, key {result.ocsp_key_uri}")


@ca_group.command("generations")
@click.argument("ca_name", metavar="CA")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def generations_cmd(ca_name: str, as_json: bool) -> None:
    """The key generations of a CA: which issues, which still sign CRLs/OCSP (密钥代次)."""
    from ca.rollover import summaries

    with ca_context() as ctx:
        rows = summaries(ctx, ca_name)
    if as_json:
        click.echo(json.dumps([{
            "generation": g.number, "current": g.current, "key_uri": g.key_uri,
            "serial": g.serial, "status": g.status, "not_before": g.not_before.isoformat(),
            "not_after": g.not_after.isoformat(),
            "retired_at": g.retired_at.isoformat() if g.retired_at else None,
            "retired_reason": g.retired_reason, "unexpired_certificates": g.unexpired,
        } for g in rows], ensure_ascii=False, indent=2))
        return
    for g in rows:
        state = "issuing" if g.current else (
            f"retired ({g.retired_reason})" if g.retired_at else "signing CRL/OCSP")
        click.echo(f"{ca_name} g{g.number:<3} {state:22} {g.status:8} until "
                   f"{g.not_after:%Y-%m-%d}  {g.unexpired:>7} unexpired  {g.key_uri}")


def _who_to_notify(ctx: CaContext, subscriber_ref: str | None) -> dict[str, str] | None:
    if not subscriber_ref:
        return None
    for lookup in SUBSCRIBER_LOOKUPS:
        found = lookup(ctx, subscriber_ref)
        if found is not None:
            return found
    return None


@ca_group.command("retire-generations")
def retire_generations_cmd() -> None:
    """Retire older key generations whose certificates have all expired (the scheduler runs
    this every minute)."""
    from ca.rollover import retire_finished

    with ca_context() as ctx:
        retired = retire_finished(ctx, actor=default_actor())
    for r in retired:
        click.echo(f"retired {r.ca} generation {r.generation} ({r.reason})")
    if not retired:
        click.echo("nothing to retire", err=True)


@ca_group.command("compromise")
@click.argument("ca_name", metavar="CA")
@click.option("--generation", type=int, default=None,
              help="The compromised key generation (default: the newest).")
@click.option("--no-reissue", is_flag=True,
              help="Revoke and list the affected certificates for re-key through the RA "
                   "instead of re-issuing them at once.")
@click.option("--key-label", default=None, help="Label of the replacement CA key.")
@click.option("--ocsp-key-label", default=None, help="Label of its OCSP signer key.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Write the JSON report here (default: standard output).")
@click.option("--parent-pkcs11-module", default=None,
              help="PKCS#11 module of the token that holds the parent (root) CA key, when it "
                   "is not the configured key store.")
@click.option("--parent-token-label", default=None, help="Label of that token.")
@click.option("--parent-pin-env", default="GOVPKI_ROOT_PIN", show_default=True,
              help="Environment variable holding that token's PIN (never on the command line).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def compromise_cmd(ca_name: str, generation: int | None, no_reissue: bool,
                   key_label: str | None, ocsp_key_label: str | None,
                   report_file: str | None, parent_pkcs11_module: str | None,
                   parent_token_label: str | None, parent_pin_env: str, yes: bool) -> None:
    """Declare an issuing CA key compromised and walk the runbook (CA密钥泄露处置):
    revoke its certificate at the parent, new key, re-issue and revoke what it signed."""
    from ca.compromise import declare_compromise

    if not yes:
        click.confirm(f"Revoke CA '{ca_name}' (cACompromise) and every certificate its key "
                      "signed?", abort=True, err=True)
    with ca_context() as ctx:
        report = declare_compromise(
            ctx, ca_name, actor=default_actor(), generation=generation,
            reissue=not no_reissue, key_uri=_sibling(ctx, ca_name, key_label),
            ocsp_key_uri=_sibling(ctx, ca_name, ocsp_key_label),
            parent_signer=_parent_signer(ctx, ca_name, parent_pkcs11_module,
                                         parent_token_label, parent_pin_env))
        document = report.as_json(notify=lambda ref: _who_to_notify(ctx, ref))
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if report_file:
        Path(report_file).write_text(text + "\n", encoding="utf-8")
        click.echo(f"report → {report_file}", err=True)
    else:
        click.echo(text)
    click.echo(f"CA {report.ca}: generation {report.generation} revoked at {report.parent} "
               f"(serial {report.ca_serial}); issuing under generation "
               f"{report.new_generation}; {len(report.affected)} certificate(s) affected",
               err=True)

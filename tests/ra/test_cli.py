"""`govpki ra ...` commands, on the shared PKI (the context is injected, not opened)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from ra import cli
from ra.errors import Forbidden, ImportRefused
from tests.ra.conftest import ensure_admin, unique


@pytest.fixture
def run(ra_file_pki, monkeypatch):
    @contextmanager
    def context():
        yield ra_file_pki.ctx

    monkeypatch.setattr(cli, "open_context", context)

    def invoke(actor: str, *args: str):
        return CliRunner().invoke(cli.ra_group, list(args), env={"GOVPKI_ACTOR": actor})
    return invoke


def test_operator_official_and_listing(run, ra_file_pki, tmp_path) -> None:
    admin = ensure_admin(ra_file_pki).username
    clerk = unique("clerk")
    result = run(admin, "operator", "add", clerk, "--org", "632200", "--role", "ra-operator")
    assert result.exit_code == 0, result.output
    ident = unique("HB")
    assert run(clerk, "official", "add", ident, "--name", "才让", "--org",
               "632200-BGS").exit_code == 0
    listed = run(clerk, "official", "list", "--search", ident)
    assert ident in listed.output
    tree = run(clerk, "orgs", "list", "--tree")
    assert "632200-BGS" in tree.output and "630100" not in tree.output
    roster = tmp_path / "roster.csv"
    roster.write_text("identifier,name,org_code\nX1,张三,999\n", encoding="utf-8")
    refused = run(clerk, "official", "import", str(roster))
    assert isinstance(refused.exception, ImportRefused)
    assert "line 2: org_code" in refused.output


def test_separation_of_duties_and_unknown_actor(run, ra_file_pki) -> None:
    admin = ensure_admin(ra_file_pki).username
    result = run(admin, "operator", "add", unique("x"), "--org", "630000", "--role", "nobody")
    assert result.exception is not None and "unknown role" in str(result.exception)
    result = run("not-an-operator", "official", "list")
    assert isinstance(result.exception, Forbidden)


def test_credentials_tokens_and_enrollment_codes(run, ra_file_pki, monkeypatch) -> None:
    from ra import api_tokens, credentials, enrollment
    from tests.ca.helpers import make_csr, new_key

    pki = ra_file_pki
    admin = ensure_admin(pki).username
    clerk = unique("clerk")
    assert run(admin, "operator", "add", clerk, "--org", "632200",
               "--role", "ra-operator").exit_code == 0
    # Bootstrap (no GOVPKI_ACTOR): a password never set may be set locally, from the env.
    result = CliRunner().invoke(cli.ra_group, ["operator", "set-password", clerk],
                                env={"GOVPKI_NEW_PASSWORD": "a long enough passphrase",
                                     "GOVPKI_ACTOR": ""})
    assert result.exit_code == 0, result.output
    assert "a long enough passphrase" not in result.output
    again = CliRunner().invoke(cli.ra_group, ["operator", "set-password", clerk],
                               env={"GOVPKI_NEW_PASSWORD": "another passphrase!",
                                    "GOVPKI_ACTOR": ""})
    assert isinstance(again.exception, Forbidden)
    totp = run(clerk, "operator", "totp", clerk)
    assert totp.exit_code == 0 and totp.output.startswith("otpauth://totp/")
    assert len(credentials.totp_now(totp.output.strip())) == 6

    token = run(clerk, "api-token", "create", clerk, "脚本", "--days", "7")
    assert token.exit_code == 0, token.output
    assert api_tokens.authenticate_api_token(pki.ctx, token.stdout.splitlines()[0]).username \
        == clerk

    ident = unique("HB")
    assert run(clerk, "official", "add", ident, "--name", "才让", "--org",
               "632200-BGS").exit_code == 0
    code = run(clerk, "enrollment-code", ident)
    assert code.exit_code == 0, code.output
    request = enrollment.redeem_enrollment_code(pki.ctx, code.stdout.splitlines()[0],
                                                make_csr(new_key("ec-p256")))
    assert request.official.identifier == ident and request.submitted_by == clerk

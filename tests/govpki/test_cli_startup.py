"""`govpki` start-up pays only for the command it runs (govpki/cli.py LazyGroup): importing the
CLI, `govpki --help` and `govpki ca --help` leave pkilint, pyHanko, aiohttp, Flask and the apps
unimported, while `--help` still lists every command with its own help and the registrations
ca/ takes from the composition root are in place before a command runs. Each check runs in a
fresh interpreter: this test process has imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What `govpki ca ...` has no use for: the linter (issuance only), PDF signing and its HTTP
#: client, the web framework, the applications, the signing package's CLI.
HEAVY = ("pkilint", "pyhanko", "pyhanko_certvalidator", "aiohttp", "flask", "alembic",
         "apps.exchange.cli", "apps.exchange.package", "apps.sso.cli", "signing.pdf_cli",
         "signing.cms_cli")


def run_python(code: str, home: Path) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVPKI_")}
    env["GOVPKI_HOME"] = str(home)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, cwd=ROOT, env=env, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def loaded(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return sorted(name for name in modules
                  if any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY))


def test_import_and_ca_help_leave_heavy_modules_unimported(tmp_path: Path) -> None:
    found = run_python("""
        import json, sys
        from click.testing import CliRunner
        import govpki.cli
        after_import = sorted(sys.modules)
        runner = CliRunner()
        top = runner.invoke(govpki.cli.cli, ["--help"], prog_name="govpki")
        after_top_help = sorted(sys.modules)
        ca = runner.invoke(govpki.cli.cli, ["ca", "--help"], prog_name="govpki")
        print(json.dumps({"import": after_import, "top": after_top_help,
                          "ca": sorted(sys.modules), "top_code": top.exit_code,
                          "ca_code": ca.exit_code, "ca_output": ca.output}))
    """, tmp_path)
    assert found["top_code"] == 0 and found["ca_code"] == 0
    assert "ceremony" in str(found["ca_output"])  # ca's own help, so ca.cli was loaded
    assert loaded(found["import"]) == []
    assert loaded(found["top"]) == []
    assert loaded(found["ca"]) == []
    # `govpki --help` needs no package at all, not even the database layer.
    assert isinstance(found["top"], list)
    assert "sqlalchemy" not in found["top"] and "ca.cli" not in found["top"]


def test_help_lists_the_table_with_the_commands_own_help(tmp_path: Path) -> None:
    """The static table cannot drift from the commands: its help is each command's own short
    help, and `govpki --help` reads the same before and after every command is loaded."""
    found = run_python("""
        import json
        from click.testing import CliRunner
        from govpki.cli import LAZY_COMMANDS, cli
        runner = CliRunner()
        lazy_help = runner.invoke(cli, ["--help"], prog_name="govpki", terminal_width=80).output
        table = {name: help for name, (_target, help) in LAZY_COMMANDS.items()}
        real = {}
        for name in cli.list_commands(None):
            command = cli.get_command(None, name)
            real[name] = command.get_short_help_str(limit=10**6)
        loaded_help = runner.invoke(cli, ["--help"], prog_name="govpki",
                                    terminal_width=80).output
        print(json.dumps({"lazy": lazy_help, "loaded": loaded_help, "table": table,
                          "real": real, "eager": sorted(set(cli.commands) - set(table))}))
    """, tmp_path)
    table, real = found["table"], found["real"]
    assert isinstance(table, dict) and isinstance(real, dict)
    for name, help_text in table.items():
        assert help_text == real[name], name
    assert found["lazy"] == found["loaded"]
    listed = str(found["lazy"]).split("Commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.startswith("  ") and line.split()]
    assert names == sorted(real)
    # Every command group of the product, as `govpki --help` has always listed them.
    assert set(names) == {"audit", "backup", "ca", "crl", "db", "exchange", "init", "kmc",
                          "ocsp", "ra", "refresh", "restore", "retention", "serve", "sign",
                          "sso", "token", "verify"}
    assert found["eager"] == ["audit", "db", "init", "serve"]


def test_sign_and_verify_mount_cms_beside_pdf(tmp_path: Path) -> None:
    found = run_python("""
        import json
        from govpki.cli import cli
        print(json.dumps({name: sorted(cli.get_command(None, name).list_commands(None))
                          for name in ("sign", "verify")}))
    """, tmp_path)
    assert found == {"sign": ["file", "pdf"], "verify": ["file", "pdf"]}


def test_registrations_are_made_before_a_command_runs_and_only_once(tmp_path: Path) -> None:
    """ca/ learns the OCSP hook, every package's migrations and the RA's subscriber lookup
    from the composition root; a lazily loaded `govpki ca ...` must still have them, however
    many commands one process runs (the deploy harness runs many through CliRunner)."""
    found = run_python("""
        import json
        from click.testing import CliRunner
        from govpki.cli import cli
        import ca.cli as ca_cli
        before = [len(ca_cli.CONTEXT_HOOKS), len(ca_cli.SUBSCRIBER_LOOKUPS),
                  len(ca_cli.MIGRATION_LOCATIONS)]
        runner = CliRunner()
        for _ in range(3):
            assert runner.invoke(cli, ["ca", "--help"], prog_name="govpki").exit_code == 0
        from govpki.migrations import all_version_locations
        print(json.dumps({
            "before": before,
            "hooks": [h.__qualname__ for h in ca_cli.CONTEXT_HOOKS],
            "lookups": [f.__module__ + "." + f.__qualname__ for f in ca_cli.SUBSCRIBER_LOOKUPS],
            "locations": ca_cli.MIGRATION_LOCATIONS, "all": all_version_locations()}))
    """, tmp_path)
    assert found["before"] == [0, 0, 0]
    assert found["hooks"] == ["_ocsp_signs_in_this_process"]
    assert found["lookups"] == ["govpki.subscribers.official_to_notify"]
    assert found["locations"] == found["all"]


def test_a_table_entry_that_is_not_a_command_is_refused() -> None:
    from govpki.cli import load_command

    with pytest.raises(TypeError, match="not a click command"):
        load_command("govpki.cli:EXIT_ERROR")

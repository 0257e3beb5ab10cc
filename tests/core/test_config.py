"""core.config: GOVPKI_HOME/govpki.toml into frozen dataclasses, failing early and by name.

A misspelt key silently ignored in a CA's configuration is an incident waiting to happen, so
every rejection here must name the key it is about (STYLE.md lesson 4).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    AuditConfig,
    Config,
    KeyStoreConfig,
    home_from_env,
    load_config,
)
from core.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the developer's shell or CI exports must not leak into these tests."""
    monkeypatch.delenv("GOVPKI_DATABASE_URL", raising=False)
    monkeypatch.delenv("GOVPKI_HOME", raising=False)


def write(home: Path, toml: str) -> Path:
    (home / "govpki.toml").write_text(toml, encoding="utf-8")
    return home


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.home == tmp_path.resolve()
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'govpki.sqlite3'}"
    assert (config.listen_host, config.listen_port) == (DEFAULT_HOST, DEFAULT_PORT)
    assert config.public_base_url == f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    assert config.keystore == KeyStoreConfig()
    assert config.keystore.type == "file"
    assert config.audit == AuditConfig()
    assert config.audit.checkpoint_file == "audit/checkpoints.jsonl"


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVPKI_HOME", str(tmp_path))
    assert home_from_env() == tmp_path.resolve()
    assert load_config().home == tmp_path.resolve()


def test_home_defaults_to_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert home_from_env() == (tmp_path / "var").resolve()


def test_values_from_the_file(tmp_path: Path) -> None:
    write(tmp_path, """
database_url = "postgresql://db.gov.internal/govpki"
listen_host = "10.1.2.3"
listen_port = 9000

[keystore]
type = "pkcs11"
pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "省CA"

[audit]
checkpoint_file = "/srv/audit/checkpoints.jsonl"
""")
    config = load_config(tmp_path)
    assert config.database_url == "postgresql://db.gov.internal/govpki"
    assert (config.listen_host, config.listen_port) == ("10.1.2.3", 9000)
    # The public base URL follows the listen address unless set: the demo's certificates
    # point at the demo's own services.
    assert config.public_base_url == "http://10.1.2.3:9000"
    assert config.keystore.type == "pkcs11"
    assert config.keystore.token_label == "省CA"
    assert config.keystore.pin_env == "GOVPKI_PKCS11_PIN"  # untouched keys keep defaults
    assert config.audit.checkpoint_file == "/srv/audit/checkpoints.jsonl"


def test_public_base_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    write(tmp_path, 'public_base_url = "https://pki.gov.example/"\n')
    assert load_config(tmp_path).public_base_url == "https://pki.gov.example"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('databse_url = "sqlite://"\n', "databse_url"),
        ('[keystore]\ntyp = "file"\n', "keystore.typ"),
        ('[audit]\ncheckpoint = "x"\n', "audit.checkpoint"),
        ('[ocsp]\nport = 1\n', "ocsp"),
    ],
    ids=["top-level", "keystore", "audit", "unknown-section"],
)
def test_unknown_key_is_an_error_naming_it(tmp_path: Path, toml: str, key: str) -> None:
    write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert f"unknown configuration key '{key}'" in str(info.value)
    assert info.value.details["key"] == key
    assert info.value.kind == "config"


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('listen_port = "8600"\n', "listen_port", "int"),
        ("listen_host = 127\n", "listen_host", "str"),
        ("database_url = 5\n", "database_url", "str"),
        ("public_base_url = false\n", "public_base_url", "str"),
        ("[keystore]\ntype = 1\n", "keystore.type", "str"),
        ('[audit]\ncheckpoint_file = ["a", "b"]\n', "audit.checkpoint_file", "str"),
    ],
)
def test_wrong_type_is_an_error_naming_key_and_type(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    write(tmp_path, toml)
    with pytest.raises(ConfigError, match=f"'{key}' must be {expected}") as info:
        load_config(tmp_path)
    assert info.value.details["key"] == key


def test_section_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path, 'keystore = "file"\n')
    with pytest.raises(ConfigError, match="'keystore' must be a table"):
        load_config(tmp_path)


def test_boolean_is_not_a_port(tmp_path: Path) -> None:
    write(tmp_path, "listen_port = true\n")
    with pytest.raises(ConfigError, match="listen_port"):
        load_config(tmp_path)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "database_url = \n")
    with pytest.raises(ConfigError, match=r"govpki\.toml: not valid TOML"):
        load_config(tmp_path)


def test_environment_overrides_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, 'database_url = "sqlite:////srv/govpki.sqlite3"\n')
    monkeypatch.setenv("GOVPKI_DATABASE_URL", "postgresql://127.0.0.1:5432/govpki")
    assert load_config(tmp_path).database_url == "postgresql://127.0.0.1:5432/govpki"


def test_environment_database_url_also_replaces_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVPKI_DATABASE_URL", "postgresql://127.0.0.1:5432/govpki")
    assert load_config(tmp_path).database_url == "postgresql://127.0.0.1:5432/govpki"


def test_empty_environment_database_url_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVPKI_DATABASE_URL", "")
    assert load_config(tmp_path).database_url.startswith("sqlite:///")


def test_paths_are_relative_to_home(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.path(config.audit.checkpoint_file) == (
        tmp_path.resolve() / "audit" / "checkpoints.jsonl"
    )
    assert config.path("/etc/govpki/x") == Path("/etc/govpki/x")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.database_url = "sqlite://"  # type: ignore[misc]
    assert isinstance(config, Config)

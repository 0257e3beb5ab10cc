"""Fixtures for TSA tests: a TSA and its HTTP server per demo PKI, and the chain as PEM files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from signing.config import TsaConfig
from signing.tsa import TimeStampAuthority
from signing.tsa_wsgi import create_tsa_app
from tests.ca.helpers import write_chain
from tests.conftest import Pki
from tests.signing.helpers import serve


@dataclass
class TsaServer:
    tsa: TimeStampAuthority
    url: str  # base URL; the endpoint is url + "/tsa"
    root: Path  # root CA certificate (trust anchor)
    chain: Path  # the devices CA (what -untrusted needs when the token carries the TSA cert)
    chain_with_tsa: Path  # chain + the TSA certificate (for tokens without certificates)


def _server(pki: Pki, directory: Path, config: TsaConfig) -> Iterator[TsaServer]:
    tsa = TimeStampAuthority(pki.ctx, config)
    root, chain = write_chain(pki.ctx, "devices", directory)
    with_tsa = directory / "chain-with-tsa.pem"
    with_tsa.write_bytes(chain.read_bytes()
                         + tsa.certificate.public_bytes(serialization.Encoding.PEM))
    with serve(create_tsa_app(None, tsa=tsa)) as url:
        yield TsaServer(tsa, url, root, chain, with_tsa)


@pytest.fixture(scope="module")
def tsa_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsaServer]:
    """The demo TSA (key on every storage × key-store pair) behind a loopback HTTP server."""
    yield from _server(pki, tmp_path_factory.mktemp(f"tsa-{pki.id}"),
                       TsaConfig(clock_source="none"))


@pytest.fixture(scope="module")
def file_tsa_server(file_pki: Pki,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsaServer]:
    """The same on SQLite + file keys, for behaviour that does not depend on storage."""
    yield from _server(file_pki, tmp_path_factory.mktemp("tsa-file"),
                       TsaConfig(clock_source="none"))


@pytest.fixture(scope="module")
def file_tsa(file_pki: Pki) -> TimeStampAuthority:
    return TimeStampAuthority(file_pki.ctx, TsaConfig(clock_source="none"))

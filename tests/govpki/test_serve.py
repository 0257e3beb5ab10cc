"""`govpki serve` as deployed: granian, every service on one port, checked with the OpenSSL CLI."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.govpki.test_cli import DN, openssl_csr, run, served_home


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("serve-home")
    (home / "govpki.toml").write_text('[tsa]\nclock_source = "command"\nclock_command = "true"\n')
    run(home, "init")
    with served_home(home) as base:
        yield home, base


def _pem_chain(home: Path, tmp: Path) -> tuple[Path, Path]:
    chain = run(home, "ca", "export-chain", "--ca", "officials").stdout
    blocks = chain.split("-----END CERTIFICATE-----\n")
    issuing, root = tmp / "issuing.pem", tmp / "root.pem"
    issuing.write_text(blocks[0] + "-----END CERTIFICATE-----\n")
    root.write_text(blocks[1] + "-----END CERTIFICATE-----\n")
    return issuing, root


def test_ocsp_crl_and_tsa_on_one_port(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home, base = served
    issuing, root = _pem_chain(home, tmp_path)
    csr = openssl_csr(tmp_path, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    cert = tmp_path / "cert.pem"
    run(home, "ca", "issue", "--ca", "officials", "--profile", "official-signing", "--csr",
        str(csr), "--subject", DN, "--out", str(cert))
    serial = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
                            capture_output=True, text=True, check=True).stdout
    serial = serial.split("=")[1].strip().lower().lstrip("0")

    def ocsp_status() -> str:
        out = subprocess.run(["openssl", "ocsp", "-issuer", str(issuing), "-cert", str(cert),
                              "-url", base + "/ocsp", "-CAfile", str(root)],
                             capture_output=True, text=True, check=False)
        assert "Response verify OK" in out.stderr + out.stdout, out.stderr
        return out.stdout

    assert f"{cert}: good" in ocsp_status()
    # revoked by the CLI (another process): the server answers revoked within a second
    run(home, "ca", "revoke", serial, "--reason", "keyCompromise")
    deadline = time.monotonic() + 3
    while "revoked" not in (text := ocsp_status()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"{cert}: revoked" in text and "Reason: keyCompromise" in text

    run(home, "crl", "publish", "--ca", "officials")  # on demand, as an operator would
    crl_der = urllib.request.urlopen(base + "/crl/officials.crl", timeout=10).read()
    crl = tmp_path / "officials.crl"
    subprocess.run(["openssl", "crl", "-inform", "DER", "-out", str(crl)], input=crl_der,
                   check=True, capture_output=True)
    verify = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(root),
                             "-untrusted", str(issuing), "-CRLfile", str(crl), str(cert)],
                            capture_output=True, text=True, check=False)
    assert "certificate revoked" in verify.stdout + verify.stderr

    data = tmp_path / "doc.txt"
    data.write_text("青海省人民政府办公厅 公文")
    query = tmp_path / "q.tsq"
    subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out",
                    str(query)], check=True, capture_output=True)
    request = urllib.request.Request(base + "/tsa", data=query.read_bytes(),
                                     headers={"Content-Type": "application/timestamp-query"})
    reply = tmp_path / "r.tsr"
    reply.write_bytes(urllib.request.urlopen(request, timeout=10).read())
    devices = run(home, "ca", "export-chain", "--ca", "devices").stdout
    (tmp_path / "devices.pem").write_text(devices)
    ts = subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in", str(reply),
                         "-CAfile", str(root), "-untrusted", str(tmp_path / "devices.pem")],
                        capture_output=True, text=True, check=False)
    assert "Verification: OK" in ts.stdout, ts.stdout + ts.stderr


def test_unknown_tsa_setting_is_refused(tmp_path: Path) -> None:
    from core.config import load_config
    from core.errors import ConfigError
    from signing.config import tsa_config_from

    (tmp_path / "govpki.toml").write_text('[tsa]\nclock_sorce = "none"\n')
    with pytest.raises(ConfigError, match=r"tsa\.clock_sorce"):
        tsa_config_from(load_config(tmp_path).sections)

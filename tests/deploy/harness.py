"""A production deployment on one machine: Debian's nginx (deploy/nginx/govpki.conf) on loopback
high ports in front of two `govpki serve` nodes (deploy/systemd/govpki.service's ExecStart and
Environment) with their own GOVPKI_HOME each (deploy/govpki.toml), one PostgreSQL database,
CA keys on a SoftHSM2 token.

The files in deploy/ are used as they are, with only addresses, ports, paths and the token's
label replaced (:func:`render` fails when a replaced string is no longer in the file, so the
test and the files cannot drift apart). The installation steps are the commands of
docs/OPERATIONS.md, run through the CLI; only the RA's people (operators, officials, their
certificates) are made in-process, for speed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GOVPKI = str(Path(sys.executable).parent / "govpki")
SERVER_NAME = "pki.example.gov.cn"
PIN = "deploy-user-pin"
SO_PIN = "deploy-so-pin"
SUBJECT_O = "O=青海省人民政府办公厅,ST=青海省,C=CN"
ADMIN = "ca-admin-1"
STARTUP_SECONDS = 90  # granian + the app factory on a loaded 2-core CI machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(template: Path, replacements: Mapping[str, str]) -> str:
    """``template``'s text with each key replaced; every key must occur in it."""
    text = template.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, (f"{template.relative_to(ROOT)} no longer contains {old!r}: "
                             "update tests/deploy/harness.py with it")
        text = text.replace(old, new)
    return text


@dataclass(frozen=True)
class Unit:
    """What a systemd service unit runs: ExecStart, ExecReload, Environment, EnvironmentFile."""

    exec_start: list[str]
    exec_reload: list[str]
    environment: dict[str, str]
    environment_files: list[str]

    @classmethod
    def read(cls, path: Path) -> Unit:
        start: list[str] = []
        reload: list[str] = []
        env: dict[str, str] = {}
        files: list[str] = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line.startswith("ExecStart="):
                start = shlex.split(line[len("ExecStart="):])
            elif line.startswith("ExecReload="):
                reload = shlex.split(line[len("ExecReload="):])
            elif line.startswith("Environment="):
                name, _, value = line[len("Environment="):].partition("=")
                env[name] = value
            elif line.startswith("EnvironmentFile="):
                files.append(line[len("EnvironmentFile="):])
        return cls(start, reload, env, files)


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


@dataclass
class Node:
    name: str
    home: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Person:
    """An official with a self-service account and a certificate issued through the RA."""

    identifier: str
    name: str
    username: str
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    def escaped_pem(self) -> str:
        """The certificate as nginx forwards it ($ssl_client_escaped_cert)."""
        pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
        return quote(pem, safe="")


@dataclass
class Deployment:
    base: Path
    database_url: str
    softhsm_module: str
    token_label: str
    ports: dict[str, int] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    tls: Path = field(init=False)
    secrets_env: Path = field(init=False)
    node_unit: Unit = field(init=False)
    refresh_unit: Unit = field(init=False)

    def __post_init__(self) -> None:
        self.tls = self.base / "tls"
        self.secrets_env = self.base / "secrets.env"
        self.node_unit = Unit.read(DEPLOY / "systemd" / "govpki.service")
        self.refresh_unit = Unit.read(DEPLOY / "systemd" / "govpki-refresh.service")
        self.ports = {name: free_port() for name in ("http", "https", "mtls", "a", "b")}
        self.nodes = [Node(name, self.base / f"node-{name}", self.ports[name],
                           self.base / f"node-{name}.log") for name in ("a", "b")]

    # -- files ------------------------------------------------------------------------------

    def path_replacements(self) -> dict[str, str]:
        return {"/opt/govpki/venv/bin/govpki": GOVPKI}

    def toml(self, node: Node) -> str:
        return render(DEPLOY / "govpki.toml", {
            '"postgresql://govpki@10.20.0.30:5432/govpki"': json.dumps(self.database_url),
            '"http://pki.example.gov.cn"': f'"http://{SERVER_NAME}:{self.ports["http"]}"',
            '"https://pki.example.gov.cn"': f'"https://{SERVER_NAME}:{self.ports["https"]}"',
            'listen_host = "10.20.0.11"': 'listen_host = "127.0.0.1"',
            "listen_port = 8600": f"listen_port = {node.port}",
            "/usr/lib/softhsm/libsofthsm2.so": self.softhsm_module,
            'token_label = "govpki-ca"': f'token_label = "{self.token_label}"',
            "pkcs11:token=govpki-ca;": f"pkcs11:token={self.token_label};",
            '["10.20.0.5", "10.20.0.6"]': '["127.0.0.1"]',
        })

    def nginx_site(self) -> str:
        p = self.ports
        return render(DEPLOY / "nginx" / "govpki.conf", {
            "server 10.20.0.11:8600": f"server 127.0.0.1:{p['a']}",
            "server 10.20.0.12:8600": f"server 127.0.0.1:{p['b']}",
            "listen 80;": f"listen 127.0.0.1:{p['http']};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{p['https']} ssl http2;",
            "listen 8443 ssl http2;": f"listen 127.0.0.1:{p['mtls']} ssl http2;",
            "http://127.0.0.1/ocsp": f"http://127.0.0.1:{p['http']}/ocsp",
            "/etc/govpki/tls/": f"{self.tls}/",
            "/var/log/nginx/": f"{self.base}/nginx/logs/",
        })

    def env(self, unit: Unit, node: Node) -> dict[str, str]:
        """The process environment systemd would give ``unit`` on ``node``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GOVPKI_", "PROMETHEUS_"))}
        values = dict(unit.environment)
        values["GOVPKI_HOME"] = str(node.home)
        values["SOFTHSM2_CONF"] = os.environ["SOFTHSM2_CONF"]
        values["PGPASSFILE"] = str(self.base / "pgpass")
        for name in unit.environment_files:
            assert name == "/etc/govpki/secrets.env", name
            values.update(read_env_file(self.secrets_env))
        env.update(values)
        return env

    def command(self, unit: Unit) -> list[str]:
        replace = self.path_replacements()
        return [replace.get(arg, arg) for arg in unit.exec_start]

    # -- installation (docs/OPERATIONS.md, "Installation") ---------------------------------

    def govpki(self, node: Node, *args: str, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        """`govpki ARGS` with ``node``'s environment, run in this process through click (the
        same command and arguments; a new interpreter per command costs ~10 s on a loaded CI
        machine). `govpki serve` and `govpki refresh` run as processes of their own."""
        from click.testing import CliRunner

        from govpki.cli import cli

        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GOVPKI_")}
        values = self.env(self.node_unit, node)
        env.update({k: v for k, v in values.items() if k.startswith("GOVPKI_")})
        env.pop("GOVPKI_SCHEDULER", None)
        result = CliRunner(env=env, catch_exceptions=False).invoke(
            cli, list(args), prog_name="govpki")
        done = subprocess.CompletedProcess(["govpki", *args], result.exit_code, result.stdout,
                                           result.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"govpki {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stderr.strip()} {done.stdout.strip()[-500:]}")
        return done

    def govpki_process(self, unit: Unit, node: Node, *extra: str, timeout: float = 180
                       ) -> subprocess.CompletedProcess[str]:
        """``unit``'s ExecStart as a process of its own, with the unit's environment."""
        return subprocess.run([*self.command(unit), *extra], env=self.env(unit, node),
                              cwd=self.base, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def install(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        # /etc/govpki/secrets.env (0600): the PIN, for systemd's EnvironmentFile.
        fd = os.open(self.secrets_env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"GOVPKI_PKCS11_PIN={PIN}\n")
        for node in self.nodes:
            node.home.mkdir(mode=0o700)
            fd = os.open(node.home / "govpki.toml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.toml(node))
        first, second = self.nodes
        # The ceremony migrates every package's tables itself; `db upgrade` after it is the
        # no-op docs/OPERATIONS.md keeps for the habit.
        self.govpki(first, "ca", "ceremony", str(ROOT / "policies/ceremonies/demo.yaml"),
                    "--pkcs11-module", self.softhsm_module, "--token-label", self.token_label,
                    "--pin-env", "GOVPKI_PKCS11_PIN")
        self.govpki(first, "db", "upgrade")
        self.govpki(first, "ra", "orgs", "load")
        self.govpki(first, "ra", "operator", "add", ADMIN, "--org", "630000", "--role",
                    "ca-admin", "--name", "省CA管理员")
        # The RA's installation secret: made once, the same file on every node.
        subprocess.run(["sh", "-c", 'umask 077 && head -c 32 /dev/urandom > '
                                    '"$GOVPKI_HOME/ra-secret.key"'],
                       env={"GOVPKI_HOME": str(first.home), "PATH": os.environ["PATH"]},
                       check=True)
        shutil.copy2(first.home / "ra-secret.key", second.home / "ra-secret.key")
        self._server_certificate(first)

    def _server_certificate(self, node: Node) -> None:
        self.tls.mkdir(mode=0o700)
        key, csr, cert = self.tls / "server.key", self.tls / "server.csr", self.tls / "server.pem"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                        "-subj", f"/CN={SERVER_NAME}", "-out", str(csr)],
                       check=True, capture_output=True)
        self.govpki(node, "ca", "issue", "--ca", "devices", "--profile", "server-tls",
                    "--csr", str(csr), "--subject", f"CN={SERVER_NAME},{SUBJECT_O}",
                    "--san-dns", SERVER_NAME, "--out", str(cert))
        devices = self.govpki(node, "ca", "export-chain", "--ca", "devices").stdout
        (self.tls / "server-fullchain.pem").write_text(cert.read_text() + devices)
        officials = self.govpki(node, "ca", "export-chain", "--ca", "officials").stdout
        (self.tls / "client-ca.pem").write_text(officials)
        blocks = officials.split("-----END CERTIFICATE-----\n")
        (self.tls / "officials-ca.pem").write_text(blocks[0] + "-----END CERTIFICATE-----\n")
        (self.tls / "root.pem").write_text(blocks[1] + "-----END CERTIFICATE-----\n")

    # -- processes -------------------------------------------------------------------------

    def start_node(self, node: Node) -> None:
        log = open(node.log, "ab")
        node.process = subprocess.Popen(self.command(self.node_unit),
                                        env=self.env(self.node_unit, node), cwd=self.base,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()

    def wait_ready(self, node: Node, timeout: float = STARTUP_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert node.process is not None
            if node.process.poll() is not None:
                raise AssertionError(f"node {node.name} exited: {self.tail(node.log)}")
            status, _h, _b = http_get(node.url + "/readyz", timeout=5)
            if status == 200 and self._workers_started(node):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node.name} not ready: {self.tail(node.log)}")
            time.sleep(0.3)

    def _workers_started(self, node: Node) -> bool:
        """Every granian worker of the last start has loaded the app. (A worker that gets
        SIGTERM while it still loads never stops: granian 2.x; systemd's TimeoutStopSec
        ends it in production.)"""
        text = node.log.read_text(errors="replace")
        since = text[text.rfind("Starting granian"):]
        workers = int(self.node_unit.exec_start[self.node_unit.exec_start.index("--workers")
                                                + 1])
        return since.count("Started worker-") >= workers

    def kill_node(self, node: Node) -> None:
        """kill -9 of the whole node (granian's master and workers), as a lost machine."""
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)

    def stop_node(self, node: Node, timeout: float = 60) -> int:
        """SIGTERM, as `systemctl stop` (KillSignal=SIGTERM, KillMode=mixed)."""
        if node.process is None or node.process.poll() is not None:
            return node.process.returncode if node.process else 0
        node.process.send_signal(signal.SIGTERM)
        try:
            return node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(node.process.pid, signal.SIGKILL)
            return node.process.wait(timeout=10)

    def start_nginx(self) -> None:
        prefix = self.base / "nginx"
        for sub in ("logs", "tmp", "sites-enabled"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # nginx's workers run as nobody when the master is root
            shutil.chown(prefix / "tmp", "nobody")
        (prefix / "sites-enabled" / "govpki.conf").write_text(self.nginx_site())
        tmp = prefix / "tmp"
        (prefix / "nginx.conf").write_text(f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    access_log {prefix}/logs/access.log;
    include {prefix}/sites-enabled/*.conf;
}}
""")
        test = subprocess.run(self.nginx_command("-t"), capture_output=True, text=True,
                              check=False)
        assert test.returncode == 0, test.stderr
        out = open(prefix / "logs" / "stdout.log", "ab")
        self.nginx = subprocess.Popen(self.nginx_command(), stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 30
        for name in ("http", "https", "mtls"):
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.ports[name])) == 0:
                        break
                assert self.nginx.poll() is None, self.tail(prefix / "logs" / "error.log")
                assert time.monotonic() < deadline, "nginx did not open its ports"
                time.sleep(0.1)

    def nginx_command(self, *extra: str) -> list[str]:
        prefix = self.base / "nginx"
        return ["nginx", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
                "-e", str(prefix / "logs" / "error.log"), *extra]

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.nginx.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait(timeout=10)
        for node in self.nodes:
            self.stop_node(node)

    @staticmethod
    def tail(path: Path, lines: int = 15) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return f"({path} missing)"

    def node_log_count(self, node: Node, text: str) -> int:
        try:
            return node.log.read_text(errors="replace").count(text)
        except FileNotFoundError:
            return 0

    def access_log(self) -> list[str]:
        path = self.base / "nginx" / "logs" / "govpki-access.log"
        return path.read_text().splitlines() if path.exists() else []

    # -- clients ---------------------------------------------------------------------------

    def curl(self, *args: str, person: Person | None = None, check: bool = False
             ) -> subprocess.CompletedProcess[str]:
        """curl (the CLI) to nginx by name, verifying the server against the root."""
        cmd = ["curl", "-sS", "--max-time", "30", "--cacert", str(self.tls / "root.pem")]
        for port in ("https", "mtls"):
            cmd += ["--resolve", f"{SERVER_NAME}:{self.ports[port]}:127.0.0.1"]
        if person is not None:
            cmd += ["--cert", str(person.cert_path), "--key", str(person.key_path)]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, check=check,
                              timeout=60)

    def https_url(self, port: str, path: str) -> str:
        return f"https://{SERVER_NAME}:{self.ports[port]}{path}"

    def tls_context(self, person: Person | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.tls / "root.pem"))
        if person is not None:
            context.load_cert_chain(str(person.cert_path), str(person.key_path))
        return context

    def https(self, method: str, path: str, *, person: Person | None = None,
              port: str = "mtls", token: str | None = None, body: Any = None,
              timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request to nginx by name (SNI and certificate check against
        SERVER_NAME), connected to 127.0.0.1."""
        conn = http.client.HTTPSConnection(SERVER_NAME, self.ports[port], timeout=timeout,
                                           context=self.tls_context(person))
        conn._create_connection = (  # type: ignore[attr-defined]
            lambda address, *a, **k: socket.create_connection(("127.0.0.1", address[1]),
                                                              *a, **k))
        headers = {"Accept": "application/json"}
        data = None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            reply = conn.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        finally:
            conn.close()


def http_get(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10,
             data: bytes | None = None, method: str | None = None
             ) -> tuple[int, dict[str, str], bytes]:
    """Plain HTTP; (0, {}, b"") when nothing answered."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method or ("POST" if data is not None else "GET"), path or "/",
                     body=data, headers=dict(headers or {}))
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    except OSError:
        return 0, {}, b""
    finally:
        conn.close()


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bool = False
                 ) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 (RFC 5019 §2.1.1)
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_status(der: bytes) -> tuple[str, str | None]:
    """(responseStatus, certificate status when successful)."""
    from cryptography.x509 import ocsp

    response = ocsp.load_der_ocsp_response(der)
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return response.response_status.name.lower(), None
    return "successful", response.certificate_status.name.lower()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set process environment variables for the duration (the PIN for in-process setup)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

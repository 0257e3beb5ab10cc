"""Helpers for TSA tests: queries built with asn1crypto, a real loopback HTTP server, and the
OpenSSL CLI as the independent client (`openssl ts -query / -reply / -verify`)."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from asn1crypto import cms, tsp

from signing.tsa import _TimeStampResp

OIDS = {"sha1": "1.3.14.3.2.26", "md5": "1.2.840.113549.2.5",
        "sha256": "2.16.840.1.101.3.4.2.1", "sha384": "2.16.840.1.101.3.4.2.2",
        "sha512": "2.16.840.1.101.3.4.2.3"}


def make_query(data: bytes = b"document", hash_name: str = "sha256", *,
               nonce: int | None = 0x1234_5678_9ABC_DEF0, cert_req: bool = True,
               policy: str | None = None, extensions: bool = False,
               imprint: bytes | None = None, version: int = 1) -> bytes:
    """A TimeStampReq; ``imprint`` overrides the digest (wrong lengths, for refusals)."""
    digest = imprint if imprint is not None else hashlib.new(hash_name, data).digest()
    fields: dict[str, Any] = {
        "version": version,
        "message_imprint": {"hash_algorithm": {"algorithm": OIDS[hash_name]},
                            "hashed_message": digest},
        "cert_req": cert_req,
    }
    if nonce is not None:
        fields["nonce"] = nonce
    if policy is not None:
        fields["req_policy"] = policy
    if extensions:
        fields["extensions"] = [{"extn_id": "1.2.3.4", "critical": False,
                                 "extn_value": b"\x05\x00"}]
    return tsp.TimeStampReq(fields).dump()


def parse_reply(der: bytes, *, full: bool = True) -> _TimeStampResp:
    """Load a reply; ``full`` parses every field (slow: ~40 ms with the certificate)."""
    reply = _TimeStampResp.load(der, strict=True)
    if full:
        reply.native  # noqa: B018 (the whole reply must be well-formed, not just its head)
    return reply


def status_of(der: bytes) -> tuple[str, set[str]]:
    info = parse_reply(der)["status"]
    fail = info["fail_info"].native
    return info["status"].native, set(fail) if fail else set()


def tst_info(der: bytes, *, full: bool = True) -> tsp.TSTInfo:
    token = parse_reply(der, full=full)["time_stamp_token"]
    return token["content"]["encap_content_info"]["content"].parsed


def signed_data(der: bytes) -> cms.SignedData:
    return parse_reply(der)["time_stamp_token"]["content"]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a real loopback socket (an ephemeral port) in a thread."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


def http(url: str, body: bytes | None = None, *, method: str = "POST",
         content_type: str | None = "application/timestamp-query") -> HttpReply:
    request = urllib.request.Request(url, data=body, method=method)
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return HttpReply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HttpReply(exc.code, dict(exc.headers), exc.read())


def openssl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *argv], capture_output=True, text=True, check=False)


def openssl_query(data: Path, out: Path, *, digest: str = "sha256", cert: bool = True,
                  nonce: bool = True) -> bytes:
    argv = ["ts", "-query", "-data", str(data), f"-{digest}", "-out", str(out)]
    if cert:
        argv.append("-cert")
    if not nonce:
        argv.append("-no_nonce")
    result = openssl(*argv)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def reply_text(reply: Path) -> str:
    result = openssl("ts", "-reply", "-in", str(reply), "-text")
    assert result.returncode == 0, result.stderr
    return result.stdout


def query_text(query: Path) -> str:
    result = openssl("ts", "-query", "-in", str(query), "-text")
    assert result.returncode == 0, result.stderr
    return result.stdout


def verify(data: Path, reply: Path, root: Path,
           untrusted: Path) -> subprocess.CompletedProcess[str]:
    argv = ["ts", "-verify", "-data", str(data), "-in", str(reply), "-CAfile", str(root)]
    if untrusted.read_bytes():
        argv += ["-untrusted", str(untrusted)]
    return openssl(*argv)

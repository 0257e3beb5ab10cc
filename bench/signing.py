"""PDF signing and validation throughput: govpki's PAdES path beside pyHanko called directly.

Measured side by side in one run, on the same documents (JSON on stdout):
- ``govpki``: ``signing.pades.sign_pdf`` — input checks, certificate and status checks, field
  preparation, measured container size, pyHanko signing through govpki's signer interface;
- ``pyhanko``: pyHanko's ``PdfSigner.sign_pdf`` with a ``SimpleSigner`` (file key) or its own
  ``PKCS11Signer`` on the same SoftHSM2 token (raw ECDSA), default size estimate — the floor
  govpki's own work sits on.
Both use the same in-process TSA (``CallableTimeStamper``) and, for B-LT, the same in-process
revocation sources (govpki's OCSP responder and CRLs through ``WsgiTransport``), so the ratio
is govpki's own cost. 1-page and 50-page documents, B-B and B-LT, file key and SoftHSM2 token.
Validation: ``signing.pdf_verify.verify_pdf`` (offline, roots only) beside pyHanko's
``validate_pdf_signature`` with the same embedded revocation data.
Target: govpki's signing time ≤ 1.3 × pyHanko's (ratios ``govpki_time / pyhanko_time``).

  .venv/bin/python bench/signing.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/signing.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asn1crypto import crl as asn1_crl  # noqa: E402
from asn1crypto import keys as asn1_keys  # noqa: E402
from asn1crypto import ocsp as asn1_ocsp  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from flask import Flask  # noqa: E402
from pyhanko.pdf_utils import generic  # noqa: E402
from pyhanko.pdf_utils.generic import pdf_name  # noqa: E402
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter  # noqa: E402
from pyhanko.sign import fields, signers  # noqa: E402
from pyhanko.sign.validation import (  # noqa: E402
    DocumentSecurityStore,
    async_validate_pdf_signature,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402
from pyhanko_certvalidator.policy_decl import (  # noqa: E402
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleCertificateStore  # noqa: E402

from ca.ceremony import load_ceremony, run_ceremony  # noqa: E402
from ca.cli import DEMO_CEREMONY  # noqa: E402
from ca.context import CaContext, version_locations  # noqa: E402
from ca.issuance import CertificateRequest, issue_certificate  # noqa: E402
from ca.store import chain_der  # noqa: E402
from ca.web import ca_blueprint  # noqa: E402
from core import migrate  # noqa: E402
from core.config import AuditConfig, Config, KeyStoreConfig  # noqa: E402
from core.db import make_engine, transaction  # noqa: E402
from hsm.file_store import FileKeyStore  # noqa: E402
from hsm.keystore import KeyRing  # noqa: E402
from hsm.signer import SoftwareSigner  # noqa: E402
from ocsp import version_locations as ocsp_version_locations  # noqa: E402
from ocsp.wsgi import create_ocsp_app  # noqa: E402
from signing.config import TsaConfig  # noqa: E402
from signing.pades import Level, PadesOptions, SigningServices, sign_pdf  # noqa: E402
from signing.pdf_revinfo import (  # noqa: E402
    GovpkiFetcherBackend,
    StoreStatusSource,
    WsgiTransport,
)
from signing.pdf_signer import CallableTimeStamper, SigningKey, to_asn1  # noqa: E402
from signing.pdf_verify import VerifyOptions, verify_pdf  # noqa: E402
from signing.tsa import TimeStampAuthority  # noqa: E402

BASE_URL = "http://govpki.bench.invalid"  # never resolved: every fetch is answered in-process
PASSPHRASE = b"bench-passphrase"
PIN = "bench-pin"
SUBJECT = "CN=张三,OU=办公室,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"


def make_pdf(pages: int) -> bytes:
    writer = PdfFileWriter()
    font = writer.add_object(generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"), pdf_name("/Subtype"): pdf_name("/Type1"),
        pdf_name("/BaseFont"): pdf_name("/Helvetica")}))
    for number in range(1, pages + 1):
        text = "".join(f"BT /F1 10 Tf 72 {760 - 14 * i} Td (Page {number}, line {i}.) Tj ET\n"
                       for i in range(50))
        writer.insert_page(PageObject(
            contents=writer.add_object(generic.StreamObject(stream_data=text.encode())),
            media_box=[0, 0, 595, 842],
            resources=generic.DictionaryObject({
                pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})})))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


class Router:
    def __init__(self, flask_app: Any, routes: dict[str, Any]) -> None:
        self.flask_app, self.routes = flask_app, routes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app(environ, start_response)
        return self.flask_app(environ, start_response)


def build_pki(home: Path) -> tuple[CaContext, Router, TimeStampAuthority]:
    home.mkdir(parents=True)
    url = f"sqlite:///{home / 'govpki.sqlite3'}"
    config = Config(home=home, database_url=url, public_base_url=BASE_URL,
                    keystore=KeyStoreConfig(), audit=AuditConfig(key_uri="file:audit"))
    engine = make_engine(url)
    migrate.upgrade(engine, [*version_locations(), *ocsp_version_locations()])
    engine.dispose()
    ctx = CaContext.open(config, keyring=KeyRing([FileKeyStore(home / "keys",
                                                               passphrase=PASSPHRASE)]))
    run_ceremony(ctx, load_ceremony(DEMO_CEREMONY), key_uri=lambda label: f"file:{label}",
                 actor="bench")
    flask_app = Flask("bench")
    flask_app.config["GOVPKI_CA"] = ctx
    flask_app.register_blueprint(ca_blueprint)
    tsa = TimeStampAuthority(ctx, TsaConfig(clock_source="none"))
    return ctx, Router(flask_app, {"/ocsp": create_ocsp_app(ctx, listen=False)}), tsa


def softhsm_token(base: Path) -> dict[str, str] | None:
    module = next((m for m in ("/usr/lib/softhsm/libsofthsm2.so",
                               "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
                   if Path(m).exists()), None)
    if module is None or shutil.which("softhsm2-util") is None:
        return None
    tokens = base / "tokens"
    tokens.mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench-usb",
                    "--pin", PIN, "--so-pin", "bench-so"], check=True, capture_output=True)
    return {"module": module, "label": "bench-usb"}


class Keys:
    """The same key and certificate for both implementations."""

    def __init__(self, govpki_key: SigningKey, pyhanko_signer: signers.Signer) -> None:
        self.govpki = govpki_key
        self.pyhanko = pyhanko_signer


def make_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def file_keys(ctx: CaContext, chain: list[x509.Certificate]) -> Keys:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_certificate(ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(key),
        subject=SUBJECT)).certificate()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    simple = signers.SimpleSigner(
        signing_cert=to_asn1(cert), signing_key=asn1_keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs([to_asn1(c) for c in chain]))
    return Keys(SigningKey(SoftwareSigner("file:bench", key), cert, tuple(chain)), simple)


def token_keys(ctx: CaContext, chain: list[x509.Certificate], token: dict[str, str],
               stack: Any) -> Keys:
    import pkcs11
    from pyhanko.sign.pkcs11 import PKCS11Signer

    from hsm.pkcs11_lock import PKCS11_LOCK
    from hsm.token import open_token

    usb = stack.enter_context(open_token(token["module"], token["label"], PIN))
    token_key = usb.generate_signing_key("ec-p256")
    cert = issue_certificate(ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=usb.build_csr(token_key),
        subject=SUBJECT)).certificate()
    usb.store_certificate(token_key, cert, chain=chain)
    with PKCS11_LOCK:
        lib = pkcs11.lib(os.path.realpath(token["module"]))
        session = lib.get_token(token_label=token["label"]).open()  # logged in: per application
    stack.callback(session.close)
    direct = PKCS11Signer(session, key_id=token_key.key_id, signing_cert=to_asn1(cert),
                          ca_chain=[to_asn1(c) for c in chain], use_raw_mechanism=True,
                          other_certs_to_pull=None)
    return Keys(SigningKey(usb.signer(token_key), cert, tuple(chain)), direct)


def pyhanko_direct(keys: Keys, level: Level, timestamper: Any, fetcher: Any,
                   root: x509.Certificate) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        vc = None
        if level.long_term:
            vc = ValidationContext(trust_roots=[to_asn1(root)], allow_fetching=True,
                                   fetcher_backend=fetcher)
        meta = signers.PdfSignatureMetadata(
            field_name="Signature1", subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=level.long_term, validation_context=vc)
        pdf_signer = signers.PdfSigner(meta, keys.pyhanko, timestamper=timestamper
                                       if level.timestamped else None)
        out = pdf_signer.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)))
        return bytes(out.getvalue())
    return sign


def paired(ours: Callable[[], Any], floor: Callable[[], Any], count: int,
           rounds: int) -> tuple[float, float]:
    """Rates (per second) of ``ours`` and ``floor``, measured in alternating batches so that a
    busy machine slows both alike; each rate is from the median batch."""
    ours()  # warm caches (fonts, keys, TSA dummy token, OCSP answers)
    floor()
    per_batch = max(1, count // rounds)
    times: dict[str, list[float]] = {"ours": [], "floor": []}
    for _ in range(rounds):
        for name, fn in (("ours", ours), ("floor", floor)):
            start = time.perf_counter()
            for _ in range(per_batch):
                fn()
            times[name].append((time.perf_counter() - start) / per_batch)
    return 1 / statistics.median(times["ours"]), 1 / statistics.median(times["floor"])


def pyhanko_validate(data: bytes, root: x509.Certificate) -> bool:
    reader = PdfFileReader(io.BytesIO(data))
    dss = DocumentSecurityStore.read_dss(reader)
    rule = RevocationCheckingRule.CRL_OR_OCSP_REQUIRED
    vc = ValidationContext(
        trust_roots=[to_asn1(root)], other_certs=list(dss.load_certs()),
        ocsps=[asn1_ocsp.OCSPResponse.load(o.get_object().data) for o in dss.ocsps],
        crls=[asn1_crl.CertificateList.load(c.get_object().data) for c in dss.crls],
        allow_fetching=False, revinfo_policy=CertRevTrustPolicy(
            RevocationCheckingPolicy(rule, rule)))
    sig = next(iter(reader.embedded_regular_signatures))
    status = asyncio.run(async_validate_pdf_signature(
        sig, vc, ts_validation_context=vc, key_usage_settings=KeyUsageConstraints(
            key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)))
    return bool(status.bottom_line)


def main() -> None:
    import contextlib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--count", type=int, default=30, help="documents per measurement")
    parser.add_argument("--rounds", type=int, default=6,
                        help="alternating batches per measurement (median taken)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    count = 2 if args.smoke else args.count
    rounds = 1 if args.smoke else args.rounds
    results: dict[str, Any] = {
        "benchmark": "signing", "count": count, "rounds": rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rates_per_s": {}, "ratios": {}}
    rates: dict[str, float] = results["rates_per_s"]
    ratios: dict[str, float] = results["ratios"]
    with tempfile.TemporaryDirectory(prefix="govpki-bench-signing-") as tmp, \
            contextlib.ExitStack() as stack:
        base = Path(tmp)
        token = softhsm_token(base / "softhsm")
        ctx, app, tsa = build_pki(base / "home")
        stack.callback(ctx.close)
        with transaction(ctx.sessions) as session:
            chain = [x509.load_der_x509_certificate(d) for d in chain_der(session, "officials")]
        root = chain[-1]
        timestamper = CallableTimeStamper(tsa.respond)
        fetcher = GovpkiFetcherBackend(WsgiTransport(BASE_URL, app, fallback=None))
        services = SigningServices(timestamper=timestamper, fetcher=fetcher,
                                   status=StoreStatusSource(ctx))
        key_sets = {"file": file_keys(ctx, chain)}
        if token:
            key_sets["softhsm"] = token_keys(ctx, chain, token, stack)
        documents = {"1p": make_pdf(1), "50p": make_pdf(2 if args.smoke else 50)}
        for _ in range(1 if args.smoke else 8):  # steady state before the first measurement
            sign_pdf(documents["1p"], key_sets["file"].govpki, PadesOptions(level=Level.B_LT),
                     services)
        for key_name, keys in key_sets.items():
            for doc_name, doc in documents.items():
                for level in (Level.B_B, Level.B_LT):
                    name = f"{key_name}.{doc_name}.{level.value}"
                    options = PadesOptions(level=level)
                    direct_fn = pyhanko_direct(keys, level, timestamper, fetcher, root)
                    ours, floor = paired(
                        lambda d=doc, o=options, k=keys: sign_pdf(  # type: ignore[misc]
                            d, k.govpki, o, services),
                        lambda d=doc, f=direct_fn: f(d), count, rounds)  # type: ignore[misc]
                    rates[f"sign.govpki.{name}"] = ours
                    rates[f"sign.pyhanko.{name}"] = floor
                    ratios[f"sign.{name} govpki_time/pyhanko_time"] = floor / ours
        for doc_name, doc in documents.items():
            signed = sign_pdf(doc, key_sets["file"].govpki, PadesOptions(level=Level.B_LT),
                              services)
            options = VerifyOptions(trust_roots=[root])
            assert verify_pdf(signed, options).valid
            assert pyhanko_validate(signed, root)
            ours, floor = paired(lambda s=signed, o=options: verify_pdf(s, o),  # type: ignore[misc]
                                 lambda s=signed: pyhanko_validate(s, root),  # type: ignore[misc]
                                 count, rounds)
            rates[f"verify.govpki.{doc_name}.B-LT"] = ours
            rates[f"verify.pyhanko.{doc_name}.B-LT"] = floor
            ratios[f"verify.{doc_name}.B-LT govpki_time/pyhanko_time"] = floor / ours
    results["rates_per_s"] = {k: round(v, 1) for k, v in rates.items()}
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

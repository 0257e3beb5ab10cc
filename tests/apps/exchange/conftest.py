"""The exchange on the shared test PKIs: ra's organisation tree (the real codes of
/work/shared/data/orgs.csv, loaded by tests/ra's fixtures), organisations' seals and encryption
keys provisioned through the real path (server key store; the KMC escrows and installs the
encryption keys on SoftHSM2), and exchange clerks as RA operators.

Organisations used here, and by which tests (the session databases are shared):
630000 province (sender in the flow), 630100 Xining and 632200 Haibei (recipients),
632300 Huangnan (a seal that gets revoked), 632500 Hainan (an encryption certificate that gets
revoked), 632600 Guoluo (no keys at all), 632700 Yushu and 632800 Haixi (CLI and REST tests).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from apps.exchange import models, org_keys
from apps.exchange.package import DocumentFile
from apps.exchange.policy import get_policy
from apps.exchange.service import SendRequest
from core.db import transaction
from ra.records import Operator
from tests.conftest import Pki
from tests.ra.conftest import make_operator, ra_ready

PROVINCE = "630000"
XINING = "630100"
HAIBEI = "632200"
KEYED_ORGS = (PROVINCE, XINING, HAIBEI, "632300", "632500", "632700", "632800")

_ready: set[str] = set()


def exchange_ready(pki: Pki) -> Pki:
    """ra's tables and tree, the KMC master key on SoftHSM2 PKIs (the encryption keys are
    escrowed there), and both keys of every organisation in KEYED_ORGS, once per database."""
    ra_ready(pki)
    marker = pki.id + pki.ctx.config.database_url
    if marker in _ready:
        return pki
    if pki.keys == "softhsm":
        from tests.kmc.conftest import kmc_ready

        kmc_ready(pki)
    existing = {k.org_code for k in org_keys.list_keys(pki.ctx)}
    for code in KEYED_ORGS:
        if code not in existing:
            org_keys.provision(pki.ctx, code, policy=get_policy(), actor="test-setup")
    _ready.add(marker)
    return pki


@pytest.fixture
def exchange_pki(pki: Pki) -> Pki:
    """The matrix: SQLite/PostgreSQL × file keys/SoftHSM2 (storage and key tests)."""
    return exchange_ready(pki)


@pytest.fixture
def exchange_file_pki(file_pki: Pki) -> Pki:
    """SQLite + file keys: behaviour that does not depend on storage."""
    return exchange_ready(file_pki)


@dataclass(frozen=True)
class Clerks:
    province: Operator
    xining: Operator
    haibei: Operator


def clerks(pki: Pki) -> Clerks:
    return Clerks(make_operator(pki, PROVINCE, "exchange-clerk"),
                  make_operator(pki, XINING, "exchange-clerk"),
                  make_operator(pki, HAIBEI, "exchange-clerk"))


def pdf(text: str = "关于加强电子政务建设的通知") -> bytes:
    """A small but well-formed PDF (the hub only checks the header; readers open it)."""
    body = f"BT /F1 12 Tf 72 720 Td ({text.encode().hex()}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
               b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream"]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def document_number(prefix: str = "青政办") -> str:
    """A 文号 no other test uses: 青政办〔2024〕<random>号."""
    return f"{prefix}〔2024〕{secrets.randbelow(10**9)}号"


def request(issuer: str = PROVINCE, main: tuple[str, ...] = (XINING,),
            copy: tuple[str, ...] = (HAIBEI,), **overrides: object) -> SendRequest:
    values: dict[str, object] = {
        "issuer": issuer, "number": document_number(),
        "title": "青海省人民政府办公厅关于做好公文电子交换工作的通知",
        "date": dt.date(2024, 5, 20), "urgency": "加急", "classification": "非密",
        "main": main, "copy": copy,
        "body": DocumentFile("正文.pdf", pdf()),
        "attachments": (DocumentFile("附件1 名单.xlsx", b"PK\x03\x04 roster " * 50),
                        DocumentFile("附件2.txt", "联系人：王芳\n".encode()))}
    values.update(overrides)
    return SendRequest(**values)  # type: ignore[arg-type]


def new_message_id() -> str:
    return str(uuid.uuid4())


def row_counts(pki: Pki) -> tuple[int, int, int]:
    with transaction(pki.ctx.sessions) as session:
        return tuple(session.scalar(select(func.count()).select_from(table)) or 0  # type: ignore[return-value]
                     for table in (models.Package, models.Delivery, models.Receipt))

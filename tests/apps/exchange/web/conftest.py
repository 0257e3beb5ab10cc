"""The exchange pages served on loopback beside the SSO provider (the one-application
deployment: govpki's create_app minus the lean OCSP/TSA apps), with exchange clerks who log
in through the provider's certificate login (software keys here; the browser test uses a
SoftHSM2 USB key)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from flask import Flask

from tests.apps.exchange.conftest import (
    HAIBEI,
    PROVINCE,
    XINING,
    document_number,
    exchange_ready,
    pdf,
)
from tests.apps.sso.conftest import Person, make_app, make_person, served_config
from tests.apps.sso.test_http_client import _user_agent_login
from tests.browser import serve
from tests.conftest import Pki


@dataclass
class Site:
    base: str
    app: Flask
    pki: Pki


@contextmanager
def site(pki: Pki, **config: Any) -> Iterator[Site]:
    """The whole application on an ephemeral port; ``config`` goes into app.config."""
    app = make_app(pki)
    app.config.update(config)
    with serve(app) as base:
        app.config["GOVPKI_SSO_CONFIG"] = served_config(base)
        yield Site(base, app, pki)


@pytest.fixture(scope="module")
def web_pki(file_pki: Pki) -> Pki:
    return exchange_ready(file_pki)


@pytest.fixture(scope="module")
def web(web_pki: Pki) -> Iterator[Site]:
    """One served application per test module."""
    with site(web_pki) as served:
        yield served


def clerk(pki: Pki, org: str, name: str) -> Person:
    """An official with a signing certificate whose RA account is the exchange clerk
    (公文收发员) of ``org``."""
    return make_person(pki, name=name, role="exchange-clerk", org=org)


@dataclass
class Team:
    province: Person
    xining: Person
    haibei: Person


@pytest.fixture(scope="module")
def team(web_pki: Pki) -> Team:
    return Team(clerk(web_pki, PROVINCE, "李明"), clerk(web_pki, XINING, "卓玛"),
                clerk(web_pki, HAIBEI, "才让"))


def login(base: str, person: Person) -> requests.Session:
    """A browser (requests) logged in at the provider and then at the exchange pages."""
    ua = requests.Session()
    _user_agent_login(ua, base, person)
    landed = ua.get(f"{base}/exchange/inbox", timeout=30)
    assert landed.status_code == 200 and landed.url == f"{base}/exchange/inbox", (
        landed.status_code, landed.url, landed.text[:2000])
    return ua


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def compose(ua: requests.Session, base: str, *, files: list[tuple[str, Any]] | None = None,
            **fields: Any) -> requests.Response:
    """Fill the compose form as a sender would: the province's document to Xining (主送) and
    Haibei (抄送) unless ``fields`` say otherwise; ``files`` replaces the body and
    attachments."""
    page = ua.get(f"{base}/exchange/compose", timeout=30).text
    data: dict[str, Any] = {
        "csrf_token": csrf(page), "message_id": message_id_of(page),
        "number": document_number(), "title": "关于做好公文电子交换工作的通知",
        "date": "2024-05-20", "urgency": "加急", "classification": "非密",
        "main": [XINING], "copy": [HAIBEI]}
    data.update(fields)
    if files is None:
        files = [("body", ("正文.pdf", pdf(), "application/pdf")),
                 ("attachments", ("附件1 名单.txt", "名单：王芳".encode(), "text/plain"))]
    return ua.post(f"{base}/exchange/compose", data=data, files=files, timeout=60)


def message_id_of(html: str) -> str:
    found = re.search(r'name="message_id" value="([0-9a-f-]{36})"', html)
    assert found, "no message id on the compose page"
    return found.group(1)

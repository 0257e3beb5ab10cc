"""The officials pages with 100,000 officials: counts, page links and the last page come from
a bounded number of SQL statements (LIMIT/OFFSET and COUNT in the database, never a Python
loop over the roster).

The roster is bulk-inserted (one executemany) into a database of its own, so the other tests'
pages are not paged through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import event, insert

from ca.context import CaContext
from core import migrate
from core.config import Config
from core.db import make_engine, transaction, utcnow
from govpki.migrations import all_version_locations
from hsm.keystore import KeyRing
from ra import models, orgs
from ra.orgs import get_organisation
from tests.conftest import Pki
from tests.ra.web.conftest import logged_in, make_app, make_login

OFFICIALS = 100_000
SURNAMES = "王李张刘陈杨黄赵吴周"
#: Organisations of the 630100 subtree (西宁市) and one outside it.
PLACES = ("630100", "630100-BGT", "630121", "632200")


@pytest.fixture(scope="module")
def big_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    home = tmp_path_factory.mktemp("ra-scale")
    url = f"sqlite:///{home / 'govpki.sqlite3'}"
    engine = make_engine(url)
    migrate.upgrade(engine, all_version_locations())
    engine.dispose()
    ctx = CaContext.open(Config(home=home, database_url=url), keyring=KeyRing([]))
    orgs.load_organisations(ctx.sessions, actor="test")
    now = utcnow()
    with transaction(ctx.sessions) as session:
        org_ids = [get_organisation(session, code).id for code in PLACES]
        session.execute(insert(models.Official), [
            {"identifier": f"QH{i:06d}", "name": f"{SURNAMES[i % 10]}{i:05d}",
             "organisation_id": org_ids[i % 4], "position": "科员", "contact": "",
             "unit": None, "status": "active", "created_at": now, "updated_at": now}
            for i in range(OFFICIALS)])
    yield Pki(ctx, home, "sqlite", "none", None)  # no CA: the officials pages need none
    ctx.close()


class StatementCounter:
    def __init__(self, ctx: CaContext) -> None:
        self.engine = ctx.engine
        self.count = 0

    def _count(self, *_args: object) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def test_search_and_paging_over_100000_officials(big_pki: Pki) -> None:
    operator = make_login(big_pki, "630100", "ra-operator")
    client = logged_in(make_app(big_pki), operator)
    in_scope = OFFICIALS * 3 // 4  # three of the four organisations lie under 630100

    with StatementCounter(big_pki.ctx) as counter:
        first = client.get("/ra/officials")
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    pages = -(-in_scope // 50)
    assert f"共 {in_scope} 条，第 1/{pages} 页" in html
    assert html.count('href="/ra/official/QH') == 2 * 50  # identifier and name links
    assert f'href="/ra/officials?page={pages}">末页' in html
    assert 'href="/ra/officials?page=2">' in html
    assert counter.count <= 20, counter.count

    # Search by name (张 is every tenth official) with an organisation filter; last page.
    zhang = sum(1 for i in range(OFFICIALS) if i % 10 == 2 and PLACES[i % 4] == "630121")
    with StatementCounter(big_pki.ctx) as counter:
        page = client.get("/ra/officials", query_string={"q": "张", "org": "630121"})
    html = page.get_data(as_text=True)
    zhang_pages = -(-zhang // 50)
    assert f"共 {zhang} 条，第 1/{zhang_pages} 页" in html
    assert counter.count <= 20, counter.count
    last_link = re.search(rf'href="([^"]+page={zhang_pages}[^"]*)">末页', html)
    assert last_link, html[-2000:]
    last = client.get(last_link.group(1).replace("&amp;", "&"))
    assert f"第 {zhang_pages}/{zhang_pages} 页" in last.get_data(as_text=True)
    rows = last.get_data(as_text=True).count('href="/ra/official/QH') // 2
    assert rows == zhang - 50 * (zhang_pages - 1)

    # Identifier prefix search: QH00001x is ten officials, those in scope are listed.
    prefix = client.get("/ra/officials", query_string={"q": "QH00001"}).get_data(
        as_text=True)
    expected = sum(1 for i in range(10, 20) if PLACES[i % 4] != "632200")
    assert f"共 {expected} 条" in prefix

    # Out of scope stays out of reach at any size.
    assert client.get("/ra/officials", query_string={"org": "632200"}).status_code == 403

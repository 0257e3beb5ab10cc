"""Official-document exchange (公文交换) between the province, prefectures and departments.

A package is a signed cleartext header (CMS SignedData by the sending organisation's seal)
and a body encrypted to every recipient organisation (CMS EnvelopedData); the hub stores and
forwards it without ever opening the body, recipients decrypt, verify and answer with RFC 2634
signed receipts (technical: delivered and verified; business: signed for, returned,
completed). docs/exchange.md.

Modules, one job each: policy (policies/exchange.yaml), asn1 (the DER structures), header
(the header value and its parser), package (build, take apart, open), receipts (signed
receipts and their statements), org_keys (organisations' seal and encryption keys; the KMC
holds the encryption keys, kmc/org_keys.py), authz (exchange.* actions of
policies/authz.yaml), hub (store and forward: packages, deliveries, receipts), service (the
operations the CLI, the REST API and the web pages share), records (what they return), cli
(`govpki exchange ...`), api (REST routes), models and migrations (alembic branch "exchange").
"""

from pathlib import Path

MIGRATIONS = str(Path(__file__).parent / "migrations")
#: The web pages' own branch ("exchange_web": their login sessions), apps/exchange/web.
WEB_MIGRATIONS = str(Path(__file__).parent / "web" / "migrations")


def version_locations() -> list[str]:
    """exchange's migration directories, to append to ``ca.context.version_locations()``."""
    return [MIGRATIONS, WEB_MIGRATIONS]

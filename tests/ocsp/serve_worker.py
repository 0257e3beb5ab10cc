"""A responder process for the cross-process tests: ``python -m tests.ocsp.serve_worker HOME URL``.

Opens its own CaContext on the given home (file keys) and database, serves create_ocsp_app on a
free loopback port with werkzeug, and prints ``ready <port>`` once LISTEN is active.
"""

from __future__ import annotations

import sys
from pathlib import Path

from werkzeug.serving import make_server

from ca.context import CaContext
from core.config import AuditConfig, Config
from hsm.file_store import FileKeyStore
from hsm.keystore import KeyRing
from ocsp.wsgi import create_ocsp_app
from tests.conftest import TEST_PASSPHRASE


def main() -> None:
    home, url = Path(sys.argv[1]), sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    config = Config(home=home, database_url=url, public_base_url="http://127.0.0.1:8600",
                    audit=AuditConfig(key_uri="file:audit"))
    ctx = CaContext.open(config, keyring=KeyRing([FileKeyStore(home / "keys",
                                                               passphrase=TEST_PASSPHRASE)]))
    app = create_ocsp_app(ctx)
    if app.status_events is not None and ctx.engine.dialect.name == "postgresql":
        app.status_events.connected.wait(10)
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(f"ready {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""Headless Chromium for end-to-end tests: the system's chromium driven by Playwright.

Playwright's own browser download is never used (the government network, like CI here, has no
Internet): the pip package brings the driver, Debian's ``chromium`` the browser
(``GOVPKI_CHROMIUM`` overrides the path). The application runs in-process under werkzeug's
server on 127.0.0.1 with an ephemeral port. Screenshots go to ``GOVPKI_TEST_ARTEFACTS``
(default tests/artefacts/), kept by CI as artefacts for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import require

DEFAULT_ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
#: A common office monitor: what the screenshots show.
VIEWPORT = {"width": 1440, "height": 900}


def chromium_path() -> str | None:
    configured = os.environ.get("GOVPKI_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def playwright_installed() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def require_browser() -> str:
    """The chromium executable; skips outside CI (fails in CI) when it or Playwright is
    missing, like every other external tool of the test suite."""
    require(playwright_installed(), "Playwright (pip install playwright)")
    path = chromium_path()
    require(path is not None, "Chromium (apt-get install chromium)")
    assert path is not None
    return path


def artefact_dir() -> Path:
    path = Path(os.environ.get("GOVPKI_TEST_ARTEFACTS") or DEFAULT_ARTEFACTS)
    path.mkdir(parents=True, exist_ok=True)
    return path


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request in the test output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1 (threaded, ephemeral port); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@contextmanager
def chromium(executable: str) -> Iterator[Any]:
    """A headless Chromium browser (Playwright ``Browser``); new_context(viewport=VIEWPORT)
    per user."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` (all of it, or what the window shows) as
    ``<artefacts>/<name>.png``."""
    path = artefact_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path

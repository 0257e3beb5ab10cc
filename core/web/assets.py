"""The shell's stylesheet and page layout as a small blueprint each UI nests in its own.

Nested (``bp.register_blueprint(shell_blueprint())``) rather than mounted once by govpki: the
stylesheet is then served under each UI's own prefix (/ra/ui/ui.css, /sso/ui/ui.css,
/exchange/ui/ui.css), which the reverse proxy already routes and each UI's cookie paths and
hooks already cover, and a test application that mounts one UI alone still has it. The
layout template ``ui/layout.html`` is found through the nested blueprint's template folder.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint

#: The nested blueprint's name: its stylesheet's endpoint is "<ui>.shell.static".
NAME: Final = "shell"
STYLESHEET: Final = "ui.css"


def shell_blueprint() -> Blueprint:
    """A fresh blueprint per UI (Flask lets one blueprint be nested under several parents,
    but a fresh one keeps each parent's registration options its own)."""
    return Blueprint(NAME, __name__, template_folder="templates", static_folder="static",
                     static_url_path="/ui")


def static_endpoint(parent: str) -> str:
    """The stylesheet's endpoint under the UI blueprint ``parent`` (for url_for and for the
    parent's "no session needed" list)."""
    return f"{parent}.{NAME}.static"

"""The web shell the RA pages, the SSO provider's pages and the exchange pages share: security
headers and the CSRF comparison (security.py), the string-catalogue machinery (i18n.py), the
error pages and small view helpers (pages.py), and one stylesheet plus the page layout
(assets.py, static/ui.css, templates/ui/layout.html).

It sits in core so that ra/web can use it as well as apps/*: each package keeps its own
strings, pages, routes and session store; only the machinery that was copied lives here.
"""

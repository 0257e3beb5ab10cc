"""The office portal (办公门户) and the page where ca-admins register applications.

The portal lists every active registered application that has an entry URI
(``initiate_login_uri``, OIDC Core §4): registration by a ca-admin is the decision that an
application is open to the province's officials; an application decides itself what each
user may do in it (from the roles and organisation claims). The RA's own pages are always
one of them (ra_client.py registers itself).
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from apps.sso import clients
from apps.sso.errors import NotAllowed
from apps.sso.sessions import ProviderSession
from apps.sso.views import _, bp, ca_context, check_csrf, current, error_page, provider, render
from core.errors import GovpkiError


def _require_session() -> ProviderSession | Response:
    session = current()
    if session is None:
        return redirect(url_for("sso.login", next=request.full_path.rstrip("?"),
                                expired=1 if g.get("sso_expired") else None), 303)
    return session


@bp.get("/sso/portal")
def portal() -> ResponseReturnValue:
    session = _require_session()
    if isinstance(session, Response):
        return session
    from apps.sso.ra_client import ra_client  # the RA pages are always one of the apps

    ra_client(provider())
    apps = [c for c in clients.list_clients(ca_context().sessions) if c.initiate_login_uri]
    return render("portal.html", apps=apps, session=session)


@bp.route("/sso/admin/clients", methods=["GET", "POST"])
def admin_clients() -> ResponseReturnValue:
    session = _require_session()
    if isinstance(session, Response):
        return session
    sessions_ = ca_context().sessions
    created = None
    secret = None
    errors = ""
    if request.method == "POST":
        if not check_csrf():
            return error_page(400, "error.title", _("error.csrf"))
        try:
            created, secret = clients.add_client(
                sessions_, session.operator, request.form.get("name", ""),
                redirect_uris=request.form.get("redirect_uris", "").split(),
                post_logout_redirect_uris=request.form.get("post_logout", "").split(),
                backchannel_logout_uri=request.form.get("backchannel", "").strip() or None,
                initiate_login_uri=request.form.get("initiate", "").strip() or None,
                public=request.form.get("public") == "1")
        except NotAllowed:
            raise
        except GovpkiError as exc:
            errors = exc.message
    else:
        clients.require_admin(sessions_, session.operator, "sso.client.view", "")
    return render("clients.html", 400 if errors else 200,
                  items=clients.list_clients(sessions_, include_inactive=True),
                  created=created, secret=secret, errors=errors, values=request.form)

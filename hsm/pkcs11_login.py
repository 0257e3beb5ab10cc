"""Checking a token's user PIN without leaking a session (PKCS#11 v2.40 §5.6, C_Login).

python-pkcs11 0.10 logs in only inside ``Token.open(user_pin=...)``, and when that C_Login fails
it raises without closing the session it has just opened: every wrong PIN left one session
handle open until C_Finalize. So before the key store logs in for good, the PIN is tried on a
session of our own through the module's C_Login (:mod:`hsm.token_cryptoki`), which is closed
whatever the answer. Used by :mod:`hsm.pkcs11_store` (server HSMs) and so by :mod:`hsm.token`
(officials' USB keys), which opens its tokens through that store.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from pkcs11 import TokenFlag
from pkcs11 import exceptions as p11e

from hsm.errors import HsmError, WrongPin
from hsm.pkcs11_lock import PKCS11_LOCK
from hsm.token_cryptoki import CKR_OK, CKR_USER_ALREADY_LOGGED_IN, ckr_name, cryptoki


def check_user_pin(module_path: str, token: Any, pin: str) -> None:
    """C_Login as the user on a session of our own, closed whatever the answer.

    On success the login is given up at once: the caller logs in for good straight after,
    under the same lock, and owns the logout. If this process is already logged in to the
    token (CKR_USER_ALREADY_LOGGED_IN, answered without checking the PIN), the caller compares
    the PIN with the one it logged in with.
    """
    functions = cryptoki(module_path)
    with PKCS11_LOCK:
        probe = open_session(token, rw=False)
        try:
            rv = functions.login_user(probe.handle, pin)
            if rv == CKR_OK:
                functions.logout(probe.handle)
        finally:
            with suppress(p11e.PKCS11Error):
                probe.close()  # opened without a PIN: C_CloseSession only
        if rv in (CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
            return
        raise login_error(token, rv)


def open_session(token: Any, *, rw: bool) -> Any:
    """A session without a PIN (the application's login, if any, covers it); a token that
    refuses one is an HsmError naming the token and the PKCS#11 error class."""
    try:
        return token.open(rw=rw)
    except p11e.PKCS11Error as exc:
        raise HsmError(f"cannot open a session on token {token.label!r}: "
                       f"{type(exc).__name__}") from exc


def login_error(token: Any, rv: int) -> HsmError:
    """The typed error for a C_Login answer; the PIN itself is never part of it."""
    label = token.label
    name = ckr_name(rv)
    if name in ("CKR_PIN_INCORRECT", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE"):
        hint = ""
        with suppress(p11e.PKCS11Error):
            flags = TokenFlag(token.slot.get_token().flags)
            if flags & TokenFlag.USER_PIN_FINAL_TRY:
                hint = "; one more wrong PIN locks it"
        return WrongPin(f"wrong user PIN for token {label!r}{hint}")
    if name == "CKR_PIN_LOCKED":
        return WrongPin(f"the user PIN of token {label!r} is locked (too many wrong attempts); "
                        f"the security officer must reset it")
    if name == "CKR_PIN_EXPIRED":
        return WrongPin(f"the user PIN of token {label!r} has expired; change it before use")
    if name == "CKR_USER_PIN_NOT_INITIALIZED":
        return WrongPin(f"token {label!r} has no user PIN set yet")
    if name == "CKR_USER_ANOTHER_ALREADY_LOGGED_IN":
        return HsmError(f"this process is logged in to token {label!r} as the security officer; "
                        f"log out before using it as its user")
    return HsmError(f"cannot log in to token {label!r}: {name}")

"""The few Cryptoki calls python-pkcs11 0.10 does not offer, made through the module's own
function list (ctypes), for :mod:`hsm.token`.

* ``C_Login`` on a session we already hold. python-pkcs11 logs in only inside
  ``Token.open(user_pin=...)``, and when that C_Login fails it raises without closing the
  session it has just opened: every wrong PIN leaks one session handle until C_Finalize (read in
  its ``_pkcs11.pyx``; a test in tests/hsm/test_token.py probes the handles). Logging in on a
  session opened separately lets the caller close it whatever C_Login answers.
* ``C_Logout``, because a session opened without a PIN is closed by python-pkcs11 without one.
* ``C_GetTokenInfo`` for the memory counters (``ulFreePublicMemory`` ...), which python-pkcs11's
  ``Token`` does not carry, and ``C_GetSessionInfo``, which tells whether a handle is open.

The function list is found with ``C_GetFunctionList`` (PKCS#11 v2.40 §5.4), the entry point every
module exports, on the copy of the library python-pkcs11 already loaded and initialised
(``RTLD_NOLOAD``): loading a second copy would need a second C_Initialize. Callers hold
:data:`hsm.pkcs11_lock.PKCS11_LOCK` around every call here, as around python-pkcs11's.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

from hsm.errors import HsmError
from hsm.pkcs11_lock import PKCS11_LOCK

CKR_OK = 0x000
CKR_SESSION_HANDLE_INVALID = 0x0B3
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKU_USER = 1
CK_UNAVAILABLE_INFORMATION = ctypes.c_ulong(-1).value

# CKR_ names for the answers a login can get (C_Login's list in PKCS#11 v2.40, plus a few).
CKR_NAMES: dict[int, str] = {
    0x000: "CKR_OK",
    0x005: "CKR_GENERAL_ERROR",
    0x006: "CKR_FUNCTION_FAILED",
    0x030: "CKR_DEVICE_ERROR",
    0x031: "CKR_DEVICE_MEMORY",
    0x032: "CKR_DEVICE_REMOVED",
    0x0A0: "CKR_PIN_INCORRECT",
    0x0A1: "CKR_PIN_INVALID",
    0x0A2: "CKR_PIN_LEN_RANGE",
    0x0A3: "CKR_PIN_EXPIRED",
    0x0A4: "CKR_PIN_LOCKED",
    0x0B0: "CKR_SESSION_CLOSED",
    0x0B3: "CKR_SESSION_HANDLE_INVALID",
    0x0E0: "CKR_TOKEN_NOT_PRESENT",
    0x100: "CKR_USER_ALREADY_LOGGED_IN",
    0x101: "CKR_USER_NOT_LOGGED_IN",
    0x102: "CKR_USER_PIN_NOT_INITIALIZED",
    0x104: "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
    0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
}

_ULONG = ctypes.c_ulong  # CK_ULONG is "unsigned long" on every platform PKCS#11 names


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class _TokenInfo(ctypes.Structure):
    # CK_TOKEN_INFO, PKCS#11 v2.40 §3.2. Windows modules pack Cryptoki structures to 1 byte.
    if sys.platform == "win32":  # pragma: no cover - govpki's clients run on Linux
        _pack_ = 1
    _fields_ = [
        ("label", ctypes.c_char * 32),
        ("manufacturerID", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16),
        ("flags", _ULONG),
        ("ulMaxSessionCount", _ULONG),
        ("ulSessionCount", _ULONG),
        ("ulMaxRwSessionCount", _ULONG),
        ("ulRwSessionCount", _ULONG),
        ("ulMaxPinLen", _ULONG),
        ("ulMinPinLen", _ULONG),
        ("ulTotalPublicMemory", _ULONG),
        ("ulFreePublicMemory", _ULONG),
        ("ulTotalPrivateMemory", _ULONG),
        ("ulFreePrivateMemory", _ULONG),
        ("hardwareVersion", _Version),
        ("firmwareVersion", _Version),
        ("utcTime", ctypes.c_char * 16),
    ]


class _SessionInfo(ctypes.Structure):
    if sys.platform == "win32":  # pragma: no cover
        _pack_ = 1
    _fields_ = [("slotID", _ULONG), ("state", _ULONG), ("flags", _ULONG),
                ("ulDeviceError", _ULONG)]


# CK_FUNCTION_LIST up to C_Logout, in the order pkcs11f.h fixes for every version.
_FUNCTION_NAMES = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
    "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState",
    "C_Login", "C_Logout",
)


class _FunctionList(ctypes.Structure):
    if sys.platform == "win32":  # pragma: no cover
        _pack_ = 1
    _fields_ = [("version", _Version)] + [(name, ctypes.c_void_p) for name in _FUNCTION_NAMES]


_CFUNC = ctypes.CFUNCTYPE


class Cryptoki:
    """Typed entry points of one loaded module's function list."""

    def __init__(self, functions: _FunctionList) -> None:
        self._get_token_info = _CFUNC(_ULONG, _ULONG, ctypes.POINTER(_TokenInfo))(
            _entry(functions, "C_GetTokenInfo"))
        self._get_session_info = _CFUNC(_ULONG, _ULONG, ctypes.POINTER(_SessionInfo))(
            _entry(functions, "C_GetSessionInfo"))
        self._login = _CFUNC(_ULONG, _ULONG, _ULONG, ctypes.c_char_p, _ULONG)(
            _entry(functions, "C_Login"))
        self._logout = _CFUNC(_ULONG, _ULONG)(_entry(functions, "C_Logout"))

    def login_user(self, session_handle: int, pin: str) -> int:
        """C_Login(CKU_USER); returns the CKR_ code (the caller decides what each one means)."""
        secret = pin.encode("utf-8")
        with PKCS11_LOCK:
            return int(self._login(session_handle, CKU_USER, secret, len(secret)))

    def logout(self, session_handle: int) -> int:
        with PKCS11_LOCK:
            return int(self._logout(session_handle))

    def session_open(self, session_handle: int) -> bool:
        """Whether ``session_handle`` names an open session (C_GetSessionInfo answers CKR_OK)."""
        info = _SessionInfo()
        with PKCS11_LOCK:
            rv = int(self._get_session_info(session_handle, ctypes.byref(info)))
        if rv == CKR_OK:
            return True
        if rv == CKR_SESSION_HANDLE_INVALID:
            return False
        raise HsmError(f"C_GetSessionInfo answered {ckr_name(rv)}")

    def memory(self, slot_id: int) -> tuple[int | None, int | None, int | None, int | None]:
        """(free public, total public, free private, total private) bytes; None where the token
        answers CK_UNAVAILABLE_INFORMATION, as SoftHSM2 does for all four."""
        info = _TokenInfo()
        with PKCS11_LOCK:
            rv = int(self._get_token_info(slot_id, ctypes.byref(info)))
        if rv != CKR_OK:
            raise HsmError(f"C_GetTokenInfo answered {ckr_name(rv)}")
        values = (info.ulFreePublicMemory, info.ulTotalPublicMemory,
                  info.ulFreePrivateMemory, info.ulTotalPrivateMemory)
        return tuple(  # type: ignore[return-value]
            None if v == CK_UNAVAILABLE_INFORMATION else int(v) for v in values)


@dataclass(frozen=True)
class _Loaded:
    cryptoki: Cryptoki
    library: ctypes.CDLL  # kept so the handle outlives the function pointers


_LOADED: dict[str, _Loaded] = {}  # real module path → its function list; under PKCS11_LOCK


def cryptoki(module_path: str) -> Cryptoki:
    """The function list of a module that python-pkcs11 has already loaded in this process."""
    key = os.path.realpath(module_path)
    with PKCS11_LOCK:
        loaded = _LOADED.get(key)
        if loaded is not None:
            return loaded.cryptoki
        try:
            library = ctypes.CDLL(key, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        except OSError:
            raise HsmError(f"PKCS#11 module {module_path} is not loaded in this process") from None
        get_function_list = library.C_GetFunctionList
        get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
        get_function_list.restype = _ULONG
        pointer = ctypes.POINTER(_FunctionList)()
        rv = int(get_function_list(ctypes.byref(pointer)))
        if rv != CKR_OK or not pointer:
            raise HsmError(f"C_GetFunctionList of {module_path} answered {ckr_name(rv)}")
        loaded = _Loaded(Cryptoki(pointer.contents), library)
        _LOADED[key] = loaded
        return loaded.cryptoki


def ckr_name(rv: int) -> str:
    return CKR_NAMES.get(rv, f"CKR 0x{rv:08X}")


def _entry(functions: _FunctionList, name: str) -> int:
    address = getattr(functions, name)
    if not address:
        raise HsmError(f"the PKCS#11 module has no {name}")
    return int(address)

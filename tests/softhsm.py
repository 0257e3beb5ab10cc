"""SoftHSM2 for tests: find the module, give it a private token directory, create tokens.

A plain module (``from tests import softhsm``), not a conftest, so any test package can use it.

Does SoftHSM2 see a token initialised after C_Initialize in the same process? **No.**
SoftHSM2 2.6 scans its token directory only in C_Initialize: a token that ``softhsm2-util
--init-token`` (another process) creates afterwards does not appear in C_GetSlotList until the
module is finalized and initialized again (``lib.reinitialize()`` in python-pkcs11), and that
invalidates every open session handle (SessionHandleInvalid), i.e. breaks every open key store.
A token initialised *through the loaded module* (C_InitToken on its free slot) is visible at
once and leaves other sessions alone; SoftHSM2 then adds a new free slot. So
:func:`init_token` uses ``softhsm2-util`` while the module is not loaded in this process and
C_InitToken + C_InitPIN through the loaded module afterwards (python-pkcs11 has no C_InitToken,
so that one call goes through ctypes on the already-loaded library, under PKCS11_LOCK).

SoftHSM2 also reads SOFTHSM2_CONF only when it is loaded. :func:`init_softhsm` therefore
configures the process once: the first call picks the token directory, later calls keep it
(several conftests may each ask for SoftHSM2 in one run; their tokens share the directory and
must use different labels).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
_LABEL_BYTES = 32  # CK_TOKEN_INFO.label


def _find_module() -> str:
    override = os.environ.get("GOVPKI_SOFTHSM_MODULE")
    if override:
        return override
    for path in _CANDIDATES:
        if os.path.isfile(path):
            return path
    return _CANDIDATES[0]


SOFTHSM_MODULE: str = _find_module()
"""Path of libsofthsm2.so (GOVPKI_SOFTHSM_MODULE overrides); check softhsm_available()."""

_token_dir: Path | None = None
_tokens: dict[str, tuple[str, str]] = {}  # label → (pin, so_pin), tokens made by this process


def softhsm_available() -> bool:
    """The module and softhsm2-util are both installed."""
    return os.path.isfile(SOFTHSM_MODULE) and shutil.which("softhsm2-util") is not None


def require_softhsm() -> None:
    """Skip on a developer machine without SoftHSM2; fail in CI (CI=true), where nothing skips."""
    if softhsm_available():
        return
    reason = (f"SoftHSM2 is not installed (module {SOFTHSM_MODULE} or softhsm2-util missing; "
              f"apt-get install softhsm2)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the HSM tests")
    pytest.skip(reason)


def softhsm_token_dir() -> Path | None:
    """The token directory this process configured, if any."""
    return _token_dir


def init_softhsm(base_dir: Path) -> None:
    """Write ``base_dir/softhsm2.conf`` with tokens under ``base_dir/tokens``; set SOFTHSM2_CONF.

    Must run before the module is first loaded in this process; SoftHSM2 never re-reads its
    configuration. The first call wins: a later call keeps the directory already in use.
    """
    global _token_dir
    if _token_dir is not None:
        return
    from hsm.pkcs11_store import is_module_loaded

    if is_module_loaded(SOFTHSM_MODULE):
        raise RuntimeError(
            "SoftHSM2 was loaded in this process before init_softhsm() ran, so it already read "
            "another configuration; call init_softhsm() before opening any PKCS#11 store"
        )
    tokens = base_dir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = base_dir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        "slots.mechanisms = ALL\n"
        "library.reset_on_fork = false\n",
        encoding="utf-8",
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    _token_dir = tokens


def init_token(label: str, pin: str, so_pin: str) -> None:
    """Create a token with this label and PINs, visible to this process at once.

    Calling it again with the same label and PINs does nothing (several fixtures may ask for
    the same token); the same label with other PINs is an error, as SoftHSM2 would otherwise
    hold two tokens with one label and key URIs could not tell them apart.
    """
    if _token_dir is None:
        raise RuntimeError("call init_softhsm() before init_token()")
    if len(label.encode("utf-8")) > _LABEL_BYTES or not label:
        raise ValueError(f"a token label is 1-{_LABEL_BYTES} bytes of UTF-8, not {label!r}")
    known = _tokens.get(label)
    if known is not None:
        if known != (pin, so_pin):
            raise ValueError(f"token {label!r} already exists with other PINs")
        return
    from hsm.pkcs11_store import is_module_loaded

    if is_module_loaded(SOFTHSM_MODULE):
        _init_token_in_process(label, pin, so_pin)
    else:
        _init_token_with_util(label, pin, so_pin)
    _tokens[label] = (pin, so_pin)


def _init_token_with_util(label: str, pin: str, so_pin: str) -> None:
    # PINs on argv are acceptable here only because these are throwaway test tokens.
    result = subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", pin, "--so-pin", so_pin],
        capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=60,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).replace(pin, "***").replace(so_pin, "***")
        raise RuntimeError(f"softhsm2-util --init-token failed for {label!r}: {output.strip()}")


def _init_token_in_process(label: str, pin: str, so_pin: str) -> None:
    """C_InitToken on the free slot of the loaded module, then C_InitPIN as the SO."""
    import pkcs11
    from pkcs11 import TokenFlag

    from hsm.pkcs11_lock import PKCS11_LOCK

    path = os.path.realpath(SOFTHSM_MODULE)
    with PKCS11_LOCK:
        lib = pkcs11.lib(path)  # the instance already loaded (python-pkcs11 caches by path)
        free = [slot for slot in lib.get_slots(token_present=True)
                if not slot.get_token().flags & TokenFlag.TOKEN_INITIALIZED]
        if not free:
            raise RuntimeError("SoftHSM2 offers no free slot to initialise a token in")
        # RTLD_NOLOAD: bind to the copy python-pkcs11 initialised, never load a second one.
        handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        c_init_token = handle.C_InitToken
        c_init_token.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong,
                                 ctypes.c_char_p]
        c_init_token.restype = ctypes.c_ulong
        so = so_pin.encode("utf-8")
        padded = label.encode("utf-8").ljust(_LABEL_BYTES, b" ")
        rv = c_init_token(free[0].slot_id, so, len(so), padded)
        if rv != 0:
            raise RuntimeError(f"C_InitToken failed for {label!r}: CKR 0x{rv:08x}")
        token = lib.get_token(token_label=label)
        session = token.open(rw=True, so_pin=so_pin)
        try:
            session.init_pin(pin)
        finally:
            session.close()

"""The one lock that every PKCS#11 call in this process holds.

python-pkcs11 calls ``C_Initialize(NULL)``: no locking callbacks and no CKF_OS_LOCKING_OK. A
module may then assume the application is single-threaded, and SoftHSM2 does exactly that: it
turns its own mutexes off, and two sessions used from two threads crash the process (double
free, segfault; measured, see DESIGN.md "Pitfalls"). A per-session lock is not enough, because
the module's global state (object store, slot list) is shared by all sessions. So every call
into any PKCS#11 module, across all sessions and stores (and calls pyHanko makes on our behalf),
is made while holding :data:`PKCS11_LOCK`.

It is re-entrant so that a helper holding the lock can call another helper that takes it again.
"""

from __future__ import annotations

import threading

PKCS11_LOCK: threading.RLock = threading.RLock()
"""Hold around lib loading, token lookup, login, object search, attribute reads, sign, decrypt."""

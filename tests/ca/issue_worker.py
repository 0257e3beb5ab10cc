"""A separate process that issues certificates and prints each serial once it is returned.

Used by the concurrency tests: configuration comes from the environment (GOVPKI_HOME,
GOVPKI_DATABASE_URL, GOVPKI_KEY_PASSPHRASE), never argv.
"""

from __future__ import annotations

import sys

from ca.context import CaContext
from ca.issuance import CertificateRequest, issue_certificate
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key


def main(count: int) -> None:
    ctx = CaContext.open()
    csr = make_csr(new_key("ec-p256"))
    for _ in range(count):
        issued = issue_certificate(ctx, CertificateRequest(
            ca="officials", profile="official-signing", csr=csr, subject=OFFICIAL_DN,
            requested_by="worker"))
        sys.stdout.write(issued.serial + "\n")
        sys.stdout.flush()
    ctx.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))

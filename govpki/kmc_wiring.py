"""Plug the key management centre into the RA (ra and kmc are siblings: only govpki knows both).

The provider generates, escrows and certifies the encryption pair when the RA issues a signing
certificate (status ``pending-kmc`` while `govpki kmc init` has not been run); the delivery
releases the escrowed key wrapped to the transport key a USB key made, for the enrollment
endpoint POST /api/v1/enrollment/{id}/encryption-key.
"""

from __future__ import annotations

from typing import Any

from ca.context import CaContext
from kmc.delivery import wrapped_for_token
from kmc.provider import KmcEncryptionProvider
from ra import plugins
from ra.records import CertificateRef
from ra.requests import EncryptionOutcome


class KmcDelivery:
    def deliver(self, ctx: CaContext, subscriber_ref: str, transport_spki_der: bytes, *,
                actor: str) -> dict[str, Any]:
        return wrapped_for_token(ctx, subscriber_ref, transport_spki_der, actor=actor).to_json()


def install_kmc() -> None:
    provider = KmcEncryptionProvider(lambda status, cert, note: EncryptionOutcome(
        status, CertificateRef(cert.ca, cert.serial) if cert is not None else None, note))
    plugins.install(provider, KmcDelivery())

"""What the composition root plugs into the RA: the key management centre's two halves.

ra must not import kmc (they are siblings; DESIGN.md: a lookup across packages is made by the
caller above both and passed down). govpki installs, at start-up, an
:class:`ra.requests.EncryptionKeyProvider` (generate, escrow and certify the encryption pair
when the signing certificate is issued) and an :class:`EncryptionKeyDelivery` (release the
escrowed key wrapped for the transport key a USB key made). Without them the RA records
``pending-kmc`` and the delivery endpoint answers that no KMC is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ca.context import CaContext

if TYPE_CHECKING:
    from ra.requests import EncryptionKeyProvider


class EncryptionKeyDelivery(Protocol):
    def deliver(self, ctx: CaContext, subscriber_ref: str, transport_spki_der: bytes, *,
                actor: str) -> dict[str, Any]:
        """The escrowed key for ``subscriber_ref`` wrapped to the transport key, JSON-able;
        raises a GovpkiError (e.g. 409 when it was delivered already)."""
        ...


_provider: EncryptionKeyProvider | None = None
_delivery: EncryptionKeyDelivery | None = None


def install(provider: EncryptionKeyProvider | None,
            delivery: EncryptionKeyDelivery | None) -> None:
    global _provider, _delivery
    _provider, _delivery = provider, delivery


def encryption_provider() -> EncryptionKeyProvider | None:
    return _provider


def encryption_delivery() -> EncryptionKeyDelivery | None:
    return _delivery

"""The RA's encryption step, implemented by the KMC (``ra.requests.EncryptionKeyProvider``).

When the RA has had an official's signing certificate issued, it calls
``provide(ctx, request, signing)``; this generates the encryption key pair in the HSM, escrows
it and has the CA issue the ``official-encryption`` certificate with the same subject, the
same CA and the same ``subscriber_ref`` as the signing one. The USB key then fetches it with
:func:`kmc.delivery.wrapped_for_token` (``subscriber_ref`` = ``ra-official:<id>/request:<id>``).

kmc does not import ra (siblings, STYLE.md import table): the request and the signing
certificate are read through the small protocols below, which ``ra.records.RequestRecord`` and
``ca.issuance.IssuedCertificate`` satisfy, and the outcome is built by a factory the
composition root passes in, so the RA receives its own ``EncryptionOutcome``::

    from ra.records import CertificateRef
    from ra.requests import EncryptionOutcome
    provider = KmcEncryptionProvider(lambda status, cert, note: EncryptionOutcome(
        status, CertificateRef(cert.ca, cert.serial) if cert else None, note))

``KmcEncryptionProvider.duck_typed()`` returns :class:`KmcOutcome` values with the same fields.

It never raises for a KMC problem: the RA stores ``status`` on the request and audits ``note``,
and the signing certificate is already issued, so an exception would leave an issued
certificate under a request still marked approved. Statuses: ``escrowed`` (certified and
waiting in escrow for delivery), ``pending-kmc`` (no master key yet: `govpki kmc init`),
``not-applicable`` (the signing profile has no encryption half), ``failed`` (note says why;
the failure is in the audit log as ``kmc.escrow``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ca.context import CaContext
from core.errors import GovpkiError
from kmc.errors import KmcNotInitialised
from kmc.escrow import KeyOwner, escrow_key

OutcomeT = TypeVar("OutcomeT")


@dataclass(frozen=True)
class CertificateRef:
    """Same fields as ``ra.records.CertificateRef``."""

    ca: str
    serial: str


@dataclass(frozen=True)
class KmcOutcome:
    """Same fields as ``ra.requests.EncryptionOutcome``."""

    status: str
    certificate: CertificateRef | None = None
    note: str = ""


class _Organisation(Protocol):
    @property
    def code(self) -> str: ...

    @property
    def path(self) -> str: ...


class _Official(Protocol):
    @property
    def identifier(self) -> str: ...

    @property
    def subscriber_ref(self) -> str: ...

    @property
    def organisation(self) -> _Organisation: ...


class RequestLike(Protocol):
    """What is read of ``ra.records.RequestRecord``."""

    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def profile(self) -> str: ...

    @property
    def official(self) -> _Official: ...


class IssuedLike(Protocol):
    """What is read of ``ca.issuance.IssuedCertificate`` (the signing certificate)."""

    @property
    def ca(self) -> str: ...

    @property
    def serial(self) -> str: ...

    @property
    def subject(self) -> str: ...


OutcomeFactory = Callable[[str, CertificateRef | None, str], OutcomeT]

#: Signing profile → the encryption profile of its pair.
ENCRYPTION_PROFILE_FOR = {"official-signing": "official-encryption"}


class KmcEncryptionProvider(Generic[OutcomeT]):
    """Generates, escrows and certifies the encryption half of an official's pair."""

    def __init__(self, outcome: OutcomeFactory[OutcomeT], *, actor: str = "kmc",
                 key_type: str | None = None,
                 profiles: dict[str, str] | None = None) -> None:
        """``outcome`` builds the value the RA records; ``actor`` is who the KMC's audit
        events name (the RA's own event names the operator); ``key_type`` overrides the
        profile's first RSA key type; ``profiles`` maps signing to encryption profiles."""
        self._outcome = outcome
        self.actor = actor
        self.key_type = key_type
        self.profiles = dict(profiles or ENCRYPTION_PROFILE_FOR)

    @staticmethod
    def duck_typed(*, actor: str = "kmc", key_type: str | None = None
                   ) -> KmcEncryptionProvider[KmcOutcome]:
        """A provider returning :class:`KmcOutcome` (EncryptionOutcome's fields)."""
        return KmcEncryptionProvider(KmcOutcome, actor=actor, key_type=key_type)

    def provide(self, ctx: CaContext, request: RequestLike, signing: IssuedLike) -> OutcomeT:
        profile = self.profiles.get(request.profile)
        if profile is None:
            return self._outcome("not-applicable", None,
                                 f"no encryption pair goes with {request.profile} certificates")
        official = request.official
        owner = KeyOwner("official", official.subscriber_ref, official.organisation.code,
                         official.organisation.path)
        try:
            record = escrow_key(
                ctx, owner, ca=signing.ca, profile=profile, subject=signing.subject,
                subscriber_ref=f"{official.subscriber_ref}/request:{request.id}",
                actor=self.actor, key_type=self.key_type)
        except KmcNotInitialised as exc:
            return self._outcome("pending-kmc", None, exc.message)
        except GovpkiError as exc:
            return self._outcome("failed", None, f"encryption pair not escrowed: {exc.kind}: "
                                                 f"{exc.message}"[:500])
        assert record.certificate_ca is not None and record.certificate_serial is not None
        return self._outcome(
            "escrowed", CertificateRef(record.certificate_ca, record.certificate_serial),
            f"encryption pair escrowed (KMC escrow {record.id}, key "
            f"{record.public_key_sha256[:16]}); delivered into the USB key at enrollment")

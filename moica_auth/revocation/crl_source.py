"""The ``"crl"`` :class:`~moica_auth.revocation.types.RevocationSource`: answers from the
CRL index only (RFC 5280 §6.3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Protocol

from cryptography import x509

from moica_auth._x509 import key_id
from moica_auth.exceptions import (
    RevocationStale,
    RevocationUnavailable,
)
from moica_auth.revocation.crl_index import RevokedEntry, decode_entry, scope_covers
from moica_auth.revocation.store import CrlInfo, RevocationIndexStore
from moica_auth.revocation.types import CertStatus, SourceName

# --- the revocation source ------------------------------------------------------------


class _Refreshing(Protocol):
    def refresh_for(self, *, certificate: x509.Certificate, issuer: x509.Certificate) -> None: ...


class CrlSource:
    """Answer revocation status from the CRL index (RFC 5280 §6.3).

    Reads only the index store: no download on the login path, unless
    ``fetch_on_miss`` is set (small deployments) — then the refresher is called under
    the store's fleet-wide lock so a burst of logins triggers one download.

    Decision for one (certificate, issuer key):

    1. every installed CRL of that issuer key whose scope covers the certificate
       (§6.3.3 (b)) is consulted, in one atomic read;
    2. a permanent revocation in any of them is final (revocation cannot be undone);
    3. otherwise the newest CRL that is not past nextUpdate + ``grace`` answers
       (so a hold lifted by a later CRL reads "good" again) — but only a CRL issued
       after a hold lifts it: if a covering CRL at least as new lists a hold, the
       answer is "hold", or :class:`RevocationStale` when that CRL is past nextUpdate
       + ``grace``; never "good" on the word of an older CRL;
    4. covering CRLs exist but all are stale → :class:`RevocationStale`;
       none → :class:`RevocationUnavailable`.
    """

    name: SourceName = "crl"

    def __init__(
        self,
        *,
        store: RevocationIndexStore,
        grace: timedelta = timedelta(0),
        refresher: _Refreshing | None = None,
        fetch_on_miss: bool = False,
    ) -> None:
        self.store = store
        self.grace = grace
        self.refresher = refresher
        self.fetch_on_miss = fetch_on_miss and refresher is not None

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        """Whether the index holds a CRL of ``issuer``'s key whose scope covers
        ``certificate`` (fresh or stale; RFC 5280 §6.3.3 (b))."""
        return bool(self._covering(certificate, key_id(issuer)))

    def _covering(
        self, certificate: x509.Certificate, issuer_kid: str
    ) -> list[tuple[CrlInfo, bytes | None]]:
        return [
            (info, packed)
            for info, packed in self.store.read(issuer_kid, certificate.serial_number)
            if scope_covers(
                scope_names=info.scope_names,
                only_user_certs=info.only_user_certs,
                only_ca_certs=info.only_ca_certs,
                certificate=certificate,
            )
        ]

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        try:
            return self._status(certificate=certificate, issuer=issuer, at=at)
        except (RevocationUnavailable, RevocationStale):
            if not self.fetch_on_miss or self.refresher is None:
                raise
        self.refresher.refresh_for(certificate=certificate, issuer=issuer)
        return self._status(certificate=certificate, issuer=issuer, at=at)

    def _status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        issuer_kid = key_id(issuer)
        answers = self._covering(certificate, issuer_kid)
        if not answers:
            raise RevocationUnavailable(
                "no CRL covering this certificate is installed", issuer_key_id=issuer_kid
            )
        for info, packed in answers:
            if packed is not None:
                entry = decode_entry(packed)
                if not entry.is_hold:
                    return self._answer("revoked", info, entry)
        fresh = [(i, p) for i, p in answers if at <= i.next_update + self.grace]
        if not fresh:
            newest = max(i.next_update for i, _ in answers)
            raise RevocationStale(
                "the CRL is past its nextUpdate", next_update=newest, issuer_key_id=issuer_kid
            )
        info, packed = max(fresh, key=lambda pair: (pair[0].this_update, pair[0].number))
        # Only what remains are holds. A hold is lifted only by a CRL issued after it:
        # a CRL at least as new as the newest current one that lists a hold beats that
        # one's silence (a tie counts as a hold). If that CRL is itself past nextUpdate,
        # nothing current answers: stale, never "good".
        holds = [(i, p) for i, p in answers if p is not None and i.this_update >= info.this_update]
        if packed is None and holds:
            current = [(i, p) for i, p in holds if (i, p) in fresh]
            if not current:
                raise RevocationStale(
                    "a CRL newer than every current one lists the certificate on hold and "
                    "is past its nextUpdate",
                    next_update=max(i.next_update for i, _ in holds),
                    issuer_key_id=issuer_kid,
                )
            info, packed = current[0]
        if packed is not None:
            return self._answer("hold", info, decode_entry(packed))
        return CertStatus(
            status="good",
            source="crl",
            this_update=info.this_update,
            next_update=info.next_update,
            detail=f"CRL {info.number}",
        )

    @staticmethod
    def _answer(
        status: Literal["revoked", "hold"], info: CrlInfo, entry: RevokedEntry
    ) -> CertStatus:
        return CertStatus(
            status=status,
            source="crl",
            this_update=info.this_update,
            next_update=info.next_update,
            revoked_at=entry.revoked_at,
            reason=entry.reason,
            detail=f"CRL {info.number}",
        )

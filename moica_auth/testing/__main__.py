"""``python -m moica_auth.testing``: write a test PKI to disk, or sign like HiPKI.

* ``pki --out DIR [--seed S]``: GRCA G2/G3 roots, MOICA G2/G3 intermediates (PEM) and a
  few demo cards (PKCS#12 + PEM certificates) with a ``manifest.json``.
* ``sign --card P12 --password PW --tbs-file F [--type PKCS7|PKCS1]``: print the HiPKI
  ``sign`` response JSON for the card in the PKCS#12 file.

Everything written is TEST DATA signed by PUBLIC TEST KEYS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from moica_auth.testing.pki import CitizenCard, TestPKI, make_id_number
from moica_auth.testing.softcard import sign_response

#: (slug, issue_card keyword arguments) of the demo cards ``pki`` writes.
DEMO_CARDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("g3-card", {"generation": "G3", "name": "王小明", "id_number": "A123456789"}),
    (
        "g3-mobile",
        {
            "generation": "G3",
            "name": "陳美麗",
            "id_number": make_id_number("demo-g3-mobile", letter="B", sex=2),
            "form": "mobile",
        },
    ),
    (
        "g2-card",
        {"generation": "G2", "name": "林大同", "id_number": make_id_number("demo-g2-card")},
    ),
)

_WARNING = "TEST DATA ONLY: these keys are public; never trust them outside tests."


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_pki(out: Path, *, seed: str, crl_base_url: str, ocsp_url: str | None) -> dict[str, Any]:
    """Write the hierarchy and the demo cards under ``out``; return the manifest."""
    pki = TestPKI(seed=seed, crl_base_url=crl_base_url, ocsp_url=ocsp_url)
    for gen in ("G2", "G3"):
        _write(out / "roots" / f"GRCA-{gen}.pem", pki.root(gen).cert_pem())
        _write(out / "intermediates" / f"MOICA-{gen}.pem", pki.moica(gen).cert_pem())
    cards: list[dict[str, Any]] = []
    for slug, kwargs in DEMO_CARDS:
        card: CitizenCard = pki.issue_card(label=f"demo/{slug}", **kwargs)
        folder = out / "cards"
        _write(folder / f"{slug}.p12", card.to_pkcs12(card.pin.encode()))
        _write(folder / f"{slug}-signing.pem", card.signing.cert_pem())
        _write(folder / f"{slug}-encryption.pem", card.encryption.cert_pem())
        cards.append(
            {
                "file": f"cards/{slug}.p12",
                "p12_password": card.pin,
                "name": card.name,
                "generation": card.generation,
                "form": kwargs.get("form", "card"),
                "id_number": card.id_number,
                "subject_serial": card.subject_serial,
                "card_number": card.card_number,
                "pin": card.pin,
                "user_code": card.user_code,
                "signing_serial": f"{card.signing.certificate.serial_number:X}",
            }
        )
    manifest = {
        "warning": _WARNING,
        "seed": seed,
        "now": pki.now.isoformat(),
        "roots": ["roots/GRCA-G2.pem", "roots/GRCA-G3.pem"],
        "intermediates": ["intermediates/MOICA-G2.pem", "intermediates/MOICA-G3.pem"],
        "cards": cards,
    }
    _write(out / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2).encode())
    return manifest


def _card_number_from_p12(p12: pkcs12.PKCS12KeyAndCertificates) -> str | None:
    # to_pkcs12 names the key bag "<card number> signing".
    if p12.cert is None or p12.cert.friendly_name is None:
        return None
    name = p12.cert.friendly_name.decode("utf-8", "replace")
    return name.split(" ", 1)[0] if name.endswith(" signing") else None


def sign_with_p12(
    *,
    p12_data: bytes,
    password: bytes,
    tbs: bytes,
    signature_type: str = "PKCS7",
    hash_algorithm: str = "SHA256",
    nonce: bytes | None = None,
    signing_time: datetime | None = None,
) -> dict[str, Any]:
    """The HiPKI ``sign`` response for ``tbs`` signed with the key in a card PKCS#12."""
    p12 = pkcs12.load_pkcs12(p12_data, password or None)
    if p12.key is None or p12.cert is None or not isinstance(p12.key, rsa.RSAPrivateKey):
        raise ValueError("the PKCS#12 file holds no RSA key and certificate")
    certificate: x509.Certificate = p12.cert.certificate
    return sign_response(
        tbs,
        private_key=p12.key,
        certificate=certificate,
        card_number=_card_number_from_p12(p12),
        signing_time=signing_time or datetime.now(UTC),
        signature_type=signature_type,
        hash_algorithm=hash_algorithm,
        nonce=nonce,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moica_auth.testing",
        description="Test PKI and soft card for moica-auth. " + _WARNING,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_pki = sub.add_parser("pki", help="write roots, intermediates and demo cards")
    p_pki.add_argument("--out", required=True, type=Path, help="output folder")
    p_pki.add_argument("--seed", default="moica-auth-demo", help="key/serial seed")
    p_pki.add_argument("--crl-base-url", default="http://127.0.0.1:8765/crl")
    p_pki.add_argument("--ocsp-url", default="http://127.0.0.1:8765/ocsp")

    p_sign = sub.add_parser("sign", help="sign a file as HiPKI would; prints JSON")
    p_sign.add_argument("--card", required=True, type=Path, help="card PKCS#12 file")
    p_sign.add_argument("--password", default="", help="PKCS#12 password (the demo PIN)")
    p_sign.add_argument("--tbs-file", required=True, type=Path, help="bytes to sign")
    p_sign.add_argument("--type", default="PKCS7", choices=["PKCS7", "PKCS1"])
    p_sign.add_argument("--hash", default="SHA256", choices=["SHA256", "SHA384", "SHA512"])
    p_sign.add_argument("--nonce", default=None, help="nonce, hex (PKCS7 only)")
    p_sign.add_argument("--signing-time", default=None, help="ISO 8601 signingTime (default: now)")

    args = parser.parse_args(argv)
    if args.command == "pki":
        manifest = write_pki(
            args.out, seed=args.seed, crl_base_url=args.crl_base_url, ocsp_url=args.ocsp_url
        )
        print(f"wrote {len(manifest['cards'])} cards to {args.out} ({_WARNING})")
        return 0
    signing_time = None
    if args.signing_time:
        signing_time = datetime.fromisoformat(args.signing_time)
        if signing_time.tzinfo is None:
            signing_time = signing_time.replace(tzinfo=UTC)
    response = sign_with_p12(
        p12_data=args.card.read_bytes(),
        password=args.password.encode(),
        tbs=args.tbs_file.read_bytes(),
        signature_type=args.type,
        hash_algorithm=args.hash,
        nonce=bytes.fromhex(args.nonce) if args.nonce else None,
        signing_time=signing_time,
    )
    json.dump(response, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

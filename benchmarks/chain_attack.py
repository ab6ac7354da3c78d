"""Chain-attack benchmark: server CPU to refuse a login post that carries certificates.

Run: ``.venv/bin/python -m benchmarks.chain_attack`` (about ten seconds). Each case is a
login post (JSON: ``signature``, ``certificate``, ``signature_type``, ``nonce``) of at
most 64 KB whose SignedData carries a certificate flood built by
:mod:`moica_auth.testing.chain_floods` and signed with the attacker's own key (no card
needed). Per case it measures the CPU time (``time.process_time``) from the post's bytes
to the refusal, through the public verify path: ``json.loads`` of the body, then
``LoginVerifier.verify`` with a verifier built once, as a server does, on the test PKI's
trust store with the default limits (8 carried certificates, 32 signature checks). It
prints the median and the worst of many runs per case, the refusal code, and one JSON line
last.

Cases (see docs/security.md, "Bounded work"):

* the review's floods at 64 KB: ~170 self-issued certificates sharing one Ed25519 key;
  35 RSA certificates with a 3,072-bit public exponent; ~170 certificates with distinct
  Ed25519 keys: refused on the count (``chain_too_complex``) before any certificate is
  read;
* the same three kinds at the limit (7 carried besides the signer): refused on the keys
  (``unsupported_key``) before anything is verified with them;
* the worst a post within the limits can do: 7 self-issued RSA-4096 (then RSA-2048)
  certificates sharing the key that signs the attacker's leaf, each verifying every
  other: the issuer search checks each (certificate, key) pair once, and
  ``cryptography``'s verifier stops at its own signature-check limit.

Target: every case < 50 ms of CPU on the reference 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from moica_auth.exceptions import MoicaAuthError
from moica_auth.testing.chain_floods import (
    Flood,
    big_exponent_flood,
    distinct_flood,
    flood_token,
    self_issued_flood,
)
from moica_auth.testing.pki import FIXED_TIME, default_pki
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifierConfig

AT = FIXED_TIME
CONTENT = b"moica-auth login challenge (chain attack benchmark)"
NONCE = b"chain-attack-nonce"
TARGET_MS = 50.0
POST_LIMIT = 64 * 1024


def _cases() -> list[tuple[str, Flood]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    pki = default_pki()
    ed_key = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    rsa_2048 = pki.key("chain/ca-key")
    rsa_4096 = pki.moica_g3.private_key
    # Any odd number serves as the modulus of a public key nobody will use to sign; 3,200
    # bits keeps 35 certificates with a 3,072-bit exponent within a 64 KB post.
    modulus = (1 << 3199) | 0xF00D
    assert isinstance(rsa_2048, rsa.RSAPrivateKey)
    return [
        ("64 KB: Ed25519 self-issued, one key", self_issued_flood(170, signing_key=ed_key, at=AT)),
        (
            "64 KB: RSA, 3,072-bit exponent (35)",
            big_exponent_flood(35, signing_key=rsa_2048, modulus=modulus, at=AT),
        ),
        ("64 KB: distinct Ed25519 keys", distinct_flood(170, signing_key=ed_key, at=AT)),
        ("at limit: Ed25519 self-issued (7)", self_issued_flood(7, signing_key=ed_key, at=AT)),
        (
            "at limit: RSA 3,072-bit exponent (7)",
            big_exponent_flood(7, signing_key=rsa_2048, modulus=modulus, at=AT),
        ),
        ("at limit: distinct Ed25519 keys (7)", distinct_flood(7, signing_key=ed_key, at=AT)),
        (
            "at limit: RSA-4096 self-issued, one key (7)",
            self_issued_flood(7, signing_key=rsa_4096, at=AT),
        ),
        (
            "at limit: RSA-2048 self-issued, one key (7)",
            self_issued_flood(7, signing_key=rsa_2048, at=AT),
        ),
    ]


def _post(flood: Flood) -> bytes:
    pki = default_pki()
    leaf_key = pki.key("chain/ca-key")
    token = flood_token(flood, content=CONTENT, leaf_key=leaf_key, at=AT, nonce=NONCE)
    body = {
        "signature": token["signature"],
        "certificate": token["certb64"],
        "signature_type": "PKCS7",
        "nonce": "Y2hhaW4tYXR0YWNrLW5vbmNl",
    }
    return json.dumps(body).encode("ascii")


def _refusal(verifier: LoginVerifier, post: bytes) -> Callable[[], str]:
    def run() -> str:
        body: dict[str, Any] = json.loads(post)
        try:
            verifier.verify(
                content=CONTENT,
                signature=body["signature"],
                signature_type=body["signature_type"],
                certificate=body["certificate"],
                at=AT,
            )
        except MoicaAuthError as exc:
            return exc.code
        return "accepted"

    return run


def _cpu_ms(fn: Callable[[], str], iterations: int) -> tuple[float, float, str]:
    outcome = fn()  # warm-up, and the refusal code
    samples: list[float] = []
    for _ in range(iterations):
        start = time.process_time_ns()
        fn()
        samples.append((time.process_time_ns() - start) / 1e6)
    return statistics.median(samples), max(samples), outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30, help="timed refusals per case")
    args = parser.parse_args(argv)

    pki = default_pki()
    verifier = LoginVerifier(
        VerifierConfig(trust=TrustStore.from_certificates(pki.anchors, pki.intermediates))
    )
    results: list[dict[str, Any]] = []
    print(f"{'case':46} {'post':>8} {'certs':>5} {'median':>9} {'worst':>9}  refusal")
    for label, flood in _cases():
        post = _post(flood)
        if len(post) > POST_LIMIT:
            raise SystemExit(f"{label}: the post is {len(post)} bytes, over {POST_LIMIT}")
        median, worst, code = _cpu_ms(_refusal(verifier, post), args.iterations)
        results.append(
            {
                "case": label,
                "post_bytes": len(post),
                "carried": len(flood.certificates) + 1,
                "median_ms": round(median, 3),
                "worst_ms": round(worst, 3),
                "refusal": code,
            }
        )
        print(
            f"{label:46} {len(post):>8} {len(flood.certificates) + 1:>5} "
            f"{median:>7.2f}ms {worst:>7.2f}ms  {code}"
        )
    worst_case = max(r["worst_ms"] for r in results)
    met = worst_case < TARGET_MS and all(r["refusal"] != "accepted" for r in results)
    print(
        f"worst case {worst_case:.2f} ms of CPU; target < {TARGET_MS:.0f} ms: "
        f"{'met' if met else 'MISSED'}"
    )
    print(
        json.dumps(
            {
                "benchmark": "chain_attack",
                "iterations": args.iterations,
                "target_ms": TARGET_MS,
                "worst_ms": worst_case,
                "met": met,
                "cases": results,
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Verification benchmark: the cost of one login's signature + chain check.

Run: ``.venv/bin/python -m benchmarks.verify`` (well under a minute). On the test PKI's
G3 chain (citizen RSA-2048 → MOICA G3 RSA-4096 → GRCA G3 RSA-4096) and one soft-card
PKCS#7 login token it measures, per login, the median of many runs of:

* **ours**: ``LoginVerifier.verify`` with a verifier built once, as a server does, and no
  revocation, from the wire strings: base64 of the token and of certb64, the strict CMS
  SignedData parse and its structural checks (RFC 5652 §5), signer ↔ certb64 match,
  messageDigest (SHA-256 of the content), the card's RSA signature over the signed
  attributes (§5.4), the certificate profile, leaf validity and hash checks, the issuer
  search that tells untrusted_issuer from chain_invalid, ``cryptography``'s RFC 5280 §6
  path validation (it verifies both links) and the MOICA profile checks;
* **floor**: the RSA verifications any verifier must do at least, with ``cryptography``
  primitives on pre-parsed inputs — the card's signature over the signed attributes,
  the leaf under MOICA G3, MOICA G3 under GRCA G3;
* **cryptography alone**: the card's RSA signature plus ``cryptography``'s path validation
  (``PolicyBuilder`` … ``build_client_verifier().verify``; extension policies permissive
  but for the CA basicConstraints it insists on) on pre-parsed inputs: what any design
  built on ``cryptography``'s verifier costs before it parses or checks anything else;
* **pyhanko-certvalidator**: ``CertificateValidator.async_validate_usage`` of the same
  chain (certb64 parsed per login, fresh ``ValidationContext`` per login, CA certificates
  parsed once, no fetching, ``revocation_mode="soft-fail"``, pinned ``moment``): path
  building, the two link signatures, validity, basicConstraints, RFC 5280 policy and
  name-constraint processing, leaf keyUsage digitalSignature; plus the same bare RSA
  check of the card's signature on pre-parsed inputs. No CMS parsing, messageDigest,
  signer match or MOICA profile: it does less than ours.

It prints the ratios against the targets (ours ≤ 3× the floor; ≥ 10× faster than
pyhanko-certvalidator) and what the second target would require against the floor and
against ``cryptography`` alone, a cProfile of ours with ``--profile`` (or when a target is
missed), and one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from moica_auth.testing.pki import FIXED_TIME, default_pki
from moica_auth.testing.softcard import SoftCard
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifierConfig

AT = FIXED_TIME + timedelta(hours=1)
TBS = b"moica-auth login v1\nnonce=benchmark\norigin=https://rp.example\n"
TARGET_VS_FLOOR = 3.0
TARGET_VS_PYHANKO = 10.0


def _median_us(fn: Callable[[], object], iterations: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples: list[int] = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(iterations):
            start = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return statistics.median(samples) / 1000.0


class Fixture:
    """One G3 card, its PKCS#7 token and everything each contender needs, built once."""

    def __init__(self) -> None:
        pki = default_pki()
        # The label shares the cached deterministic key with the test suite.
        self.card = pki.issue_card(generation="G3", label="validation/G3/card/None")
        token = SoftCard(self.card, clock=lambda: AT).sign(TBS, signature_type="PKCS7")
        self.signature_b64: str = token["signature"]
        self.certb64: str = token["certb64"]
        self.leaf = self.card.signing.certificate
        self.moica = pki.moica_g3.certificate
        self.grca = pki.grca_g3.certificate
        self.anchors = pki.anchors
        self.intermediates = pki.intermediates
        self.verifier = LoginVerifier(
            VerifierConfig(trust=TrustStore.from_certificates(self.anchors, self.intermediates))
        )
        # The floor's inputs, parsed outside the timed region.
        content = asn1_cms.ContentInfo.load(_b64(self.signature_b64))["content"]
        signer_info = content["signer_infos"][0]
        attrs = signer_info["signed_attrs"]
        self.signed_attrs_der: bytes = attrs.untag().dump()
        self.card_signature: bytes = signer_info["signature"].native
        leaf_key = self.leaf.public_key()
        assert isinstance(leaf_key, rsa.RSAPublicKey)
        self.leaf_key = leaf_key

    def ours(self) -> object:
        return self.verifier.verify(
            content=TBS,
            signature=self.signature_b64,
            signature_type="PKCS7",
            certificate=self.certb64,
            at=AT,
        )

    def cryptography_alone(self) -> None:
        self.leaf_key.verify(
            self.card_signature, self.signed_attrs_der, padding.PKCS1v15(), hashes.SHA256()
        )
        verifier = (
            PolicyBuilder()
            .store(Store(list(self.anchors)))
            .time(AT)
            .extension_policies(
                ca_policy=ExtensionPolicy.permit_all().require_present(
                    x509.BasicConstraints, Criticality.AGNOSTIC, None
                ),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        verifier.verify(self.leaf, list(self.intermediates))

    def floor(self) -> None:
        self.leaf_key.verify(
            self.card_signature, self.signed_attrs_der, padding.PKCS1v15(), hashes.SHA256()
        )
        self.leaf.verify_directly_issued_by(self.moica)
        self.moica.verify_directly_issued_by(self.grca)


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _asn1(cert: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def pyhanko_contenders(fx: Fixture) -> dict[str, Callable[[], Awaitable[None]]]:
    """pyhanko-certvalidator chain + usage validation, plus the card's signature check.

    ``pyhanko``: trust roots and intermediates parsed once (as our TrustStore is), a
    fresh ``ValidationContext`` per login. ``pyhanko_cold``: the CA certificates are
    parsed per login too, so no asn1crypto cache carries over between logins.
    """
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    roots = [_asn1(c) for c in fx.anchors]
    others = [_asn1(c) for c in fx.intermediates]
    ders = [c.public_bytes(serialization.Encoding.DER) for c in (*fx.anchors, *fx.intermediates)]

    async def validate(trust_roots: list[Any], intermediates: list[Any]) -> None:
        leaf = asn1_x509.Certificate.load(_b64(fx.certb64))
        context = ValidationContext(
            trust_roots=trust_roots,
            allow_fetching=False,
            revocation_mode="soft-fail",
            moment=AT,
        )
        validator = CertificateValidator(
            leaf, intermediate_certs=intermediates, validation_context=context
        )
        await validator.async_validate_usage({"digital_signature"})
        # pyhanko-certvalidator checks no CMS signature: add the bare RSA check so both
        # sides cover the same ground at least.
        fx.leaf_key.verify(
            fx.card_signature, fx.signed_attrs_der, padding.PKCS1v15(), hashes.SHA256()
        )

    async def warm() -> None:
        await validate(roots, others)

    async def cold() -> None:
        fresh = [asn1_x509.Certificate.load(der) for der in ders]
        await validate(fresh[: len(fx.anchors)], fresh[len(fx.anchors) :])

    return {"pyhanko": warm, "pyhanko_cold": cold}


def measure(
    fx: Fixture, iterations: int, pyhanko_iterations: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """(median, 10th percentile) µs per login of each contender.

    The contenders run interleaved, round after round, so that a busy machine (other
    processes on a shared CI box) slows them alike. A 2 ms call is preempted more often
    than a 0.15 ms one, so under load the median of the slower contender drifts up; the
    10th percentile is printed beside it as the figure least disturbed by other load.
    """
    sync: dict[str, Callable[[], object]] = {
        "ours": fx.ours,
        "floor": fx.floor,
        "cryptography_alone": fx.cryptography_alone,
    }
    asynchronous = pyhanko_contenders(fx)
    every = max(1, iterations // max(1, pyhanko_iterations))
    samples: dict[str, list[int]] = {name: [] for name in (*sync, *asynchronous)}

    async def run() -> None:
        # As timeit does: no garbage collection inside a timed call, so that one
        # contender's garbage is not collected on another's clock; collect between rounds.
        gc.disable()
        try:
            for round_ in range(warmup + iterations):
                if round_ % 25 == 0:
                    gc.collect()
                await one_round(round_, keep=round_ >= warmup)
        finally:
            gc.enable()

    async def one_round(round_: int, *, keep: bool) -> None:
        for name, fn in sync.items():
            start = time.perf_counter_ns()
            fn()
            if keep:
                samples[name].append(time.perf_counter_ns() - start)
        if round_ % every:
            return
        for name, afn in asynchronous.items():
            start = time.perf_counter_ns()
            await afn()
            if keep:
                samples[name].append(time.perf_counter_ns() - start)

    asyncio.run(run())
    out: dict[str, tuple[float, float]] = {}
    for name, values in samples.items():
        ordered = sorted(values)
        out[name] = (statistics.median(ordered) / 1000.0, ordered[len(ordered) // 10] / 1000.0)
    return out


def breakdown(fx: Fixture, iterations: int) -> list[tuple[str, float]]:
    """Median µs of the stages inside ``LoginVerifier.verify`` (diagnostic only: it
    reaches into the modules of moica_auth.signature and into chain.py's private
    helpers, which may change)."""
    from moica_auth.certificate import CitizenCertificate
    from moica_auth.signature import decode_signature, verify_signature
    from moica_auth.signature.cms import parse_signed_data
    from moica_auth.signature.signer import matches_sid
    from moica_auth.validation.chain import (
        ValidationPolicy,
        _find_path,
        _run_verifier,
        validate_chain,
    )

    trust = fx.verifier.config.trust
    policy = ValidationPolicy()
    pool = list(trust.intermediates)
    der = decode_signature(fx.signature_b64)
    parsed = parse_signed_data(der, fx.leaf)
    verified = _run_verifier(fx.leaf, trust, pool, policy, AT)
    stages: list[tuple[str, Callable[[], object]]] = [
        (
            "verify_signature (PKCS#7)",
            lambda: verify_signature(
                content=TBS,
                signature=fx.signature_b64,
                signature_type="PKCS7",
                certificate=fx.certb64,
            ),
        ),
        ("  parse_signed_data (asn1crypto)", lambda: parse_signed_data(der, fx.leaf)),
        ("  same, without certb64 (issuer Name parsed)", lambda: parse_signed_data(der)),
        ("  matches_sid (issuer DER ==)", lambda: matches_sid(fx.leaf, parsed.sid)),
        (
            "validate_chain",
            lambda: validate_chain(certificate=fx.leaf, trust=trust, policy=policy, at=AT),
        ),
        (
            "  CitizenCertificate.from_certificate",
            lambda: CitizenCertificate.from_certificate(fx.leaf),
        ),
        (
            "  _find_path (links from the verifier, 0 RSA)",
            lambda: _find_path(fx.leaf, trust, pool, verified),
        ),
        (
            "  _find_path alone (leaf link, 1 RSA)",
            lambda: _find_path(fx.leaf, trust, pool),
        ),
        (
            "  _run_verifier (cryptography, 2 RSA)",
            lambda: _run_verifier(fx.leaf, trust, pool, policy, AT),
        ),
        (
            "one RSA-4096 verify (leaf under MOICA G3)",
            lambda: fx.leaf.verify_directly_issued_by(fx.moica),
        ),
    ]
    return [(name, _median_us(fn, iterations, warmup=20)) for name, fn in stages]


def profile_ours(fx: Fixture, iterations: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        fx.ours()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(20)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="timed logins per contender")
    parser.add_argument(
        "--pyhanko-iterations", type=int, default=60, help="timed logins for pyhanko"
    )
    parser.add_argument("--profile", action="store_true", help="always print the cProfile")
    parser.add_argument("--breakdown", action="store_true", help="also time the stages inside ours")
    args = parser.parse_args(argv)

    fx = Fixture()
    fx.ours()  # fails loudly if the token does not verify
    fx.floor()

    figures = measure(fx, args.iterations, args.pyhanko_iterations, warmup=20)
    ours, floor, pyhanko = figures["ours"][0], figures["floor"][0], figures["pyhanko"][0]
    vs_floor = ours / floor
    vs_pyhanko = pyhanko / ours
    p10_vs_floor = figures["ours"][1] / figures["floor"][1]
    p10_vs_pyhanko = figures["pyhanko"][1] / figures["ours"][1]
    met_floor = vs_floor <= TARGET_VS_FLOOR
    met_pyhanko = vs_pyhanko >= TARGET_VS_PYHANKO

    labels = {
        "ours": "ours: LoginVerifier.verify",
        "floor": "floor: 3 RSA verifications",
        "cryptography_alone": "cryptography verifier + signature",
        "pyhanko": "pyhanko-certvalidator + signature",
        "pyhanko_cold": "  same, CA certs parsed per login",
    }
    print("per login, G3 chain, PKCS#7 token, no revocation     median      p10")
    for name, label in labels.items():
        median, p10 = figures[name]
        print(f"  {label:45s} {median / 1000:7.3f} ms {p10 / 1000:7.3f} ms")
    print(
        f"  ours / floor   = {vs_floor:5.2f}x (p10 {p10_vs_floor:5.2f}x)  target <= "
        f"{TARGET_VS_FLOOR:g}x: {'met' if met_floor else 'MISSED'}"
    )
    print(
        f"  pyhanko / ours = {vs_pyhanko:5.2f}x (p10 {p10_vs_pyhanko:5.2f}x)  target >= "
        f"{TARGET_VS_PYHANKO:g}x: {'met' if met_pyhanko else 'MISSED'}"
    )
    # What ">= 10x faster than pyhanko" would mean, against the floor and against the
    # cost of cryptography's own path validation (which every login of ours runs).
    needed = pyhanko / TARGET_VS_PYHANKO
    alone = figures["cryptography_alone"][0]
    print(
        f"  pyhanko = {pyhanko / floor:.1f}x the floor, so 10x faster than it means <= "
        f"{needed / 1000:.3f} ms = {needed / floor:.2f}x the floor;\n"
        f"  cryptography's verifier + the card signature alone take {alone / 1000:.3f} ms = "
        f"{alone / floor:.2f}x the floor = {alone / needed:.0%} of that budget;\n"
        f"  ours = {ours / alone:.2f}x cryptography alone"
    )
    if args.breakdown:
        print("\nstages of ours (median):")
        try:
            stages = breakdown(fx, args.iterations)
        except (ImportError, TypeError, AttributeError) as exc:
            # The stages are private helpers of other modules; they may have changed.
            print(f"  unavailable: {type(exc).__name__}: {exc}")
            stages = []
        for name, value in stages:
            print(f"  {name:45s} {value / 1000:8.3f} ms")
    if args.profile or not (met_floor and met_pyhanko):
        print("\ncProfile of ours (sorted by own time):")
        print(profile_ours(fx, max(50, args.iterations // 2)))
    print(
        json.dumps(
            {
                "benchmark": "verify",
                "python": sys.version.split()[0],
                "iterations": args.iterations,
                "pyhanko_iterations": args.pyhanko_iterations,
                **{f"{name}_ms": round(figures[name][0] / 1000, 4) for name in labels},
                **{f"{name}_p10_ms": round(figures[name][1] / 1000, 4) for name in labels},
                "ours_vs_floor": round(vs_floor, 2),
                "ours_vs_cryptography_alone": round(ours / alone, 2),
                "pyhanko_vs_floor": round(pyhanko / floor, 2),
                "pyhanko_target_ms": round(needed / 1000, 4),
                "pyhanko_target_vs_floor": round(needed / floor, 2),
                "cryptography_alone_vs_floor": round(alone / floor, 2),
                "pyhanko_vs_ours": round(vs_pyhanko, 2),
                "p10_ours_vs_floor": round(p10_vs_floor, 2),
                "p10_pyhanko_vs_ours": round(p10_vs_pyhanko, 2),
                "target_vs_floor_max": TARGET_VS_FLOOR,
                "target_vs_pyhanko_min": TARGET_VS_PYHANKO,
                "met": {"floor": met_floor, "pyhanko": met_pyhanko},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

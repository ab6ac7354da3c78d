"""The admin command line ``python -m moica_auth inspect | verify | check`` (docs/cli.md).

Everything runs for real: the soft card signs, the chain is the test PKI, CRLs are files
and HTTP downloads from a real :class:`ResponderServer` on 127.0.0.1, OCSP goes to its
real responder. Most cases call :func:`moica_auth.cli.main` in-process; a few run
``python -m moica_auth`` as a subprocess to prove the entry point. Time is pinned with
``--at``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from moica_auth import cli
from moica_auth.exceptions import CrlInvalid
from moica_auth.revocation import cli_support
from moica_auth.testing.pki import FIXED_TIME, CertifiedKey, CitizenCard, TestPKI, default_pki
from moica_auth.testing.responders import ResponderServer
from moica_auth.testing.softcard import SoftCard
from moica_auth.validation.trust import TrustStore
from tests.conftest import REAL_VECTORS_AT, REPO_ROOT

AT = FIXED_TIME + timedelta(hours=1)
AT_ARG = "2026-01-01T01:00:00Z"
TBS = b"moica-auth login v1\nnonce=cli-test\norigin=https://rp.example\n"
OTHER_POLICY = "1.2.3.4.5"


@dataclass
class Env:
    """The files of one module-wide test PKI, and the server its URLs point at."""

    dir: Path
    server: ResponderServer
    pki: TestPKI
    card: CitizenCard
    generic_leaf: CertifiedKey

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def chain_args(self, generation: str = "G3") -> list[str]:
        return [
            "--anchor",
            self.path(f"grca-{generation}.pem"),
            "--intermediate",
            self.path(f"moica-{generation}.pem"),
            "--at",
            AT_ARG,
        ]


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module", name="env")
def env_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with ResponderServer(clock=lambda: AT) as server:
        # The default seed shares the cached test keys; only the URLs (and so the
        # certificates) differ, pointing at this server.
        pki = TestPKI(crl_base_url=server.url_for("/crl"), ocsp_url=server.url_for("/ocsp"))
        card = pki.issue_card(generation="G3", name="測試一", label="validation/G3/card/None")
        card_g2 = pki.issue_card(generation="G2", label="ocsp-tests/g2")
        generic_leaf = pki.issue_leaf(
            issuer=pki.moica_g3,
            subject=x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "generic EE")]),
            label="cli/generic",
            # An existing test key: no new key to generate on a fresh machine.
            private_key=card_g2.encryption.private_key,
        )
        d = tmp_path_factory.mktemp("cli")
        files: dict[str, bytes] = {
            "grca-G2.pem": _pem(pki.grca_g2.certificate),
            "grca-G3.pem": _pem(pki.grca_g3.certificate),
            "moica-G2.pem": _pem(pki.moica_g2.certificate),
            "moica-G3.pem": _pem(pki.moica_g3.certificate),
            "card.pem": _pem(card.signing.certificate),
            "card.der": _der(card.signing.certificate),
            "card.b64": base64.b64encode(_der(card.signing.certificate)) + b"\n",
            "enc.pem": _pem(card.encryption.certificate),
            "card-g2.pem": _pem(card_g2.signing.certificate),
            "generic.pem": _pem(generic_leaf.certificate),
            "garbage.pem": b"this is not a certificate\n",
            "tbs.txt": TBS,
            "tampered.txt": TBS.replace(b"cli-test", b"cli-tesT"),
        }
        soft = SoftCard(card, clock=lambda: AT)
        pkcs7 = soft.sign(TBS, signature_type="PKCS7")
        files["pkcs7.b64"] = pkcs7["signature"].encode()
        files["pkcs7.der"] = base64.b64decode(pkcs7["signature"])
        files["certb64.txt"] = pkcs7["certb64"].encode()
        files["pkcs1.b64"] = soft.sign(TBS, signature_type="PKCS1")["signature"].encode()
        files["enc-pkcs7.b64"] = soft.sign(TBS, use_encryption_key=True)["signature"].encode()

        serial = card.signing.certificate.serial_number
        revoked_at = FIXED_TIME - timedelta(days=1)
        moica, grca = pki.moica_g3, pki.grca_g3
        files["crl-good.crl"] = _crl_der(pki.make_crl(issuer=moica))
        files["crl-revoked.crl"] = _crl_der(
            pki.make_crl(
                issuer=moica, revoked=[(serial, revoked_at, x509.ReasonFlags.key_compromise)]
            )
        )
        files["crl-hold.pem"] = pki.make_crl(
            issuer=moica, revoked=[(serial, revoked_at, x509.ReasonFlags.certificate_hold)]
        ).public_bytes(serialization.Encoding.PEM)
        files["crl-forged.crl"] = _crl_der(
            pki.make_crl(issuer=moica, signing_key=pki.grca_g2.private_key)
        )
        files["crl-stale.crl"] = _crl_der(
            pki.make_crl(
                issuer=moica,
                this_update=FIXED_TIME - timedelta(days=3),
                next_update=FIXED_TIME - timedelta(days=2),
            )
        )
        files["grca-g3.crl"] = _crl_der(pki.make_crl(issuer=grca))
        # MOICA G2 has the same DN as G3: its CRL must never speak for a G3 certificate.
        files["crl-g2-same-serial.crl"] = _crl_der(
            pki.make_crl(
                issuer=pki.moica_g2,
                revoked=[(serial, revoked_at, x509.ReasonFlags.key_compromise)],
            )
        )
        for name, data in files.items():
            (d / name).write_bytes(data)

        # The MOICA G3 certificate names the GRCA G3 CRL (and the shared OCSP URL), so a
        # status is needed for it too: served here, as its distribution point says.
        server.publish_crl("/crl/GRCA-G3.crl", files["grca-g3.crl"])
        server.publish_crl("/crl/GRCA-G2.crl", _crl_der(pki.make_crl(issuer=pki.grca_g2)))
        server.add_ocsp(issuer=pki.moica_g2.certificate, signer=pki.moica_g2)
        server.add_ocsp(issuer=moica.certificate, signer=moica)
        server.add_ocsp(issuer=grca.certificate, signer=grca)
        yield Env(dir=d, server=server, pki=pki, card=card, generic_leaf=generic_leaf)


def _trust_of(pki: TestPKI) -> TrustStore:
    return TrustStore.from_certificates(pki.anchors, pki.intermediates)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run the CLI in-process; return the exit code and the last stdout line as JSON."""
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines, "no output"
    return code, json.loads(lines[-1])


def run_usage(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """Run an invocation that must be a usage error: exit 2, JSON on stderr, no stdout."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert code == cli.EXIT_USAGE
    assert captured.out == ""
    error: dict[str, Any] = json.loads(captured.err.strip().splitlines()[-1])
    assert error["ok"] is False
    assert error["code"] == "usage"
    return error


def verify_args(env: Env, *extra: str, sig: str = "pkcs7.b64", tbs: str = "tbs.txt") -> list[str]:
    return [
        "verify",
        "--tbs-file",
        env.path(tbs),
        "--signature-file",
        env.path(sig),
        *env.chain_args(),
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(REPO_ROOT)
    # An admin's shell has no Django project: the CLI must configure itself.
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    return environ


# --- inspect --------------------------------------------------------------------------


def test_inspect_citizen_certificate(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", env.path("card.pem")]) == cli.EXIT_OK
    profile = json.loads(capsys.readouterr().out)
    assert profile["usage"] == "signing"
    assert profile["key_usage"] == ["digital_signature"]
    assert profile["id_last4"] == env.card.id_last4
    assert profile["card_serial"] == env.card.subject_serial
    assert profile["policy_oids"] == ["2.16.886.101.0.3.3"]
    assert profile["is_ca"] is False
    assert profile["serial_number_hex"] == f"{env.card.signing.certificate.serial_number:X}"


@pytest.mark.parametrize("name", ["card.der", "card.b64"])
def test_inspect_reads_der_and_base64(
    env: Env, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert cli.main(["inspect", env.path(name)]) == cli.EXIT_OK
    profile = json.loads(capsys.readouterr().out)
    expected = env.card.signing.certificate.fingerprint(hashes.SHA256()).hex()
    assert profile["fingerprint_sha256"] == expected


def test_inspect_ca_certificate(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", env.path("moica-G3.pem")]) == cli.EXIT_OK
    profile = json.loads(capsys.readouterr().out)
    assert profile["is_ca"] is True
    assert profile["usage"] == "ca"
    assert profile["key_size"] == 4096


def test_inspect_rejects_garbage(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, "inspect", env.path("garbage.pem"))
    assert code == cli.EXIT_REJECTED
    assert result["ok"] is False
    assert result["code"] == "malformed_certificate"


def test_inspect_missing_file_is_usage_error(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run_usage(capsys, "inspect", env.path("no-such-file.pem"))


# --- verify: signatures and chain -----------------------------------------------------


def test_verify_pkcs7(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--no-revocation"))
    assert code == cli.EXIT_OK
    assert result["ok"] is True
    assert result["code"] is None
    assert result["message_en"] == "valid"
    assert result["revocation"] == {"status": "not_checked"}
    assert result["certificate"]["card_serial"] == env.card.subject_serial


def test_verify_pkcs7_der_with_matching_certificate(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = run(
        capsys,
        *verify_args(
            env, "--certificate-file", env.path("certb64.txt"), "--no-revocation", sig="pkcs7.der"
        ),
    )
    assert (code, result["ok"]) == (cli.EXIT_OK, True)


def test_verify_pkcs7_rejects_other_certificate(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = run(
        capsys,
        *verify_args(env, "--certificate-file", env.path("enc.pem"), "--no-revocation"),
    )
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_mismatch"


def test_verify_pkcs1(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(
        capsys,
        *verify_args(
            env,
            "--signature-type",
            "PKCS1",
            "--certificate-file",
            env.path("certb64.txt"),
            "--no-revocation",
            sig="pkcs1.b64",
        ),
    )
    assert code == cli.EXIT_OK
    assert result["ok"] is True
    assert result["certificate"]["usage"] == "signing"


def test_verify_rejects_tampered_tbs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(
        capsys,
        *verify_args(
            env,
            "--signature-type",
            "PKCS1",
            "--certificate-file",
            env.path("certb64.txt"),
            "--no-revocation",
            sig="pkcs1.b64",
            tbs="tampered.txt",
        ),
    )
    assert code == cli.EXIT_REJECTED
    assert result["ok"] is False
    assert result["code"] == "signature_invalid"
    # The certificate that was given is still described, for the admin.
    assert result["certificate"]["card_serial"] == env.card.subject_serial


def test_verify_pkcs7_rejects_tampered_tbs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--no-revocation", tbs="tampered.txt"))
    assert code == cli.EXIT_REJECTED
    # The SignedData carries its own content: a different tbs is not what was signed.
    assert result["code"] == "content_mismatch"


def test_verify_pkcs7_rejects_tampered_signature(
    env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    der = bytearray((env.dir / "pkcs7.der").read_bytes())
    der[-1] ^= 0x01  # the SignerInfo's signature value ends the SignedData
    (tmp_path / "bad.der").write_bytes(bytes(der))
    argv = verify_args(env, "--no-revocation")
    argv[argv.index(env.path("pkcs7.b64"))] = str(tmp_path / "bad.der")
    code, result = run(capsys, *argv)
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "signature_invalid"


def test_verify_rejects_untrusted_anchor(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "verify",
        "--tbs-file",
        env.path("tbs.txt"),
        "--signature-file",
        env.path("pkcs7.b64"),
        "--anchor",
        env.path("grca-G2.pem"),
        "--intermediate",
        env.path("moica-G3.pem"),
        "--at",
        AT_ARG,
        "--no-revocation",
    ]
    code, result = run(capsys, *argv)
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "untrusted_issuer"
    # The signature itself verified, so the report names the signer certificate.
    assert result["certificate"]["card_serial"] == env.card.subject_serial


def test_verify_rejects_expired_at_given_time(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    argv = verify_args(env, "--no-revocation")
    argv[argv.index(AT_ARG)] = "2031-06-01T00:00:00+08:00"
    code, result = run(capsys, *argv)
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_expired"


def test_verify_rejects_encryption_certificate(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = run(capsys, *verify_args(env, "--no-revocation", sig="enc-pkcs7.b64"))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "wrong_key_usage"
    assert result["certificate"]["usage"] == "encryption"


def test_verify_rejects_policy_not_allowed(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--policy", OTHER_POLICY, "--no-revocation"))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "policy_not_allowed"


def test_verify_accepts_listed_policy(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(
        capsys,
        *verify_args(
            env, "--policy", OTHER_POLICY, "--policy", "2.16.886.101.0.3.3", "--no-revocation"
        ),
    )
    assert code == cli.EXIT_OK


def test_verify_rejects_garbage_signature(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--no-revocation", sig="garbage.pem"))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "malformed_signature"
    assert result["certificate"] is None


# --- verify: usage errors -------------------------------------------------------------


def test_usage_missing_signature_file(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    error = run_usage(capsys, *verify_args(env, "--no-revocation", sig="missing.b64"))
    assert "missing.b64" in error["message"]


def test_usage_no_anchor(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    error = run_usage(
        capsys,
        "verify",
        "--tbs-file",
        env.path("tbs.txt"),
        "--signature-file",
        env.path("pkcs7.b64"),
        "--no-revocation",
    )
    assert "--anchor" in error["message"]


@pytest.mark.parametrize("value", ["yesterday", "2026-01-01T00:00:00"])
def test_usage_bad_at(env: Env, capsys: pytest.CaptureFixture[str], value: str) -> None:
    argv = verify_args(env, "--no-revocation")
    argv[argv.index(AT_ARG)] = value
    error = run_usage(capsys, *argv)
    assert "--at" in error["message"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--no-revocation", "--crl", "crl-good.crl"], "--no-revocation"),
        (["--crl", "garbage.pem"], "--crl"),
        (["--policy", "not-an-oid", "--no-revocation"], "--policy"),
        (["--signature-type", "PKCS1", "--no-revocation"], "--certificate-file"),
        (["--anchor", "card.pem", "--no-revocation"], "not a CA"),
        # A citizen certificate is neither a CA nor a CRL signer (no cRLSign).
        (["--intermediate", "card.pem", "--no-revocation"], "neither a CA nor a CRL signer"),
        (["--anchor", "garbage.pem", "--no-revocation"], "--anchor"),
        (["--profile", "web", "--no-revocation"], "web"),
    ],
)
def test_usage_errors(
    env: Env, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str
) -> None:
    resolved = [env.path(v) if v.endswith((".crl", ".pem")) else v for v in extra]
    error = run_usage(capsys, *verify_args(env, *resolved))
    assert fragment in error["message"]


def test_usage_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_USAGE
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["code"] == "usage"


# --- revocation -----------------------------------------------------------------------


def test_no_revocation_flag_fails_closed(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "revocation_unavailable"
    assert "--crl" in result["detail"]
    assert "--no-revocation" in result["detail"]
    assert result["certificate"]["card_serial"] == env.card.subject_serial


def test_crl_good(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.server.reset_hits()
    code, result = run(capsys, *verify_args(env, "--crl", env.path("crl-good.crl")))
    assert code == cli.EXIT_OK
    assert result["revocation"]["status"] == "good"
    assert result["revocation"]["source"] == "crl"
    # The leaf was answered by the file; MOICA G3's own status came from its
    # distribution point (the GRCA CRL), downloaded once.
    assert env.server.hits("/crl/GRCA-G3.crl") == 1
    assert env.server.hits("/crl/MOICA-G3-10-31.crl") == 0


def test_crl_revoked(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--crl", env.path("crl-revoked.crl")))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_revoked"
    assert result["reason"] == "key_compromise"
    assert result["revoked_at"].startswith("2025-12-31")
    assert result["certificate_role"] == "leaf"


def test_crl_hold_is_suspended(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--crl", env.path("crl-hold.pem")))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_suspended"


def test_crl_with_forged_signature(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--crl", env.path("crl-forged.crl")))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "crl_invalid"


def test_crl_stale(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, *verify_args(env, "--crl", env.path("crl-stale.crl")))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "revocation_stale"


def test_crl_of_other_generation_is_not_used(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """MOICA G2's CRL lists the G3 card's serial; same issuer DN, other key: ignored."""
    other = env.path("crl-g2-same-serial.crl")
    code, result = run(capsys, *verify_args(env, "--crl", other, "--crl", env.path("crl-good.crl")))
    assert (code, result["ok"]) == (cli.EXIT_OK, True)
    # Alone it covers nothing (and the distribution points serve no MOICA CRL here).
    code, result = run(capsys, *verify_args(env, "--crl", other))
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "revocation_unavailable"


def test_cli_support_contract() -> None:
    with pytest.raises(CrlInvalid):
        cli_support.read_crl(b"not a CRL")
    with pytest.raises(ValueError, match="CRL files or use_ocsp"):
        cli_support.build_checker(
            crl_ders=[], use_ocsp=False, trust=_trust_of(default_pki()), at=AT
        )


def test_crl_from_distribution_point(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A --crl file that does not cover the leaf: its partition CRL is downloaded."""
    pki = env.pki
    partition = pki.default_crl_urls("G3")[0]
    serial = env.card.signing.certificate.serial_number
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        revoked=[(serial, FIXED_TIME, x509.ReasonFlags.superseded)],
        scope_url=partition,
    )
    path = "/crl/MOICA-G3-10-31.crl"
    env.server.publish_crl(path, _crl_der(crl))
    try:
        code, result = run(capsys, *verify_args(env, "--crl", env.path("grca-g3.crl")))
    finally:
        env.server.unpublish(path)
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_revoked"
    assert result["reason"] == "superseded"


def test_check_ocsp_good(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.server.reset_hits()
    code, result = run(capsys, "check", env.path("card.pem"), *env.chain_args(), "--ocsp")
    assert code == cli.EXIT_OK
    assert result["revocation"]["status"] == "good"
    assert result["revocation"]["source"] == "ocsp"
    assert env.server.hits("/ocsp") == 2  # the leaf and MOICA G3


def test_ocsp_g2_intermediate_falls_back_to_its_crl(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """MOICA G2 names no OCSP responder: its status comes from its distribution point."""
    env.server.reset_hits()
    code, result = run(capsys, "check", env.path("card-g2.pem"), *env.chain_args("G2"), "--ocsp")
    assert (code, result["ok"]) == (cli.EXIT_OK, True)
    assert result["revocation"]["source"] == "ocsp"  # the leaf's answer
    assert env.server.hits("/ocsp") == 1
    assert env.server.hits("/crl/GRCA-G2.crl") == 1


def test_check_ocsp_revoked(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    responder = env.server.ocsp("/ocsp")
    responder.set_status(
        env.card.signing.certificate.serial_number,
        "revoked",
        revoked_at=FIXED_TIME - timedelta(days=2),
        reason="key_compromise",
    )
    try:
        code, result = run(capsys, "check", env.path("card.pem"), *env.chain_args(), "--ocsp")
    finally:
        responder.clear()
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_revoked"
    assert result["source"] == "ocsp"
    assert result["reason"] == "key_compromise"


def test_ocsp_untrusted_answer_is_ocsp_invalid(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.server.set_fault("/ocsp", "wrong_signer")
    try:
        code, result = run(capsys, *verify_args(env, "--ocsp"))
    finally:
        env.server.set_fault("/ocsp", None)
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "ocsp_invalid"
    assert result["sources"]["ocsp"] == "ocsp_invalid"


def test_ocsp_down_without_crl_is_unavailable(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.server.set_fault("/ocsp", "down")
    try:
        code, result = run(capsys, *verify_args(env, "--ocsp"))
    finally:
        env.server.set_fault("/ocsp", None)
    assert code == cli.EXIT_REJECTED
    # The leaf's distribution points serve nothing here either: fail closed.
    assert result["code"] == "revocation_unavailable"


def test_ocsp_and_crl_together(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.server.set_fault("/ocsp", "http500")
    try:
        code, result = run(capsys, *verify_args(env, "--ocsp", "--crl", env.path("crl-hold.pem")))
    finally:
        env.server.set_fault("/ocsp", None)
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "certificate_suspended"
    assert result["source"] == "crl"


# --- check ----------------------------------------------------------------------------


def test_check_generic_profile_accepts_plain_end_entity(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    moica = [env.path("generic.pem"), *env.chain_args()]
    code, result = run(capsys, "check", *moica, "--no-revocation")
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "wrong_key_usage"  # no keyUsage: not a MOICA signing certificate
    code, result = run(capsys, "check", *moica, "--profile", "generic", "--no-revocation")
    assert code == cli.EXIT_OK
    assert result["certificate"]["policy_oids"] == []


def test_check_rejects_encryption_certificate(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(capsys, "check", env.path("enc.pem"), *env.chain_args(), "--no-revocation")
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "wrong_key_usage"


def test_check_garbage_is_malformed(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(
        capsys, "check", env.path("garbage.pem"), *env.chain_args(), "--no-revocation"
    )
    assert code == cli.EXIT_REJECTED
    assert result["code"] == "malformed_certificate"


# --- the real entry point -------------------------------------------------------------


def _subprocess(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moica_auth", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )


def test_subprocess_inspect(env: Env) -> None:
    proc = _subprocess("inspect", env.path("card.b64"), cwd=env.dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["card_serial"] == env.card.subject_serial


def test_subprocess_verify_and_reject(env: Env) -> None:
    proc = _subprocess(*verify_args(env, "--crl", env.path("crl-good.crl")), cwd=env.dir)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    assert result["revocation"]["status"] == "good"

    proc = _subprocess(*verify_args(env), cwd=env.dir)
    assert proc.returncode == 1
    assert json.loads(proc.stdout.strip().splitlines()[-1])["code"] == "revocation_unavailable"


def test_subprocess_usage_error(env: Env) -> None:
    proc = _subprocess("verify", "--tbs-file", env.path("tbs.txt"), cwd=env.dir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert json.loads(proc.stderr.strip().splitlines()[-1])["code"] == "usage"


# --- real MOICA signatures (../shared/data) -------------------------------------------


def _write_real_vector(shared: Path, index: int, into: Path) -> None:
    """Write one real vector's tbs, signature and certificate to files.

    Kept in a helper so that no test frame holds the vector (it carries a real person's
    name and ID last 4), not even for ``pytest --showlocals``.
    """
    data = json.loads((shared / "vectors" / "sign-vectors.json").read_text())
    vector = data["vectors"][index]
    (into / "tbs").write_bytes(vector["tbs_ascii"].encode("ascii"))
    (into / "sig").write_text(vector["signature_b64"])
    (into / "cert").write_text(vector["certb64"])


def _ok_and_code(capsys: pytest.CaptureFixture[str]) -> tuple[bool, str | None]:
    """Only ``ok`` and ``code`` of the last line; the rest (the profile) is dropped."""
    line = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = json.loads(line)
    return bool(parsed["ok"]), parsed["code"]


@pytest.mark.parametrize("index", [0, 1])
def test_real_pkcs1_signatures_verify(
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    index: int,
) -> None:
    _write_real_vector(shared_data, index, tmp_path)
    anchors = shared_data / "anchors"
    argv = [
        "verify",
        "--tbs-file",
        str(tmp_path / "tbs"),
        "--signature-file",
        str(tmp_path / "sig"),
        "--certificate-file",
        str(tmp_path / "cert"),
        "--signature-type",
        "PKCS1",
        "--anchor",
        str(anchors / "GRCA-G2.pem"),
        "--anchor",
        str(anchors / "GRCA-G3.pem"),
        "--intermediate",
        str(anchors / "MOICA-G2.pem"),
        "--intermediate",
        str(anchors / "MOICA-G3.pem"),
        "--at",
        REAL_VECTORS_AT.isoformat(),
        "--no-revocation",
    ]
    code = cli.main(argv)
    assert (code, *_ok_and_code(capsys)) == (0, True, None)

    with (tmp_path / "tbs").open("ab") as tbs:
        tbs.write(b"x")
    code = cli.main(argv)
    assert (code, *_ok_and_code(capsys)) == (1, False, "signature_invalid")


def test_inspect_real_ca(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", str(shared_data / "anchors" / "MOICA-G3.pem")]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert (profile["usage"], profile["generation"], profile["is_ca"]) == ("ca", "G3", True)


def test_at_is_normalised_to_utc() -> None:
    parsed = cli._parse_at("2026-01-01T08:00:00+08:00")
    assert parsed == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed is not None and parsed.tzinfo is UTC

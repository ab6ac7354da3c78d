"""``python -m moica_auth``: inspect a certificate, verify a signature, check a certificate.

A stable admin interface, documented in ``docs/cli.md``. ``verify`` and ``check`` print
one JSON object on their last line::

    {"ok": bool, "code": str | null, "message": str, "message_en": str, "certificate": {...} | null}

and exit 0 when the signature and certificate are valid, 1 when they are rejected, and 2 on
a usage error (an unreadable file, a bad flag).

The checks are the library's own (:class:`moica_auth.verifier.LoginVerifier`: RFC 5652 /
RFC 8017 signature, RFC 5280 §6 path, RFC 5280 §6.3 / RFC 6960 revocation); this module
only reads files and flags and prints the outcome. Revocation fails closed: without
``--crl``/``--ocsp`` the status is not established, unless ``--no-revocation`` waives it.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from moica_auth.exceptions import MoicaAuthError, RevocationUnavailable

if TYPE_CHECKING:
    from cryptography import x509

    from moica_auth.revocation.types import RevocationResult
    from moica_auth.validation.chain import ValidatedChain, ValidationPolicy
    from moica_auth.validation.trust import TrustStore
    from moica_auth.verifier import LoginVerifier, RevocationChecker

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

# Keys of the result object that an error's ``data`` must not overwrite.
_RESERVED = frozenset(
    {"ok", "code", "message", "message_en", "detail", "certificate", "revocation"}
)


class UsageError(Exception):
    """A command-line mistake: exit 2 with the message."""


def _setup_django(language: str) -> None:
    # Messages go through Django i18n, which needs configured settings and a ready app
    # registry. The CLI needs no project: configure only what translation reads, and
    # find the catalogue through LOCALE_PATHS rather than installing the app (which
    # would import its models and system checks for nothing).
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            USE_I18N=True,
            LANGUAGE_CODE=language,
            INSTALLED_APPS=[],
            LOCALE_PATHS=[str(Path(__file__).resolve().parent / "locale")],
            USE_TZ=True,
        )
        django.setup()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at: not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise UsageError("--at: give a time zone, e.g. 2026-11-27T00:00:00Z")
    return parsed.astimezone(UTC)


def _load_cert_files(paths: Sequence[str], flag: str) -> list[x509.Certificate]:
    from moica_auth.certificate import load_certificates

    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            certs.extend(load_certificates(_read(path)))
        except MoicaAuthError as exc:
            raise UsageError(f"{flag} {path}: not a certificate ({exc.code})") from exc
    return certs


def _check_oids(oids: Sequence[str]) -> frozenset[str]:
    from cryptography.x509 import ObjectIdentifier

    for oid in oids:
        try:
            ObjectIdentifier(oid)
        except ValueError as exc:
            raise UsageError(f"--policy: not an OID: {oid!r}") from exc
    return frozenset(oids)


def _build_verifier(args: argparse.Namespace, at: datetime | None) -> LoginVerifier:
    from moica_auth.revocation.signers import split_crl_signers
    from moica_auth.validation.chain import ValidationPolicy
    from moica_auth.validation.trust import TrustStore
    from moica_auth.verifier import LoginVerifier, VerifierConfig

    anchors = _load_cert_files(args.anchor, "--anchor")
    if not anchors:
        raise UsageError("give at least one --anchor (a trust anchor certificate file)")
    try:
        # A non-CA --intermediate with cRLSign is a candidate CRL signer, never a link.
        intermediates, crl_signers = split_crl_signers(
            _load_cert_files(args.intermediate, "--intermediate")
        )
        trust = TrustStore.from_certificates(anchors, intermediates)
    except MoicaAuthError as exc:
        raise UsageError(f"--anchor/--intermediate: {exc.detail or exc.code}") from exc
    policy_kwargs: dict[str, Any] = {"profile": args.profile}
    if args.policy:
        policy_kwargs["allowed_policy_oids"] = _check_oids(args.policy)
    validation = ValidationPolicy(**policy_kwargs)
    config = VerifierConfig(
        trust=trust,
        policy=validation,
        revocation=_build_revocation(args, trust, at, crl_signers, validation),
    )
    return LoginVerifier(config)


def _build_revocation(
    args: argparse.Namespace,
    trust: TrustStore,
    at: datetime | None,
    crl_signers: Sequence[x509.Certificate],
    validation: ValidationPolicy,
) -> RevocationChecker | None:
    if args.no_revocation:
        if args.crl or args.ocsp:
            raise UsageError("--no-revocation cannot be combined with --crl or --ocsp")
        return None
    if not args.crl and not args.ocsp:
        return _Unestablished()
    from moica_auth.revocation import cli_support

    crl_ders: list[bytes] = []
    for path in args.crl:
        data = _read(path)
        try:
            cli_support.read_crl(data)
        except MoicaAuthError as exc:
            raise UsageError(f"--crl {path}: {exc.detail or exc.code}") from exc
        crl_ders.append(data)
    return cli_support.build_checker(
        crl_ders=crl_ders,
        use_ocsp=args.ocsp,
        trust=trust,
        at=at,
        crl_signers=crl_signers,
        validation=validation,
    )


class _Unestablished:
    """Revocation was neither configured nor waived: fail closed with a reason."""

    soft_fail = False

    def check(self, chain: ValidatedChain, *, at: datetime | None = None) -> NoReturn:
        raise RevocationUnavailable(
            "no revocation source: pass --crl FILE and/or --ocsp, or waive the check "
            "with --no-revocation"
        )


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _profile(certificate: x509.Certificate | None) -> dict[str, Any] | None:
    from moica_auth.certificate import CitizenCertificate

    if certificate is None:
        return None
    try:
        return CitizenCertificate.from_certificate(certificate).as_json()
    except MoicaAuthError:
        return None


def _revocation_json(result: RevocationResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "status": result.status,
        "source": result.source,
        "this_update": _jsonable(result.this_update),
        "next_update": _jsonable(result.next_update),
    }


def _result(
    *,
    error: MoicaAuthError | None = None,
    certificate: x509.Certificate | None = None,
    revocation: RevocationResult | None = None,
    revocation_checked: bool = True,
) -> dict[str, Any]:
    """The last line of ``verify``/``check``: see docs/cli.md "Output and exit codes"."""
    out: dict[str, Any] = {
        "ok": error is None,
        "code": error.code if error else None,
        "message": error.message_in("zh-hant") if error else "有效",
        "message_en": error.message_in("en") if error else "valid",
    }
    if error is not None:
        if error.detail:
            out["detail"] = error.detail
        for key, value in error.data.items():
            # RevocationChecker names the failing certificate's role ("leaf") under
            # "certificate", which here is the profile.
            name = f"{key}_role" if key == "certificate" else key
            if name not in _RESERVED:
                out[name] = _jsonable(value)
    else:
        out["revocation"] = (
            _revocation_json(revocation) if revocation_checked else {"status": "not_checked"}
        )
    out["certificate"] = _profile(certificate)
    return out


def _emit(result: dict[str, Any]) -> int:
    print(json.dumps(result, ensure_ascii=False, default=str))
    return EXIT_OK if result["ok"] else EXIT_REJECTED


def cmd_inspect(args: argparse.Namespace) -> int:
    from moica_auth.certificate import CitizenCertificate, load_certificate

    raw = _read(args.cert)
    try:
        profile = CitizenCertificate.from_certificate(load_certificate(raw)).as_json()
    except MoicaAuthError as exc:
        return _emit(_result(error=exc))
    print(json.dumps(profile, ensure_ascii=False, indent=2))
    return EXIT_OK


def _signer_of(args: argparse.Namespace, tbs: bytes, signature: bytes) -> x509.Certificate | None:
    """The SignedData's signer certificate, for the report only (after a later failure)."""
    from moica_auth.signature import verify_signature

    try:
        return verify_signature(
            content=tbs, signature=signature, signature_type=args.signature_type
        ).certificate
    except MoicaAuthError:
        return None


def cmd_verify(args: argparse.Namespace) -> int:
    from moica_auth.certificate import load_certificate
    from moica_auth.signature import decode_signature

    tbs = _read(args.tbs_file)
    signature_raw = _read(args.signature_file)
    certificate_raw = _read(args.certificate_file) if args.certificate_file else None
    if args.signature_type == "PKCS1" and certificate_raw is None:
        raise UsageError("--signature-type PKCS1 needs --certificate-file (HiPKI's certb64)")
    at = _parse_at(args.at)
    verifier = _build_verifier(args, at)
    signer: x509.Certificate | None = None
    signature = b""
    try:
        if certificate_raw is not None:
            signer = load_certificate(certificate_raw)
        signature = decode_signature(signature_raw)
        verified = verifier.verify(
            content=tbs,
            signature=signature,
            signature_type=args.signature_type,
            certificate=certificate_raw,
            at=at,
        )
    except MoicaAuthError as exc:
        if signer is None and signature and args.signature_type == "PKCS7":
            signer = _signer_of(args, tbs, signature)
        return _emit(_result(error=exc, certificate=signer))
    return _emit(
        _result(
            certificate=verified.chain.leaf,
            revocation=verified.revocation,
            revocation_checked=not args.no_revocation,
        )
    )


def cmd_check(args: argparse.Namespace) -> int:
    from moica_auth.certificate import load_certificate

    raw = _read(args.cert)
    at = _parse_at(args.at)
    verifier = _build_verifier(args, at)
    cert: x509.Certificate | None = None
    try:
        cert = load_certificate(raw)
        _chain, revocation = verifier.check_certificate(certificate=cert, at=at)
    except MoicaAuthError as exc:
        return _emit(_result(error=exc, certificate=cert))
    return _emit(
        _result(certificate=cert, revocation=revocation, revocation_checked=not args.no_revocation)
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(json.dumps({"ok": False, "code": "usage", "message": message}), file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_validation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="PEM",
        help="trust anchor certificate file (repeatable)",
    )
    parser.add_argument(
        "--intermediate",
        action="append",
        default=[],
        metavar="PEM",
        help=(
            "intermediate CA certificate file, or a separate CRL signer's certificate "
            "(keyUsage cRLSign; validated to the anchors before its CRL is used) (repeatable)"
        ),
    )
    parser.add_argument("--at", metavar="ISO8601", help="validation time (default: now)")
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="OID",
        help="accepted certificate policy OID (repeatable; default 2.16.886.101.0.3.3)",
    )
    parser.add_argument(
        "--profile",
        choices=("moica", "generic"),
        default="moica",
        help="moica (default): the citizen-certificate profile; generic: RFC 5280 only",
    )
    parser.add_argument(
        "--no-revocation", action="store_true", help="do not check revocation (say so explicitly)"
    )
    parser.add_argument(
        "--crl",
        action="append",
        default=[],
        metavar="FILE",
        help="CRL file (DER or PEM) to use, alongside the distribution points (repeatable)",
    )
    parser.add_argument(
        "--ocsp", action="store_true", help="ask the OCSP responder named in the certificate's AIA"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m moica_auth", description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="zh-hant", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_inspect = sub.add_parser("inspect", help="print a certificate's profile as JSON")
    p_inspect.add_argument("cert", help="certificate file: PEM, DER or base64 DER")
    p_inspect.set_defaults(func=cmd_inspect)

    p_verify = sub.add_parser("verify", help="verify a HiPKI signature and its certificate")
    p_verify.add_argument("--tbs-file", required=True, help="the exact bytes that were signed")
    p_verify.add_argument(
        "--signature-file",
        required=True,
        help="the signature as HiPKI returns it (base64 text; DER accepted)",
    )
    p_verify.add_argument("--certificate-file", help="the signer certificate (base64, PEM or DER)")
    p_verify.add_argument("--signature-type", choices=("PKCS7", "PKCS1"), default="PKCS7")
    _add_validation_flags(p_verify)
    p_verify.set_defaults(func=cmd_verify)

    p_check = sub.add_parser("check", help="validate one certificate: chain, profile, revocation")
    p_check.add_argument("cert", help="certificate file: PEM, DER or base64 DER")
    _add_validation_flags(p_check)
    p_check.set_defaults(func=cmd_check)

    from moica_auth.signing.cli import add_evidence_parser

    add_evidence_parser(sub)

    from moica_auth.mobile.cli import add_mobile_parser

    add_mobile_parser(sub)
    return parser


def _usage(message: str) -> int:
    print(json.dumps({"ok": False, "code": "usage", "message": message}), file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _setup_django(args.lang)
    try:
        result: int = args.func(args)
    except UsageError as exc:
        return _usage(str(exc))
    except Exception as exc:
        # Fail closed with the same last-line contract. The traceback goes to stderr for
        # the admin; the JSON names only the type, since a message could quote input.
        traceback.print_exc(file=sys.stderr)
        return _emit(
            {
                "ok": False,
                "code": "internal_error",
                "message": "internal error",
                "message_en": "internal error",
                "detail": type(exc).__name__,
                "certificate": None,
            }
        )
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

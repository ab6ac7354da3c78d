"""``python -m moica_auth``: inspect a certificate, verify a signature, check a certificate.

A stable admin interface, documented in ``docs/cli.md``. ``verify`` and ``check`` print
one JSON object on their last line::

    {"ok": bool, "code": str | null, "message": str, "message_en": str, "certificate": {...} | null}

and exit 0 when the signature and certificate are valid, 1 when they are rejected, and 2 on
a usage error (an unreadable file, a bad flag).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from moica_auth.exceptions import MoicaAuthError, RevocationUnavailable

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line mistake: exit 2 with the message."""


def _setup_django(language: str) -> None:
    # Messages go through Django i18n; the CLI runs without a project, so configure the
    # minimum that translation needs.
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            USE_I18N=True,
            LANGUAGE_CODE=language,
            INSTALLED_APPS=["moica_auth"],
            USE_TZ=True,
        )
        django.setup()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at: not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise UsageError("--at: give a time zone, e.g. 2026-11-27T00:00:00Z")
    return parsed.astimezone(UTC)


def _load_cert_files(paths: Sequence[str], flag: str) -> list[Any]:
    from moica_auth.certificate import load_certificates

    certs: list[Any] = []
    for path in paths:
        try:
            certs.extend(load_certificates(_read(path)))
        except MoicaAuthError as exc:
            raise UsageError(f"{flag} {path}: not a certificate ({exc.code})") from exc
    return certs


def _build_verifier(args: argparse.Namespace) -> Any:
    from moica_auth.validation.chain import ValidationPolicy
    from moica_auth.validation.trust import TrustStore
    from moica_auth.verifier import LoginVerifier, VerifierConfig

    anchors = _load_cert_files(args.anchor, "--anchor")
    if not anchors:
        raise UsageError("give at least one --anchor")
    intermediates = _load_cert_files(args.intermediate, "--intermediate")
    try:
        trust = TrustStore(anchors=tuple(anchors), intermediates=tuple(intermediates))
    except MoicaAuthError as exc:
        raise UsageError(f"--anchor: {exc.detail or exc.code}") from exc
    policy_kwargs: dict[str, Any] = {"profile": args.profile}
    if args.policy:
        policy_kwargs["allowed_policy_oids"] = frozenset(args.policy)
    config = VerifierConfig(
        trust=trust,
        policy=ValidationPolicy(**policy_kwargs),
        revocation=_build_revocation(args, trust),
    )
    return LoginVerifier(config)


def _build_revocation(args: argparse.Namespace, trust: Any) -> Any:
    if args.no_revocation:
        if args.crl or args.ocsp:
            raise UsageError("--no-revocation cannot be combined with --crl or --ocsp")
        return None
    if not args.crl and not args.ocsp:
        return _Unestablished()
    from moica_auth.revocation import cli_support

    crl_ders = [_read(path) for path in args.crl]
    return cli_support.build_checker(
        crl_ders=crl_ders, use_ocsp=args.ocsp, trust=trust, at=_parse_at(args.at)
    )


class _Unestablished:
    """Revocation was neither configured nor waived: fail closed with a reason."""

    def check(self, chain: Any, *, at: datetime | None = None) -> Any:
        raise RevocationUnavailable(
            "no revocation source: pass --crl FILE or --ocsp, or waive with --no-revocation"
        )


def _result(
    ok: bool, *, error: MoicaAuthError | None = None, certificate: Any = None
) -> dict[str, Any]:
    from moica_auth.certificate import CitizenCertificate

    out: dict[str, Any] = {
        "ok": ok,
        "code": error.code if error else None,
        "message": error.message_in("zh-hant") if error else "有效 (valid)",
        "message_en": error.message_in("en") if error else "valid",
    }
    if error is not None and error.detail:
        out["detail"] = error.detail
    if error is not None and error.data:
        out.update(
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in error.data.items()}
        )
    out["certificate"] = (
        CitizenCertificate.from_certificate(certificate).as_json() if certificate is not None else None
    )
    return out


def cmd_inspect(args: argparse.Namespace) -> int:
    from moica_auth.certificate import CitizenCertificate, load_certificate

    try:
        cert = load_certificate(_read(args.cert))
    except MoicaAuthError as exc:
        print(json.dumps(_result(False, error=exc), ensure_ascii=False))
        return EXIT_REJECTED
    print(json.dumps(CitizenCertificate.from_certificate(cert).as_json(), ensure_ascii=False, indent=2))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from moica_auth.certificate import load_certificate
    from moica_auth.signature import decode_signature

    tbs = _read(args.tbs_file)
    signature_raw = _read(args.signature_file)
    certificate_raw = _read(args.certificate_file) if args.certificate_file else None
    verifier = _build_verifier(args)
    at = _parse_at(args.at)
    signer: Any = None
    try:
        if certificate_raw is not None:
            signer = load_certificate(certificate_raw)
        verified = verifier.verify(
            content=tbs,
            signature=decode_signature(signature_raw),
            signature_type=args.signature_type,
            certificate=certificate_raw,
            at=at,
        )
    except MoicaAuthError as exc:
        print(json.dumps(_result(False, error=exc, certificate=signer), ensure_ascii=False))
        return EXIT_REJECTED
    print(json.dumps(_result(True, certificate=verified.chain.leaf), ensure_ascii=False))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from moica_auth.certificate import load_certificate

    raw = _read(args.cert)
    verifier = _build_verifier(args)
    at = _parse_at(args.at)
    cert: Any = None
    try:
        cert = load_certificate(raw)
        verifier.check_certificate(certificate=cert, at=at)
    except MoicaAuthError as exc:
        print(json.dumps(_result(False, error=exc, certificate=cert), ensure_ascii=False))
        return EXIT_REJECTED
    print(json.dumps(_result(True, certificate=cert), ensure_ascii=False))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(json.dumps({"ok": False, "code": "usage", "message": message}), file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_validation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anchor", action="append", default=[], metavar="PEM",
                        help="trust anchor certificate file (repeatable)")
    parser.add_argument("--intermediate", action="append", default=[], metavar="PEM",
                        help="intermediate CA certificate file (repeatable)")
    parser.add_argument("--at", metavar="ISO8601", help="validation time (default: now)")
    parser.add_argument("--policy", action="append", default=[], metavar="OID",
                        help="accepted certificate policy OID (repeatable; default 2.16.886.101.0.3.3)")
    parser.add_argument("--profile", choices=("moica", "generic"), default="moica",
                        help="moica (default): the citizen-certificate profile; generic: RFC 5280 only")
    parser.add_argument("--no-revocation", action="store_true",
                        help="do not check revocation (say so explicitly)")
    parser.add_argument("--crl", action="append", default=[], metavar="FILE",
                        help="CRL file (DER or PEM) to use, alongside the distribution points (repeatable)")
    parser.add_argument("--ocsp", action="store_true",
                        help="ask the OCSP responder named in the certificate's AIA")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m moica_auth", description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="zh-hant", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_inspect = sub.add_parser("inspect", help="print a certificate's profile as JSON")
    p_inspect.add_argument("cert", help="certificate file: PEM, DER or base64 DER")
    p_inspect.set_defaults(func=cmd_inspect)

    p_verify = sub.add_parser("verify", help="verify a HiPKI signature and its certificate")
    p_verify.add_argument("--tbs-file", required=True, help="the exact bytes that were signed")
    p_verify.add_argument("--signature-file", required=True,
                          help="the signature as HiPKI returns it (base64 text; DER accepted)")
    p_verify.add_argument("--certificate-file", help="the signer certificate (base64, PEM or DER)")
    p_verify.add_argument("--signature-type", choices=("PKCS7", "PKCS1"), default="PKCS7")
    _add_validation_flags(p_verify)
    p_verify.set_defaults(func=cmd_verify)

    p_check = sub.add_parser("check", help="validate one certificate: chain, profile, revocation")
    p_check.add_argument("cert", help="certificate file: PEM, DER or base64 DER")
    _add_validation_flags(p_check)
    p_check.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_django(args.lang)
    try:
        result: int = args.func(args)
    except UsageError as exc:
        print(json.dumps({"ok": False, "code": "usage", "message": str(exc)}), file=sys.stderr)
        return EXIT_USAGE
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

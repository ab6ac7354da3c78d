"""``python -m moica_auth evidence verify FILE``: re-verify an exported evidence record offline;
``python -m moica_auth evidence retimestamp FILE --tsa URL``: renew it (archive time-stamp).

Prints one JSON object on its last line and exits 0 when the record verifies (the object
then says what it proves), 1 when it does not (``field`` names the field at fault and
``reason`` says why), 2 on a usage error. ``verify`` fetches nothing: the anchors are the
files the auditor gives, the citizen's chain is checked at the record's own decision
time, and the time-stamps as a chain up to now (or ``--at``). ``retimestamp`` asks one
TSA for one token and writes the renewed record (in place, or to ``--output``); unless
``--no-fetch-crls`` it first downloads the CRLs of the newest time-stamp's TSA path from
their distribution points, checks them and records them (an unreachable point refuses
the renewal unless ``--allow-unreachable-crl``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_evidence_parser"]


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from moica_auth.cli import UsageError, _emit, _load_cert_files, _parse_at, _read
    from moica_auth.exceptions import EvidenceInvalid
    from moica_auth.signing.evidence import verify_evidence

    anchors = _load_cert_files(args.anchor, "--anchor")
    if not anchors:
        raise UsageError("give at least one --anchor (a citizen-certificate root)")
    tsa_anchors = _load_cert_files(args.tsa_anchor, "--tsa-anchor")
    if not tsa_anchors and not args.no_timestamp:
        raise UsageError("give --tsa-anchor (the TSA's root), or --no-timestamp to waive it")
    data = _read(args.file)
    try:
        report = verify_evidence(
            data,
            anchors=anchors,
            tsa_anchors=tsa_anchors,
            intermediates=_load_cert_files(args.intermediate, "--intermediate"),
            require_timestamp=not args.no_timestamp,
            tsa_intermediates=_load_cert_files(args.tsa_intermediate, "--tsa-intermediate"),
            at=_parse_at(args.at),
        )
    except EvidenceInvalid as exc:
        return _emit(_refusal(exc))
    print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    return _emit({"ok": True, "code": None, "message": "有效", "message_en": "valid"})


def _refusal(exc: Any) -> dict[str, Any]:
    return {
        "ok": False,
        "code": exc.code,
        "message": exc.message_in("zh-hant"),
        "message_en": exc.message_in("en"),
        "field": exc.data.get("field"),
        "reason": exc.data.get("reason"),
        "detail": exc.detail,
    }


def _load_crl_files(paths: list[str]) -> list[Any]:
    from cryptography import x509

    from moica_auth.cli import UsageError, _read

    crls = []
    for path in paths:
        raw = _read(path)
        try:
            if b"-----BEGIN" in raw:
                crls.append(x509.load_pem_x509_crl(raw))
            else:
                crls.append(x509.load_der_x509_crl(raw))
        except ValueError as exc:
            raise UsageError(f"--tsa-crl {path}: not a CRL") from exc
    return crls


def _write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, so an
    interrupted renewal never leaves half a record."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=".evidence-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_evidence_retimestamp(args: argparse.Namespace) -> int:
    from moica_auth.cli import UsageError, _emit, _load_cert_files, _read
    from moica_auth.exceptions import EvidenceInvalid, RevocationError, TimestampError
    from moica_auth.signing.archive import renew
    from moica_auth.signing.timestamp import TsaClient
    from moica_auth.signing.validation_crls import ValidationCrlFetcher

    tsa_anchors = _load_cert_files(args.tsa_anchor, "--tsa-anchor")
    if not tsa_anchors:
        raise UsageError("give --tsa-anchor (the roots of the TSAs, old and new)")
    if not args.tsa.startswith(("http://", "https://")):
        raise UsageError("--tsa: give the TSA's http(s) URL")
    if not 0 < args.timeout <= 60:
        raise UsageError("--timeout: more than 0 and at most 60 seconds")
    client = TsaClient(
        url=args.tsa,
        anchors=tsa_anchors,
        intermediates=_load_cert_files(args.tsa_intermediate, "--tsa-intermediate"),
        timeout=args.timeout,
    )
    from moica_auth.signing.archive import MAX_VALIDATION_CRLS

    if len(args.tsa_crl) > MAX_VALIDATION_CRLS:
        raise UsageError(f"--tsa-crl: at most {MAX_VALIDATION_CRLS} CRLs")
    crls = _load_crl_files(args.tsa_crl)
    data = _read(args.file)
    fetcher = (
        None
        if args.no_fetch_crls
        else ValidationCrlFetcher(allow_unreachable=args.allow_unreachable_crl)
    )
    try:
        renewed = renew(data, tsa=client, crls=crls, fetch_crls=fetcher)
    except (EvidenceInvalid, TimestampError, RevocationError) as exc:
        return _emit(_refusal(exc))
    entry = renewed["archive"][-1]
    _write_atomically(
        args.output or args.file, json.dumps(renewed, ensure_ascii=False, indent=1, sort_keys=True)
    )
    from moica_auth.signing.archive import newest_token

    token = newest_token(renewed, tsa_anchors=tsa_anchors, tsa_intermediates=client.intermediates)
    return _emit(
        {
            "ok": True,
            "code": None,
            "message": "已加上存證時戳",
            "message_en": "archive time-stamp added",
            "file": args.output or args.file,
            "archive_timestamps": len(renewed["archive"]),
            "gen_time": token.gen_time.isoformat() if token else None,
            "tsa_not_after": (
                token.tsa_certificate.not_valid_after_utc.isoformat() if token else None
            ),
            "crls": len(entry["validation"]["crls"]),
            "crls_without_distribution_point": sorted(fetcher.without_cdp) if fetcher else None,
            "crls_unreachable": sorted(fetcher.unreachable) if fetcher else None,
        }
    )


def add_evidence_parser(sub: Any) -> None:
    """Register ``evidence verify`` on the main parser's subcommands."""
    p_evidence = sub.add_parser("evidence", help="signing evidence records")
    evidence_sub = p_evidence.add_subparsers(
        dest="evidence_command", required=True, parser_class=type(p_evidence)
    )
    p_verify = evidence_sub.add_parser(
        "verify", help="re-verify an exported evidence file offline, at its decision time"
    )
    p_verify.add_argument("file", help="the evidence JSON (moica-auth-evidence/1)")
    p_verify.add_argument(
        "--anchor", action="append", default=[], help="citizen-certificate root (repeatable)"
    )
    p_verify.add_argument(
        "--intermediate", action="append", default=[], help="extra CA certificate (repeatable)"
    )
    p_verify.add_argument(
        "--tsa-anchor", action="append", default=[], help="trusted TSA root (repeatable)"
    )
    p_verify.add_argument(
        "--tsa-intermediate",
        action="append",
        default=[],
        help="TSA CA certificate a token does not carry (repeatable)",
    )
    p_verify.add_argument(
        "--no-timestamp",
        action="store_true",
        help="accept a record without a time-stamp (it then proves less)",
    )
    p_verify.add_argument(
        "--at",
        metavar="ISO8601",
        help="verification time for the newest time-stamp (default: now)",
    )
    p_verify.set_defaults(func=cmd_evidence_verify)

    p_renew = evidence_sub.add_parser(
        "retimestamp",
        help="renew an evidence file: add an archive time-stamp over all of it",
    )
    p_renew.add_argument("file", help="the evidence JSON; rewritten in place unless --output")
    p_renew.add_argument("--tsa", required=True, metavar="URL", help="RFC 3161 TSA URL")
    p_renew.add_argument(
        "--tsa-anchor",
        action="append",
        default=[],
        help="trusted TSA root, of the record's TSAs and of --tsa (repeatable)",
    )
    p_renew.add_argument(
        "--tsa-intermediate",
        action="append",
        default=[],
        help="TSA CA certificate a token does not carry (repeatable)",
    )
    p_renew.add_argument(
        "--tsa-crl",
        action="append",
        default=[],
        help="CRL of the newest time-stamp's TSA CA, recorded as validation data (repeatable)",
    )
    p_renew.add_argument(
        "--no-fetch-crls",
        action="store_true",
        help="do not download the TSA path's CRLs from their distribution points",
    )
    p_renew.add_argument(
        "--allow-unreachable-crl",
        action="store_true",
        help="renew even when a CRL distribution point is unreachable (records less)",
    )
    p_renew.add_argument("--output", help="write the renewed record here instead")
    p_renew.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p_renew.set_defaults(func=cmd_evidence_retimestamp)

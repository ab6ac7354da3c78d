"""``python -m moica_auth evidence verify FILE``: re-verify an exported evidence record offline.

Prints one JSON object on its last line and exits 0 when the record verifies (the object
then says what it proves), 1 when it does not (``field`` names the field at fault and
``reason`` says why), 2 on a usage error. Nothing is fetched: the anchors are the files
the auditor gives, the time is the record's own decision time.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_evidence_parser"]


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from moica_auth.cli import UsageError, _emit, _load_cert_files, _read
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
        )
    except EvidenceInvalid as exc:
        out: dict[str, Any] = {
            "ok": False,
            "code": exc.code,
            "message": exc.message_in("zh-hant"),
            "message_en": exc.message_in("en"),
            "field": exc.data.get("field"),
            "reason": exc.data.get("reason"),
            "detail": exc.detail,
        }
        return _emit(out)
    print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    return _emit({"ok": True, "code": None, "message": "有效", "message_en": "valid"})


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
        "--no-timestamp",
        action="store_true",
        help="accept a record without a time-stamp (it then proves less)",
    )
    p_verify.set_defaults(func=cmd_evidence_verify)

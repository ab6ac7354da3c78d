"""NIST PKITS conformance of the product, measured through ``python -m moica_auth check``.

Run: ``.venv/bin/python -m benchmarks.pkits_conformance`` prints the per-section table;
``--write`` also regenerates the results block of ``docs/conformance.md``. The test
``tests/test_pkits.py`` runs the same cases and holds the verdicts to it.

Every case goes through the command line exactly as an administrator would type it::

    python -m moica_auth check <case EE> --profile generic --at 2022-05-01T00:00:00Z \\
        --anchor TrustAnchorRootCertificate.crt --intermediate <each other certificate> \\
        --crl TrustAnchorRootCRL.crl --crl <each CRL of the case>

No harness logic decides anything: path building, which certificates are revocation
checked, and separate CRL signers are the CLI's (``moica_auth.cli``). Inputs: the manifest
``pkits.json`` from the shared data folder (../shared/data/pkits), the certificate and CRL
files from the ``cryptography-vectors`` package.

Outcomes: **pass** (the NIST verdict: a valid path accepted, an invalid one refused),
**refused-valid** (a valid path refused: fail closed, listed with the reason) and
**accepted-invalid** (an invalid path accepted), which must be 0 in every section.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("4.1", "4.2", "4.4", "4.6", "4.7", "4.14")
AT = "2022-05-01T00:00:00Z"
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conformance.md"
SHARED = ROOT.parent / "shared" / "data"
BEGIN, END = "<!-- pkits-results:begin -->", "<!-- pkits-results:end -->"

# The manifest's error classes (pyHanko's) and the CLI codes, as coarse categories.
EXPECTED = {
    None: "valid",
    "PathValidationError": "path",
    "RevokedError": "revoked",
    "InsufficientRevinfoError": "insufficient",
    "StaleRevinfoError": "stale",
}
_BY_CODE = {
    "certificate_revoked": "revoked",
    "certificate_suspended": "revoked",
    "revocation_stale": "stale",
    "revocation_unavailable": "insufficient",
    "crl_invalid": "insufficient",
    "ocsp_invalid": "insufficient",
}

# Why the product refuses a valid path, by case name (or name fragment). The report
# prints the CLI's own code next to it; a refusal not explained here is still listed.
REASONS: dict[str, str] = {
    "valid_dsa_signatures_test4": (
        "DSA with SHA-1: SHA-1 certificate signatures are refused (and cryptography's "
        "X.509 verifier supports RSA and ECDSA only); citizen certificates are RSA"
    ),
    "valid_dsa_parameter_inheritance_test5": (
        "DSA with inherited parameters: cryptography cannot load the certificate"
    ),
    "valid_generalizedtime_notbefore_date_test4": (
        "a 2002 notBefore encoded as GeneralizedTime: RFC 5280 §4.1.2.5 requires UTCTime "
        "through 2049, and cryptography's verifier enforces it"
    ),
    "self_issued": (
        "path through a self-issued CA certificate (key rollover, RFC 5280 §6.1.4 (l)): "
        "cryptography's path builder does not find it; MOICA has none"
    ),
    "onlysomereasons": "onlySomeReasons partition CRLs are refused by design (no usable CRL)",
    "indirectcrl": "indirect CRLs are refused by design (no usable CRL)",
    "crlissuer": ("a cRLIssuer in the distribution point means an indirect CRL, refused by design"),
}


def reason_for(name: str) -> str:
    return next((why for key, why in REASONS.items() if key in name), "not explained")


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    section: str
    argv: tuple[str, ...]
    expected: str  # a category of EXPECTED

    @property
    def valid(self) -> bool:
        return self.expected == "valid"


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: str | None  # the CLI's code; None when accepted; "usage" on exit 2
    category: str

    @property
    def accepted(self) -> bool:
        return self.code is None

    @property
    def verdict_ok(self) -> bool:
        return self.accepted == self.case.valid


def vectors_dir() -> Path:
    import cryptography_vectors

    return Path(os.path.dirname(cryptography_vectors.__file__)) / "x509" / "PKITS_data"


def load_cases(shared: Path = SHARED) -> list[Case]:
    manifest = json.loads((shared / "pkits" / "pkits.json").read_text())
    vectors = vectors_dir()
    out: list[Case] = []
    for raw in manifest:
        section = f"4.{int(raw['id'][1:3])}"
        if section not in SECTIONS:
            continue

        def cert(name: str) -> str:
            return str(vectors / "certs" / name)

        def crl(name: str) -> str:
            return str(vectors / "crls" / name)

        argv = [
            "check",
            cert(raw["cert"]),
            "--profile",
            "generic",
            "--at",
            AT,
            "--anchor",
            cert("TrustAnchorRootCertificate.crt"),
        ]
        for other in raw.get("other_certs", []):
            argv += ["--intermediate", cert(other)]
        for name in ("TrustAnchorRootCRL.crl", *raw.get("crls", [])):
            argv += ["--crl", crl(name)]
        expected = EXPECTED[(raw.get("error") or {}).get("class")]
        out.append(Case(raw["id"], raw["name"], section, tuple(argv), expected))
    return out


def categorise(code: str | None) -> str:
    if code is None:
        return "valid"
    if code == "usage":
        return "unloadable"
    return _BY_CODE.get(code, "path")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        # PKITS 4.4.14/4.4.15 have negative serials on purpose.
        warnings.filterwarnings("ignore", "Parsed a serial number which wasn't positive")
        yield


def run_cli(case: Case) -> Outcome:
    """One case through ``moica_auth.cli.main`` (in process); the last JSON line decides."""
    from moica_auth.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _quiet(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(case.argv))
    if status == 2:
        return Outcome(case, "usage", "unloadable")
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    code = None if last["ok"] else str(last["code"])
    if (status == 0) != last["ok"]:
        raise AssertionError(f"{case.name}: exit {status} disagrees with ok={last['ok']}")
    return Outcome(case, code, categorise(code))


@dataclass
class Section:
    name: str
    cases: int = 0
    passed: int = 0
    other_reason: list[Outcome] = field(default_factory=list)
    refused_valid: list[Outcome] = field(default_factory=list)
    accepted_invalid: list[Outcome] = field(default_factory=list)


def tally(outcomes: Sequence[Outcome]) -> dict[str, Section]:
    sections = {name: Section(name) for name in SECTIONS}
    for o in outcomes:
        s = sections[o.case.section]
        s.cases += 1
        if o.verdict_ok:
            s.passed += 1
            if not o.accepted and o.category != o.case.expected:
                s.other_reason.append(o)
        elif o.case.valid:
            s.refused_valid.append(o)
        else:
            s.accepted_invalid.append(o)
    return sections


def render(sections: dict[str, Section]) -> str:
    lines = [
        "| PKITS section | cases | pass | of which refused for another reason "
        "| refused-valid | accepted-invalid |",
        "|---|---|---|---|---|---|",
    ]
    for s in sections.values():
        lines.append(
            f"| {s.name} | {s.cases} | {s.passed} | {len(s.other_reason)} "
            f"| {len(s.refused_valid)} | {len(s.accepted_invalid)} |"
        )
    refused = [o for s in sections.values() for o in s.refused_valid]
    other = [o for s in sections.values() for o in s.other_reason]
    accepted = [o for s in sections.values() for o in s.accepted_invalid]
    parts = ["\n".join(lines), "", "Valid paths refused (fail closed), with the CLI's code:", ""]
    parts += [
        f"- {o.case.id} `{o.case.name}` (`{o.code}`): {reason_for(o.case.name)}" for o in refused
    ]
    parts += ["- none"] if not refused else []
    parts += ["", "Invalid paths refused for another reason than the manifest's class:", ""]
    parts += [
        f"- {o.case.id} `{o.case.name}`: expected {o.case.expected}, refused as `{o.code}`"
        for o in other
    ]
    parts += ["- none"] if not other else []
    parts += ["", "Invalid paths accepted:", ""]
    parts += [f"- {o.case.id} `{o.case.name}` (expected {o.case.expected})" for o in accepted]
    parts += ["- none"] if not accepted else []
    return "\n".join(parts)


def doc_block(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n")


def write_doc(block: str, doc: Path = DOC) -> bool:
    text = doc.read_text()
    if doc_block(text) is None:
        raise SystemExit(f"{doc}: the {BEGIN} … {END} markers are missing")
    head, tail = text[: text.index(BEGIN)], text[text.index(END) + len(END) :]
    new = f"{head}{BEGIN}\n{block}\n{END}{tail}"
    if new == text:
        return False
    doc.write_text(new)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the results in {DOC}")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    args = parser.parse_args(argv)
    outcomes = [run_cli(case) for case in load_cases(args.shared)]
    block = render(tally(outcomes))
    print(block)
    if args.write:
        print(f"\n{DOC}: {'rewritten' if write_doc(block) else 'unchanged'}", file=sys.stderr)
    summary: dict[str, Any] = {
        s.name: {"cases": s.cases, "pass": s.passed, "accepted_invalid": len(s.accepted_invalid)}
        for s in tally(outcomes).values()
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

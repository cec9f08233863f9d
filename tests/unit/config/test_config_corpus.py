"""`kuberunner config check` over a corpus of malformed files, each with hand-written expectations.

Each ``corpus/NAME.toml`` has a sidecar ``NAME.expected`` listing every
problem the check must report, one per line::

    severity LINE: key (runner "name"): message substring

The test asserts exactly those problems (no more, no fewer), on those lines,
in both output formats, with exit code 1 when any of them is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from kuberunner.cli import main

CORPUS = Path(__file__).parent / "corpus"
GOOD = Path(__file__).parent / "good"
CASES = sorted(p.stem for p in CORPUS.glob("*.toml"))

# Every credential written anywhere in the corpus and the good files: none may ever be printed.
FAKE_SECRETS = (
    "glrt-FAKE",
    "FAKE-bearer-token",
    "FAKE-placeholder",
    "FAKEACCESSKEY",
    "FAKESECRETKEY",
    "987654321",
    "FAKE_PASSWORD",
    "FAKE-seed-bearer-token",
    "FAKE-big-",
)

_LINE = re.compile(r"^(error|warning|unsupported) (\d+|None): (.*?): (.+)$")


@dataclass(frozen=True)
class Expected:
    severity: str
    line: int | None
    label: str
    message: str


def _expected(name: str) -> list[Expected]:
    out = []
    for raw in (CORPUS / f"{name}.expected").read_text().splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        match = _LINE.match(raw)
        assert match, f"{name}.expected: cannot parse {raw!r}"
        severity, line, label, message = match.groups()
        out.append(Expected(severity, None if line == "None" else int(line), label, message))
    return out


def _label(problem: dict[str, str | None]) -> str:
    key, runner = problem["key"] or "", problem["runner"]
    if runner:
        return f"{key} ({runner})" if key else f"({runner})"
    return key


def test_corpus_has_at_least_35_cases_each_with_expectations() -> None:
    assert len(CASES) >= 35
    for name in CASES:
        assert _expected(name), f"{name}.expected lists no problem"


@pytest.mark.parametrize("name", CASES)
def test_corpus_file_reports_exactly_the_expected_problems(name: str) -> None:
    path = CORPUS / f"{name}.toml"
    expected = _expected(name)
    runner = CliRunner()

    result = runner.invoke(main, ["config", "check", "--format", "json", str(path)])
    problems = json.loads(result.stdout)["files"][0]["problems"]
    got = sorted((p["severity"], p["line"] or 0, _label(p)) for p in problems)
    want = sorted((e.severity, e.line or 0, e.label) for e in expected)
    assert got == want, json.dumps(problems, indent=1, ensure_ascii=False)
    for e in expected:
        matching = [
            p
            for p in problems
            if (p["severity"], p["line"], _label(p)) == (e.severity, e.line, e.label)
            and e.message in p["message"]
        ]
        assert matching, f"no {e.severity} on line {e.line} for {e.label!r} containing {e.message!r}"
        assert all(p["fix"] for p in matching), "every problem says how to fix it"

    want_exit = 1 if any(e.severity == "error" for e in expected) else 0
    assert result.exit_code == want_exit

    text = runner.invoke(main, ["config", "check", str(path)])
    assert text.exit_code == want_exit
    for e in expected:
        where = f"{path}:{e.line}" if e.line is not None else str(path)
        head = f"{where}: {e.label}: " if e.label else f"{where}: "
        lines = [ln for ln in text.stdout.splitlines() if ln.startswith(head) and e.message in ln]
        assert lines, f"no line starting {head!r} containing {e.message!r} in:\n{text.stdout}"
    assert text.stdout.splitlines()[-1].startswith(f"{path}: ")  # the summary line

    for output in (result.output, text.output):
        for value in FAKE_SECRETS:
            assert value not in output


def test_problems_are_ordered_errors_then_warnings_then_unsupported() -> None:
    result = CliRunner().invoke(main, ["config", "check", str(CORPUS / "multi_seed_mistakes.toml")])
    out = result.stdout
    assert out.index("errors (4):") < out.index("warnings (3):")
    heads = [ln for ln in out.splitlines() if ln.startswith(str(CORPUS))]
    error_lines = [int(h.split(":")[1]) for h in heads if "expected" in h or "unknown" in h or "missing" in h]
    assert error_lines == sorted(error_lines)
    assert out.splitlines()[-1].endswith("4 errors, 3 warnings, 0 not supported yet")

    result = CliRunner().invoke(main, ["config", "check", str(CORPUS / "multi_two_runners.toml")])
    assert result.stdout.index("errors (7):") < result.stdout.index("not supported yet (1):")


def test_several_files_are_grouped_with_a_summary_each_and_a_total() -> None:
    files = [CORPUS / "quantity_invalid.toml", GOOD / "seed.toml", CORPUS / "limit_above_concurrent.toml"]
    result = CliRunner().invoke(main, ["config", "check", *map(str, files)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    summaries = [ln for ln in lines if ln.startswith(tuple(f"{f}: " for f in files))]
    assert [s.split(": ")[0] for s in summaries] == [str(f) for f in files]
    assert lines[-1].startswith("3 files checked: 1 error, ")

    data = json.loads(
        CliRunner().invoke(main, ["config", "check", "--format", "json", *map(str, files)]).stdout
    )
    assert [f["ok"] for f in data["files"]] == [False, True, True]
    assert data["ok"] is False
    assert data["counts"]["error"] == 1

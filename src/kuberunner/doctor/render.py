"""The report as text (styled lines: colour on a terminal, plain in pipes) or JSON."""

from __future__ import annotations

import json
from collections import Counter

from kuberunner.doctor.model import CheckResult, RunnerReport
from kuberunner.doctor.run import DoctorReport

__all__ = ["STYLES", "render_json", "render_text"]

Line = tuple[str, str | None]

STYLES: dict[str, str] = {
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "skip": "dim",
    "evidence": "",
    "note": "cyan",
    "fix": "cyan",
    "heading": "bold",
    "summary": "bold",
}
_LABEL = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
_INDENT = " " * 8
_DEFAULT_NOTE = {
    "toml": "in config.toml:",
    "kubectl": "run:",
    "yaml": "apply (`kubectl apply -f -`):",
    "text": "",
}


def _check(check: CheckResult, width: int) -> list[Line]:
    lines: list[Line] = [
        (f"  {_LABEL[check.status]}  {check.title.ljust(width)}  {check.summary}", check.status)
    ]
    for item in check.evidence:
        for number, text in enumerate(item.splitlines() or [""]):
            lines.append((f"{_INDENT}{'· ' if number == 0 else '  '}{text}", "evidence"))
    for fix in check.fixes:
        if fix.kind == "text":
            lead = f"{fix.note} " if fix.note else ""
            lines.append((f"{_INDENT}fix: {lead}{fix.text}", "fix"))
            continue
        lines.append((f"{_INDENT}fix: {fix.note or _DEFAULT_NOTE[fix.kind]}", "note"))
        lines.extend((f"{_INDENT}    {text}", "fix") for text in fix.text.splitlines())
    return lines


def _runner(runner: RunnerReport) -> list[Line]:
    width = max((len(c.title) for c in runner.checks), default=0)
    lines: list[Line] = [(f'runner "{runner.name}" (executor {runner.executor})', "heading")]
    for check in runner.checks:
        lines.extend(_check(check, width))
    return lines


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def render_text(report: DoctorReport) -> list[Line]:
    """Lines with a style name (see :data:`STYLES`); the CLI colours them on a terminal only."""
    lines: list[Line] = [(f"kuberunner doctor: {report.config_path}", "heading"), ("", None)]
    counts: Counter[str] = Counter()
    for runner in report.runners:
        lines.extend(_runner(runner))
        lines.append(("", None))
        counts.update(c.status for c in runner.checks)
    summary = ", ".join(
        [
            _plural(counts["fail"], "failure"),
            _plural(counts["warn"], "warning"),
            f"{counts['pass']} passed",
            f"{counts['skip']} skipped",
        ]
    )
    verdict = "ready to run jobs" if report.ok else "fix the failures above, then run doctor again"
    lines.append((f"{summary}: {verdict}", "summary" if report.ok else "fail"))
    return lines


def render_json(report: DoctorReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)

"""The report as people read it (aligned, fixes indented for pasting) and as scripts read it (JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from kuberunner.doctor import CheckResult, DoctorReport, Fix, RunnerReport, render_json, render_text
from kuberunner.doctor.model import skipped


def report() -> DoctorReport:
    runner = RunnerReport("k8s-runner", "kubernetes")
    runner.add(
        CheckResult("api-address", "API address", "pass", "https://10.0.0.1:6443 (from config.toml host)")
    )
    runner.add(
        CheckResult(
            "namespace",
            "namespace",
            "fail",
            'the runner works in "default", but its account has its rights in "gitlab"',
            ('may not create pods in "default"',),
            (Fix("toml", '[runners.kubernetes]\n  namespace = "gitlab"', note="run jobs where it may:"),),
        )
    )
    runner.add(skipped("permissions", "permissions", "namespace"))
    runner.add(
        CheckResult(
            "gitlab", "GitLab", "warn", "slow", (), (Fix("text", "check the network"), Fix("kubectl", "x y"))
        )
    )
    return DoctorReport(Path("/etc/gitlab-runner/config.toml"), [runner])


def test_text_report() -> None:
    lines = render_text(report())
    text = [line for line, _ in lines]
    assert text[:3] == [
        "kuberunner doctor: /etc/gitlab-runner/config.toml",
        "",
        'runner "k8s-runner" (executor kubernetes)',
    ]
    assert text[3] == "  PASS  API address  https://10.0.0.1:6443 (from config.toml host)"
    assert (
        text[4]
        == '  FAIL  namespace    the runner works in "default", but its account has its rights in "gitlab"'
    )
    assert text[5:9] == [
        '        · may not create pods in "default"',
        "        fix: run jobs where it may:",
        "            [runners.kubernetes]",
        '              namespace = "gitlab"',
    ]
    assert text[9] == "  SKIP  permissions  skipped (needs namespace)"
    assert text[11:13] == ["        fix: check the network", "        fix: run:"]
    assert (
        text[-1] == "1 failure, 1 warning, 1 passed, 1 skipped: fix the failures above, then run doctor again"
    )
    styles = dict(lines)
    assert styles[text[4]] == "fail" and styles[text[9]] == "skip" and styles[text[7]] == "fix"


def test_json_report_round_trips() -> None:
    data = json.loads(render_json(report()))
    assert data["ok"] is False
    (runner,) = data["runners"]
    assert [c["status"] for c in runner["checks"]] == ["pass", "fail", "skip", "warn"]
    namespace = runner["checks"][1]
    assert namespace["fixes"] == [
        {
            "kind": "toml",
            "text": '[runners.kubernetes]\n  namespace = "gitlab"',
            "note": "run jobs where it may:",
        }
    ]


def test_warnings_alone_are_ok() -> None:
    runner = RunnerReport("r", "kubernetes", [CheckResult("x", "x", "warn", "meh")])
    done = DoctorReport(Path("c.toml"), [runner])
    assert done.ok
    assert render_text(done)[-1] == (
        "0 failures, 1 warning, 0 passed, 0 skipped: ready to run jobs",
        "summary",
    )

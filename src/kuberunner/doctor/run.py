"""``kuberunner doctor``: every check, for each runner in config.toml, in the order a job meets them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuberunner.config.load import LoadedConfig, load_config
from kuberunner.config.schema import KubernetesConfig, RunnerConfig
from kuberunner.doctor.cluster import check_cluster_access
from kuberunner.doctor.consistency import check_consistency
from kuberunner.doctor.gitlab_side import check_gitlab
from kuberunner.doctor.model import CheckResult, Fix, RunnerReport
from kuberunner.doctor.pods import check_pod
from kuberunner.util.logs import SECRETS

__all__ = ["DoctorReport", "UnknownRunner", "diagnose"]


class UnknownRunner(LookupError):
    """``--runner NAME`` names no ``[[runners]]`` entry."""


@dataclass
class DoctorReport:
    config_path: Path
    runners: list[RunnerReport] = field(default_factory=list)
    probe: bool = False

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runners)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": str(self.config_path),
            "probe": self.probe,
            "ok": self.ok,
            "runners": [r.to_dict() for r in self.runners],
        }


def _config_check(loaded: LoadedConfig, index: int | None) -> CheckResult:
    title = "config.toml"
    if not loaded.readable:
        problems = [p.render() for p in loaded.problems] or ["the file cannot be read"]
        return CheckResult(
            "config",
            title,
            "fail",
            f"{loaded.path} cannot be used",
            tuple(problems),
            (
                Fix(
                    "kubectl",
                    f"kuberunner config check -c {loaded.path}",
                    note="see every problem with its fix:",
                ),
            ),
        )
    label = loaded.runner_label(("runners", index)) if index is not None else None
    mine = [p for p in loaded.problems if p.runner in (None, label) and p.severity in ("error", "warning")]
    errors = [p for p in mine if p.severity == "error"]
    if errors:
        return CheckResult(
            "config",
            title,
            "fail",
            f"{len(errors)} error(s) in {loaded.path}",
            tuple(p.render() for p in mine),
            (
                Fix(
                    "kubectl", f"kuberunner config check -c {loaded.path}", note="every problem with its fix:"
                ),
            ),
        )
    if mine:
        return CheckResult(
            "config",
            title,
            "warn",
            f"{len(mine)} warning(s) in {loaded.path}",
            tuple(p.render() for p in mine),
        )
    return CheckResult("config", title, "pass", f"{loaded.path}: no problems")


async def _runner(
    loaded: LoadedConfig,
    index: int,
    runner: RunnerConfig,
    *,
    probe: bool,
    environ: Mapping[str, str],
) -> RunnerReport:
    name = runner.name or f"#{index + 1}"
    report = RunnerReport(name, runner.executor or "?")
    report.add(_config_check(loaded, index))
    if runner.executor == "kubernetes" or runner.kubernetes is not None:
        cfg = runner.kubernetes or KubernetesConfig.model_validate({})
        cluster = await check_cluster_access(report, cfg, environ=environ, config_dir=loaded.path.parent)
        try:
            await check_pod(report, cluster, runner, probe=probe)
        finally:
            await cluster.close()
    report.add(await check_gitlab(runner))
    if runner.executor == "kubernetes" or runner.kubernetes is not None:
        cfg = runner.kubernetes or KubernetesConfig.model_validate({})
        for result in check_consistency(cfg, probe=report.get("pod") if probe else None):
            report.add(result)
    return report


async def diagnose(
    path: Path,
    *,
    runner_name: str | None = None,
    probe: bool = False,
    environ: Mapping[str, str] | None = None,
) -> DoctorReport:
    """Run every check for each runner (or only ``runner_name``); nothing is changed, except
    that ``probe`` creates one short-lived pod and Secret per runner and deletes them."""
    env = dict(os.environ) if environ is None else dict(environ)
    loaded = load_config(path, strict=False)
    report = DoctorReport(path, probe=probe)
    if not loaded.readable:
        runner = RunnerReport("?", "?")
        runner.add(_config_check(loaded, None))
        report.runners.append(runner)
        return report
    runners = list(enumerate(loaded.config.runners))
    if runner_name is not None:
        runners = [(i, r) for i, r in runners if r.name == runner_name]
        if not runners:
            names = ", ".join(f'"{r.name}"' for r in loaded.config.runners) or "none"
            raise UnknownRunner(f'no runner named "{runner_name}" in {path} (runners: {names})')
    if not runners:
        runner = RunnerReport("?", "?")
        runner.add(
            CheckResult(
                "config",
                "config.toml",
                "fail",
                f"{path} has no [[runners]]",
                (),
                (Fix("kubectl", f"kuberunner register -c {path}", note="register a runner first:"),),
            )
        )
        report.runners.append(runner)
        return report
    for _, runner_cfg in runners:  # never in a log record, whatever a library logs
        SECRETS.add(runner_cfg.token, runner_cfg.kubernetes.bearer_token if runner_cfg.kubernetes else None)
    for index, runner_cfg in runners:
        report.runners.append(await _runner(loaded, index, runner_cfg, probe=probe, environ=env))
    return report

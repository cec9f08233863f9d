"""``kuberunner exec``: run a project's ``.gitlab-ci.yml`` on this machine, without GitLab.

On a terminal a live table shows each job's stage, state and duration while
the jobs' log lines scroll above it; anywhere else (pipes, files, tests) the
output is plain text without colours: every log line as ``job-name > line``,
then a summary with one line per job::

    Summary
      success  build | build | 0.41s
      failed   test: [linux] | test | 1.02s | exit code 1

Exit status: 0 when no job that may not fail failed, 1 when one did or when
the pipeline is invalid (each problem printed as ``FILE:LINE:COL: message``),
130 when interrupted (Ctrl-C once lets the running jobs run their
after_script; twice kills them).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from kuberunner.runner.local import (
    EXECUTORS,
    JobResult,
    LocalRunError,
    PipelineResult,
    Reporter,
    RunStart,
    check_executor,
    kubernetes_runner,
    preload_modules,
    run_pipeline,
    strip_ansi,
)

if TYPE_CHECKING:  # imported where used: a run starts its helper and its copies while these load,
    # and rich only draws on a terminal
    from rich.console import Console, RenderableType
    from rich.live import Live

    from kuberunner.config.schema import RunnerConfig
    from kuberunner.pipeline import Pipeline, PipelineError, PipelineJob, PipelineVariable, ScopedJobs

__all__ = ["exec_command"]

_MAX_PAD = 40
_PALETTE = ("cyan", "magenta", "blue", "yellow", "green", "bright_cyan", "bright_magenta", "bright_blue")
_STATUS_STYLE = {
    "success": "green",
    "failed": "bold red",
    "warning": "yellow",
    "skipped": "dim",
    "manual": "blue",
    "canceled": "red",
    "running": "bold cyan",
    "pending": "dim",
}


def _parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def _fail_pipeline(exc: PipelineError) -> None:
    for problem in exc.problems:
        click.echo(str(problem), err=True)
    sys.exit(1)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _details(result: JobResult) -> list[str]:
    """What the summary says about a job beyond its status."""
    out: list[str] = []
    if result.status in ("failed", "warning") and result.reason:
        out.append(result.reason + (", allowed to fail" if result.status == "warning" else ""))
    elif result.status in ("skipped", "canceled") and result.reason:
        out.append(result.reason)
    elif result.status == "manual":
        out.append(f"when: manual, run it with --manual '{result.name}'")
    if result.attempts > 1:
        out.append(f"{result.attempts} attempts")
    if result.coverage is not None:
        out.append(f"coverage {result.coverage}%")
    if result.environment is not None:
        env = result.environment
        out.append(f"environment {env.name}" + (f" ({env.url})" if env.url else ""))
    return out


def _verdict(result: PipelineResult) -> tuple[str, str]:
    if result.canceled:
        return "Pipeline canceled", "red"
    failed = result.failed
    if failed:
        names = ", ".join(j.name for j in failed)
        return f"Pipeline failed: {names} failed", "bold red"
    warnings = [j.name for j in result.jobs if j.status == "warning"]
    if warnings:
        return f"Pipeline passed with warnings: {', '.join(warnings)} failed (allowed to fail)", "yellow"
    return "Pipeline passed", "bold green"


# --------------------------------------------------------------------------- plain output


class PlainReporter(Reporter):
    """Plain text, one line at a time, nothing that depends on a terminal."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.pad = 0
        self.closed = False

    def pipeline_started(self, pipeline: Pipeline, scoped: ScopedJobs) -> None:
        self.pad = min(max((len(n) for n in scoped.names), default=0), _MAX_PAD)

    def job_started(self, job: PipelineJob, attempt: int, max_attempts: int) -> None:
        if attempt > 1:
            self._write(f"{job.name}: retrying, attempt {attempt} of {max_attempts}")

    def job_line(self, job: PipelineJob, line: str) -> None:
        self._write(f"{job.name.ljust(self.pad)} > {strip_ansi(line)}")

    def summary(self, result: PipelineResult) -> None:
        self._write("")
        self._write("Summary")
        width = max((len(j.status) for j in result.jobs), default=0)
        for job in result.jobs:
            fields = [job.name, job.stage]
            if job.duration is not None:
                fields.append(_duration(job.duration))
            fields += _details(job)
            self._write(f"  {job.status.ljust(width)}  {' | '.join(fields)}")
        self._write(_verdict(result)[0])

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text + "\n")
            self.out.flush()
        except BrokenPipeError:  # e.g. `kuberunner exec | head`: the jobs still run to their end
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())  # so that the exit's flush does not fail again
            os.close(devnull)


# --------------------------------------------------------------------------- terminal output


@dataclass
class _Row:
    job: PipelineJob
    state: str
    started: float | None = None
    ended: float | None = None


class _Progress:
    """The live table: one row per job with its state and how long it has been running."""

    def __init__(self, scoped: ScopedJobs) -> None:
        self.rows = {
            s.job.name: _Row(s.job, "manual" if s.state == "manual" else "pending") for s in scoped.jobs
        }

    def __rich__(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("job", "stage", "state", "duration"):
            table.add_column(column, justify="right" if column == "duration" else "left")
        now = time.monotonic()
        for row in self.rows.values():
            elapsed = None if row.started is None else (row.ended or now) - row.started
            style = _STATUS_STYLE.get(row.state.split(" ")[0], "")
            # Text, not str: job names such as "test: [linux]" are not rich markup
            table.add_row(
                Text(row.job.name), Text(row.job.stage), Text(row.state, style=style), _duration(elapsed)
            )
        return table


class TerminalReporter(Reporter):
    """A live progress table under the scrolling job logs (rich)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.pad = 0
        self.styles: dict[str, str] = {}
        self.progress: _Progress | None = None
        self.live: Live | None = None

    def pipeline_started(self, pipeline: Pipeline, scoped: ScopedJobs) -> None:
        from rich.live import Live

        self.pad = min(max((len(n) for n in scoped.names), default=0), _MAX_PAD)
        self.styles = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(scoped.names)}
        self.progress = _Progress(scoped)
        self.live = Live(self.progress, console=self.console, refresh_per_second=4, transient=True)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def job_started(self, job: PipelineJob, attempt: int, max_attempts: int) -> None:
        if self.progress is not None:
            row = self.progress.rows[job.name]
            row.state = "running" if attempt == 1 else f"running ({attempt}/{max_attempts})"
            row.started = row.started or time.monotonic()
        if attempt > 1:
            from rich.text import Text

            self.console.print(
                Text(f"{job.name}: retrying, attempt {attempt} of {max_attempts}", style="yellow")
            )

    def job_line(self, job: PipelineJob, line: str) -> None:
        from rich.text import Text

        text = Text(job.name.ljust(self.pad), style=self.styles.get(job.name, ""))
        text.append(" > ")
        text.append_text(Text.from_ansi(line) if self.console.color_system else Text(strip_ansi(line)))
        self.console.print(text, soft_wrap=True, highlight=False, markup=False)

    def job_finished(self, job: PipelineJob, result: JobResult) -> None:
        if self.progress is not None:
            row = self.progress.rows[job.name]
            row.state = result.status
            if row.started is not None:
                row.ended = time.monotonic()

    def summary(self, result: PipelineResult) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        self.stop()
        table = Table(title="Summary", title_justify="left", show_lines=False)
        table.add_column("job", no_wrap=True)
        table.add_column("stage", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("duration", justify="right", no_wrap=True)
        table.add_column("details", overflow="fold")
        for job in result.jobs:
            table.add_row(
                Text(job.name),
                Text(job.stage),
                Text(job.status, style=_STATUS_STYLE.get(job.status, "")),
                _duration(job.duration),
                Text("; ".join(_details(job))),
            )
        text, style = _verdict(result)
        self.console.print(Group(table, Text(text, style=style)))


# --------------------------------------------------------------------------- listing


def _print_list(pipeline: Pipeline) -> None:
    rows = pipeline.list_rows()
    header = ["name", "stage", "when", "allow_failure", "needs"]
    table = [header]
    for row in rows:
        allow = row["allow_failure"]
        table.append(
            [
                row["name"],
                row["stage"],
                row["when"],
                ",".join(map(str, allow)) if isinstance(allow, list) else str(allow).lower(),
                "" if row["needs"] is None else "[" + ", ".join(row["needs"]) + "]",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _print_preview(pipeline: Pipeline) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep the pipeline's order
    yaml.width = 4096
    yaml.dump(pipeline.preview(), sys.stdout)


# --------------------------------------------------------------------------- the command


@click.command("exec")
@click.argument("jobs", nargs=-1)
@click.option("--list", "list_jobs", is_flag=True, help="List the pipeline's jobs and exit.")
@click.option("--list-json", is_flag=True, help="List the pipeline's jobs as JSON and exit.")
@click.option("--preview", is_flag=True, help="Print the expanded configuration (YAML) and exit.")
@click.option(
    "--variable",
    "variables",
    multiple=True,
    metavar="KEY=VALUE",
    help="A pipeline variable (repeatable); it overrides the YAML's.",
)
@click.option(
    "--variables-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The project's CI/CD variables: YAML of NAME: value (gitlab-ci-local's format).",
)
@click.option(
    "--unset-variable", "unset", multiple=True, metavar="KEY", help="Remove a variable (repeatable)."
)
@click.option("--manual", multiple=True, metavar="JOB", help="Run this when: manual job (repeatable).")
@click.option(
    "--needs/--no-needs",
    default=False,
    help="With job names: also run what they need (or the earlier stages).  [default: no-needs]",
)
@click.option("--stage", default=None, help="Run only the jobs of this stage.")
@click.option("--file", "file", default=".gitlab-ci.yml", show_default=True, help="The pipeline file.")
@click.option(
    "--cwd",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The project directory.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs running at once.  [default: number of CPUs]",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A spec:inputs value, or COMPONENT:NAME=VALUE for one included component (repeatable).",
)
@click.option(
    "--inputs-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="spec:inputs values as YAML (NAME: value); --input overrides them.",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default=None,
    help="Where jobs run: shell (here) or kubernetes (a pod each, in the current kubeconfig context). "
    "[default: the --runner's executor, else shell]",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A config.toml whose [[runners]] entry jobs run with (its [runners.kubernetes], [runners.cache], "
    "output_limit...).",
)
@click.option(
    "--runner", "runner_name", default=None, help="The [[runners]] entry of --config to use, by name."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Builds, logs and cache.  [default: <project>/.kuberunner]",
)
@click.option("--no-color", is_flag=True, help="No colours (also when NO_COLOR is set).")
def exec_command(
    jobs: tuple[str, ...],
    list_jobs: bool,
    list_json: bool,
    preview: bool,
    variables: tuple[str, ...],
    variables_file: Path | None,
    unset: tuple[str, ...],
    manual: tuple[str, ...],
    needs: bool,
    stage: str | None,
    file: str,
    cwd: Path,
    concurrency: int | None,
    inputs: tuple[str, ...],
    inputs_file: Path | None,
    executor: str | None,
    config_path: Path | None,
    runner_name: str | None,
    state_dir: Path | None,
    no_color: bool,
) -> None:
    """Run the project's .gitlab-ci.yml here, as GitLab would, without GitLab.

    JOBS: run only these jobs (a name covers all its parallel instances); with
    --needs also what they need. Without JOBS or --stage: the whole pipeline.
    """
    cli_variables = _parse_pairs(variables, "--variable")
    project_variables: dict[str, PipelineVariable] = {}
    if variables_file:
        from kuberunner.pipeline import PipelineError, read_variables_file

        try:
            project_variables = read_variables_file(variables_file)
        except PipelineError as exc:
            _fail_pipeline(exc)
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--variables-file") from None
    if list_jobs or list_json or preview:
        from kuberunner.pipeline import PipelineError, load_pipeline

        try:
            pipeline = load_pipeline(
                cwd,
                file=file,
                variables=cli_variables,
                project_variables=project_variables,
                unset_variables=unset,
                inputs=list(inputs),
                inputs_file=inputs_file,
            )
        except PipelineError as exc:
            _fail_pipeline(exc)
            return
        if preview:
            _print_preview(pipeline)
        elif list_json:
            click.echo(json.dumps(pipeline.list_rows(), indent=2))
        else:
            _print_list(pipeline)
        return

    runner = _runner(config_path, runner_name, executor) if config_path or runner_name else None
    executor = executor or (runner.executor if runner is not None and runner.executor else "shell")
    try:
        check_executor(executor)
        if executor == "kubernetes":  # before anything starts: a cluster to talk to
            runner = kubernetes_runner(runner)
        # the state directory's lock, the helper and the copy of the sources start now, and go
        # on while the modules below load
        start = RunStart(cwd, state_dir=state_dir)
    except LocalRunError as exc:
        click.echo(f"ERROR: {exc}", err=True)
        sys.exit(1)
    # Loading the modules makes objects by the hundred thousand, none of them garbage: the
    # collector would only scan them again and again. It resumes once they are frozen (_run).
    gc.disable()
    try:
        result = _run(
            start,
            cwd=cwd,
            file=file,
            jobs=jobs,
            needs=needs,
            manual=manual,
            stage=stage,
            variables=cli_variables,
            project_variables=project_variables,
            unset=unset,
            inputs=inputs,
            inputs_file=inputs_file,
            concurrency=concurrency,
            executor=executor,
            runner=runner,
            no_color=no_color,
        )
    finally:
        gc.enable()
        start.close()  # the run ends it; this is for a run that never began
    if result is not None:
        sys.exit(result)


def _run(
    start: RunStart,
    *,
    cwd: Path,
    file: str,
    jobs: tuple[str, ...],
    needs: bool,
    manual: tuple[str, ...],
    stage: str | None,
    variables: dict[str, str],
    project_variables: dict[str, PipelineVariable],
    unset: tuple[str, ...],
    inputs: tuple[str, ...],
    inputs_file: Path | None,
    concurrency: int | None,
    executor: str,
    runner: RunnerConfig | None,
    no_color: bool,
) -> int | None:
    """Run the pipeline with its live or plain output; the exit status (None: already reported)."""
    from kuberunner.pipeline import PipelineError

    # the pipeline loads in the background (mostly waiting for git) while the rest is imported
    start.load(
        file=file,
        job_names=jobs,
        with_needs=needs,
        manual=manual,
        stage=stage,
        variables=variables,
        project_variables=project_variables,
        unset_variables=unset,
        inputs=inputs,
        inputs_file=inputs_file,
    )
    preload_modules()
    from kuberunner.executors.base import Cancellation

    color = not no_color and "NO_COLOR" not in os.environ
    live = sys.stdout.isatty()
    reporter: PlainReporter | TerminalReporter
    if live:
        from rich.console import Console

        reporter = TerminalReporter(Console(no_color=not color, highlight=False, soft_wrap=True))
    else:
        reporter = PlainReporter(sys.stdout)
    cancel = Cancellation()
    # What is loaded by now (modules, classes, schemas) lives as long as the process: the
    # garbage collector need not scan it again during the run or at exit, where a short
    # pipeline would otherwise spend a noticeable share of its time.
    gc.freeze()
    gc.enable()

    async def main() -> PipelineResult:
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            if cancel.requested:
                click.echo("Stopping the running jobs now.", err=True)
                cancel.abort("kuberunner exec was interrupted")
            else:
                click.echo(
                    "Canceling: running jobs run their after_script (interrupt again to kill them).", err=True
                )
                cancel.cancel("kuberunner exec was interrupted")

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupted)
        try:
            return await run_pipeline(
                cwd,
                file=file,
                job_names=jobs,
                with_needs=needs,
                manual=manual,
                stage=stage,
                variables=variables,
                project_variables=project_variables,
                unset_variables=unset,
                inputs=inputs,
                inputs_file=inputs_file,
                concurrency=concurrency,
                executor=executor,
                reporter=reporter,
                cancel=cancel,
                start=start,
                runner=runner,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    _watch_children_with_pidfds()
    try:
        result = asyncio.run(main())
    except PipelineError as exc:
        _stop(reporter)
        _fail_pipeline(exc)
        return None
    except LocalRunError as exc:
        _stop(reporter)
        click.echo(f"ERROR: {exc}", err=True)
        return 1
    reporter.summary(result)
    return result.exit_code


def _runner(config_path: Path | None, name: str | None, executor: str | None) -> RunnerConfig:
    """The ``[[runners]]`` entry of ``--config`` named ``name``; without a name, the only one (of
    ``executor`` when given). Exits with the file's problems, or the names to choose from."""
    from kuberunner.cli.common import resolve_config_path
    from kuberunner.config.load import ConfigError, load_config

    path = resolve_config_path(config_path)
    try:
        config = load_config(path).config
    except ConfigError as exc:
        click.echo(
            f"ERROR: {exc}\n  run `kuberunner config check -c {path}` for every problem and its fix", err=True
        )
        sys.exit(1)
    runners = [r for r in config.runners if name is None or r.name == name]
    if name is None and executor is not None and len(runners) > 1:
        runners = [r for r in runners if (r.executor or "shell") == executor]
    if len(runners) == 1:
        return runners[0]
    names = ", ".join(repr(r.name) for r in config.runners) or "none"
    if name is not None:
        why = f"{path} has no [[runners]] entry named {name!r} (its runners: {names})"
    elif runners:
        why = f"{path} has several [[runners]] entries ({names}): choose one with --runner NAME"
    else:
        why = f"{path} has no [[runners]] entry" + (f" with executor {executor!r}" if executor else "")
    click.echo(f"ERROR: {why}", err=True)
    sys.exit(1)


def _watch_children_with_pidfds() -> None:
    """Python 3.11 waits for each child process in a thread of its own; a pidfd (Linux 5.3+)
    lets the event loop do it, as Python 3.12 does by default. A pipeline starts dozens of
    processes, each stage being one."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel without pidfds: keep the threads
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def _stop(reporter: Any) -> None:
    if isinstance(reporter, TerminalReporter):
        reporter.stop()

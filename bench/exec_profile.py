"""Where the wall time of ``kuberunner exec`` goes, on the example pipeline: a timeline per job.

``bench/exec_vs_peer.py`` says how long the whole pipeline takes; this says where the time
goes. It runs ``examples/pipeline`` (a fresh committed copy, as exec_vs_peer.py does)
``--rounds`` times in this process through :func:`kuberunner.runner.local.run_pipeline`,
timing each job's log as it arrives, and prints medians over the rounds (milliseconds from
the run's start):

- ``start-up``: from the call until the first job starts (helper zygote, pipeline load,
  listing and copying the sources, artifact store);
- per job: when it started, how long each stage took (from its title line to the next
  stage's; ``prepare`` is the job's start until the first stage, i.e. making its directory),
  and when it ended;
- ``shut-down``: from the last job's end until the call returns.

It also times ``kuberunner exec`` as a separate process, ``--rounds`` times, for the total
that includes the interpreter's start and the imports, and says what of that is the
interpreter and the imports alone: a fresh interpreter importing what ``kuberunner exec``
imports before its first job can start (the CLI, :mod:`kuberunner.pipeline` and
:func:`~kuberunner.runner.local.preload_modules`), medians over ``--rounds``. Last, it
counts the ``git`` processes of one ``kuberunner exec`` (through a ``git`` on ``PATH`` that
notes its arguments, then runs the real one), by subcommand.

    python bench/exec_profile.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exec_vs_peer import kuberunner_command, workspace

from kuberunner.pipeline import Pipeline, PipelineJob, ScopedJobs
from kuberunner.runner.local import JobResult, Reporter, run_pipeline
from kuberunner.script import Stage, stage_title

_TITLES = {stage_title(stage): stage.value for stage in Stage}
_TITLES[stage_title("step_script")] = "step_script"


class _Timeline(Reporter):
    """Milliseconds since ``t0`` at which each job started, reached each stage, and ended."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.first_start: float | None = None
        self.last_end = 0.0
        self.marks: dict[str, list[tuple[str, float]]] = defaultdict(list)

    def _now(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def pipeline_started(self, pipeline: Pipeline, scoped: ScopedJobs) -> None:
        self.marks.clear()

    def job_started(self, job: PipelineJob, attempt: int, max_attempts: int) -> None:
        now = self._now()
        self.first_start = now if self.first_start is None else min(self.first_start, now)
        self.marks[job.name].append(("start", now))

    def job_line(self, job: PipelineJob, line: str) -> None:
        title = line.replace("\x1b[0K", "").replace("\x1b[36;1m", "").replace("\x1b[0;m", "").strip()
        stage = _TITLES.get(title)
        if stage is not None:
            self.marks[job.name].append((stage, self._now()))

    def job_finished(self, job: PipelineJob, result: JobResult) -> None:
        if result.duration is not None:
            now = self._now()
            self.marks[job.name].append(("end", now))
            self.last_end = max(self.last_end, now)


def _durations(marks: list[tuple[str, float]]) -> dict[str, float]:
    """Each stage's time (until the next mark), the job's preparation, start and end."""
    out = {"started at": marks[0][1], "ended at": marks[-1][1]}
    for (name, at), (_, until) in itertools.pairwise(marks):
        out["prepare" if name == "start" else name] = until - at
    return out


async def _one_round(project: Path) -> tuple[float, float, dict[str, dict[str, float]]]:
    t0 = time.perf_counter()
    timeline = _Timeline(t0)
    await run_pipeline(project, reporter=timeline)
    total = (time.perf_counter() - t0) * 1000
    jobs = {name: _durations(marks) for name, marks in timeline.marks.items() if len(marks) > 1}
    return timeline.first_start or 0.0, total - timeline.last_end, jobs


_EXEC_IMPORTS = (
    "import kuberunner.cli, kuberunner.cli.exec_cmd, kuberunner.pipeline\n"
    "from kuberunner.runner.local import preload_modules\n"
    "preload_modules()"
)


def _fresh_interpreter_ms(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - started) * 1000


def _subcommand(args: list[str]) -> str:
    """``rev-parse`` of ``git -c a=b -C dir rev-parse HEAD``."""
    rest = iter(args)
    for arg in rest:
        if arg in ("-c", "-C"):
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return "(none)"


def _git_processes(project: Path, tmp: Path) -> collections.Counter[str]:
    """How many ``git`` processes one ``kuberunner exec`` starts, by subcommand."""
    real = shutil.which("git")
    if real is None:
        return collections.Counter()
    shim_dir = tmp / "git-shim"
    shim_dir.mkdir()
    log = tmp / "git-calls.log"
    shim = shim_dir / "git"
    # one record per process (\036 ends it), its arguments each ended by \037
    shim.write_text(
        "#!/bin/sh\n"
        f"{{ printf '%s\\037' \"$@\"; printf '\\036'; }} >> {shlex.quote(str(log))}\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [*kuberunner_command(), "exec", "--no-color"], cwd=project, env=env, check=True, capture_output=True
    )
    records = log.read_text().split("\036")[:-1] if log.exists() else []
    return collections.Counter(_subcommand(record.split("\037")) for record in records)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="pipelines to time (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exec-profile-") as tmp:
        project = workspace(Path(tmp), "project")
        asyncio.run(_one_round(project))  # warm: the cache and the .pyc files exist from now on
        startups, shutdowns = [], []
        per_job: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for _ in range(args.rounds):
            startup, shutdown, jobs = asyncio.run(_one_round(project))
            startups.append(startup)
            shutdowns.append(shutdown)
            for name, values in jobs.items():
                for key, value in values.items():
                    per_job[name][key].append(value)
        walls = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            subprocess.run(
                [*kuberunner_command(), "exec", "--no-color"], cwd=project, check=True, capture_output=True
            )
            walls.append((time.perf_counter() - started) * 1000)
        bare = [_fresh_interpreter_ms("pass") for _ in range(args.rounds)]
        imports = [_fresh_interpreter_ms(_EXEC_IMPORTS) for _ in range(args.rounds)]
        git_calls = _git_processes(project, Path(tmp))
    print(f"medians of {args.rounds} rounds, milliseconds")
    print(f"kuberunner exec as a process: {statistics.median(walls):7.1f}")
    print(
        f"  of which a fresh interpreter {statistics.median(bare):.1f}, plus the imports before the "
        f"first job {statistics.median(imports) - statistics.median(bare):.1f}"
    )
    print(f"start-up (until the first job starts): {statistics.median(startups):7.1f}")
    for name, series in sorted(per_job.items(), key=lambda kv: statistics.median(kv[1]["started at"])):
        cells = [f"{key} {statistics.median(v):.1f}" for key, v in series.items()]
        print(f"  {name}: " + ", ".join(cells))
    print(f"shut-down (after the last job): {statistics.median(shutdowns):7.1f}")
    by_command = ", ".join(f"{name} {count}" for name, count in sorted(git_calls.items()))
    print(f"git processes in one kuberunner exec: {sum(git_calls.values())} ({by_command})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time of the example pipeline: ``kuberunner exec`` against ``gitlab-ci-local --shell-isolation``.

Both run ``examples/pipeline`` in their own fresh git repository (the example copied,
committed, with an ``origin`` remote), alternately, ``--rounds`` times in one go; each
round times one whole pipeline, from the command's start to its exit, caches warm after
the first round as in daily use. It prints every time and the ratio of the medians
(kuberunner / gitlab-ci-local; lower is better, the target is 0.5 or less).

gitlab-ci-local is optional: ``npm install -g gitlab-ci-local`` (it needs Node.js 22 or
newer and rsync). Without it only kuberunner's times are printed. Use
``--gcl "node22 /path/to/gitlab-ci-local/dist/index.js"`` to choose how to start it.

    python bench/exec_vs_peer.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipeline"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=bench@example.com", "-c", "user.name=Bench", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def workspace(root: Path, name: str) -> Path:
    """A fresh copy of the example as its own committed repository."""
    work = root / name
    shutil.copytree(
        EXAMPLE, work, ignore=shutil.ignore_patterns(".kuberunner", ".gitlab-ci-local", "dist", ".cache")
    )
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "bench")
    _git(work, "remote", "add", "origin", "git@gitlab.example.com:bench/wordfreq.git")
    _git(work, "update-ref", "refs/remotes/origin/main", "HEAD")
    _git(work, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return work


def kuberunner_command() -> list[str]:
    script = shutil.which("kuberunner")
    return [script] if script else [sys.executable, "-m", "kuberunner"]


def gcl_command(option: str | None) -> list[str] | None:
    """How to start gitlab-ci-local, or None (with the reason printed) when it cannot run here."""
    command = (
        shlex.split(option) if option else ([found] if (found := shutil.which("gitlab-ci-local")) else [])
    )
    if not command:
        print("gitlab-ci-local: not installed (npm install -g gitlab-ci-local); timing kuberunner only")
        return None
    probe = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"gitlab-ci-local: does not start ({why}); it needs Node.js 22+; timing kuberunner only")
        return None
    if shutil.which("rsync") is None:
        print(
            "gitlab-ci-local: --shell-isolation needs rsync, which is not installed; timing kuberunner only"
        )
        return None
    print(f"gitlab-ci-local {probe.stdout.strip()}: {' '.join(command)}")
    return command


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="pipelines per tool (default 5)")
    parser.add_argument("--gcl", default=None, help="command that starts gitlab-ci-local")
    args = parser.parse_args()
    gcl = gcl_command(args.gcl)
    cpus = os.cpu_count() or 1
    print(f"example: {EXAMPLE.relative_to(REPO)}; rounds: {args.rounds}; CPUs: {cpus}")
    with tempfile.TemporaryDirectory(prefix="exec-bench-") as tmp:
        ours = workspace(Path(tmp), "kuberunner")
        peer = workspace(Path(tmp), "gcl") if gcl else None
        kr_times: list[float] = []
        gcl_times: list[float] = []
        for round_ in range(1, args.rounds + 1):
            kr = timed([*kuberunner_command(), "exec", "--no-color"], ours)
            kr_times.append(kr)
            line = f"round {round_}: kuberunner exec {kr:6.3f}s"
            if gcl and peer:
                # same parallelism as kuberunner's default (one job per CPU)
                peer_time = timed([*gcl, "--shell-isolation", "--no-color", "--concurrency", str(cpus)], peer)
                gcl_times.append(peer_time)
                line += f"   gitlab-ci-local {peer_time:6.3f}s   ratio {kr / peer_time:.2f}"
            print(line, flush=True)
    kr_median = statistics.median(kr_times)
    print(f"kuberunner exec: median {kr_median:.3f}s, min {min(kr_times):.3f}s")
    if gcl_times:
        gcl_median = statistics.median(gcl_times)
        print(f"gitlab-ci-local: median {gcl_median:.3f}s, min {min(gcl_times):.3f}s")
        print(f"ratio kuberunner/gitlab-ci-local (medians): {kr_median / gcl_median:.2f} (target <= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

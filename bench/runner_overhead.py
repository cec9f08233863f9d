"""How much the runner itself costs per job: CPU time and peak memory.

Runs N short jobs (shell executor) from the GitLab double through the same
Service that `kuberunner run` uses. The double lives in another process, so
the figures are the runner's own: CPU time of this process (the job scripts
are child processes and are counted separately) and its peak RSS.

    python bench/runner_overhead.py [--jobs 200] [--concurrent 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def serve_double(conn: Connection, jobs: int) -> None:
    from tests.doubles.gitlab import GitLabDouble

    with GitLabDouble(long_poll_timeout=0.2) as gitlab:
        token = gitlab.create_runner().token
        handles = [
            gitlab.enqueue(
                script=[f"echo job {i}", "echo some output line"],
                variables={"GIT_STRATEGY": "none"},
                trace_update_interval="0.5",
            )
            for i in range(jobs)
        ]
        conn.send((gitlab.url, token))
        for handle in handles:
            handle.wait_finished(600)
        conn.send([h.status for h in handles])
        conn.recv()  # wait until the runner side is done reading


async def run_runner(url: str, token: str, jobs: int, concurrent: int, workdir: Path) -> float:
    from kuberunner.config.schema import Config
    from kuberunner.runner.factory import service_hooks
    from kuberunner.runner.service import Service

    config = Config.model_validate(
        {
            "concurrent": concurrent,
            "check_interval": 1,
            "runners": [
                {
                    "name": "bench",
                    "url": url,
                    "token": token,
                    "executor": "shell",
                    "builds_dir": str(workdir / "builds"),
                    "cache_dir": str(workdir / "cache"),
                }
            ],
        }
    )
    service = Service(None, service_hooks(), system_id="s_benchbench01", config=config, max_builds=jobs)
    start = time.perf_counter()
    await service.run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=10)
    args = parser.parse_args()

    parent, child = mp.Pipe()
    double = mp.Process(target=serve_double, args=(child, args.jobs), daemon=True)
    double.start()
    url, token = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = asyncio.run(run_runner(url, token, args.jobs, args.concurrent, Path(tmp)))
        after = resource.getrusage(resource.RUSAGE_SELF)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    statuses = parent.recv()
    parent.send("done")
    double.join(10)

    runner_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    script_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    ok = statuses.count("success")
    print(f"jobs:                      {args.jobs} ({ok} succeeded), concurrent = {args.concurrent}")
    print(f"wall time:                 {wall:.2f} s ({args.jobs / wall:.1f} jobs/s)")
    print(f"runner CPU per job:        {runner_cpu / args.jobs * 1000:.1f} ms")
    print(f"job scripts CPU per job:   {script_cpu / args.jobs * 1000:.1f} ms (child processes)")
    print(f"runner / scripts CPU:      {runner_cpu / script_cpu:.2f}" if script_cpu else "")
    print(f"runner peak RSS:           {after.ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()

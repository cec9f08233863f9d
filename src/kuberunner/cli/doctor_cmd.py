"""``kuberunner doctor``: find every setup problem before a job does."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.text import Text

from kuberunner.cli.common import config_option, format_option, resolve_config_path
from kuberunner.doctor import UnknownRunner, diagnose, render_json, render_text
from kuberunner.doctor.render import STYLES

__all__ = ["doctor", "emit", "run_cancellable"]

T = TypeVar("T")


def emit(lines: Sequence[tuple[str, str | None]]) -> None:
    """Colour on a terminal, plain text otherwise (pipes, files, tests)."""
    if sys.stdout.isatty():
        console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        for text, style in lines:
            console.print(Text(text, style=STYLES.get(style or "", "")))
        return
    for text, _style in lines:
        click.echo(text)


def run_cancellable(work: Awaitable[T], *, command: str = "kuberunner doctor") -> T:
    """Run ``work``; Ctrl-C and SIGTERM cancel it, so its ``finally`` blocks (probe cleanup) run."""

    async def main() -> T:
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await task
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo(f"{command}: interrupted", err=True)
        raise SystemExit(130) from None


@click.command("doctor")
@config_option
@click.option(
    "--runner", "runner_name", default=None, metavar="NAME", help="check only this [[runners]] entry"
)
@click.option(
    "--probe",
    is_flag=True,
    help="start a short-lived job pod (real images, real spec, one-line scripts) and delete it",
)
@format_option
def doctor(config_path: Path | None, runner_name: str | None, probe: bool, output_format: str) -> None:
    """Check everything a job needs, in the order it needs it, and print the fix for each problem.

    Kubernetes: API address, TLS trust, credentials, token, namespace, every
    permission the runner uses, and the job pod (a server-side dry run, or with
    --probe a real pod that pulls the images and starts). GitLab: url, TLS,
    runner token. config.toml: settings that contradict each other. Exits 1 if
    any check fails; warnings do not fail.
    """
    path = resolve_config_path(config_path)
    try:
        report = run_cancellable(diagnose(path, runner_name=runner_name, probe=probe))
    except UnknownRunner as exc:
        raise click.UsageError(str(exc)) from None
    if output_format == "json":
        click.echo(render_json(report))
    else:
        emit(render_text(report))
    raise SystemExit(0 if report.ok else 1)

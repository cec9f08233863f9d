"""``kuberunner config check`` and ``kuberunner config show``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from kuberunner.cli.common import config_option, format_option, resolve_config_path
from kuberunner.config.check import STYLES, check_files, render_json, render_text
from kuberunner.config.load import ConfigError, load_config
from kuberunner.config.show import render_effective

__all__ = ["config"]


def _emit(lines: Sequence[tuple[str, str | None]], *, err: bool = False) -> None:
    """Colour on a terminal, plain text otherwise (pipes, files, tests)."""
    stream = sys.stderr if err else sys.stdout
    if stream.isatty():
        console = Console(file=stream, highlight=False, soft_wrap=True)
        for text, style in lines:
            console.print(Text(text, style=STYLES.get(style or "", "")))
        return
    for text, _style in lines:
        click.echo(text, err=err)


@click.group("config")
def config() -> None:
    """Check or print config.toml (gitlab-runner's file, read unchanged)."""


@config.command("check")
@config_option
@format_option
@click.argument("files", nargs=-1, type=click.Path(dir_okay=True, path_type=Path))
def check(config_path: Path | None, output_format: str, files: tuple[Path, ...]) -> None:
    """Report every problem in config.toml at once, each with its fix.

    Checks FILES if given, otherwise the --config file. Exits 1 if there is
    any error; warnings and keys that are not supported yet do not fail.
    """
    paths = list(files) or [resolve_config_path(config_path)]
    reports = check_files(paths)
    if output_format == "json":
        click.echo(render_json(reports))
    else:
        _emit(render_text(reports))
    if not all(r.ok for r in reports):
        raise SystemExit(1)


@config.command("show")
@config_option
def show(config_path: Path | None) -> None:
    """Print the effective configuration as TOML: defaults filled in, secrets redacted."""
    path = resolve_config_path(config_path)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        lines: list[tuple[str, str | None]] = []
        for problem in exc.problems:
            if problem.severity != "error":
                continue
            head, _, fix = problem.render().partition("\n")
            lines.append((head, "error"))
            if fix:
                lines.append((fix, "fix"))
        lines.append(
            (
                f"{path}: cannot show a configuration with errors; "
                "`kuberunner config check` lists everything",
                "summary",
            )
        )
        _emit(lines, err=True)
        raise SystemExit(1) from None
    click.echo(render_effective(loaded), nl=False)
    others = sum(1 for p in loaded.problems if p.severity == "warning")
    if others:
        _emit(
            [(f"{path}: {others} warning(s); run `kuberunner config check` for details", "warning")], err=True
        )

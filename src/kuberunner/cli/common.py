"""Options shared by several commands, in gitlab-runner's style."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def default_config_path() -> Path:
    """gitlab-runner's default: /etc/gitlab-runner as root, ~/.gitlab-runner otherwise."""
    if os.geteuid() == 0:
        return Path("/etc/gitlab-runner/config.toml")
    return Path.home() / ".gitlab-runner" / "config.toml"


def config_option(f: F) -> F:
    """``--config/-c PATH`` (env ``CONFIG_FILE``), defaulting as gitlab-runner does."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="CONFIG_FILE",
        default=None,
        show_envvar=True,
        help="config.toml to use [default: /etc/gitlab-runner/config.toml as root, "
        "~/.gitlab-runner/config.toml otherwise]",
    )(f)


def resolve_config_path(config_path: Path | None) -> Path:
    return config_path if config_path is not None else default_config_path()


def format_option(f: F) -> F:
    """``--format text|json``: text for people, JSON for scripts."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for scripts",
    )(f)

"""The ``kuberunner`` command line: the only synchronous edge of the program.

Each command lives in its own module and is imported only when it runs (or
when ``--help`` lists them): ``kuberunner exec`` must not pay for the
Kubernetes client's import. Only commands that work are registered.
"""

from __future__ import annotations

import importlib

import click

from kuberunner import __version__

__all__ = ["main"]

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "config": "kuberunner.cli.config_cmd:config",
    "doctor": "kuberunner.cli.doctor_cmd:doctor",
    "exec": "kuberunner.cli.exec_cmd:exec_command",
    "list": "kuberunner.cli.runner_cmd:list_runners",
    "rbac": "kuberunner.cli.rbac_cmd:rbac",
    "register": "kuberunner.cli.runner_cmd:register",
    "run": "kuberunner.cli.runner_cmd:run",
    "run-single": "kuberunner.cli.runner_cmd:run_single",
    "unregister": "kuberunner.cli.runner_cmd:unregister",
    "verify": "kuberunner.cli.runner_cmd:verify",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kuberunner")
def main() -> None:
    """A GitLab CI runner for Kubernetes (drop-in for gitlab-runner's config.toml)."""

"""The ``kuberunner`` command line: the only synchronous edge of the program.

Each command group lives in its own module and is registered here; only
commands that work are registered.
"""

from __future__ import annotations

import click

from kuberunner import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kuberunner")
def main() -> None:
    """A GitLab CI runner for Kubernetes (drop-in for gitlab-runner's config.toml)."""


# Command registration: one line per command module.
from kuberunner.cli import config_cmd  # noqa: E402

main.add_command(config_cmd.config)

from kuberunner.cli import runner_cmd  # noqa: E402

for _command in (
    runner_cmd.register,
    runner_cmd.verify,
    runner_cmd.unregister,
    runner_cmd.list_runners,
    runner_cmd.run,
    runner_cmd.run_single,
):
    main.add_command(_command)

from kuberunner.cli import doctor_cmd, exec_cmd, rbac_cmd  # noqa: E402

main.add_command(exec_cmd.exec_command)
main.add_command(doctor_cmd.doctor)
main.add_command(rbac_cmd.rbac)

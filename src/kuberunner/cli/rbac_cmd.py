"""``kuberunner rbac``: the runner's Kubernetes account, exactly: printed, or applied and configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kuberunner.cli.common import config_option, resolve_config_path
from kuberunner.cli.doctor_cmd import run_cancellable
from kuberunner.config.load import ConfigError, LoadedConfig, load_config
from kuberunner.config.schema import KubernetesConfig, RunnerConfig, parse_duration
from kuberunner.kube.errors import KubeError
from kuberunner.rbac import (
    AccountPlan,
    admin_client,
    apply_account,
    kubeconfig_path,
    plan_for,
    render_snippet,
    render_yaml,
    snippet_values,
    write_ca,
    write_snippet,
)

__all__ = ["rbac"]


def _note(text: str) -> None:
    click.echo(text, err=True)


def _select(
    loaded: LoadedConfig | None, runner_name: str | None, *, required: bool
) -> tuple[int, RunnerConfig] | None:
    """The runner whose settings to use (and, with --write, to change)."""
    if loaded is None or not loaded.readable:
        if required:
            raise click.UsageError("--write needs a readable config.toml (-c PATH)")
        return None
    runners = list(enumerate(loaded.config.runners))
    if runner_name is not None:
        named = [(i, r) for i, r in runners if r.name == runner_name]
        if not named:
            names = ", ".join(f'"{r.name}"' for _, r in runners) or "none"
            raise click.UsageError(f'no runner named "{runner_name}" in {loaded.path} (runners: {names})')
        return named[0]
    kube = [(i, r) for i, r in runners if r.executor == "kubernetes" or r.kubernetes is not None]
    if len(kube) > 1 and required:
        names = ", ".join(f'"{r.name}"' for _, r in kube)
        raise click.UsageError(f"several runners use Kubernetes ({names}): choose one with --runner NAME")
    if not kube:
        if required:
            raise click.UsageError(f"no runner in {loaded.path} uses the kubernetes executor")
        return None
    return kube[0]


async def _apply(
    plan: AccountPlan,
    config_path: Path,
    *,
    kubeconfig: Path,
    context: str | None,
    token_timeout: float,
    token_duration: int,
) -> tuple[dict[str, Any], str]:
    client, connection = await admin_client(plan, kubeconfig=kubeconfig, context=context)
    try:
        _note(f"applying to {connection.host} with kubeconfig {kubeconfig}")
        issued, secret_ca = await apply_account(
            client, plan, token_timeout=token_timeout, token_duration=token_duration, progress=_note
        )
    finally:
        await client.close()
    ca_pem = connection.ca_pem or secret_ca
    ca_file = str(write_ca(config_path, plan.namespace, ca_pem)) if ca_pem else ""
    if ca_file:
        _note(f"wrote the cluster CA to {ca_file}")
    values = snippet_values(plan, host=connection.host, ca_file=ca_file, token=issued.token)
    return values, issued.source


@click.command("rbac")
@config_option
@click.option("--runner", "runner_name", default=None, metavar="NAME", help="the [[runners]] entry to use")
@click.option(
    "--namespace", default=None, help="namespace for jobs [default: config.toml's, else kuberunner]"
)
@click.option(
    "--service-account",
    default=None,
    help="the runner's account [default: config.toml's service_account, else kuberunner]",
)
@click.option(
    "--apply", "do_apply", is_flag=True, help="apply with your kubeconfig, then print the config snippet"
)
@click.option(
    "--write", is_flag=True, help="with --apply: write the snippet into config.toml (comments kept)"
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="administrator's kubeconfig for --apply [default: KUBECONFIG, else ~/.kube/config]",
)
@click.option("--context", default=None, help="kubeconfig context for --apply [default: the current one]")
@click.option(
    "--token-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="seconds to wait for the token controller to fill the token Secret",
)
@click.option(
    "--token-duration",
    default="8760h",
    show_default=True,
    help="lifetime of a TokenRequest token, used only when the Secret gets no token",
)
def rbac(
    config_path: Path | None,
    runner_name: str | None,
    namespace: str | None,
    service_account: str | None,
    do_apply: bool,
    write: bool,
    kubeconfig: Path | None,
    context: str | None,
    token_timeout: float,
    token_duration: str,
) -> None:
    """Print the Namespace, ServiceAccount, Role, RoleBinding and token Secret the runner needs.

    The Role grants exactly the verbs and resources kuberunner's calls use. With
    --apply they are applied (server-side) with your kubeconfig and the
    [runners.kubernetes] snippet for the new account is printed; with --write
    it goes straight into config.toml. The token is printed only in that snippet.
    """
    if write and not do_apply:
        raise click.UsageError("--write needs --apply: the token comes from the cluster")
    try:
        duration = int(parse_duration(token_duration))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token-duration") from None
    path = resolve_config_path(config_path)
    loaded = load_config(path, strict=False) if path.exists() else None
    selected = _select(loaded, runner_name, required=write)
    cfg: KubernetesConfig | None = selected[1].kubernetes if selected else None
    plan = plan_for(cfg, namespace=namespace, service_account=service_account)
    if not do_apply:
        click.echo(render_yaml(plan), nl=False)
        _note("apply it with `kubectl apply -f -`, or run `kuberunner rbac --apply` to apply and configure")
        return
    try:
        values, source = run_cancellable(
            _apply(
                plan,
                path,
                kubeconfig=kubeconfig or kubeconfig_path(),
                context=context,
                token_timeout=token_timeout,
                token_duration=duration,
            ),
            command="kuberunner rbac",
        )
    except (KubeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    _note(f"token: {source}")
    if write:
        assert selected is not None
        try:
            write_snippet(path, selected[0], values)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        keys = ", ".join(values)
        click.echo(f'{path}: [[runners]] "{selected[1].name}" updated ({keys}).')
        click.echo(f"Next: kuberunner doctor -c {path} --probe")
        return
    _note("paste this into the runner's [[runners]] entry (it holds the token: keep it secret):")
    click.echo(render_snippet(values), nl=False)
    _note(f"then: kuberunner doctor -c {path} --probe")

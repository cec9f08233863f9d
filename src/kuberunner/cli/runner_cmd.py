"""gitlab-runner's runner commands: register, verify, unregister, list, run, run-single."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from kuberunner.cli.common import config_option, resolve_config_path
from kuberunner.config.load import ConfigError, load_config
from kuberunner.config.schema import Config, RunnerConfig
from kuberunner.config.write import add_runner, remove_runner
from kuberunner.gitlab import GitLabClient, GitLabError
from kuberunner.runner.factory import service_hooks
from kuberunner.runner.metrics import Metrics, MetricsServer
from kuberunner.runner.service import Service
from kuberunner.runner.system_id import load_or_create_system_id
from kuberunner.util.logs import SECRETS, configure_logging

__all__ = ["list_runners", "register", "run", "run_single", "unregister", "verify"]

EXECUTORS = ("kubernetes", "shell")


def _fail(message: str) -> None:
    click.echo(f"ERROR: {message}", err=True)
    sys.exit(1)


def _load(path: Path) -> Config:
    try:
        return load_config(path).config
    except ConfigError as exc:
        _fail(f"{exc}\n  run `kuberunner config check -c {path}` for every problem and its fix")
        raise  # unreachable; keeps mypy's flow analysis honest


def _interactive(non_interactive: bool) -> bool:
    return not non_interactive and sys.stdin.isatty()


# ---------------------------------------------------------------------- register


@click.command("register")
@config_option
@click.option("--non-interactive", "-n", is_flag=True, envvar="REGISTER_NON_INTERACTIVE", help="never prompt")
@click.option("--url", "-u", envvar="CI_SERVER_URL", default="", help="GitLab instance URL")
@click.option(
    "--token", "-t", envvar="CI_SERVER_TOKEN", default="", help="runner authentication token (glrt-...)"
)
@click.option(
    "--registration-token",
    "-r",
    envvar="REGISTRATION_TOKEN",
    default="",
    help="legacy registration token (deprecated by GitLab)",
)
@click.option("--name", "--description", "name", envvar="RUNNER_NAME", default="", help="runner name")
@click.option("--executor", envvar="RUNNER_EXECUTOR", default="", help="kubernetes or shell")
@click.option(
    "--tag-list", envvar="RUNNER_TAG_LIST", default="", help="comma-separated tags (legacy registration)"
)
@click.option("--run-untagged/--no-run-untagged", envvar="REGISTER_RUN_UNTAGGED", default=None)
@click.option("--locked/--no-locked", envvar="REGISTER_LOCKED", default=True)
@click.option("--paused", envvar="REGISTER_PAUSED", is_flag=True, default=False)
@click.option(
    "--access-level",
    envvar="REGISTER_ACCESS_LEVEL",
    default="not_protected",
    type=click.Choice(["not_protected", "ref_protected"]),
)
@click.option("--maximum-timeout", envvar="REGISTER_MAXIMUM_TIMEOUT", type=int, default=0)
@click.option("--tls-ca-file", envvar="CI_SERVER_TLS_CA_FILE", default="")
@click.option("--limit", envvar="RUNNER_LIMIT", type=int, default=0)
@click.option("--output-limit", envvar="RUNNER_OUTPUT_LIMIT", type=int, default=0)
@click.option("--builds-dir", envvar="RUNNER_BUILDS_DIR", default="")
@click.option("--cache-dir", envvar="RUNNER_CACHE_DIR", default="")
@click.option("--shell", envvar="RUNNER_SHELL", default="")
@click.option("--env", "env", envvar="RUNNER_ENV", multiple=True, help="KEY=value for every job (repeatable)")
@click.option("--kubernetes-host", envvar="KUBERNETES_HOST", default="")
@click.option("--kubernetes-namespace", envvar="KUBERNETES_NAMESPACE", default="")
@click.option("--kubernetes-ca-file", envvar="KUBERNETES_CA_FILE", default="")
@click.option(
    "--kubernetes-bearer_token",
    "--kubernetes-bearer-token",
    "kubernetes_bearer_token",
    envvar="KUBERNETES_BEARER_TOKEN",
    default="",
)
@click.option("--kubernetes-service-account", envvar="KUBERNETES_SERVICE_ACCOUNT", default="")
@click.option("--kubernetes-image", envvar="KUBERNETES_IMAGE", default="")
@click.option("--kubernetes-helper-image", envvar="KUBERNETES_HELPER_IMAGE", default="")
@click.option(
    "--kubernetes-privileged/--no-kubernetes-privileged", envvar="KUBERNETES_PRIVILEGED", default=None
)
def register(config_path: Path | None, non_interactive: bool, **opts: Any) -> None:
    """Register a runner with GitLab and add it to config.toml (comments kept, mode 0600)."""
    path = resolve_config_path(config_path)
    ask = _interactive(non_interactive)
    url = opts["url"] or (click.prompt("GitLab instance URL (e.g. https://gitlab.com/)") if ask else "")
    if not url:
        _fail("--url is required (or CI_SERVER_URL)")
    token, reg_token = opts["token"], opts["registration_token"]
    if not token and not reg_token:
        token = click.prompt("Runner authentication token (glrt-...)", hide_input=True) if ask else ""
    if not token and not reg_token:
        _fail("--token (a glrt- runner authentication token from GitLab) is required")
    name = opts["name"] or (
        click.prompt("Runner name", default=os.uname().nodename) if ask else os.uname().nodename
    )
    executor = opts["executor"] or (
        click.prompt("Executor", type=click.Choice(EXECUTORS), default="kubernetes") if ask else ""
    )
    if executor not in EXECUTORS:
        _fail(f"--executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")
    SECRETS.add(token, reg_token, opts["kubernetes_bearer_token"])
    system_id = load_or_create_system_id(path)

    async def contact() -> tuple[int, str, str | None]:
        async with GitLabClient(url, tls_ca_file=opts["tls_ca_file"] or None) as client:
            if token:
                runner = await client.verify_runner(token, system_id)
                if runner is None:
                    raise GitLabError(
                        "GitLab does not know this runner token (403): copy it again from "
                        "GitLab > Settings > CI/CD > Runners"
                    )
                return runner.id, token, runner.token_expires_at
            tags = [t.strip() for t in opts["tag_list"].split(",") if t.strip()]
            run_untagged = opts["run_untagged"] if opts["run_untagged"] is not None else not tags
            runner = await client.register_runner(
                reg_token,
                description=name,
                tags=tags,
                run_untagged=run_untagged,
                locked=opts["locked"],
                access_level=opts["access_level"],
                maximum_timeout=opts["maximum_timeout"] or None,
                paused=opts["paused"],
            )
            return runner.id, runner.token, runner.token_expires_at

    try:
        runner_id, runner_token, expires = asyncio.run(contact())
    except GitLabError as exc:
        _fail(f"registering with {url} failed: {exc}")
        return
    SECRETS.add(runner_token)
    table: dict[str, Any] = {
        "name": name,
        "url": url,
        "id": runner_id,
        "token": runner_token,
        "executor": executor,
    }
    if expires:
        table["token_expires_at"] = str(expires)
    for key, opt in (
        ("tls-ca-file", "tls_ca_file"),
        ("builds_dir", "builds_dir"),
        ("cache_dir", "cache_dir"),
        ("shell", "shell"),
    ):
        if opts[opt]:
            table[key] = opts[opt]
    for key, opt in (("limit", "limit"), ("output_limit", "output_limit")):
        if opts[opt]:
            table[key] = opts[opt]
    if opts["env"]:
        table["environment"] = list(opts["env"])
    if executor == "kubernetes":
        kube: dict[str, Any] = {}
        for key in (
            "host",
            "namespace",
            "ca_file",
            "bearer_token",
            "service_account",
            "image",
            "helper_image",
        ):
            if opts[f"kubernetes_{key}"]:
                kube[key] = opts[f"kubernetes_{key}"]
        if opts["kubernetes_privileged"] is not None:
            kube["privileged"] = opts["kubernetes_privileged"]
        table["kubernetes"] = kube
    try:
        add_runner(path, table)
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(f'Runner "{name}" registered (id {runner_id}) and saved in {path}.')
    click.echo(f"Next: `kuberunner config check -c {path}`, then `kuberunner run -c {path}`.")


# ---------------------------------------------------------------------- verify / unregister / list


@click.command("verify")
@config_option
@click.option("--delete", is_flag=True, help="remove runners GitLab no longer knows from config.toml")
@click.option("--name", "-n", default="", help="only this runner")
def verify(config_path: Path | None, delete: bool, name: str) -> None:
    """Check with GitLab that every runner's token is still valid."""
    path = resolve_config_path(config_path)
    config = _load(path)
    system_id = load_or_create_system_id(path)
    runners = [r for r in config.runners if not name or r.name == name]
    if name and not runners:
        _fail(f'no runner named "{name}" in {path}')

    async def check(runner: RunnerConfig) -> bool | str:
        try:
            async with GitLabClient(runner.url, tls_ca_file=runner.tls_ca_file or None) as client:
                return await client.verify_runner(runner.token, system_id) is not None
        except GitLabError as exc:
            return str(exc)

    gone: list[str] = []
    failed = False
    for runner in runners:
        SECRETS.add(runner.token)
        result = asyncio.run(check(runner))
        if result is True:
            click.echo(f'Verifying runner... is valid  runner="{runner.name}" token={runner.short_token}')
        elif result is False:
            click.echo(f'Verifying runner... is removed  runner="{runner.name}" token={runner.short_token}')
            gone.append(runner.name)
        else:
            failed = True
            click.echo(f'Verifying runner... failed  runner="{runner.name}": {result}', err=True)
    if delete:
        for runner_name in gone:
            remove_runner(path, runner_name)
            click.echo(f'Removed runner "{runner_name}" from {path}')
    if failed or (gone and not delete):
        sys.exit(1)


@click.command("unregister")
@config_option
@click.option("--name", "-n", default="", help="the runner to unregister")
@click.option("--all-runners", is_flag=True, help="unregister every runner in config.toml")
def unregister(config_path: Path | None, name: str, all_runners: bool) -> None:
    """Remove runners from GitLab and from config.toml."""
    if not name and not all_runners:
        _fail("say which runner: --name NAME, or --all-runners")
    path = resolve_config_path(config_path)
    config = _load(path)
    system_id = load_or_create_system_id(path)
    runners = [r for r in config.runners if all_runners or r.name == name]
    if not runners:
        known = ", ".join(f'"{r.name}"' for r in config.runners) or "none"
        _fail(f'no runner named "{name}" in {path} (runners: {known})')

    async def remove(runner: RunnerConfig) -> bool:
        async with GitLabClient(runner.url, tls_ca_file=runner.tls_ca_file or None) as client:
            if runner.token.startswith("glrt-"):
                return await client.unregister_manager(runner.token, system_id)
            return await client.unregister_runner(runner.token)

    failed = False
    for runner in runners:
        SECRETS.add(runner.token)
        try:
            was_known = asyncio.run(remove(runner))
        except GitLabError as exc:
            click.echo(f'ERROR: unregistering "{runner.name}" failed: {exc}; it stays in {path}', err=True)
            failed = True
            continue
        remove_runner(path, runner.name)
        state = "unregistered" if was_known else "was not known to GitLab any more; removed"
        click.echo(f'Runner "{runner.name}" {state}.')
    if failed:
        sys.exit(1)


@click.command("list")
@config_option
def list_runners(config_path: Path | None) -> None:
    """List the runners in config.toml (tokens shortened)."""
    path = resolve_config_path(config_path)
    config = _load(path)
    click.echo(f"Listing configured runners  ConfigFile={path}")
    for runner in config.runners:
        click.echo(
            f"{runner.name:<20} Executor={runner.executor} Token={runner.short_token} URL={runner.url}"
        )


# ---------------------------------------------------------------------- run / run-single


def _serve(service: Service, config: Config | None, listen_address: str) -> None:
    """Run the service with gitlab-runner's signals: TERM/QUIT graceful, INT twice = now."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        interrupts = 0

        def graceful() -> None:
            service.stop()

        def interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            service.stop(force=interrupts > 1)

        for sig in (signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(sig, graceful)
        loop.add_signal_handler(signal.SIGINT, interrupt)
        server = None
        address = listen_address or (config.listen_address if config else "")
        if address:
            server = MetricsServer(service.metrics, address, service.health)
            server.start()
        try:
            await service.run()
        finally:
            if server:
                server.stop()

    asyncio.run(main())


@click.command("run")
@config_option
@click.option("--listen-address", default="", help="serve /metrics and /health here (overrides config.toml)")
def run(config_path: Path | None, listen_address: str) -> None:
    """Run every runner in config.toml: take jobs, run them, report them."""
    path = resolve_config_path(config_path)
    config = _load(path)
    configure_logging(config.log_level, config.log_format)
    for runner in config.runners:
        SECRETS.add(runner.token)
    system_id = load_or_create_system_id(path)
    service = Service(path, service_hooks(system_id), system_id=system_id, metrics=Metrics())
    _serve(service, config, listen_address)


@click.command("run-single")
@click.option("--url", "-u", envvar="CI_SERVER_URL", required=True)
@click.option("--token", "-t", envvar="CI_SERVER_TOKEN", required=True, help="runner authentication token")
@click.option("--name", envvar="RUNNER_NAME", default="single")
@click.option("--executor", envvar="RUNNER_EXECUTOR", default="shell", type=click.Choice(EXECUTORS))
@click.option("--builds-dir", envvar="RUNNER_BUILDS_DIR", default="")
@click.option("--cache-dir", envvar="RUNNER_CACHE_DIR", default="")
@click.option("--max-builds", type=int, default=0, help="stop after this many jobs (0 = never)")
@click.option(
    "--wait-timeout", type=float, default=0.0, help="stop if no job arrives within this many seconds"
)
@click.option("--output-limit", type=int, default=4096, help="job log limit in KiB")
@click.option("--log-format", type=click.Choice(["runner", "text", "json"]), default="runner")
@click.option("--listen-address", default="")
@click.option(
    "--system-id-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where .runner_system_id is kept [default: ~/.gitlab-runner]",
)
def run_single(**opts: Any) -> None:
    """Run one runner from flags, without config.toml."""
    configure_logging("info", opts["log_format"])
    SECRETS.add(opts["token"])
    table: dict[str, Any] = {
        "name": opts["name"],
        "url": opts["url"],
        "token": opts["token"],
        "executor": opts["executor"],
        "output_limit": opts["output_limit"],
    }
    if opts["builds_dir"]:
        table["builds_dir"] = opts["builds_dir"]
    if opts["cache_dir"]:
        table["cache_dir"] = opts["cache_dir"]
    try:
        config = Config.model_validate({"concurrent": 1, "runners": [table]})
    except ValueError as exc:
        _fail(f"invalid flags: {exc}")
        return
    id_dir = opts["system_id_dir"] or Path.home() / ".gitlab-runner"
    system_id = load_or_create_system_id(id_dir / "config.toml")
    service = Service(
        None,
        service_hooks(system_id),
        system_id=system_id,
        config=config,
        max_builds=opts["max_builds"],
        wait_timeout=opts["wait_timeout"],
    )
    _serve(service, config, opts["listen_address"])

"""From a ``[[runners]]`` entry to an executor and a Build: the seam the service uses."""

from __future__ import annotations

from pathlib import Path

from kuberunner.build import Build, BuildConfigError, CachePresigner
from kuberunner.config.load import load_config
from kuberunner.config.schema import Config, RunnerConfig
from kuberunner.executors.base import BuildError, Executor
from kuberunner.executors.kubernetes import KubernetesExecutor
from kuberunner.executors.shell import ShellExecutor
from kuberunner.helper import s3
from kuberunner.job import JobPayload
from kuberunner.runner.service import ServiceHooks

__all__ = ["cache_presigner", "make_build", "make_executor", "service_hooks"]

PRESIGN_EXPIRY = 3600


def service_hooks(system_id: str = "") -> ServiceHooks:
    """The service's seams; ``system_id`` labels pods so orphans can be told from others' pods."""

    def executor_for(runner: RunnerConfig) -> Executor:
        return make_executor(runner, system_id=system_id)

    async def sweep(runner: RunnerConfig) -> list[str]:
        if (runner.executor or "shell") != "kubernetes" or not system_id:
            return []
        executor = make_executor(runner, system_id=system_id)
        assert isinstance(executor, KubernetesExecutor)
        return await executor.remove_orphans(runner)

    return ServiceHooks(load_config=_load, make_executor=executor_for, make_build=make_build, sweep=sweep)


def _load(path: Path) -> Config:
    return load_config(path).config


def make_executor(runner: RunnerConfig, *, system_id: str = "") -> Executor:
    """The executor of a ``[[runners]]`` entry; ``system_id`` lets kubernetes remove its orphans."""
    executor = runner.executor or "shell"
    if executor == "shell":
        return ShellExecutor(shell=runner.shell or None)
    if executor == "kubernetes":
        from kuberunner.doctor.explain import explain

        return KubernetesExecutor(system_id=system_id, explain=explain)
    raise BuildError(
        f'executor "{executor}" is not supported by kuberunner: use "kubernetes" or "shell" in [[runners]]',
        "runner_configuration_error",
    )


def make_build(runner: RunnerConfig, job: JobPayload, concurrent_id: int) -> Build:
    try:
        return Build.create(job, runner, concurrent_id=concurrent_id, cache_presigner=cache_presigner(runner))
    except BuildConfigError as exc:
        raise BuildError(str(exc), "runner_configuration_error") from None


def cache_presigner(runner: RunnerConfig) -> CachePresigner | None:
    """Presigned S3 URLs for ``[runners.cache]`` with ``Type = "s3"``; None for a local cache.

    The object name (path, runner scope, project, key) is decided by
    :meth:`Build.cache_object_name`; this only signs it.
    """
    cache = runner.cache
    if cache is None or cache.type != "s3" or cache.s3 is None:
        return None
    cfg = cache.s3

    def presign(method: str, object_key: str) -> str:
        return s3.presign(
            method,
            endpoint=cfg.server_address or "s3.amazonaws.com",
            bucket=cfg.bucket_name,
            key=object_key,
            access_key=cfg.access_key,
            secret_key=cfg.secret_key,
            region=cfg.bucket_location or "us-east-1",
            expires_s=PRESIGN_EXPIRY,
            insecure=cfg.insecure,
            session_token=cfg.session_token or None,
        )

    return presign

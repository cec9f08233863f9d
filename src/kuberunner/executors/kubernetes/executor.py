"""The Kubernetes executor: every job one pod that runs by itself; the runner watches and reads.

One job (``docs/kubernetes-executor.md``):

1. resolve the job's overrides (namespace, service account, bearer token) and
   connect; a missing config, an untrusted certificate or rejected credentials
   end the job with one line saying what is wrong and how to fix it;
2. write the stage scripts and the in-pod drivers (:mod:`.driver`) into the
   scripts Secret, the registry credentials into a second one when the job
   has any for its images, then create the Pod (:mod:`.podspec`); an admission
   refusal (Pod Security) names the config key to change;
3. WATCH the pod (:mod:`.podwatch`). While it waits, each new reason is
   written once (Unschedulable, image pulls, config errors) and, when the
   account may, warning events; ``poll_timeout`` ends the wait naming what is
   still pending; a failed pull with several ``pull_policy`` entries recreates
   the pod with the next one;
4. follow the logs of ``init``, ``build`` and ``helper`` in order
   (:mod:`.logs`), markers becoming sections; exit codes come from container
   statuses (:mod:`.outcomes`), never from the log;
5. cancel: graceful deletes the pod with a grace period covering after_script
   (the build driver stops the script on TERM and runs after_script; the logs
   are still followed), force deletes with grace 0; the job timeout is a
   graceful delete ending as ``job_execution_timeout``;
6. always delete the pod and its secrets at the end (404 ignored, failures
   logged, never raised over the job's outcome). Objects carry
   ``app.kubernetes.io/managed-by=kuberunner`` and the runner's, system's,
   job's and project's labels; the first job of a process in a namespace
   removes this runner's orphans there (:mod:`.orphans`).

Every Kubernetes call goes through :class:`~kuberunner.kube.KubeClient`, whose
methods are in the RBAC registry (:mod:`kuberunner.kube.rbac`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kuberunner import __version__
from kuberunner.build import Build, BuildConfigError, go_duration
from kuberunner.config.schema import KubernetesConfig, RunnerConfig
from kuberunner.executors.base import BuildError, Cancellation, FailureReason, JobOutcome
from kuberunner.executors.kubernetes.driver import (
    MARKER_LEAD,
    DriverPlan,
    ServiceWait,
    driver_plan,
    job_scripts,
    marker_prefix,
)
from kuberunner.executors.kubernetes.logs import LogFollower, StageEnd, StageSections
from kuberunner.executors.kubernetes.orphans import (
    ANNOTATION_SECRETS,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_PROJECT_ID,
    LABEL_RUNNER,
    LABEL_SYSTEM_ID,
    MANAGED_BY,
    label_value,
    remove_orphans,
    secret_names,
)
from kuberunner.executors.kubernetes.outcomes import (
    JOB_CONTAINERS,
    Outcome,
    decide,
    image_pull_failure,
    is_started,
    pending_reasons,
    start_problem,
    waiting_summary,
)
from kuberunner.executors.kubernetes.overrides import Overrides, resolve_overrides
from kuberunner.executors.kubernetes.podspec import (
    BUILD_CONTAINER,
    HELPER_CONTAINER,
    INIT_CONTAINER,
    PodPlan,
    build_registry_secret,
    build_scripts_secret,
    container_pull_policies,
    next_pull_policy,
    render_pod,
    termination_grace_period_seconds,
)
from kuberunner.executors.kubernetes.podwatch import PodWatch
from kuberunner.executors.kubernetes.relay import SOURCES_FILE, Relay, RelayPlan, relay_secrets, sources_glob
from kuberunner.kube import (
    KubeAPIError,
    KubeClient,
    KubeConfigMissing,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeTLSError,
    KubeUnauthorized,
    KubeUnreachable,
    connect,
)
from kuberunner.script import Stage
from kuberunner.trace import JobTrace

__all__ = [
    "DEFAULT_HELPER_IMAGE",
    "KNOWN_SERVICE_PORTS",
    "MANAGED_BY",
    "KubernetesExecutor",
    "helper_command_for",
    "is_official_helper_image",
    "job_labels",
    "pod_name_for",
    "service_ports_for",
    "service_waits",
]

log = logging.getLogger(__name__)


class Explainer(Protocol):
    """``kuberunner.doctor.explain``'s shape: a KubeError in the runner's terms, with the fix."""

    def __call__(self, error: KubeError, *, cfg: KubernetesConfig, namespace: str) -> str: ...


# kuberunner's helper image (images/helper/Dockerfile); mirror it and set helper_image
# in [runners.kubernetes] where nodes cannot reach this registry.
DEFAULT_HELPER_IMAGE = f"ghcr.io/kuberunner/helper:{__version__}"

# Ports of well-known service images (repository, or its last part): what the build waits
# for, and the startup probe of a native sidecar. docker:dind: see service_ports_for.
KNOWN_SERVICE_PORTS: dict[str, tuple[int, ...]] = {
    "docker": (2376, 2375),
    "postgres": (5432,),
    "postgis/postgis": (5432,),
    "mysql": (3306,),
    "mariadb": (3306,),
    "redis": (6379,),
    "valkey/valkey": (6379,),
    "mongo": (27017,),
    "memcached": (11211,),
    "rabbitmq": (5672,),
    "elasticsearch": (9200,),
    "opensearchproject/opensearch": (9200,),
    "minio/minio": (9000,),
    "selenium/standalone-chrome": (4444,),
    "selenium/standalone-firefox": (4444,),
}

_OFFICIAL_HELPER = re.compile(r"(^|/)gitlab-runner-helper([:@]|$)")
_NATIVE_SIDECARS = (1, 29)
_EVENTS_RETRY_SECONDS = 600.0
_ABORT_DRAIN_SECONDS = 5.0
_GRACE_MARGIN_SECONDS = 30.0
_PENDING_EVENTS_AFTER = 1.0

# Pod Security violations (their names in the API's message) → the setting that fixes each.
_PSA_FIXES = (
    ("privileged (", "privileged = false in [runners.kubernetes]"),
    ("allowPrivilegeEscalation", "allow_privilege_escalation = false"),
    ("unrestricted capabilities", 'cap_drop = ["ALL"]'),
    ("runAsNonRoot", "run_as_non_root = true in [runners.kubernetes.pod_security_context]"),
    ("seccompProfile", 'seccomp_profile = { type = "RuntimeDefault" } in the pod_security_context'),
    ("hostPath volumes", "no [[runners.kubernetes.volumes.host_path]]"),
    ("host namespaces", "no hostNetwork/hostPID/hostIPC in pod_spec patches"),
)

Stop = Literal["canceled", "aborted", "timeout"]


def is_official_helper_image(image: str) -> bool:
    """Whether ``image`` is GitLab's ``gitlab-runner-helper`` (any registry, tag or digest)."""
    return bool(_OFFICIAL_HELPER.search(image.split("@", 1)[0].rsplit(":", 1)[0] + ":"))


def helper_command_for(image: str) -> list[str]:
    """The helper command the stage scripts call in ``image``: both take the same subcommands."""
    return ["gitlab-runner-helper"] if is_official_helper_image(image) else ["kuberunner-helper"]


def _dns_part(text: str, limit: int) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:limit].strip("-") or "x"


def pod_name_for(build: Build, suffix: str) -> str:
    """gitlab-runner's shape: ``runner-<token>-project-<id>-concurrent-<n>-<suffix>`` (a DNS label)."""
    token = _dns_part(build.runner.short_token, 8)
    project = build.job.job_info.project_id
    return f"runner-{token}-project-{project}-concurrent-{build.concurrent_id}-{_dns_part(suffix, 8)}"[:63]


def job_labels(build: Build, system_id: str) -> dict[str, str]:
    """The labels on every object of the job; orphans are found by the first three."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_RUNNER: label_value(build.runner.short_token),
    }
    if system_id:
        labels[LABEL_SYSTEM_ID] = label_value(system_id)
    labels[LABEL_JOB_ID] = str(build.job.id)
    labels[LABEL_PROJECT_ID] = str(build.job.job_info.project_id)
    return labels


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


def _known_ports(image: str) -> tuple[int, ...]:
    repository = _repository(image)
    for key in (repository, repository.split("/", 1)[-1], repository.rsplit("/", 1)[-1]):
        if key in KNOWN_SERVICE_PORTS:
            return KNOWN_SERVICE_PORTS[key]
    return ()


def service_ports_for(build: Build) -> dict[str, list[int]]:
    """Known ports per service image for the pod's startup probes.

    docker:dind listens on 2376 with TLS (the image's default) and on 2375
    when the job sets ``DOCKER_TLS_CERTDIR`` to "" (in its variables or the
    service's), which is what the probe must wait for.
    """
    ports = {key: list(value) for key, value in KNOWN_SERVICE_PORTS.items()}
    for service in build.job.services:
        if _repository(service.name).rsplit("/", 1)[-1] != "docker":
            continue
        own = {v.key: v.value for v in service.variables}
        tls_dir = own.get("DOCKER_TLS_CERTDIR")
        if tls_dir is None and build.variables.entry("DOCKER_TLS_CERTDIR") is not None:
            tls_dir = build.variables.value("DOCKER_TLS_CERTDIR")
        ports["docker"] = [2375] if tls_dir == "" else [2376]
        break
    return ports


def service_waits(pod: Mapping[str, Any]) -> tuple[ServiceWait, ...]:
    """The services of a rendered pod and the ports the build waits for (any one of them)."""
    spec = pod.get("spec") or {}
    containers = [
        *(c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"),
        *(c for c in spec.get("containers") or [] if c.get("name") not in JOB_CONTAINERS),
    ]
    waits: list[ServiceWait] = []
    for container in containers:
        env = {e.get("name"): str(e.get("value", "")) for e in container.get("env") or []}
        probe = ((container.get("startupProbe") or {}).get("tcpSocket") or {}).get("port")
        health = env.get("HEALTHCHECK_TCP_PORT", "").strip()
        if health.isdigit():
            ports: tuple[int, ...] = (int(health),)
        elif container.get("ports"):
            ports = tuple(int(p["containerPort"]) for p in container["ports"][:1])
        elif isinstance(probe, int):
            ports = (probe,)
        else:
            ports = _known_ports(str(container.get("image") or ""))
        if ports:
            waits.append(ServiceWait(str(container.get("name")), ports))
    return tuple(waits)


def _server_version(info: Mapping[str, Any]) -> tuple[int, int] | None:
    try:
        major = int(re.sub(r"\D.*", "", str(info.get("major", ""))))
        minor = int(re.sub(r"\D.*", "", str(info.get("minor", ""))))
    except ValueError:
        match = re.match(r"v?(\d+)\.(\d+)", str(info.get("gitVersion", "")))
        return (int(match[1]), int(match[2])) if match else None
    return major, minor


# ----------------------------------------------------------------------------- errors


def _fail(reason: FailureReason, message: str, exit_code: int | None = None) -> JobOutcome:
    return JobOutcome.failed(reason, message, exit_code)


def _connection_outcome(exc: KubeError, client: KubeClient | None) -> JobOutcome:
    """The first contact failed: one line saying what and the fix."""
    where = f" ({client.source})" if client is not None and client.source else ""
    host = client.host if client is not None else "the Kubernetes API"
    if isinstance(exc, KubeConfigMissing):
        return _fail(
            "runner_configuration_error",
            "no Kubernetes API to talk to: set host (and ca_file) in [runners.kubernetes], "
            "run kuberunner in the cluster, or provide a kubeconfig",
        )
    if isinstance(exc, KubeTLSError):
        return _fail(
            "runner_configuration_error",
            f"{exc}: set ca_file in [runners.kubernetes] to the cluster's CA certificate",
        )
    if isinstance(exc, KubeUnauthorized):
        return _fail(
            "runner_configuration_error",
            f"{host}{where} rejected the runner's credentials (401 Unauthorized): set a valid "
            "bearer_token in [runners.kubernetes] (kubectl create token <service account>)",
        )
    if isinstance(exc, KubeForbidden):
        return _fail(
            "runner_configuration_error",
            f"{exc.message}: give the runner's account this permission (kuberunner rbac prints the Role)",
        )
    if isinstance(exc, KubeUnreachable):
        return _fail("runner_system_failure", f"cannot reach the Kubernetes API: {exc}")
    return _fail("runner_system_failure", f"Kubernetes API error: {exc}")


def _psa_message(message: str) -> str:
    """The fix for a Pod Security refusal: the settings its violations name, the first one first."""
    _, _, violations = message.partition("violates PodSecurity ")
    level = violations.split(":", 1)[0].strip('"') if violations else "its level"
    fixes = [fix for word, fix in _PSA_FIXES if word in violations]
    what = (
        f"set {fixes[0]}" + (f" (the level also needs: {'; '.join(fixes[1:])})" if fixes[1:] else "")
        if fixes
        else "change the pod's security settings in [runners.kubernetes]"
    )
    return (
        f'the namespace enforces Pod Security "{level}" and refused the pod: {what}; or run jobs in a '
        "namespace whose pod-security.kubernetes.io/enforce level allows it"
    )


def _create_outcome(exc: KubeError, what: str, trace: JobTrace) -> JobOutcome:
    """Creating the secrets or the pod failed."""
    if isinstance(exc, KubeForbidden) and exc.is_pod_security:
        trace.error(exc.message)
        return _fail("runner_configuration_error", _psa_message(exc.message))
    if isinstance(exc, KubeInvalid):
        for cause in exc.causes:
            trace.error(f"{cause.field}: {cause.message}" if cause.field else cause.message)
        return _fail("runner_configuration_error", f"Kubernetes refused the {what}: {exc.message}")
    if isinstance(exc, KubeConflict):
        return _fail("runner_system_failure", f"the {what} exists already: {exc.message}")
    if isinstance(exc, KubeNotFound):  # the namespace (an allowed user gets 404, others 403)
        return _fail(
            "runner_configuration_error",
            f"{exc.message}: create the namespace, or fix namespace in [runners.kubernetes]",
        )
    return _connection_outcome(exc, None)


# ----------------------------------------------------------------------------- executor


@dataclass
class _ProcessState:
    """Per process: pods of running jobs, namespaces swept for orphans, server versions, RBAC seen."""

    active: dict[str, set[str]] = field(default_factory=dict)  # namespace -> pod names
    swept: set[str] = field(default_factory=set)  # "<host>/<namespace>"
    versions: dict[str, tuple[int, int] | None] = field(default_factory=dict)  # host -> (major, minor)
    events_denied: dict[str, float] = field(default_factory=dict)  # "<host>/<namespace>" -> when


_PROCESS = _ProcessState()


class KubernetesExecutor:
    """Runs each job as a pod. One instance serves every job of a runner, concurrently.

    ``system_id`` (the runner machine's ``.runner_system_id``) goes into a
    label so that :meth:`remove_orphans` only ever touches pods this machine
    made; without it, orphans are not removed automatically.
    """

    name = "kubernetes"

    def __init__(
        self, *, system_id: str = "", explain: Explainer | None = None, relay: Relay | None = None
    ) -> None:
        self.system_id = system_id
        # doctor's run-time diagnosis (injected: doctor sits above the executors)
        self.explain = explain
        # kuberunner exec: the pod reaches its "GitLab" through the Kubernetes API (see .relay)
        self.relay = relay
        # What the process knows, shared by every instance (the service may make one per job).
        self._active = _PROCESS.active
        self._swept = _PROCESS.swept
        self._versions = _PROCESS.versions
        self._events_denied = _PROCESS.events_denied

    async def run(self, build: Build, trace: JobTrace, cancel: Cancellation) -> JobOutcome:
        for secret in build.masked_values():
            trace.add_masked(secret)
        job = _PodJob(self, build, trace, cancel)
        return await job.run()

    async def remove_orphans(self, runner: RunnerConfig, namespace: str = "") -> list[str]:
        """Delete this runner's pods (and their secrets) that no running job of this process owns.

        For the service to call periodically; returns the removed pod names.
        """
        if not self.system_id:
            return []
        cfg = runner.kubernetes or KubernetesConfig.model_validate({})
        client = await connect(cfg, namespace=namespace or None)
        try:
            ns = client.namespace
            return await remove_orphans(
                client, runner.short_token, self.system_id, self._active.setdefault(ns, set())
            )
        finally:
            await client.close()

    # -- shared per-process knowledge

    def _claim(self, namespace: str, pod: str) -> None:
        self._active.setdefault(namespace, set()).add(pod)

    def _release(self, namespace: str, pod: str) -> None:
        self._active.get(namespace, set()).discard(pod)

    def _events_allowed(self, key: str) -> bool:
        denied = self._events_denied.get(key)
        return denied is None or time.monotonic() - denied > _EVENTS_RETRY_SECONDS


@dataclass
class _Created:
    """What this job made in Kubernetes, for cleanup (also when creation half failed)."""

    secrets: list[str] = field(default_factory=list)
    pod: str = ""


class _PullRetry(Exception):
    def __init__(self, container: str, policy: str, why: str) -> None:
        super().__init__(why)
        self.container = container
        self.policy = policy


class _PodJob:
    """One job's pod, from its secrets to its deletion."""

    def __init__(
        self, executor: KubernetesExecutor, build: Build, trace: JobTrace, cancel: Cancellation
    ) -> None:
        self.x = executor
        self.trace = trace
        self.cancel = cancel
        self.cfg = build.runner.kubernetes or KubernetesConfig.model_validate({})
        self.helper_image = self.cfg.helper_image or DEFAULT_HELPER_IMAGE
        self.build = dataclasses.replace(build, helper_command=helper_command_for(self.helper_image))
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + build.timeout
        self.client: KubeClient | None = None
        self.namespace = ""
        self.created = _Created()
        self.watch: PodWatch | None = None
        self.stopped: Stop | None = None
        self.nonce = secrets.token_hex(6)
        self.sections = StageSections(trace, self.nonce, on_end=self._stage_warning)
        relay = executor.relay
        if relay is not None:
            self.sections.relay = lambda request: relay.received(build, request)
            self.sections.relay_lost = lambda why: relay.lost(build, why)
        self._relay_secrets: list[dict[str, Any]] = []
        self.pull_attempts: dict[str, int] = {}
        self.pull_policies: dict[str, str] = {}
        self.told: set[str] = set()
        self.plan: PodPlan | None = None
        self._registry_secret: dict[str, Any] | None = None
        self._orphans: asyncio.Task[list[str]] | None = None
        self._stop_changed = asyncio.Event()
        self._prepare_open = False
        self._claimed = ""

    # ----------------------------------------------------------------- the sequence

    async def run(self) -> JobOutcome:
        try:
            return await self._run()
        finally:
            cleanup = asyncio.ensure_future(self._cleanup())
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup
                raise

    async def _run(self) -> JobOutcome:
        self.trace.section_start("prepare_executor", 'Preparing the "kubernetes" executor')
        self._prepare_open = True
        try:
            prepared = await self._prepare()
            if isinstance(prepared, JobOutcome):
                return prepared
            plan, scripts, dplan = prepared
            outcome = await self._create_objects(plan, scripts)
            if outcome is not None:
                return outcome
            supervisor = asyncio.create_task(self._supervise(), name="kubernetes job supervisor")
            try:
                return await self._pod_lifecycle(plan, dplan)
            finally:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
        finally:
            self._close_prepare()

    def _close_prepare(self) -> None:
        """End the prepare_executor section: before the stages' own sections, or at the end."""
        if self._prepare_open:
            self._prepare_open = False
            self.trace.section_end("prepare_executor")

    async def _prepare(self) -> JobOutcome | tuple[PodPlan, dict[str, str], DriverPlan]:
        """Overrides, connection, scripts, the pod plan. No object is created here."""
        build, cfg, trace = self.build, self.cfg, self.trace
        variables = tuple((v.key, v.value) for v in build.variables.resolved())
        try:
            overrides = resolve_overrides(cfg, variables)
        except BuildError as exc:
            return exc.outcome()
        if overrides.bearer_token:
            trace.add_masked(overrides.bearer_token)
        self.namespace = overrides.namespace
        if self.cancel.requested:
            return self._stop_outcome("canceled" if not self.cancel.force.is_set() else "aborted")
        outcome = await self._connect(overrides)
        if outcome is not None:
            return outcome
        trace.info(f"Using Kubernetes namespace: {self.namespace}")
        native = await self._native_sidecars()
        if isinstance(native, JobOutcome):
            return native
        image = build.job.image.name if build.job.image and build.job.image.name else cfg.image
        trace.info(f"Using Kubernetes executor with image {image or '(none)'} ...")
        suffix = secrets.token_hex(4)
        pod_name = pod_name_for(build, suffix)
        names = secret_names(pod_name)
        labels = job_labels(build, self.x.system_id)
        relay = await self._relay_plan(pod_name, labels)
        if isinstance(relay, JobOutcome):
            return relay
        plan = PodPlan(
            job=build.job,
            pod_name=pod_name,
            namespace=self.namespace,
            labels=labels,
            builds_dir=build.builds_dir,
            cache_dir=build.cache_dir,
            scripts_secret=names[0],
            registry_secret=None,
            variables=variables,
            helper_image=self.helper_image,
            timeout=build.timeout,
            after_script_timeout=int(build.after_script_timeout),
            native_sidecars=native,
            service_ports=service_ports_for(build),
            relay=relay,
        )
        try:
            rendered = render_pod(plan, cfg, read_file=_read_text)
            waits = service_waits(rendered.pod)
            dplan = driver_plan(
                build,
                nonce=self.nonce,
                services=waits,
                service_timeout=cfg.poll_timeout,
                sources_archive=sources_glob() if relay is not None and relay.has_sources else "",
            )
            scripts = job_scripts(build, dplan)
        except BuildError as exc:
            return exc.outcome()
        except BuildConfigError as exc:
            trace.error(str(exc))
            return _fail("script_failure", str(exc))
        for notice in rendered.notices:
            trace.warning(notice)
        images = [
            str(c.get("image"))
            for c in [*rendered.pod["spec"].get("initContainers", []), *rendered.pod["spec"]["containers"]]
        ]
        try:
            registry = build_registry_secret(
                names[1],
                self.namespace,
                plan.labels,
                build.job.credentials,
                images,
                docker_auth_config=build.variables.value("DOCKER_AUTH_CONFIG"),
            )
        except BuildError as exc:
            return exc.outcome()
        if registry is not None:
            plan = dataclasses.replace(plan, registry_secret=names[1])
            self._registry_secret = registry
        self.plan = plan
        return plan, scripts, dplan

    async def _relay_plan(self, pod_name: str, labels: Mapping[str, str]) -> RelayPlan | JobOutcome | None:
        """The relay's files as Secrets (made here, created with the others), or None without a relay."""
        relay = self.x.relay
        if relay is None:
            return None
        if is_official_helper_image(self.helper_image):
            return _fail(
                "runner_configuration_error",
                f"helper_image {self.helper_image!r} is gitlab-runner's helper, which cannot reach the "
                "artifacts of a local pipeline through the Kubernetes API: use kuberunner's helper image "
                f"({DEFAULT_HELPER_IMAGE}, images/helper/Dockerfile) in [runners.kubernetes] helper_image",
            )
        try:
            files = await relay.files(self.build)
            self._relay_secrets = relay_secrets(pod_name, self.namespace, labels, files)
        except BuildError as exc:
            return exc.outcome()
        mark = marker_prefix(self.nonce).removeprefix(MARKER_LEAD)
        names = tuple(obj["metadata"]["name"] for obj in self._relay_secrets)
        return RelayPlan(names, mark, has_sources=SOURCES_FILE in files, origin=self.build.gitlab_url)

    async def _connect(self, overrides: Overrides) -> JobOutcome | None:
        override = overrides.bearer_token if overrides.bearer_token != self.cfg.bearer_token else ""
        try:
            self.client = await connect(self.cfg, namespace=self.namespace, bearer_token_override=override)
        except KubeError as exc:
            self.trace.error(str(exc))
            return self._explained(exc, _connection_outcome(exc, None))
        except Exception as exc:  # a kubeconfig that cannot be read or parsed
            return _fail(
                "runner_configuration_error",
                f"cannot load the Kubernetes connection settings: {type(exc).__name__}: {exc}",
            )
        return None

    def _explained(self, exc: KubeError, outcome: JobOutcome) -> JobOutcome:
        """Add what ``kuberunner doctor`` would say (and its fix) to the log, when wired in."""
        if self.x.explain is not None:
            try:
                text = self.x.explain(exc, cfg=self.cfg, namespace=self.namespace)
            except Exception:  # a diagnosis must never hide the failure itself
                log.exception("explaining a Kubernetes error failed")
                text = ""
            for line in text.splitlines():
                self.trace.warning(line)
        return outcome

    async def _native_sidecars(self) -> bool | JobOutcome:
        """Whether the cluster runs native sidecars (1.29+); asked once per API server and process."""
        assert self.client is not None
        host = self.client.host
        if host not in self.x._versions:
            try:
                info = await self.client.version()
            except KubeError as exc:
                return self._explained(exc, _connection_outcome(exc, self.client))
            self.x._versions[host] = _server_version(info)
        version = self.x._versions[host]
        return version is not None and version >= _NATIVE_SIDECARS

    async def _create_objects(self, plan: PodPlan, scripts: dict[str, str]) -> JobOutcome | None:
        """The Secrets, then the Pod. Returns an outcome when the job cannot go on."""
        assert self.client is not None
        client, trace = self.client, self.trace
        self.x._claim(self.namespace, plan.pod_name)
        self._claimed = plan.pod_name
        try:
            secret = build_scripts_secret(plan.scripts_secret, self.namespace, plan.labels, scripts)
        except BuildError as exc:
            return exc.outcome()
        to_create = [secret] + ([self._registry_secret] if self._registry_secret else [])
        to_create += self._relay_secrets
        for obj in to_create:
            name = obj["metadata"]["name"]
            self.created.secrets.append(name)  # a request that got no answer may still have created it
            try:
                await client.create_secret(obj)
            except KubeError as exc:
                if isinstance(exc, KubeAPIError):  # refused: nothing was created
                    self.created.secrets.remove(name)
                return self._explained(exc, _create_outcome(exc, f"secret {name}", trace))
        self._start_orphan_sweep()
        return await self._create_pod(plan)

    async def _create_pod(self, plan: PodPlan) -> JobOutcome | None:
        assert self.client is not None
        plan = dataclasses.replace(plan, pull_policies=dict(self.pull_policies))
        try:
            rendered = render_pod(plan, self.cfg, read_file=_read_text)
        except BuildError as exc:
            return exc.outcome()
        pod = rendered.pod
        pod["metadata"].setdefault("annotations", {})[ANNOTATION_SECRETS] = ",".join(self.created.secrets)
        # Watch from before the pod exists (its first event is then ADDED): no state is missed,
        # and the connection of the create request stays free for the first log.
        self.watch = PodWatch(self.client, plan.pod_name)
        self.watch.start()
        self.created.pod = plan.pod_name  # a request that got no answer may still have created it
        try:
            await self.client.create_pod(pod)
        except KubeError as exc:
            if isinstance(exc, KubeAPIError):  # refused: nothing to delete
                self.created.pod = ""
            return self._explained(exc, _create_outcome(exc, f"pod {plan.pod_name}", self.trace))
        self.trace.info(f"Waiting for pod {self.namespace}/{plan.pod_name} to start...")
        return None

    # ----------------------------------------------------------------- the pod's life

    async def _pod_lifecycle(self, plan: PodPlan, dplan: DriverPlan) -> JobOutcome:
        """Wait for the start, follow the logs, decide; recreate the pod for a pull-policy retry."""
        while True:
            try:
                outcome = await self._await_start(INIT_CONTAINER, self.loop.time())
                if outcome is not None:
                    return outcome
                return await self._follow_job(dplan)
            except _PullRetry as retry:
                self.trace.warning(
                    f"{retry}; trying again with pull_policy {retry.policy} for container {retry.container}"
                )
                self.pull_policies[retry.container] = retry.policy
                created = await self._recreate_pod(plan)
                if created is not None:
                    return created

    async def _recreate_pod(self, plan: PodPlan) -> JobOutcome | None:
        assert self.client is not None and self.watch is not None
        old = self.watch
        with contextlib.suppress(KubeNotFound):
            await self.client.delete_pod(plan.pod_name, grace_period=0)
        await old.wait_until(lambda w: w.gone, timeout=60)
        await old.close()
        self.told.clear()
        return await self._create_pod(plan)

    async def _follow_job(self, dplan: DriverPlan) -> JobOutcome:
        """Logs in order, each container after the one before; then the decision."""
        assert self.watch is not None and self.client is not None
        watch = self.watch
        self._close_prepare()  # the stages' own sections follow
        for container in (INIT_CONTAINER, BUILD_CONTAINER, HELPER_CONTAINER):
            if container != INIT_CONTAINER:
                # also ends the job when it cannot go on: init failed, an image pull, an eviction
                outcome = await self._await_start(container, self.loop.time())
                if outcome is not None:
                    return outcome
            follower = LogFollower(
                self.client,
                watch,
                container,
                self.sections.line,
                complete=_finished(self.sections, container),
            )
            await follower.run()
            self.sections.close()
            if follower.lost:
                self.trace.warning(
                    f"the rest of the log of container {container} could not be read: {follower.lost}"
                )
            if self.stopped == "aborted":
                break
        if self.stopped is None:
            await watch.wait_until(
                lambda w: w.pod is None or decide(w.pod, deleted=w.gone).finished or self.stopped is not None,
                timeout=_GRACE_MARGIN_SECONDS,
            )
        return self._final_outcome()

    async def _await_start(self, container: str, since: float) -> JobOutcome | None:
        """Wait until ``container`` runs, telling the user why it does not yet; None once it does."""
        assert self.watch is not None
        watch, trace = self.watch, self.trace
        poll_deadline = since + self.cfg.poll_timeout
        events: asyncio.Task[None] | None = None
        try:
            while True:
                pod = watch.pod
                if pod is not None and is_started(pod, container):
                    return None  # also after a cancel: its output (after_script, uploads) is wanted
                if self.stopped is not None:
                    return self._stop_outcome(self.stopped)
                if pod is not None:
                    pull = image_pull_failure(pod)
                    for reason in pending_reasons(pod):
                        if reason not in self.told and (pull is None or reason != pull.describe()):
                            self.told.add(reason)
                            trace.warning(reason)
                    if pull is not None:
                        attempts = self.pull_attempts.get(pull.container, 0) + 1
                        self.pull_attempts[pull.container] = attempts
                        assert self.plan is not None
                        policies = container_pull_policies(self.plan, self.cfg).get(pull.container, [])
                        policy = next_pull_policy(policies, attempts)
                        if policy is not None:
                            raise _PullRetry(pull.container, policy, pull.describe())
                        return _fail("image_pull_failure", pull.describe())
                    problem = start_problem(pod)
                    if problem is not None:
                        return problem.job_outcome()
                    decision = decide(pod, deleted=watch.gone)
                    if decision.finished:
                        return decision.job_outcome()
                if watch.gone:
                    return decide(pod or {}, deleted=True).job_outcome()
                if watch.error is not None:
                    return _fail("runner_system_failure", f"lost track of the pod: {watch.error}")
                now = self.loop.time()
                if now >= poll_deadline:
                    return _fail(
                        "runner_system_failure",
                        f"container {container} did not start within {self.cfg.poll_timeout}s "
                        f"(poll_timeout): {waiting_summary(pod, [container])}",
                    )
                if events is None and now - since >= _PENDING_EVENTS_AFTER and self._want_events():
                    events = asyncio.create_task(self._print_events(), name="pod warning events")
                timeout = min(poll_deadline - now, _PENDING_EVENTS_AFTER if events is None else 3600.0)
                await self._wait_change(_changed_since(watch.events), timeout)
        finally:
            if events is not None:
                events.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await events

    async def _wait_change(self, predicate: Callable[[PodWatch], bool], timeout: float) -> None:
        """Wait for a pod update or a stop request, whichever comes first."""
        assert self.watch is not None
        changed = asyncio.ensure_future(self.watch.wait_until(predicate, timeout=timeout))
        stopped = asyncio.ensure_future(self._stop_changed.wait())
        try:
            await asyncio.wait({changed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (changed, stopped):
                if not fut.done():
                    fut.cancel()
            await asyncio.gather(changed, stopped, return_exceptions=True)

    # ----------------------------------------------------------------- events

    def _events_key(self) -> str:
        return f"{self.client.host if self.client else ''}/{self.namespace}"

    def _want_events(self) -> bool:
        if not self.cfg.print_pod_warning_events:
            return False
        if self.x._events_allowed(self._events_key()):
            return True
        self._tell_events_denied()
        return False

    def _tell_events_denied(self) -> None:
        line = "events are not visible to this account (RBAC: events list/watch); messages will be shorter"
        if line not in self.told:
            self.told.add(line)
            self.trace.warning(line)

    async def _print_events(self) -> None:
        """Warning events of the pod, each once, while it waits."""
        assert self.client is not None and self.watch is not None
        try:
            async for _, event in self.client.watch_events(self.watch.name):
                if event.get("type") != "Warning":
                    continue
                text = (
                    f"Event retrieved from the cluster: {event.get('reason', '')}: {event.get('message', '')}"
                )
                if text not in self.told:
                    self.told.add(text)
                    self.trace.warning(text)
        except KubeForbidden:
            self.x._events_denied[self._events_key()] = time.monotonic()
            self._tell_events_denied()
        except KubeError as exc:
            log.debug("pod %s: events unavailable: %s", self.watch.name, exc)

    # ----------------------------------------------------------------- cancel, timeout

    async def _supervise(self) -> None:
        """Turn a cancel or the job timeout into a pod deletion; escalate to grace 0 if needed."""
        graceful = asyncio.ensure_future(self.cancel.graceful.wait())
        force = asyncio.ensure_future(self.cancel.force.wait())
        try:
            timeout = max(self.deadline - self.loop.time(), 0)
            done, _ = await asyncio.wait(
                {graceful, force}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if force in done:
                await self._abort()
                return
            assert self.plan is not None
            grace = termination_grace_period_seconds(self.plan, self.cfg)
            if graceful in done:
                self._set_stopped("canceled")
                self.trace.warning(
                    f"{self.cancel.reason or 'the job was canceled'}: stopping the pod "
                    f"(after_script and on-failure uploads still run, up to {grace}s)"
                )
            else:
                self._set_stopped("timeout")
                self.trace.warning(
                    f"the job's timeout of {go_duration(self.build.timeout)} is over: stopping the pod "
                    f"(after_script still runs, up to {grace}s)"
                )
            await self._delete_pod(grace)
            done, _ = await asyncio.wait({force}, timeout=grace + _GRACE_MARGIN_SECONDS)
            if force in done or not (self.watch and self.watch.gone):
                await self._abort()
        finally:
            for fut in (graceful, force):
                fut.cancel()

    def _set_stopped(self, why: Stop) -> None:
        if self.stopped != "aborted":
            self.stopped = why
        self._stop_changed.set()

    async def _abort(self) -> None:
        self._set_stopped("aborted")
        await self._delete_pod(0)
        if self.watch is not None:
            await self.watch.wait_until(lambda w: w.gone, timeout=_ABORT_DRAIN_SECONDS)
            await self.watch.close()

    async def _delete_pod(self, grace: int) -> None:
        if self.client is None or not self.created.pod:
            return
        try:
            await self.client.delete_pod(self.created.pod, grace_period=grace)
        except KubeNotFound:
            pass
        except KubeError as exc:
            self.trace.warning(f"could not delete pod {self.created.pod}: {exc}")

    def _stop_outcome(self, why: Stop) -> JobOutcome:
        if why == "timeout":
            return _fail(
                "job_execution_timeout",
                f"execution took longer than {go_duration(self.build.timeout)} seconds",
            )
        return _fail("runner_interrupted", self.cancel.reason or "canceled")

    # ----------------------------------------------------------------- outcome

    def _stage_warning(self, end: StageEnd) -> str | None:
        """What the shell executor says at the end of a stopped or failed stage."""
        build = self.build
        if end.note == "timeout":
            if end.stage == Stage.AFTER_SCRIPT:
                limit = go_duration(build.after_script_timeout)
                return f"after_script's timeout of {limit} is over: it was stopped"
            return (
                f"RUNNER_SCRIPT_TIMEOUT of {go_duration(build.script_timeout or 0)} is over: "
                f"{end.stage} was stopped"
            )
        if end.note == "canceled" and self.stopped == "timeout":
            return f"the job's timeout of {go_duration(build.timeout)} is over: {end.stage} was stopped"
        if end.note == "canceled":
            return "the job was canceled: its script was stopped"
        if end.stage == Stage.AFTER_SCRIPT and end.exit_code != 0 and build.after_script_ignore_errors:
            return f"after_script failed, but job will continue unaffected: exit code {end.exit_code}"
        if end.stage == Stage.CLEANUP_FILE_VARIABLES and end.exit_code != 0:
            return f"file variables were not removed: exit code {end.exit_code}"
        return None

    def _final_outcome(self) -> JobOutcome:
        if self.stopped is not None:
            return self._stop_outcome(self.stopped)
        assert self.watch is not None
        pod = self.watch.pod
        if pod is None:
            return _fail("runner_system_failure", "the pod's state was never seen")
        if self.watch.error is not None and not decide(pod).finished:
            return _fail("runner_system_failure", f"lost track of the pod: {self.watch.error}")
        decision = decide(pod, deleted=self.watch.gone)
        if not decision.finished:
            return _fail(
                "runner_system_failure",
                f"the pod's logs ended but its containers did not: {waiting_summary(pod)}",
            )
        return self._refine(decision)

    def _refine(self, decision: Outcome) -> JobOutcome:
        """Add what the markers tell: which step timed out, whether after_script failed."""
        if decision.state != "failed" or decision.failure_reason != "script_failure":
            return decision.job_outcome()
        if decision.container == BUILD_CONTAINER:
            for end in self.sections.ends:
                if end.stage.startswith("step_") and end.note == "timeout":
                    limit = go_duration(self.build.script_timeout or 0)
                    return _fail(
                        "job_execution_timeout",
                        f"script timeout of {limit} exceeded (RUNNER_SCRIPT_TIMEOUT)",
                    )
            steps_ok = all(e.exit_code == 0 for e in self.sections.ends if e.stage.startswith("step_"))
            after = self.sections.end_of(Stage.AFTER_SCRIPT)
            if steps_ok and after is not None and (after.exit_code != 0 or after.note):
                why = (
                    f"timed out after {go_duration(self.build.after_script_timeout)}"
                    if after.note == "timeout"
                    else f"exit code {after.exit_code}"
                )
                return _fail("script_failure", f"after_script failed: {why}", decision.exit_code)
        return decision.job_outcome()

    # ----------------------------------------------------------------- cleanup

    def _start_orphan_sweep(self) -> None:
        key = f"{self.client.host if self.client else ''}/{self.namespace}"
        if not self.x.system_id or key in self.x._swept or self.client is None:
            return
        self.x._swept.add(key)
        # the live set: a job of this process that starts meanwhile is never taken for an orphan
        active = self.x._active.setdefault(self.namespace, set())
        self._orphans = asyncio.create_task(
            remove_orphans(self.client, self.build.runner.short_token, self.x.system_id, active),
            name="remove orphaned pods",
        )

    async def _cleanup(self) -> None:
        """Delete what this job made; never raises (the job's outcome stands)."""
        client = self.client
        if client is None:
            return
        timeout = self.cfg.cleanup_resources_timeout
        try:
            if self.watch is not None:
                await self.watch.close()
            steps: list[Callable[[], Awaitable[Any]]] = []
            if self.created.pod and not (self.watch is not None and self.watch.gone):
                steps.append(lambda: client.delete_pod(self.created.pod, grace_period=0))
            for name in self.created.secrets:
                steps.append(lambda name=name: client.delete_secret(name))  # type: ignore[misc]
            for step in steps:
                try:
                    await asyncio.wait_for(step(), timeout)
                except KubeNotFound:
                    pass
                except (KubeError, TimeoutError) as exc:
                    log.warning("job %d: cleanup failed: %s", self.build.job.id, exc)
                    self.trace.warning(
                        f"cleanup: {exc or 'timed out'}; the object is removed as an orphan later"
                    )
            if self._orphans is not None:
                try:
                    removed = await asyncio.wait_for(self._orphans, timeout)
                    if removed:
                        log.info("removed orphaned pods in %s: %s", self.namespace, ", ".join(removed))
                except (KubeError, TimeoutError) as exc:
                    log.warning("removing orphaned pods in %s failed: %s", self.namespace, exc)
        except Exception:  # cleanup must never hide the job's outcome
            log.exception("job %d: cleanup crashed", self.build.job.id)
        finally:
            if self._claimed:
                self.x._release(self.namespace, self._claimed)
            with contextlib.suppress(Exception):
                await client.close()


def _finished(sections: StageSections, container: str) -> Callable[[], bool]:
    return lambda: container in sections.finished


def _changed_since(events: int) -> Callable[[PodWatch], bool]:
    return lambda w: w.events != events or w.done


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()

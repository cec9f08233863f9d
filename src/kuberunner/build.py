"""A job ready to run: the payload plus everything the runner decided about where and how.

:class:`Build` is what every executor receives and what :mod:`kuberunner.script`
turns into stage scripts. It holds no live resources (no clients, no
processes): only decisions, so it can be built and inspected in tests.

Layout follows gitlab-runner:

- project directory: ``<builds_dir>/<short token>/<concurrent project id>/<project path>``
  for executors sharing one machine between jobs (shell), ``<builds_dir>/<project path>``
  for disposable ones (kubernetes: each job has its own pod and volume);
- file variables: ``<project dir>.tmp/<KEY>`` (gitlab-runner's ``TmpProjectDir``);
- local cache archives: ``<cache_dir>/<project path>/<key>/cache.zip``;
- object storage cache: ``<Path>/runner/<short token>/project/<project id>/<key>``
  (``runner/<short token>`` is left out when ``[runners.cache] Shared = true``),
  reached through presigned URLs from :attr:`Build.cache_presigner`.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import sys
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from kuberunner import REVISION, __version__
from kuberunner.config.schema import RunnerConfig, parse_duration
from kuberunner.job import Cache, JobPayload, JobVariable
from kuberunner.variables import Variable, Variables, build_variables, parse_bool

__all__ = [
    "DEFAULT_AFTER_SCRIPT_TIMEOUT",
    "DEFAULT_CACHE_REQUEST_TIMEOUT",
    "Build",
    "BuildConfigError",
    "CachePresigner",
    "GitStrategy",
    "SubmoduleStrategy",
    "default_helper_command",
    "go_duration",
]

# (method "GET" or "PUT", object name) -> presigned URL, or None when it cannot be made.
CachePresigner = Callable[[str, str], str | None]
GitStrategy = Literal["clone", "fetch", "none"]
SubmoduleStrategy = Literal["none", "normal", "recursive"]

DEFAULT_AFTER_SCRIPT_TIMEOUT = 300.0  # gitlab-runner's, since 16.4
DEFAULT_CACHE_REQUEST_TIMEOUT = 10  # minutes, as the helper's --timeout takes it
_DEFAULT_ATTEMPTS = 1


class BuildConfigError(ValueError):
    """The job asks for something that cannot be done (e.g. an unknown ``GIT_SUBMODULE_STRATEGY``).

    The message names the variable and the accepted values; it is the job's
    configuration at fault, so executors report it as a script failure.
    """


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for whole seconds (``3600`` → ``1h0m0s``), as GitLab logs show it."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def default_helper_command() -> list[str]:
    """How a job on this machine runs the helper: the installed script, else this interpreter."""
    script = shutil.which("kuberunner-helper")
    if script:
        return [script]
    return [sys.executable, "-m", "kuberunner.helper"]


def _project_path(job: JobPayload) -> str:
    """The project's path for directory names, never escaping the directory it is joined to."""
    candidate = job.job_info.project_full_path
    if not candidate and job.git_info.repo_url:
        parsed = urllib.parse.urlsplit(job.git_info.repo_url)
        if parsed.netloc:
            candidate = parsed.path.removesuffix(".git")
    candidate = posixpath.normpath("/" + candidate).lstrip("/") if candidate else ""
    if not candidate or candidate == "." or ".." in candidate.split("/"):
        return f"project-{job.job_info.project_id}"
    return candidate


@dataclass
class Build:
    """One job with every runner-side decision taken. Construct with :meth:`create`."""

    job: JobPayload
    runner: RunnerConfig
    variables: Variables
    builds_dir: str
    project_dir: str
    cache_dir: str
    file_variables_dir: str
    executor_name: str
    helper_command: list[str]
    gitlab_url: str
    timeout: int
    cache_presigner: CachePresigner | None = field(default=None, repr=False)
    concurrent_id: int = 0

    def __repr__(self) -> str:
        return f"<Build job={self.job.id} executor={self.executor_name} project_dir={self.project_dir!r}>"

    @classmethod
    def create(
        cls,
        job: JobPayload,
        runner: RunnerConfig,
        *,
        executor_name: str | None = None,
        concurrent_id: int = 0,
        concurrent_project_id: int | None = None,
        builds_dir: str | None = None,
        cache_dir: str | None = None,
        shared_builds_dir: bool | None = None,
        helper_command: list[str] | None = None,
        cache_presigner: CachePresigner | None = None,
        tls_ca_chain: str | None = None,
        runner_version: str = __version__,
        runner_revision: str = REVISION,
        extra_variables: Iterable[Variable | JobVariable] = (),
    ) -> Build:
        """Decide directories and variables the way gitlab-runner does.

        Defaults: ``executor_name`` from the runner's ``executor`` (``shell`` if
        unset); ``builds_dir``/``cache_dir`` from config.toml, else ``/builds``
        and ``/cache`` for kubernetes and ``./builds``/``./cache`` (absolute)
        otherwise; the shared layout for every executor but kubernetes;
        ``tls_ca_chain`` read from the runner's ``tls-ca-file`` when set.
        """
        executor = executor_name or runner.executor or "shell"
        disposable = executor == "kubernetes"
        shared = (not disposable) if shared_builds_dir is None else shared_builds_dir
        if builds_dir is None:
            builds_dir = runner.builds_dir or ("/builds" if disposable else os.path.abspath("builds"))
        if cache_dir is None:
            cache_dir = runner.cache_dir or ("/cache" if disposable else os.path.abspath("cache"))
        project_id = concurrent_id if concurrent_project_id is None else concurrent_project_id
        path = _project_path(job)
        if shared:
            project_dir = posixpath.join(builds_dir, runner.short_token, str(project_id), path)
        else:
            project_dir = posixpath.join(builds_dir, path)
        file_dir = project_dir + ".tmp"
        if tls_ca_chain is None and runner.tls_ca_file:
            try:
                with open(runner.tls_ca_file, encoding="utf-8") as f:
                    tls_ca_chain = f.read()
            except OSError as exc:
                raise BuildConfigError(
                    f"tls-ca-file {runner.tls_ca_file!r} cannot be read ({exc.strerror}): "
                    "fix the path in config.toml or remove the key"
                ) from None
        variables = build_variables(
            job,
            runner,
            builds_dir=builds_dir,
            project_dir=project_dir,
            concurrent_id=concurrent_id,
            concurrent_project_id=project_id,
            runner_version=runner_version,
            runner_revision=runner_revision,
            executor=executor,
            tls_ca_chain=tls_ca_chain,
            file_dir=file_dir,
            extra=extra_variables,
        )
        return cls(
            job=job,
            runner=runner,
            variables=variables,
            builds_dir=builds_dir,
            project_dir=project_dir,
            cache_dir=cache_dir,
            file_variables_dir=file_dir,
            executor_name=executor,
            helper_command=list(helper_command) if helper_command else default_helper_command(),
            gitlab_url=runner.url,
            timeout=job.runner_info.timeout if job.runner_info.timeout > 0 else 3600,
            cache_presigner=cache_presigner,
            concurrent_id=concurrent_id,
        )

    # ------------------------------------------------------------------ secrets

    def masked_values(self) -> list[str]:
        """Everything the log must never show: masked variables, the job's and dependencies' tokens."""
        values = dict.fromkeys(self.variables.masked_values())
        for secret in (self.job.token, *(d.token for d in self.job.dependencies)):
            if secret:
                values.setdefault(secret)
        return list(values)

    # ------------------------------------------------------------ feature flags

    def feature_flag(self, name: str, default: bool = False) -> bool:
        """A runner's ``[runners.feature_flags]`` entry wins over the job's variable of that name."""
        if name in self.runner.feature_flags:
            return self.runner.feature_flags[name]
        return self.variables.flag(name, default)

    # -------------------------------------------------------------------- git

    @property
    def git_strategy(self) -> GitStrategy:
        """``GIT_STRATEGY``; anything else means fetch when GitLab allows it, else clone."""
        value = self.variables.value("GIT_STRATEGY")
        if value in ("clone", "fetch", "none"):
            return value  # type: ignore[return-value]
        return "fetch" if self.job.allow_git_fetch else "clone"

    @property
    def git_checkout(self) -> bool:
        if self.git_strategy == "none":
            return False
        parsed = parse_bool(self.variables.value("GIT_CHECKOUT"))
        return True if parsed is None else parsed

    @property
    def git_depth(self) -> int:
        """``GIT_DEPTH`` when it is a number, else the depth GitLab sent (0 = full history)."""
        value = self.variables.value("GIT_DEPTH").strip()
        if value.isdigit():
            return int(value)
        return max(self.job.git_info.depth, 0)

    @property
    def submodule_strategy(self) -> SubmoduleStrategy:
        if self.git_strategy == "none":
            return "none"
        value = self.variables.value("GIT_SUBMODULE_STRATEGY")
        if value in ("", "none"):
            return "none"
        if value in ("normal", "recursive"):
            return value  # type: ignore[return-value]
        raise BuildConfigError(
            f"GIT_SUBMODULE_STRATEGY={value!r} is not supported: use none, normal or recursive"
        )

    @property
    def submodule_depth(self) -> int:
        value = self.variables.value("GIT_SUBMODULE_DEPTH").strip()
        return int(value) if value.isdigit() else self.git_depth

    @property
    def submodule_paths(self) -> list[str]:
        value = self.variables.value("GIT_SUBMODULE_PATHS")
        fields = value.split()
        if ":(exclude)" in fields:
            raise BuildConfigError(
                f"GIT_SUBMODULE_PATHS has an invalid pathspec {value!r}: "
                "write ':(exclude)path' without a space"
            )
        return fields

    @property
    def submodule_update_flags(self) -> list[str]:
        return self.variables.value("GIT_SUBMODULE_UPDATE_FLAGS").split()

    @property
    def git_clean_flags(self) -> list[str]:
        """``GIT_CLEAN_FLAGS`` (default ``-ffdx``; ``none`` disables ``git clean``)."""
        value = self.variables.value("GIT_CLEAN_FLAGS") or "-ffdx"
        return [] if value == "none" else value.split()

    @property
    def git_fetch_flags(self) -> list[str]:
        """``GIT_FETCH_EXTRA_FLAGS`` (default ``--prune --quiet``; ``none`` for nothing)."""
        value = self.variables.value("GIT_FETCH_EXTRA_FLAGS") or "--prune --quiet"
        return [] if value == "none" else value.split()

    @property
    def git_refspecs(self) -> list[str]:
        """GitLab's refspecs; a job without any (``kuberunner exec``) fetches its ref only."""
        info = self.job.git_info
        if info.refspecs:
            return list(info.refspecs)
        if not info.ref:
            return []
        if info.ref_type == "tag":
            return [f"+refs/tags/{info.ref}:refs/tags/{info.ref}"]
        return [f"+refs/heads/{info.ref}:refs/remotes/origin/{info.ref}"]

    @property
    def lfs_smudge_disabled(self) -> bool:
        return parse_bool(self.variables.value("GIT_LFS_SKIP_SMUDGE")) is True

    @property
    def remote_url(self) -> str:
        """Where sources come from: ``clone_url`` from config.toml replaces GitLab's host when set.

        Carries the job token: use it in commands only, never in a message.
        """
        clone_url = self.runner.clone_url
        parsed = urllib.parse.urlsplit(clone_url) if clone_url else None
        if parsed is None or not parsed.scheme:
            return self.job.git_info.repo_url
        host = parsed.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parsed.port:
            host = f"{host}:{parsed.port}"
        if parsed.scheme == "ssh":
            user = parsed.username or "git"
            netloc = f"{user}@{host}"
        else:
            token = urllib.parse.quote(self.job.token, safe="")
            netloc = f"gitlab-ci-token:{token}@{host}"
        project = self.variables.value("CI_PROJECT_PATH") or self.job.job_info.project_full_path
        path = posixpath.join(parsed.path or "/", project + ".git")
        return urllib.parse.urlunsplit((parsed.scheme, netloc, path, "", ""))

    @property
    def debug_trace(self) -> bool:
        """``CI_DEBUG_TRACE`` (shell ``xtrace``), unless config.toml disables it."""
        return (
            not self.runner.debug_trace_disabled
            and parse_bool(self.variables.value("CI_DEBUG_TRACE")) is True
        )

    # ------------------------------------------------------- attempts, timeouts

    def _attempts(self, key: str) -> int:
        value = self.variables.value(key).strip()
        if not value.isdigit():
            return _DEFAULT_ATTEMPTS
        attempts = int(value)
        if not 1 <= attempts <= 10:
            raise BuildConfigError(f"{key}={value} is out of range: use a number of attempts from 1 to 10")
        return attempts

    @property
    def get_sources_attempts(self) -> int:
        return self._attempts("GET_SOURCES_ATTEMPTS")

    @property
    def restore_cache_attempts(self) -> int:
        return self._attempts("RESTORE_CACHE_ATTEMPTS")

    @property
    def artifact_download_attempts(self) -> int:
        return self._attempts("ARTIFACT_DOWNLOAD_ATTEMPTS")

    def _duration(self, key: str) -> float | None:
        value = self.variables.value(key).strip()
        if not value:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            return None  # gitlab-runner ignores a value that is not a Go duration
        return seconds if seconds > 0 else None

    @property
    def script_timeout(self) -> float | None:
        """``RUNNER_SCRIPT_TIMEOUT``: a limit for the job's steps, below the job timeout."""
        return self._duration("RUNNER_SCRIPT_TIMEOUT")

    @property
    def after_script_timeout(self) -> float:
        """``RUNNER_AFTER_SCRIPT_TIMEOUT``, default five minutes."""
        return self._duration("RUNNER_AFTER_SCRIPT_TIMEOUT") or DEFAULT_AFTER_SCRIPT_TIMEOUT

    @property
    def after_script_ignore_errors(self) -> bool:
        """``AFTER_SCRIPT_IGNORE_ERRORS`` (default true): a failing after_script does not fail the job."""
        return parse_bool(self.variables.value("AFTER_SCRIPT_IGNORE_ERRORS")) is not False

    @property
    def cache_request_timeout(self) -> int:
        """``CACHE_REQUEST_TIMEOUT`` in minutes (default 10), for the helper's ``--timeout``."""
        value = self.variables.value("CACHE_REQUEST_TIMEOUT").strip()
        return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_CACHE_REQUEST_TIMEOUT

    # ------------------------------------------------------------------ cache

    def cache_key(self, cache: Cache) -> str | None:
        """gitlab-runner's key: the job's key expanded, else ``<job name>/<ref>``.

        None when the key is empty or would leave the project's cache (``..``,
        an absolute path): such a cache is skipped with a notice.
        """
        key = self.variables.expand(cache.key) if cache.key else ""
        if not key:
            key = posixpath.join(self.job.job_info.name, self.job.git_info.ref)
        return self.clean_cache_key(key)

    def clean_cache_key(self, key: str) -> str | None:
        key = key.strip()
        if not key or key.startswith("/") or "\\" in key or ".." in key.split("/"):
            return None
        normalized = posixpath.normpath(key)
        return None if normalized in (".", "") else normalized

    def cache_fallback_keys(self, cache: Cache) -> list[str]:
        """The job's ``fallback_keys``, then ``CACHE_FALLBACK_KEY`` (never a ``-protected`` one)."""
        keys = [self.variables.expand(k) for k in cache.fallback_keys]
        global_fallback = self.variables.value("CACHE_FALLBACK_KEY")
        if global_fallback and not global_fallback.endswith("-protected"):
            keys.append(global_fallback)
        cleaned: list[str] = []
        for k in keys:
            key = self.clean_cache_key(k)
            if key is not None and key not in cleaned:
                cleaned.append(key)
        return cleaned

    def cache_file(self, key: str) -> str:
        """The local archive of a cache key."""
        return posixpath.join(self.cache_dir, _project_path(self.job), key, "cache.zip")

    def cache_object_name(self, key: str) -> str:
        """The object storage name of a cache key (gitlab-runner's ``generateObjectName``)."""
        config = self.runner.cache
        base = config.path if config else ""
        namespace = "" if config and config.shared else posixpath.join("runner", self.runner.short_token)
        parts = [p for p in (base, namespace, "project", str(self.job.job_info.project_id), key) if p]
        return posixpath.join(*parts)

    def cache_url(self, method: Literal["GET", "PUT"], key: str) -> str | None:
        """A presigned URL for the cache key, or None for a local-only cache."""
        if self.cache_presigner is None:
            return None
        return self.cache_presigner(method, self.cache_object_name(key))

    # -------------------------------------------------------------- variables

    def variables_for_status(self, status: str) -> Variables:
        """The variables with ``CI_JOB_STATUS`` set, for after_script."""
        return self.variables.with_variables(Variable("CI_JOB_STATUS", status, public=True, internal=True))

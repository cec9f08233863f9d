"""Stage scripts: what each stage of a job runs, as one POSIX ``sh`` script.

Pure: :func:`generate` turns a :class:`~kuberunner.build.Build` and a stage
name into text, and does no I/O. The scripts run unchanged under bash, dash and
busybox ``sh``, so any job image with a shell can run them.

They follow gitlab-runner's bash shell (``shells/bash.go``, ``shells/abstract.go``):

- ``set -e``, plus ``pipefail`` where the shell has it (bash, busybox; dash has
  not, so a failing command on the left of a pipe does not fail the job there);
- the stage body is one ``eval`` of a single-quoted string with stdin from
  ``/dev/null``: the whole script is read before anything runs, and a command
  that reads stdin cannot swallow the rest of the script;
- every variable is exported with single-quote escaping (values may hold
  quotes, newlines, ``$``); file variables are written with mode 0600 under
  the build's file-variables directory and the variable holds the path;
- each job command is echoed as ``\\x1b[32;1m$ <first line>\\x1b[0;m`` (``# collapsed
  multi-line command`` appended when it has more lines), then run in the same
  shell, so ``cd`` and ``export`` carry over to the next command;
- a failing simple command stops the script with its exit code (``set -e``,
  so ``false; echo no`` ends at ``false`` with 1); a command *line* whose
  status is non-zero only because of ``&&``/``||`` (``test -f x && echo y``)
  does not, exactly as gitlab-runner, unless ``FF_ENABLE_BASH_EXIT_CODE_CHECK``
  is on, which checks every line's status.

Stages (gitlab-runner's names, in the order an executor runs them):
``prepare_script``, ``get_sources``, ``restore_cache``, ``download_artifacts``,
``step_<name>`` for each step but after_script (``step_script``, ``step_release``),
``after_script``, ``archive_cache`` or ``archive_cache_on_failure``,
``upload_artifacts_on_success`` or ``upload_artifacts_on_failure``,
``cleanup_file_variables``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from urllib.parse import urlsplit

from kuberunner import __version__
from kuberunner.build import Build, BuildConfigError
from kuberunner.job import Artifact, Cache, Step
from kuberunner.variables import Variable, Variables, executable_arch, is_shell_name

__all__ = [
    "Stage",
    "generate",
    "has_work",
    "quote",
    "restore_cache_keys",
    "stage_title",
    "step_stage",
    "step_stages",
]

_GREEN = "\x1b[32;1m"
_YELLOW = "\x1b[0;33m"
_RED = "\x1b[31;1m"
_RESET = "\x1b[0;m"


class Stage(StrEnum):
    """The fixed stages; a step ``<name>`` runs as the stage ``step_<name>`` (see :func:`step_stage`)."""

    PREPARE_SCRIPT = "prepare_script"
    GET_SOURCES = "get_sources"
    RESTORE_CACHE = "restore_cache"
    DOWNLOAD_ARTIFACTS = "download_artifacts"
    STEP_SCRIPT = "step_script"
    AFTER_SCRIPT = "after_script"
    ARCHIVE_CACHE = "archive_cache"
    ARCHIVE_CACHE_ON_FAILURE = "archive_cache_on_failure"
    UPLOAD_ARTIFACTS_ON_SUCCESS = "upload_artifacts_on_success"
    UPLOAD_ARTIFACTS_ON_FAILURE = "upload_artifacts_on_failure"
    CLEANUP_FILE_VARIABLES = "cleanup_file_variables"


_TITLES: dict[str, str] = {
    Stage.PREPARE_SCRIPT: "Preparing environment",
    Stage.GET_SOURCES: "Getting source from Git repository",
    Stage.RESTORE_CACHE: "Restoring cache",
    Stage.DOWNLOAD_ARTIFACTS: "Downloading artifacts",
    Stage.AFTER_SCRIPT: "Running after_script",
    Stage.ARCHIVE_CACHE: "Saving cache for successful job",
    Stage.ARCHIVE_CACHE_ON_FAILURE: "Saving cache for failed job",
    Stage.UPLOAD_ARTIFACTS_ON_SUCCESS: "Uploading artifacts for successful job",
    Stage.UPLOAD_ARTIFACTS_ON_FAILURE: "Uploading artifacts for failed job",
    Stage.CLEANUP_FILE_VARIABLES: "Cleaning up project directory and file based variables",
}


def stage_title(stage: str) -> str:
    """The cyan line that opens a stage's section in the log (gitlab-runner's words)."""
    return _TITLES.get(stage, f'Executing "{stage}" stage of the job script')


def step_stage(step_name: str) -> str:
    """The stage running the step ``step_name`` (``script`` → ``step_script``)."""
    return f"step_{step_name.lower()}"


def step_stages(build: Build) -> list[str]:
    """The job's step stages in order (after_script has its own stage)."""
    return [step_stage(s.name) for s in build.job.steps if s.name != "after_script"]


def _step(build: Build, stage: str) -> Step | None:
    return next(
        (s for s in build.job.steps if s.name != "after_script" and step_stage(s.name) == stage), None
    )


_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def quote(value: str) -> str:
    """Quote ``value`` as one word for any POSIX shell (NUL bytes, which no shell can hold, are dropped)."""
    value = value.replace("\x00", "")
    if _SAFE.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def _cmdline(argv: Iterable[str]) -> str:
    words = [quote(a) for a in argv]
    if words and "=" in words[0] and not words[0].startswith("'"):
        words[0] = "'" + words[0] + "'"  # NAME=value first would be an assignment, not a command
    return " ".join(words)


def _helper_name(build: Build) -> str:
    return " ".join(build.helper_command)


class _Writer:
    """Builds the body of one stage script, line by line."""

    def __init__(self, build: Build, stage: str) -> None:
        self.build = build
        self.stage = stage
        self.check_errors = build.feature_flag("FF_ENABLE_BASH_EXIT_CODE_CHECK")
        self.lines: list[str] = []
        self.indent = 0

    def line(self, text: str) -> None:
        self.lines.append("  " * self.indent + text)

    def _echo(self, colour: str, message: str) -> None:
        self.line(f"printf '%s\\n' {quote(colour + message + _RESET)}")

    def notice(self, message: str) -> None:
        self._echo(_GREEN, message)

    def warning(self, message: str) -> None:
        self._echo(_YELLOW, message)

    def check(self) -> None:
        if self.check_errors:
            self.line("_kr_rc=$?; if [ $_kr_rc -ne 0 ]; then exit $_kr_rc; fi")

    def command(self, *argv: str) -> None:
        self.line(_cmdline(argv))
        self.check()

    def if_cmd(self, *argv: str, quiet: bool = True) -> None:
        redirect = " >/dev/null 2>&1" if quiet else ""
        self.line(f"if {_cmdline(argv)}{redirect}; then")
        self.indent += 1

    def if_dir(self, path: str) -> None:
        self.line(f"if [ -d {quote(path)} ]; then")
        self.indent += 1

    def else_(self) -> None:
        self.indent -= 1
        self.line("else")
        self.indent += 1

    def end_if(self) -> None:
        self.indent -= 1
        self.line("fi")

    def cd(self, path: str) -> None:
        self.command("cd", path)

    def export_all(self, variables: Variables) -> None:
        """Export every variable (the last entry of a key wins); write file variables to files."""
        winners: dict[str, Variable] = {}
        for v in variables.resolved():
            winners.pop(v.key, None)
            winners[v.key] = v
        for v in winners.values():
            if not is_shell_name(v.key):
                continue  # not a shell variable name: no shell can export it
            if v.file:
                path = variables.file_path(v.key)
                directory = variables.file_dir
                self.line(
                    f"(umask 077 && mkdir -p {quote(directory)} && rm -f {quote(path)} && "
                    f"printf '%s' {quote(v.value)} > {quote(path)})"
                )
                self.line(f"export {v.key}={quote(path)}")
            else:
                self.line(f"export {v.key}={quote(v.value)}")

    def user_commands(self, commands: Iterable[str]) -> None:
        """Echo then run each job command, as gitlab-runner's ``writeCommands``."""
        for raw in commands:
            command = raw.strip()
            if command:
                first, _, rest = command.partition("\n")
                self.notice(f"$ {first} # collapsed multi-line command" if rest else f"$ {first}")
            else:
                self.line("echo")
            self.lines.append(command)
            self.check()

    def guard_helper(self) -> None:
        """Run what follows only when the helper is there; else warn (gitlab-runner's guard)."""
        self.line(f"if command -v {quote(self.build.helper_command[0])} >/dev/null 2>&1; then")
        self.indent += 1

    def end_guard(self, action: str) -> None:
        self.else_()
        self.warning(f"Missing {_helper_name(self.build)}. {action} is disabled.")
        self.end_if()

    def finish(self) -> str:
        body = "\n".join(self.lines) + "\n"
        if self.build.debug_trace:
            body = "set -x\n" + body
        return (
            f"# kuberunner {__version__}: {self.stage} script for job {self.build.job.id}\n"
            "set -e\n"
            "(set -o pipefail) 2>/dev/null && set -o pipefail\n"
            "set +o noclobber\n"
            f"eval {quote(body)} </dev/null\n"
            "exit 0\n"
        )


# --------------------------------------------------------------------- stages


def _prepare(w: _Writer) -> None:
    # The kernel's own copy of the host name, read by the shell itself: no process to start
    # (`hostname` and `uname -n` print the same, and remain the fallback without /proc).
    w.line('if ! { read -r _kr_host </proc/sys/kernel/hostname; } 2>/dev/null || [ -z "$_kr_host" ]; then')
    w.line('  _kr_host="$(hostname 2>/dev/null || uname -n)"')
    w.line("fi")
    w.line("printf 'Running on %s...\\n' \"$_kr_host\"")


def _ssl_config(w: _Writer, where: Sequence[str]) -> None:
    """Make git trust GitLab's CA for the repository's host only."""
    if not w.build.variables.value("CI_SERVER_TLS_CA_FILE"):
        return
    parts = urlsplit(w.build.remote_url)
    if not parts.scheme.startswith("http") or not parts.hostname:
        return
    host = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    w.command(
        "git", "config", *where, f"http.{host}.sslCAInfo", w.build.variables.get("CI_SERVER_TLS_CA_FILE")
    )


def _hook_commands(w: _Writer, name: str) -> list[str]:
    return [line for hook in w.build.job.hooks if hook.name == name for line in hook.script]


def _git_cleanup(w: _Writer, project_dir: str) -> None:
    """Remove lock files a killed job may have left; they would fail the next fetch."""
    submodules = w.build.submodule_strategy in ("normal", "recursive")
    for name in ("index.lock", "shallow.lock", "HEAD.lock", "hooks/post-checkout", "config.lock"):
        w.command("rm", "-f", f"{project_dir}/.git/{name}")
        if submodules:
            modules = f"{project_dir}/.git/modules"
            w.if_dir(modules)
            w.line(f"find {quote(modules)} -name {quote(name.rsplit('/', 1)[-1])} -exec rm {{}} +")
            w.end_if()


def _fetch(w: _Writer) -> None:
    build = w.build
    project_dir = build.project_dir
    depth = build.git_depth
    if depth > 0:
        w.notice(f"Fetching changes with git depth set to {depth}...")
    else:
        w.notice("Fetching changes...")
    template_dir = f"{build.file_variables_dir}/git-template"
    template = f"{template_dir}/config"
    w.command("mkdir", "-p", template_dir)
    w.command("git", "config", "-f", template, "init.defaultBranch", "none")
    w.command("git", "config", "-f", template, "fetch.recurseSubmodules", "false")
    if build.executor_name != "kubernetes":
        _ssl_config(w, ["-f", template])
    _git_cleanup(w, project_dir)
    w.command("git", "init", project_dir, "--template", template_dir)
    w.cd(project_dir)
    url = build.remote_url
    w.if_cmd("git", "remote", "add", "origin", url)
    w.notice("Created fresh repository.")
    w.else_()
    w.command("git", "remote", "set-url", "origin", url)
    w.end_if()
    args = ["git", "-c", f"http.userAgent=kuberunner {__version__} {executable_arch()}", "fetch", "origin"]
    args += build.git_refspecs
    if depth > 0:
        args += ["--depth", str(depth)]
    args += build.git_fetch_flags
    w.command(*args)


def _checkout(w: _Writer) -> None:
    info = w.build.job.git_info
    if not info.sha:
        raise BuildConfigError("the job has no commit to check out (git_info.sha is empty)")
    w.notice(f"Checking out {info.sha[:8]} as detached HEAD (ref is {info.ref})...")
    w.command("git", "checkout", "-f", "-q", info.sha)
    flags = w.build.git_clean_flags
    if flags:
        w.command("git", "clean", *flags)
    if not w.build.lfs_smudge_disabled:
        w.if_cmd("git", "lfs", "version")
        w.command("git", "lfs", "pull")
        w.line("echo")
        w.end_if()


def _submodules(w: _Writer) -> None:
    build = w.build
    strategy = build.submodule_strategy
    if strategy == "none":
        w.notice("Skipping Git submodules setup")
        return
    recursive = strategy == "recursive"
    depth = build.submodule_depth
    what = "submodules recursively" if recursive else "submodules"
    suffix = f" with git depth set to {depth}" if depth > 0 else ""
    w.notice(f"Updating/initializing {what}{suffix}...")
    paths = build.submodule_paths
    path_args = ["--", *paths] if paths else []
    rec = ["--recursive"] if recursive else []
    foreach = ["git", "submodule", "foreach", *rec]
    w.command("git", "submodule", "init")
    w.command("git", "submodule", "sync", *rec, *path_args)
    update = ["git", "submodule", "update", "--init", *rec]
    if depth > 0:
        update += ["--depth", str(depth)]
    update += build.submodule_update_flags + path_args
    w.command(*foreach, "git clean -ffxd")
    w.command(*foreach, "git reset --hard")
    w.command(*update)
    w.command(*foreach, "git clean -ffxd")
    if not build.lfs_smudge_disabled:
        w.if_cmd("git", "lfs", "version")
        w.command(*foreach, "git lfs pull")
        w.end_if()


def _get_sources(w: _Writer, sources_archive: str | None = None) -> None:
    build = w.build
    strategy = build.git_strategy
    w.export_all(build.variables)
    if build.executor_name == "kubernetes":
        _ssl_config(w, ["--global"])
    pre = [c for c in (build.runner.pre_get_sources_script,) if c]
    pre += _hook_commands(w, "pre_get_sources_script")
    if pre and strategy != "none":
        w.user_commands(pre)
    if not build.lfs_smudge_disabled:
        w.line("export GIT_LFS_SKIP_SMUDGE=1")
    if strategy == "none":
        w.notice("Skipping Git repository setup")
        # mkdir only when needed: the directory is usually there, and mkdir is a process
        w.line(f"[ -d {quote(build.project_dir)} ] || {_cmdline(['mkdir', '-p', build.project_dir])}")
        w.check()
        if sources_archive:
            w.notice("Unpacking the working tree kuberunner exec copied into the pod...")
            w.line(f"cat {sources_archive} | tar -xzf - -C {quote(build.project_dir)}")
            w.check()
    else:
        if strategy == "clone":
            w.command("rm", "-r", "-f", build.project_dir)
        _fetch(w)
    if build.git_checkout:
        _checkout(w)
    else:
        w.notice("Skipping Git checkout")
    _submodules(w)
    post = _hook_commands(w, "post_get_sources_script")
    post += [c for c in (build.runner.post_get_sources_script,) if c]
    if post and strategy != "none":
        w.user_commands(post)


def _cache_args(cache: Cache, variables: Variables) -> list[str]:
    args: list[str] = []
    for path in cache.paths:
        args += ["--path", variables.expand(path)]
    if cache.untracked:
        args.append("--untracked")
    return args


def _extract(w: _Writer, key: str, fallbacks: list[str]) -> None:
    """Try ``key``, then each fallback key; a failure is a warning, never a failed job."""
    build = w.build
    args = ["cache-extractor", "--file", build.cache_file(key), "--timeout", str(build.cache_request_timeout)]
    url = build.cache_url("GET", key)
    if url:
        args += ["--url", url]
    w.notice(f"Checking cache for {key}...")
    w.if_cmd(*build.helper_command, *args, quiet=False)
    w.notice("Successfully extracted cache")
    w.else_()
    w.warning("Failed to extract cache")
    if fallbacks:
        _extract(w, fallbacks[0], fallbacks[1:])
    w.end_if()


def _restores(build: Build) -> Iterator[tuple[Cache, str | None]]:
    """Each cache entry restore_cache looks at, with its key (None: empty)."""
    for cache in build.job.cache:
        if _cache_args(cache, build.variables):
            yield cache, build.cache_key(cache)


def _restore_cache(w: _Writer) -> None:
    build = w.build
    w.export_all(build.variables)
    w.cd(build.project_dir)
    for cache, key in _restores(build):
        if key is None:
            w.notice("Skipping cache extraction due to empty cache key")
            continue
        if cache.policy not in ("pull", "pull-push"):
            w.notice(f"Not downloading cache {key} due to policy")
            continue
        w.guard_helper()
        _extract(w, key, [k for k in build.cache_fallback_keys(cache) if k != key])
        w.end_guard("Extracting cache")


def restore_cache_keys(build: Build) -> list[str]:
    """Every cache key restore_cache may try, in order (fallback keys after each key)."""
    keys: list[str] = []
    for cache, key in _restores(build):
        if key is not None and cache.policy in ("pull", "pull-push"):
            keys += [key, *(k for k in build.cache_fallback_keys(cache) if k != key)]
    return list(dict.fromkeys(keys))


def _cache_when(cache: Cache, on_success: bool) -> bool:
    return cache.when == "always" or cache.when == ("on_success" if on_success else "on_failure")


def _archive_cache(w: _Writer, on_success: bool) -> None:
    build = w.build
    w.export_all(build.variables)
    w.cd(build.project_dir)
    for cache in build.job.cache:
        paths = _cache_args(cache, build.variables)
        if not _cache_when(cache, on_success) or not paths:
            continue
        key = build.cache_key(cache)
        if key is None:
            w.notice("Skipping cache archiving due to empty cache key")
            continue
        if cache.policy not in ("push", "pull-push"):
            w.notice(f"Not uploading cache {key} due to policy")
            continue
        args = [
            "cache-archiver",
            "--file",
            build.cache_file(key),
            "--timeout",
            str(build.cache_request_timeout),
        ]
        args += paths
        url = build.cache_url("PUT", key)
        if url:
            args += ["--url", url]
        w.guard_helper()
        w.notice(f"Creating cache {key}...")
        w.if_cmd(*build.helper_command, *args, quiet=False)
        w.notice("Created cache")
        w.else_()
        w.warning("Failed to create cache")
        w.end_if()
        w.end_guard("Creating cache")


def _download_artifacts(w: _Writer) -> None:
    build = w.build
    w.export_all(build.variables)
    w.cd(build.project_dir)
    dependencies = [d for d in build.job.dependencies if d.artifacts_file and d.artifacts_file.filename]
    if not dependencies:
        return
    w.guard_helper()
    for dep in dependencies:
        w.notice(f"Downloading artifacts for {dep.name} ({dep.id})...")
        # Without a GitLab URL (a local pipeline), the helper takes CI_SERVER_URL from the job.
        url = ["--url", build.gitlab_url] if build.gitlab_url else []
        w.command(
            *build.helper_command, "artifacts-downloader", *url, "--token", dep.token, "--id", str(dep.id)
        )
    w.end_guard("Artifacts downloading")


def _step_script(w: _Writer, step: Step) -> None:
    build = w.build
    w.export_all(build.variables)
    w.cd(build.project_dir)
    if build.runner.pre_build_script:
        w.user_commands([build.runner.pre_build_script])
    script = step.script
    if step.name == "release":
        # GitLab turns `release:` into a step whose lines the runner expands.
        script = [build.variables.expand(line) for line in script]
    w.user_commands(script)
    if build.runner.post_build_script:
        w.user_commands([build.runner.post_build_script])


def _after_script(w: _Writer, variables: Variables) -> None:
    build = w.build
    step = build.job.step("after_script")
    w.export_all(variables)
    w.cd(build.project_dir)
    w.notice("Running after script...")
    w.user_commands(step.script if step else [])


def _artifact_args(artifact: Artifact, variables: Variables) -> list[str]:
    args: list[str] = []
    for path in artifact.paths:
        args += ["--path", variables.expand(path)]
    for path in artifact.exclude:
        args += ["--exclude", variables.expand(path)]
    if artifact.untracked:
        args.append("--untracked")
    return args


def _artifact_when(artifact: Artifact, on_success: bool) -> bool:
    return artifact.when == "always" or artifact.when == ("on_success" if on_success else "on_failure")


def _upload_artifacts(w: _Writer, on_success: bool) -> None:
    build = w.build
    if not build.gitlab_url:
        return  # nowhere to upload to (gitlab-runner skips the stage too)
    w.export_all(build.variables)
    w.cd(build.project_dir)
    for artifact in build.job.artifacts:
        paths = _artifact_args(artifact, build.variables)
        if not _artifact_when(artifact, on_success) or not paths:
            continue
        args = ["artifacts-uploader", "--url", build.gitlab_url, "--token", build.job.token]
        args += ["--id", str(build.job.id), *paths]
        if artifact.name:
            args += ["--name", build.variables.expand(artifact.name)]
        if artifact.expire_in:
            args += ["--expire-in", artifact.expire_in]
        if artifact.artifact_format:
            args += ["--artifact-format", artifact.artifact_format]
        if artifact.artifact_type:
            args += ["--artifact-type", artifact.artifact_type]
        w.guard_helper()
        w.notice("Uploading artifacts...")
        w.command(*build.helper_command, *args)
        w.end_guard("Uploading artifacts")


def _cleanup(w: _Writer) -> None:
    variables = w.build.variables
    for key in dict.fromkeys(v.key for v in variables if v.file):
        entry = variables.entry(key)
        if entry is not None and entry.file and is_shell_name(key):
            w.command("rm", "-f", variables.file_path(key))


# ----------------------------------------------------------------------- API


def has_work(build: Build, stage: str) -> bool:
    """Whether a stage does anything for this job (gitlab-runner skips the ones that do not)."""
    job = build.job
    if stage in (Stage.PREPARE_SCRIPT, Stage.GET_SOURCES):
        return True
    if stage == Stage.RESTORE_CACHE:
        return any(c.paths or c.untracked for c in job.cache)
    if stage == Stage.DOWNLOAD_ARTIFACTS:
        return any(d.artifacts_file and d.artifacts_file.filename for d in job.dependencies)
    if stage == Stage.AFTER_SCRIPT:
        step = job.step("after_script")
        return step is not None and bool(step.script)
    if stage in (Stage.ARCHIVE_CACHE, Stage.ARCHIVE_CACHE_ON_FAILURE):
        on_success = stage == Stage.ARCHIVE_CACHE
        return any((c.paths or c.untracked) and _cache_when(c, on_success) for c in job.cache)
    if stage in (Stage.UPLOAD_ARTIFACTS_ON_SUCCESS, Stage.UPLOAD_ARTIFACTS_ON_FAILURE):
        on_success = stage == Stage.UPLOAD_ARTIFACTS_ON_SUCCESS
        return bool(build.gitlab_url) and any(
            (a.paths or a.untracked) and _artifact_when(a, on_success) for a in job.artifacts
        )
    if stage == Stage.CLEANUP_FILE_VARIABLES:
        return any(v.file for v in build.variables)
    return _step(build, stage) is not None


_STAGE_NAME = re.compile(r"[a-z0-9_]+")


def generate(
    build: Build, stage: str, *, job_status: str | None = None, sources_archive: str | None = None
) -> str:
    """The script of one stage. ``job_status`` sets ``CI_JOB_STATUS`` (after_script).

    ``sources_archive`` (a shell glob of ``.tar.gz`` parts, for get_sources with
    ``GIT_STRATEGY: none``) is unpacked into the project directory: how ``kuberunner exec``
    brings the working tree into a pod.

    Raises :class:`~kuberunner.build.BuildConfigError` when the job's settings make the stage
    impossible (an unknown ``GIT_SUBMODULE_STRATEGY``, a step that does not exist).
    """
    w = _Writer(build, stage)
    if stage == Stage.PREPARE_SCRIPT:
        _prepare(w)
    elif stage == Stage.GET_SOURCES:
        _get_sources(w, sources_archive)
    elif stage == Stage.RESTORE_CACHE:
        _restore_cache(w)
    elif stage == Stage.DOWNLOAD_ARTIFACTS:
        _download_artifacts(w)
    elif stage == Stage.AFTER_SCRIPT:
        variables = build.variables_for_status(job_status) if job_status else build.variables
        _after_script(w, variables)
    elif stage in (Stage.ARCHIVE_CACHE, Stage.ARCHIVE_CACHE_ON_FAILURE):
        _archive_cache(w, on_success=stage == Stage.ARCHIVE_CACHE)
    elif stage in (Stage.UPLOAD_ARTIFACTS_ON_SUCCESS, Stage.UPLOAD_ARTIFACTS_ON_FAILURE):
        _upload_artifacts(w, on_success=stage == Stage.UPLOAD_ARTIFACTS_ON_SUCCESS)
    elif stage == Stage.CLEANUP_FILE_VARIABLES:
        _cleanup(w)
    else:
        step = _step(build, stage) if _STAGE_NAME.fullmatch(stage) else None
        if step is None:
            raise BuildConfigError(f"the job has no stage {stage!r}: its steps are {step_stages(build)}")
        _step_script(w, step)
    return w.finish()

"""The in-pod drivers: three small POSIX ``sh`` programs that run a job's stages inside its pod.

The pod runs the whole job by itself (``docs/kubernetes-executor.md``); the
runner never execs into it. Each of the pod's own containers starts one driver
from the scripts Secret (``sh /kuberunner/scripts/<container>``):

``init`` (helper image, init container)
    ``prepare_script``, ``get_sources``, ``restore_cache``, ``download_artifacts``
    in order, each retried as ``GET_SOURCES_ATTEMPTS`` & co. say; stops at the
    first failing stage and exits with its code.
``build`` (job image)
    waits until the services listen on their ports (useful without native
    sidecars, a no-op with them), runs the steps (``step_script``...), then
    ``after_script`` with ``CI_JOB_STATUS`` under its own timeout, writes
    ``<rc> <status>`` to ``/kuberunner/state/build.rc`` atomically and exits
    with the script's code. On TERM (the pod is being deleted: a graceful
    cancel or the job timeout) it stops the running step's process group
    (KILL after a grace) and still runs after_script with
    ``CI_JOB_STATUS=canceled``. ``RUNNER_SCRIPT_TIMEOUT`` stops the steps the
    same way (status ``failed``).
``helper`` (helper image)
    waits for ``build.rc`` with a local sleep loop on the shared emptyDir (no
    API calls), then ``archive_cache`` or ``archive_cache_on_failure``,
    ``upload_artifacts_on_success`` or ``_on_failure``, and
    ``cleanup_file_variables``. On TERM before the result exists it exits at
    once if the build never started; if the build is running (its after_script
    does), it keeps waiting so the on-failure uploads still happen within the
    pod's grace period. A build container that dies without a result (killed
    as a whole) is noticed through its heartbeat file going stale: the job is
    then treated as failed.

Stage boundaries travel in the log. Before and after each stage the driver
prints one marker line::

    \\x1ekuberunner:<nonce>:stage:start:<stage>
    \\x1ekuberunner:<nonce>:stage:end:<stage>:<exit code>[:canceled|:timeout]
    \\x1ekuberunner:<nonce>:result:<exit code>:<status>        (build, its last line)
    \\x1ekuberunner:<nonce>:done:<init|helper>:<exit code>     (their last line)

``\\x1e`` (ASCII record separator) is a byte jobs do not print, and the
per-job ``nonce`` keeps a log of an earlier job (``cat``-ed by this one) from
being taken for this job's markers. An end marker can follow output without a
trailing newline on the same line; :func:`parse_marker` finds it anywhere in
a line. The runner turns markers into GitLab sections with its own clock and
never forwards them (:mod:`.logs`).

Stages run with ``bash`` when the image has it (as gitlab-runner prefers),
else ``sh``, with stdin from ``/dev/null``, each in its own session
(``setsid``) so a stop or the end of a stage reaches everything it started;
without ``setsid`` in the image, the running stage's process tree (from
``/proc``) is signalled instead, and processes a finished stage left in the
background are only stopped when the container ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kuberunner import __version__
from kuberunner.build import Build
from kuberunner.executors.kubernetes.podspec import SCRIPTS_DIR, STATE_DIR
from kuberunner.helper.relay import MARKER_LEAD
from kuberunner.script import Stage, generate, has_work, quote, step_stages

__all__ = [
    "DRIVER_KEYS",
    "MARKER_LEAD",
    "RESULT_FILE",
    "DriverPlan",
    "Marker",
    "ServiceWait",
    "after_script_key",
    "build_driver",
    "driver_plan",
    "helper_driver",
    "init_driver",
    "job_scripts",
    "marker_prefix",
    "parse_marker",
]

RESULT_FILE = f"{STATE_DIR}/build.rc"
DRIVER_KEYS = ("init", "build", "helper")
HEARTBEAT_SECONDS = 1
# The helper looks at the heartbeat this often and declares the build gone when it did not move
# in between: at least 3 beats, so a file system with whole-second times (busybox test -nt
# compares seconds) never makes a live build look dead; a dead one is noticed within 2 checks.
HEARTBEAT_CHECK_SECONDS = 4
DEFAULT_KILL_GRACE = 10

_NONCE = re.compile(r"[A-Za-z0-9]{4,32}")


def marker_prefix(nonce: str) -> str:
    """What every marker line of this job starts with (see the module docstring)."""
    return f"{MARKER_LEAD}kuberunner:{nonce}:"


@dataclass(frozen=True)
class Marker:
    """A parsed marker: ``kind`` is ``start``, ``end``, ``result``, ``done`` or ``relay``."""

    # start, end, result (the build's last line), done (init's and helper's last line),
    # relay (a line of a request the helper sends out: kuberunner.helper.relay; ``note`` holds it)
    kind: str
    stage: str = ""
    exit_code: int = 0
    note: str = ""  # end: "canceled" or "timeout"; result: the build's status


_STAGE = r"[a-z0-9_]+"
_BODY = re.compile(
    rf"stage:start:(?P<start>{_STAGE})"
    rf"|stage:end:(?P<end>{_STAGE}):(?P<rc>\d{{1,3}})(?::(?P<note>canceled|timeout))?"
    r"|result:(?P<code>\d{1,3}):(?P<status>success|failed|canceled)"
    r"|done:(?P<done>init|helper):(?P<exit>\d{1,3})"
    r"|(?P<relay>relay:(?:begin|data|end):[A-Za-z0-9+/=:]*)"
)


def parse_marker(line: bytes, nonce: str) -> tuple[bytes, Marker] | None:
    """Split a log line holding this job's marker into (output before it, marker); None if none.

    ``line`` is one log line without its timestamp, newline included or not.
    """
    prefix = marker_prefix(nonce).encode()
    at = line.find(prefix)
    if at < 0:
        return None
    body = line[at + len(prefix) :].rstrip(b"\r\n").decode("ascii", "replace")
    match = _BODY.fullmatch(body)
    if match is None:
        return None
    before = line[:at]
    if match["relay"]:
        return before, Marker("relay", note=match["relay"])
    if match["done"]:
        return before, Marker("done", match["done"], int(match["exit"]))
    if match["start"]:
        return before, Marker("start", match["start"])
    if match["end"]:
        return before, Marker("end", match["end"], int(match["rc"]), match["note"] or "")
    return before, Marker("result", exit_code=int(match["code"]), note=match["status"])


# ------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ServiceWait:
    """A service the build waits for: it is up when it listens on any of ``ports``."""

    name: str
    ports: tuple[int, ...]


@dataclass(frozen=True)
class DriverPlan:
    """What the three drivers run, decided from the Build before the pod exists."""

    job_id: int
    nonce: str
    builds_dir: str
    init_stages: tuple[tuple[str, int], ...]  # (stage, attempts)
    steps: tuple[str, ...]
    after_script: bool
    after_script_timeout: int
    after_script_ignore_errors: bool
    script_timeout: int | None
    on_success: tuple[str, ...]
    on_failure: tuple[str, ...]
    cleanup: bool
    services: tuple[ServiceWait, ...] = ()
    service_timeout: int = 180
    kill_grace: int = DEFAULT_KILL_GRACE
    sources_archive: str = ""  # kuberunner exec: the working tree's parts (script.generate)

    def __post_init__(self) -> None:
        if not _NONCE.fullmatch(self.nonce):
            raise ValueError(f"marker nonce {self.nonce!r} must be 4-32 letters or digits")


def after_script_key(status: str) -> str:
    """The Secret key of the after_script variant for ``CI_JOB_STATUS=status``."""
    return f"{Stage.AFTER_SCRIPT}.{status}"


_STATUSES = ("success", "failed", "canceled")


def driver_plan(
    build: Build,
    *,
    nonce: str,
    services: Sequence[ServiceWait] = (),
    service_timeout: int = 180,
    kill_grace: int = DEFAULT_KILL_GRACE,
    sources_archive: str = "",
) -> DriverPlan:
    """The stages of this job, in gitlab-runner's order, skipping those with nothing to do.

    Raises :class:`~kuberunner.build.BuildConfigError` for impossible settings
    (e.g. ``GET_SOURCES_ATTEMPTS=0``).
    """
    init: list[tuple[str, int]] = [(Stage.PREPARE_SCRIPT, 1), (Stage.GET_SOURCES, build.get_sources_attempts)]
    if has_work(build, Stage.RESTORE_CACHE):
        init.append((Stage.RESTORE_CACHE, build.restore_cache_attempts))
    if has_work(build, Stage.DOWNLOAD_ARTIFACTS):
        init.append((Stage.DOWNLOAD_ARTIFACTS, build.artifact_download_attempts))
    on_success = tuple(
        s for s in (Stage.ARCHIVE_CACHE, Stage.UPLOAD_ARTIFACTS_ON_SUCCESS) if has_work(build, s)
    )
    on_failure = tuple(
        s for s in (Stage.ARCHIVE_CACHE_ON_FAILURE, Stage.UPLOAD_ARTIFACTS_ON_FAILURE) if has_work(build, s)
    )
    script_timeout = build.script_timeout
    return DriverPlan(
        job_id=build.job.id,
        nonce=nonce,
        builds_dir=build.builds_dir,
        init_stages=tuple(init),
        steps=tuple(step_stages(build)),
        after_script=has_work(build, Stage.AFTER_SCRIPT),
        after_script_timeout=max(1, int(build.after_script_timeout)),
        after_script_ignore_errors=build.after_script_ignore_errors,
        script_timeout=max(1, int(script_timeout)) if script_timeout else None,
        on_success=on_success,
        on_failure=on_failure,
        cleanup=has_work(build, Stage.CLEANUP_FILE_VARIABLES),
        services=tuple(services),
        service_timeout=service_timeout,
        kill_grace=kill_grace,
        sources_archive=sources_archive,
    )


def job_scripts(build: Build, plan: DriverPlan) -> dict[str, str]:
    """Every file of the scripts Secret: the stage scripts and the three drivers.

    Stage scripts are keyed by stage name; after_script once per
    ``CI_JOB_STATUS`` (:func:`after_script_key`). Raises
    :class:`~kuberunner.build.BuildConfigError` like :func:`kuberunner.script.generate`.
    """
    scripts: dict[str, str] = {}
    for stage, _ in plan.init_stages:
        scripts[stage] = generate(build, stage, sources_archive=plan.sources_archive or None)
    for stage in plan.steps:
        scripts[stage] = generate(build, stage)
    if plan.after_script:
        for status in _STATUSES:
            scripts[after_script_key(status)] = generate(build, Stage.AFTER_SCRIPT, job_status=status)
    for stage in (*plan.on_success, *plan.on_failure):
        scripts[stage] = generate(build, stage)
    if plan.cleanup:
        scripts[Stage.CLEANUP_FILE_VARIABLES] = generate(build, Stage.CLEANUP_FILE_VARIABLES)
    scripts["init"] = init_driver(plan)
    scripts["build"] = build_driver(plan)
    scripts["helper"] = helper_driver(plan)
    return scripts


# ------------------------------------------------------------------------ shell parts

_YELLOW = "\\033[0;33m"
_RESET = "\\033[0;m"


def _common(plan: DriverPlan, role: str, traps: Sequence[str] = ()) -> list[str]:
    """Variables and functions every driver shares (no I/O happens here: startup stays fast).

    ``traps`` come first, so that a TERM right after the start is not lost.
    """
    return [
        f"# kuberunner {__version__}: the {role} driver of job {plan.job_id}",
        "# (generated by kuberunner.executors.kubernetes.driver)",
        "kr_sigs=0 kr_term= kr_alarm=",
        *traps,
        f"S=${{KUBERUNNER_SCRIPTS_DIR:-{SCRIPTS_DIR}}}",
        f"T=${{KUBERUNNER_STATE_DIR:-{STATE_DIR}}}",
        f"kr_nonce={plan.nonce}",
        f"kr_grace={plan.kill_grace}",
        "kr_pid= kr_killer= kr_timer= kr_why= kr_rc=0 kr_stop_on=",
        "if command -v bash >/dev/null 2>&1; then kr_sh=bash; else kr_sh=sh; fi",
        "if command -v setsid >/dev/null 2>&1; then kr_setsid=1; else kr_setsid=; fi",
        'kr_mark() { printf \'\\036kuberunner:%s:%s\\n\' "$kr_nonce" "$1"; }',
        f'kr_exit() {{ kr_mark "done:{role}:$1"; exit "$1"; }}',
        f"kr_warn() {{ printf '{_YELLOW}WARNING: %s{_RESET}\\n' \"$1\"; }}",
        # a nap the TERM trap can interrupt; fractional sleeps where the image's sleep has them
        "kr_naps=",
        "kr_nap() {",
        '  if [ -z "$kr_naps" ]; then if sleep 0.01 2>/dev/null; then kr_naps=5; else kr_naps=1; fi; fi',
        '  if [ "$kr_naps" = 5 ]; then sleep 0.2 & else sleep 1 & fi',
        "  wait $! 2>/dev/null",
        "}",
        # the process tree under $1 (pids, breadth first), for images without setsid
        "kr_tree() {",
        "  kr_all=$1 kr_new=$1",
        '  while [ -n "$kr_new" ]; do',
        "    kr_next=",
        "    for kr_f in /proc/[0-9]*/stat; do",
        '      kr_l=; { read -r kr_l < "$kr_f"; } 2>/dev/null || continue',
        "      kr_p=${kr_f#/proc/}; kr_p=${kr_p%/stat}",
        "      kr_l=${kr_l##*) }; kr_l=${kr_l#* }; kr_pp=${kr_l%% *}",
        '      case " $kr_new " in *" $kr_pp "*) kr_next="$kr_next $kr_p";; esac',
        "    done",
        '    kr_all="$kr_all$kr_next"; kr_new=${kr_next# }',
        "  done",
        '  echo "$kr_all"',
        "}",
        # signal the running stage: its session (setsid) and its process tree
        "kr_signal() {",
        '  [ -n "$kr_pid" ] || return 0',
        '  if [ -n "$kr_setsid" ]; then',
        '    kill -s "$1" -- "-$kr_pid" 2>/dev/null || kill -s "$1" "-$kr_pid" 2>/dev/null',
        "  fi",
        '  for kr_q in $(kr_tree "$kr_pid"); do kill -s "$1" "$kr_q" 2>/dev/null; done',
        "  return 0",
        "}",
        "kr_should_stop() {",
        '  case " $kr_stop_on " in *" term "*) [ -n "$kr_term" ] && return 0;; esac',
        '  case " $kr_stop_on " in *" alarm "*) [ -n "$kr_alarm" ] && return 0;; esac',
        "  return 1",
        "}",
        "kr_start() {",
        '  if [ -n "$kr_setsid" ]; then',
        '    setsid "$kr_sh" "$S/$1" </dev/null &',
        "  else",
        '    "$kr_sh" "$S/$1" </dev/null &',
        "  fi",
        "  kr_pid=$!",
        "}",
        # wait for the stage; a trap interrupts `wait`, so a stop request is acted on at once
        "kr_wait() {",
        "  kr_why=",
        "  while :; do",
        '    if [ -z "$kr_why" ] && kr_should_stop; then',
        '      if [ -n "$kr_term" ]; then kr_why=canceled; else kr_why=timeout; fi',
        "      kr_signal TERM",
        '      ( sleep "$kr_grace"; kr_signal KILL ) </dev/null >/dev/null 2>&1 &',
        "      kr_killer=$!",
        "    fi",
        "    kr_seen=$kr_sigs",
        '    wait "$kr_pid" 2>/dev/null',
        "    kr_rc=$?",
        '    if [ "$kr_sigs" = "$kr_seen" ] || ! kill -0 "$kr_pid" 2>/dev/null; then break; fi',
        "  done",
        "  kr_signal KILL",
        '  if [ -n "$kr_killer" ]; then kill "$kr_killer" 2>/dev/null; kr_killer=; fi',
        "  kr_pid=",
        "}",
        # kr_stage <stage> <key> <attempts>: one section per attempt; 0 when the stage succeeded
        "kr_stage() {",
        "  kr_n=0",
        "  while :; do",
        "    kr_n=$((kr_n + 1))",
        '    kr_mark "stage:start:$1"',
        '    kr_start "$2"',
        "    kr_wait",
        '    kr_mark "stage:end:$1:$kr_rc${kr_why:+:$kr_why}"',
        '    if [ "$kr_rc" -eq 0 ] && [ -z "$kr_why" ]; then return 0; fi',
        '    if [ -n "$kr_why" ] || [ "$kr_n" -ge "$3" ] || kr_should_stop; then return 1; fi',
        "  done",
        "}",
        # an alarm (USR1) after $1 seconds, for RUNNER_SCRIPT_TIMEOUT and after_script's timeout
        "kr_timer_start() {",
        "  ( trap 'kill \"$kr_s\" 2>/dev/null; exit 0' TERM",
        '    sleep "$1" & kr_s=$!',
        '    wait "$kr_s" && kill -s USR1 $$ ) </dev/null >/dev/null 2>&1 &',
        "  kr_timer=$!",
        "}",
        "kr_timer_stop() {",
        '  if [ -n "$kr_timer" ]; then kill "$kr_timer" 2>/dev/null; kr_timer=; fi',
        "}",
        f"cd {quote(plan.builds_dir)} 2>/dev/null || cd /",
    ]


def _trap_term() -> str:
    return "trap 'kr_sigs=$((kr_sigs + 1)); kr_term=1' TERM"


def init_driver(plan: DriverPlan) -> str:
    """The init container's program: the stages before the steps, stopping at the first failure."""
    lines = _common(plan, "init", [_trap_term()])
    lines += ["kr_stop_on=term"]
    for stage, attempts in plan.init_stages:
        lines += [
            'if [ -n "$kr_term" ]; then kr_exit 143; fi',
            f"if ! kr_stage {stage} {stage} {max(1, attempts)}; then",
            '  if [ "$kr_rc" -eq 0 ]; then kr_exit 1; fi',
            '  kr_exit "$kr_rc"',
            "fi",
        ]
    lines.append("kr_exit 0")
    return "\n".join(lines) + "\n"


def _service_wait(plan: DriverPlan) -> list[str]:
    """Wait until each service listens (read from /proc/net/tcp*: no nc or bash needed)."""
    if not plan.services:
        return []
    lines = [
        "kr_listening() {",
        "  for kr_t in /proc/net/tcp /proc/net/tcp6; do",
        '    [ -r "$kr_t" ] || continue',
        "    while read -r kr_sl kr_local kr_rem kr_st kr_rest; do",
        '      [ "$kr_st" = 0A ] || continue',
        "      for kr_h in $kr_hexes; do",
        '        case "$kr_local" in *":$kr_h") return 0;; esac',
        "      done",
        '    done < "$kr_t"',
        "  done",
        "  return 1",
        "}",
        # kr_wait_service <name> <timeout> <port>...
        "kr_wait_service() {",
        "  kr_name=$1 kr_limit=$2; shift 2",
        '  kr_hexes=; kr_ports="$*"',
        '  for kr_port in "$@"; do kr_hexes="$kr_hexes $(printf \'%04X\' "$kr_port")"; done',
        "  kr_i=0 kr_told=",
        "  while ! kr_listening; do",
        '    if [ -n "$kr_term" ]; then return 1; fi',
        '    if [ -z "$kr_told" ]; then',
        '      printf \'Waiting for service %s to listen on port %s...\\n\' "$kr_name" "$kr_ports"',
        "      kr_told=1",
        "    fi",
        "    kr_nap",
        "    kr_i=$((kr_i + 1))",
        '    if [ "$kr_i" -ge $((kr_limit * kr_naps)) ]; then',
        '      kr_warn "service $kr_name is not listening on port $kr_ports after ${kr_limit}s: '
        "the job starts anyway (its log: the service's container in the pod)\"",
        "      return 0",
        "    fi",
        "  done",
        "}",
        "if [ -r /proc/net/tcp ] || [ -r /proc/net/tcp6 ]; then",
    ]
    for service in plan.services:
        ports = " ".join(str(p) for p in service.ports)
        lines.append(f"  kr_wait_service {quote(service.name)} {plan.service_timeout} {ports}")
    lines += [
        "else",
        '  kr_warn "cannot see listening ports (/proc/net/tcp): not waiting for services"',
        "fi",
    ]
    return lines


def build_driver(plan: DriverPlan) -> str:
    """The build container's program: steps, after_script, the result file."""
    lines = _common(plan, "build", [_trap_term(), "trap 'kr_sigs=$((kr_sigs + 1)); kr_alarm=1' USR1"])
    lines += [
        "kr_stop_on='term alarm'",
        # the helper notices a build container that died without a result by this going stale
        f'( while :; do : > "$T/build.alive"; sleep {HEARTBEAT_SECONDS}; done ) </dev/null >/dev/null 2>&1 &',
        "kr_hb=$!",
        "kr_status=success kr_code=0 kr_ran=",
    ]
    lines += _service_wait(plan)
    if plan.steps:
        if plan.script_timeout:
            lines.append(f"kr_timer_start {plan.script_timeout}")
        for stage in plan.steps:
            lines += [
                'if [ "$kr_status" = success ] && [ -z "$kr_term" ]; then',
                "  kr_ran=1",
                f"  if ! kr_stage {stage} {stage} 1; then",
                "    kr_code=$kr_rc kr_status=failed",
                '    if [ "$kr_why" = canceled ]; then kr_status=canceled; fi',
                "  fi",
                "fi",
            ]
        lines.append("kr_timer_stop")
    lines += [
        'if [ -z "$kr_ran" ] && [ -n "$kr_term" ]; then kr_status=canceled kr_code=143; fi',
    ]
    if plan.after_script:
        run_after = f'kr_stage {Stage.AFTER_SCRIPT} "{Stage.AFTER_SCRIPT}.$kr_status" 1'
        # AFTER_SCRIPT_IGNORE_ERRORS=false: a failing after_script fails a job that had succeeded
        fails_job = [
            f"  if ! {run_after}; then",
            '    if [ "$kr_status" = success ]; then kr_status=failed kr_code=$kr_rc; fi',
            "  fi",
        ]
        lines += [
            'if [ -n "$kr_ran" ]; then',
            "  kr_alarm=; kr_stop_on=alarm",
            f"  kr_timer_start {plan.after_script_timeout}",
            *([f"  {run_after} || :"] if plan.after_script_ignore_errors else fails_job),
            "  kr_timer_stop",
            "fi",
        ]
    lines += [
        'if [ "$kr_status" != success ] && [ "$kr_code" -eq 0 ]; then kr_code=1; fi',
        'printf \'%s %s\\n\' "$kr_code" "$kr_status" > "$T/build.rc.tmp" && '
        'mv -f "$T/build.rc.tmp" "$T/build.rc"',
        'kill "$kr_hb" 2>/dev/null',
        'kr_mark "result:$kr_code:$kr_status"',
        'exit "$kr_code"',
    ]
    return "\n".join(lines) + "\n"


def _stages_block(stages: Iterable[str], *, fail_job: bool) -> list[str]:
    """Run each stage; with ``fail_job`` the first failure's code becomes the driver's."""
    lines: list[str] = []
    for stage in stages:
        if fail_job:
            lines.append(f'kr_stage {stage} {stage} 1 || {{ [ "$kr_code" -ne 0 ] || kr_code=$kr_rc; }}')
        else:
            lines.append(f"kr_stage {stage} {stage} 1 || :")
    return lines


def helper_driver(plan: DriverPlan) -> str:
    """The helper container's program: wait for the build's result, then cache, artifacts, cleanup."""
    lines = _common(plan, "helper", [_trap_term()])
    lines += [
        "kr_i=0",
        'rm -f "$T/helper.seen"',
        'while [ ! -f "$T/build.rc" ]; do',
        # TERM and the build never started (its image is still being pulled, say): nothing to wait for
        '  if [ -n "$kr_term" ] && [ ! -e "$T/build.alive" ]; then kr_exit 143; fi',
        '  if [ -e "$T/build.alive" ]; then',
        '    if [ ! -e "$T/helper.seen" ]; then',
        '      : > "$T/helper.seen"; kr_i=0',
        f'    elif [ "$kr_i" -ge $(({HEARTBEAT_CHECK_SECONDS} * kr_naps)) ]; then',
        '      if ! [ "$T/build.alive" -nt "$T/helper.seen" ] && [ ! -f "$T/build.rc" ]; then',
        '        kr_warn "the build container stopped without a result: handling the job as failed"',
        "        break",
        "      fi",
        '      : > "$T/helper.seen"; kr_i=0',
        "    fi",
        "  fi",
        "  kr_nap",
        "  kr_i=$((kr_i + 1))",
        "done",
        "kr_bstatus=failed",
        'if [ -f "$T/build.rc" ]; then read -r kr_brc kr_bstatus < "$T/build.rc"; fi',
        "kr_code=0",
        'if [ "$kr_bstatus" = success ]; then',
        *["  " + line for line in _stages_block(plan.on_success, fail_job=True) or [":"]],
        "else",
        *["  " + line for line in _stages_block(plan.on_failure, fail_job=False) or [":"]],
        "fi",
    ]
    if plan.cleanup:
        lines += _stages_block([Stage.CLEANUP_FILE_VARIABLES], fail_job=False)
    lines.append('kr_exit "$kr_code"')
    return "\n".join(lines) + "\n"

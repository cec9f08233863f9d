"""``kuberunner exec`` against every invocation of the gitlab-ci-local corpus.

Every invocation (``run``, ``preview`` and ``list``) goes through the real CLI in a
subprocess, in a workspace prepared as the corpus README says: a fresh copy of the
case, ``git init`` on ``master`` with the recorded identity, one commit, the
``origin`` remote and ``origin/HEAD`` -> ``main``; a minimal environment (``PATH``,
an empty ``HOME``, ``LANG=C.UTF-8``, no stdin); ``reuse_workspace`` entries run in
the previous entry's workspace. gitlab-ci-local options map to ours:
``--shell-isolation`` is what we always do, ``--list``/``--list-csv`` become
``--list-json``, the project files gitlab-ci-local reads by itself
(``.gitlab-ci-local-variables.yml``, ``.gitlab-ci-local-inputs.yml``) are passed as
``--variables-file``/``--inputs-file``.

For ``run`` entries we compare the exit code, every job's status (from the summary),
every started job's own output lines (the ``job > line`` lines of its
``step_script`` and ``after_script`` sections, without ``$ cmd`` echoes and runner
messages; as a multiset where the job also wrote to stderr, since our log merges the
two streams as GitLab's does), coverage, environments and files. Fatal errors must
stop the run before any job starts and name the identifiers gitlab-ci-local's message
names. ``preview`` and ``list`` output is compared as data.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kuberunner.pipeline import load_pipeline, read_variables_file
from kuberunner.script import Stage, stage_title

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "gitlab-ci-local"
CASES = CORPUS / "cases"
TOTAL_INVOCATIONS = 149
RUN_TIMEOUT = 120


def _load_preview_module() -> Any:
    """The identifiers each fatal error must name live beside the preview conformance test."""
    spec = importlib.util.spec_from_file_location(
        "_corpus_preview", Path(__file__).with_name("test_preview.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ERROR_IDENTIFIERS: dict[tuple[str, int], list[str]] = _load_preview_module().ERROR_IDENTIFIERS

# Invocations where kuberunner exec deliberately differs from gitlab-ci-local, with the reason
# and the exact differences that must still be there (the test fails if one disappears or changes).
KNOWN_DIFFERENCES: dict[tuple[str, int], tuple[str, list[str]]] = {
    # GitLab never copies artifacts into the project's working tree: a later job gets them
    # through `needs`/`dependencies`, the user by downloading them. gitlab-ci-local copies
    # them back ("artifacts to source", its default), which is what `files` records here.
    ("artifacts-shell-fail-always", 0): (
        "GitLab does not copy artifacts back into the project directory; gitlab-ci-local does",
        ["files: path/file1 exists: expected True, got False"],
    ),
    # `--home DIR` makes gitlab-ci-local read user-level variables from
    # DIR/.gitlab-ci-local/variables.yml (its own file, sections global/project/group);
    # kuberunner exec has no user-level variables (project variables: --variables-file).
    ("variable-order", 0): (
        "gitlab-ci-local's --home user-variables file has no kuberunner equivalent",
        [
            "output test-job: expected ['PIPELINE_VARIABLE=pipeline-value', 'JOB_VARIABLE=job-value', "
            "'OVERRIDDEN_BY_JOB=job-value', 'CI_PIPELINE_ID=pipeline-value', 'CI_JOB_ID=job-value', "
            "'HOME_VARIABLE=home-value', 'PROJECT_VARIABLE=project-value', 'PROD_ONLY_VARIABLE=notprod'], "
            "got ['PIPELINE_VARIABLE=pipeline-value', 'JOB_VARIABLE=job-value', "
            "'OVERRIDDEN_BY_JOB=job-value', 'CI_PIPELINE_ID=pipeline-value', 'CI_JOB_ID=job-value', "
            "'HOME_VARIABLE=job-value', "
            "'PROJECT_VARIABLE=project-value', 'PROD_ONLY_VARIABLE=notprod']"
        ],
    ),
    # gitlab-runner matches artifacts:exclude with doublestar, where `dir/**` also matches `dir`
    # itself (kuberunner-helper does the same), so `foo/qux/qu ux/**` leaves the directory out of
    # the archive; gitlab-ci-local keeps the empty directory, which the consumer checks for.
    ("artifacts-exclude", 0): (
        "exclude `dir/**` drops `dir` itself (gitlab-runner's doublestar); gitlab-ci-local keeps it",
        [
            "exit code: expected 0, got 1: ",
            "statuses consume-artifacts: expected 'success', got 'failed'",
        ],
    ),
    # GitLab creates no pipeline when no workflow:rules entry matches (docs: workflow:rules);
    # gitlab-ci-local runs the jobs anyway. kuberunner exec says so and runs nothing.
    ("workflow-rules-variables", 1): (
        "no workflow:rules entry matches: GitLab creates no pipeline; gitlab-ci-local runs it",
        [
            "exit code: expected 0, got 1: .gitlab-ci-no-match.yml: workflow:rules do not create a pipeline "
            "for this commit (ref `master`, source `push`), so GitLab would run no job; pass --variable to "
            "satisfy a rule (e.g. CI_PIPELINE_SOURCE=merge_request_event)",
            "statuses test-job: missing",
            "output test-job: the job did not run",
        ],
    ),
    # GitLab documents `interruptible` as a `default:` keyword every job inherits;
    # gitlab-ci-local's preview leaves the inherited value out (see test_preview.py).
    ("include-inputs", 11): (
        "default:interruptible is inherited by jobs (GitLab docs); gcl does not merge it",
        ["preview scan-website.interruptible: unexpected True"],
    ),
    ("include-inputs", 12): (
        "default:interruptible is inherited by jobs (GitLab docs); gcl does not merge it",
        ["preview scan-website.interruptible: unexpected False"],
    ),
}

# What the log shows around a job's own output (kuberunner.script's section titles).
_TITLES = {stage_title(s) for s in Stage} | {'Preparing the "shell" executor'}
_OWN_SECTIONS = {stage_title(Stage.STEP_SCRIPT), stage_title(Stage.AFTER_SCRIPT)}
_RUNNER_LINES = re.compile(
    r"^(?:\$ .*|Running after script\.\.\.|Job succeeded|ERROR: Job failed.*"
    r"|WARNING: after_script failed, but job will continue unaffected: .*)$"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SUMMARY = re.compile(r"^  (success|failed|warning|skipped|manual|canceled) +(.*)$")


def _invocations() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for case_dir in sorted(p for p in CASES.iterdir() if p.is_dir()):
        for index, entry in enumerate(json.loads((case_dir / "expected.json").read_text())):
            out.append((case_dir.name, index, entry))
    return out


INVOCATIONS = _invocations() if CASES.is_dir() else []


# --------------------------------------------------------------------------- workspace


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }


def _git(cwd: Path, home: Path, *args: str) -> None:
    env = {
        **_env(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def prepare_case(case: str, root: Path) -> Path:
    """Copy the case and make it the git repository the corpus was recorded in."""
    work = root / "w"
    shutil.copytree(
        CASES / case, work, ignore=shutil.ignore_patterns("expected.json"), copy_function=shutil.copyfile
    )
    for dirpath, _, _ in os.walk(work):
        os.chmod(dirpath, 0o755)
    home = root / "home"
    home.mkdir(exist_ok=True)
    _git(work, home, "init", "-q", "-b", "master")
    _git(work, home, "config", "user.email", "test@test.com")
    _git(work, home, "config", "user.name", "Testersen")
    _git(work, home, "add", "-A")
    _git(work, home, "commit", "-qm", "init")
    _git(work, home, "remote", "add", "origin", "git@gitlab.com:gcl/test-project.git")
    _git(work, home, "update-ref", "refs/remotes/origin/main", "HEAD")
    _git(work, home, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return work


def exec_argv(entry: dict[str, Any], project: Path) -> list[str]:
    """Our command line for a corpus entry (gitlab-ci-local's flags mapped to ours)."""
    args = ["--cwd", str(project)]
    it = iter(entry["argv"])
    for arg in it:
        if arg in ("--file", "--variable", "--unset-variable", "--manual", "--stage", "--input"):
            args += [arg, next(it)]
        elif arg in ("--needs", "--no-needs", "--preview"):
            args.append(arg)
        elif arg in ("--list", "--list-csv"):
            args.append("--list-json")
        elif arg == "--home":
            next(it)  # gitlab-ci-local's user variables: see KNOWN_DIFFERENCES
        elif arg in ("--shell-isolation", "--no-shell-isolation", "--no-artifacts-to-source"):
            continue  # every job always runs in its own copy, and artifacts stay out of the project
        elif arg == "--json-schema-validation":
            continue  # the configuration is always validated
        elif arg.startswith("--"):
            raise AssertionError(f"unmapped gitlab-ci-local option {arg}")
        else:
            args.append(arg)
    for name, option in (
        (".gitlab-ci-local-variables.yml", "--variables-file"),
        (".gitlab-ci-local-inputs.yml", "--inputs-file"),
    ):
        if (project / name).is_file():
            args += [option, str(project / name)]
    return args


# --------------------------------------------------------------------------- output parsing


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


def _summary(stdout: str) -> dict[str, tuple[str, list[str]]]:
    """``{job: (status, [stage, duration?, details...])}`` from the plain summary."""
    lines = stdout.splitlines()
    if "Summary" not in lines:
        return {}
    out: dict[str, tuple[str, list[str]]] = {}
    for line in lines[len(lines) - 1 - lines[::-1].index("Summary") + 1 :]:
        match = _SUMMARY.match(line)
        if match:
            name, *fields = match.group(2).split(" | ")
            out[name] = (match.group(1), fields)
    return out


def job_outputs(stdout: str, names: list[str]) -> dict[str, list[str]]:
    """Each job's own output lines, from the ``job > line`` lines of the run."""
    pad = min(max((len(n) for n in names), default=0), 40)
    prefixes = sorted(((n.ljust(pad) + " > ", n) for n in names), key=lambda p: -len(p[0]))
    section: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for raw in stdout.splitlines():
        found = next(((p, n) for p, n in prefixes if raw.startswith(p)), None)
        if found is None:
            continue
        prefix, name = found
        line = _ANSI.sub("", raw[len(prefix) :]).replace("\r", "")
        out.setdefault(name, [])
        if line in _TITLES:
            section[name] = line
        elif section.get(name) in _OWN_SECTIONS and not _RUNNER_LINES.match(line):
            out[name].append(line)
    return out


# --------------------------------------------------------------------------- comparison


def _diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in expected:
            sub = f"{path}.{key}" if path else str(key)
            out += [f"{sub}: missing"] if key not in actual else _diff(expected[key], actual[key], sub)
        for key in actual:
            if key not in expected:
                out.append(f"{f'{path}.{key}' if path else key}: unexpected {actual[key]!r}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in _diff(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def _gcl_names(project: Path, args: list[str], names: list[str]) -> dict[str, str]:
    """Our job name -> gitlab-ci-local's spelling (``PipelineJob.aliases``) for parallel jobs."""
    options: dict[str, list[str]] = {}
    for flag, value in itertools.pairwise(args):
        if flag in ("--file", "--variable", "--variables-file"):
            options.setdefault(flag, []).append(value)
    variables = dict(v.split("=", 1) for v in options.get("--variable", []))
    files = options.get("--variables-file", [])
    pipeline = load_pipeline(
        project,
        file=options.get("--file", [".gitlab-ci.yml"])[-1],
        variables=variables,
        project_variables=read_variables_file(Path(files[-1])) if files else None,
    )
    return {job.name: (job.aliases or (job.name,))[0] for job in pipeline.jobs if job.name in names}


def compare_run(entry: dict[str, Any], run: Run, project: Path, args: list[str]) -> list[str]:
    diffs: list[str] = []
    if (run.exit_code != 0) != (entry["exit_code"] != 0):
        diffs.append(
            f"exit code: expected {entry['exit_code']}, got {run.exit_code}: {run.stderr.strip()[-300:]}"
        )
    summary = _summary(run.stdout)
    if "error" in entry:
        if summary or " > " in run.stdout:
            diffs.append("jobs ran although the configuration must be rejected first")
        return diffs
    names = _gcl_names(project, args, list(summary))
    statuses = {names.get(n, n): status for n, (status, _) in summary.items()}
    diffs += [f"statuses {d}" for d in _diff(entry["jobs"], statuses)]
    outputs = {names.get(n, n): lines for n, lines in job_outputs(run.stdout, list(summary)).items()}
    for job, expected in entry["output"].items():
        if expected is None:
            continue
        got = outputs.get(job)
        if got is None:
            diffs.append(f"output {job}: the job did not run")
        elif job in entry.get("stderr", {}):
            if sorted(got) != sorted(expected):
                diffs.append(f"output {job} (as a multiset): expected {expected!r}, got {got!r}")
        elif got != expected:
            diffs.append(f"output {job}: expected {expected!r}, got {got!r}")
    for job in outputs:
        if job not in entry["output"]:
            diffs.append(f"output {job}: ran, but gitlab-ci-local did not start it")
    details = {names.get(n, n): fields for n, (_, fields) in summary.items()}
    for job, coverage in entry.get("coverage", {}).items():
        if f"coverage {coverage}%" not in details.get(job, []):
            diffs.append(f"coverage {job}: expected {coverage}, got {details.get(job)}")
    for job, env in entry.get("environments", {}).items():
        want = f"environment {env['name']}" + (f" ({env['url']})" if env.get("url") else "")
        if want not in details.get(job, []):
            diffs.append(f"environment {job}: expected {want!r}, got {details.get(job)}")
    for path, exists in entry.get("files", {}).items():
        if (project / path).exists() != exists:
            diffs.append(f"files: {path} exists: expected {exists}, got {not exists}")
    return diffs


def compare_other(entry: dict[str, Any], run: Run) -> list[str]:
    if run.exit_code != entry["exit_code"]:
        return [f"exit code: expected {entry['exit_code']}, got {run.exit_code}: {run.stderr.strip()[-300:]}"]
    if "error" in entry:
        return []
    if entry["mode"] == "preview":
        return [f"preview {d}" for d in _diff(entry["preview"], YAML(typ="safe", pure=True).load(run.stdout))]
    return [f"list {d}" for d in _diff(entry["list"], json.loads(run.stdout))]


def _error_diffs(case: str, index: int, entry: dict[str, Any], run: Run) -> list[str]:
    if "error" not in entry:
        return []
    missing = [i for i in ERROR_IDENTIFIERS[(case, index)] if i not in run.stderr]
    return [f"error message lacks {m!r}: {run.stderr.strip()}" for m in missing]


# --------------------------------------------------------------------------- running


def _run_case(case: str) -> dict[int, list[str]]:
    entries = json.loads((CASES / case / "expected.json").read_text())
    results: dict[int, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix=f"kr-{case}-") as tmp:
        root = Path(tmp)
        work: Path | None = None
        for index, entry in enumerate(entries):
            if not entry.get("reuse_workspace") or work is None:
                if work is not None:
                    shutil.rmtree(root)
                    root.mkdir()
                work = prepare_case(case, root)
            project = work / entry.get("cwd", ".")
            args = exec_argv(entry, project)
            done = subprocess.run(
                [sys.executable, "-m", "kuberunner", "exec", *args],
                cwd=work,
                env=_env(root / "home"),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            run = Run(done.returncode, done.stdout, done.stderr)
            diffs = (
                compare_run(entry, run, project, args)
                if entry["mode"] == "run"
                else compare_other(entry, run)
            )
            results[index] = diffs + _error_diffs(case, index, entry, run)
    return results


@functools.cache
def all_results() -> dict[tuple[str, int], list[str]]:
    """Every invocation's differences, computed once (cases in parallel, entries of a case in order)."""
    cases = sorted({case for case, _, _ in INVOCATIONS})
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2))) as pool:
        per_case = dict(zip(cases, pool.map(_run_case, cases), strict=True))
    return {(case, index): diffs for case, results in per_case.items() for index, diffs in results.items()}


def _ids() -> Iterator[str]:
    for case, index, entry in INVOCATIONS:
        yield f"{case}[{index}]-{entry['mode']}{'-error' if 'error' in entry else ''}"


@pytest.mark.parametrize(("case", "index", "entry"), INVOCATIONS, ids=list(_ids()))
def test_invocation(case: str, index: int, entry: dict[str, Any]) -> None:
    diffs = all_results()[(case, index)]
    if (case, index) in KNOWN_DIFFERENCES:
        reason, signature = KNOWN_DIFFERENCES[(case, index)]
        assert diffs, f"known difference disappeared ({reason}): update KNOWN_DIFFERENCES"
        assert diffs == signature, f"known difference changed ({reason}): {diffs}"
        return
    assert not diffs, "\n".join(diffs)


def test_agreement_rate(capsys: pytest.CaptureFixture[str]) -> None:
    """At least 95 % of all corpus invocations agree with gitlab-ci-local."""
    results = all_results()
    assert len(results) == TOTAL_INVOCATIONS
    agreed = [key for key, diffs in results.items() if not diffs]
    rate = len(agreed) / len(results)
    with capsys.disabled():  # shown in every run, not only with -s
        print(
            f"\nkuberunner exec conformance: {len(agreed)}/{len(results)} invocations agree ({rate:.1%}); "
            f"known differences: {sorted(KNOWN_DIFFERENCES)}"
        )
    assert rate >= 0.95, f"agreement {rate:.1%}: {sorted(set(results) - set(agreed))}"

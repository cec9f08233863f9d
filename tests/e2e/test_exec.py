"""``kuberunner exec`` end to end: the real CLI in a subprocess, real git, real shell jobs.

Projects are small git repositories made in a temporary directory; every run uses its own
``--state-dir`` so tests never share builds or caches. Plain (non-terminal) output is parsed
as a user's script would: ``job > line`` lines, then the ``Summary`` block.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML

from kuberunner.runner.artifact_store import ArtifactStore, DotenvError, parse_dotenv
from kuberunner.runner.local import coverage_of, list_sources

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "pipeline"
TIMEOUT = 120


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def statuses(self) -> dict[str, str]:
        return {name: status for name, (status, _) in self.summary.items()}

    @property
    def summary(self) -> dict[str, tuple[str, list[str]]]:
        lines = self.stdout.splitlines()
        assert "Summary" in lines, self.stdout + self.stderr
        out = {}
        for line in lines[lines.index("Summary") + 1 :]:
            match = re.match(r"^  (\w+) +(.*)$", line)
            if match:
                name, *fields = match.group(2).split(" | ")
                out[name] = (match.group(1), fields)
        return out

    def lines(self, job: str) -> list[str]:
        """Everything the run printed for ``job`` (its whole log, prefix removed)."""
        pattern = re.compile(rf"^{re.escape(job)} *> (.*)$")
        return [m.group(1) for m in map(pattern.match, self.stdout.splitlines()) if m]

    def output(self, job: str) -> list[str]:
        """The job's own output: its step_script/after_script lines without the ``$ cmd`` echoes."""
        out, inside = [], False
        for line in self.lines(job):
            if line in ('Executing "step_script" stage of the job script', "Running after_script"):
                inside = True
            elif line.startswith(("Saving cache", "Uploading artifacts for", "Cleaning up", "Running with")):
                inside = False
            elif inside and not line.startswith(
                ("$ ", "Running after script...", "Job succeeded", "ERROR: Job")
            ):
                out.append(line)
        return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR",)}
    env.update(extra)
    return env


def kuberunner(*args: str, cwd: Path | None = None, **env: str) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "kuberunner", "exec", *args],
        cwd=cwd,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=dev@example.com", "-c", "user.name=Dev", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_project(root: Path, pipeline: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitlab-ci.yml").write_text(pipeline)
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial commit")
    return root


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# --------------------------------------------------------------------------- a realistic pipeline

PIPELINE = """
stages: [build, test, deploy]

variables:
  GREETING: hello

build:
  stage: build
  cache:
    key: deps
    paths: [deps/]
  script:
    - if [ -f deps/lib.txt ]; then echo "cache warm"; else echo "cache cold"; fi
    - mkdir -p deps out && echo lib > deps/lib.txt
    - echo "built by $CI_JOB_NAME" > out/app.txt
    - echo "VERSION=2.0" > build.env
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env

other:
  stage: build
  script:
    - mkdir -p other && echo other > other/file.txt
  artifacts:
    paths: [other/]

test:
  stage: test
  needs: [build]
  script:
    - cat out/app.txt
    - test ! -e other/file.txt && echo "no artifacts from other"
    - echo "$GREETING, version $VERSION"

flaky-lint:
  stage: test
  needs: []
  allow_failure: true
  script:
    - echo "lint found problems" >&2
    - exit 4

deploy:
  stage: deploy
  dependencies: [other]
  script:
    - ls
    - echo "token $CI_JOB_TOKEN"

publish:
  stage: deploy
  when: manual
  script:
    - echo published
"""


def test_pipeline_with_needs_artifacts_cache_manual_and_allowed_failure(tmp_path: Path, state: Path) -> None:
    project = make_project(tmp_path / "p", PIPELINE)
    first = kuberunner("--cwd", str(project), "--state-dir", str(state))
    assert first.code == 0, first.stdout + first.stderr
    assert first.statuses == {
        "build": "success",
        "other": "success",
        "test": "success",
        "flaky-lint": "warning",
        "deploy": "success",
        "publish": "manual",
    }
    assert first.output("build") == ["cache cold"]
    # artifacts only along needs, dotenv variables with them
    assert first.output("test") == ["built by build", "no artifacts from other", "hello, version 2.0"]
    # dependencies: [other] narrows the earlier stages' artifacts to other's
    deploy = first.output("deploy")
    assert "other" in deploy and "out" not in deploy
    assert "token [MASKED]" in deploy
    assert not any("glcbt-" in line for line in first.stdout.splitlines() if "token [MASKED]" not in line)
    assert first.summary["flaky-lint"][1][-1] == "exit code 4, allowed to fail"
    assert (
        first.stdout.splitlines()[-1] == "Pipeline passed with warnings: flaky-lint failed (allowed to fail)"
    )
    assert "publish" not in {line.split(" ")[0] for line in first.stdout.splitlines() if " > " in line}

    second = kuberunner("--cwd", str(project), "--state-dir", str(state), "--manual", "publish", "publish")
    assert second.code == 0, second.stdout + second.stderr
    assert second.statuses == {"publish": "success"}
    assert second.output("publish") == ["published"]

    third = kuberunner("--cwd", str(project), "--state-dir", str(state), "build")
    assert third.output("build") == ["cache warm"]  # the cache survived the runs in between


def test_output_lines_are_prefixed_and_padded_per_job(tmp_path: Path, state: Path) -> None:
    project = make_project(
        tmp_path / "p",
        "a:\n  script: [echo one, echo two]\nlonger-name:\n  script: ['printf \"x\\\\ny\\\\n\"']\n",
    )
    result = kuberunner("--cwd", str(project), "--state-dir", str(state))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "a           > one" in lines and "a           > two" in lines
    assert "longer-name > x" in lines and "longer-name > y" in lines
    job_lines = [line for line in lines[: lines.index("")] if line]
    assert all(re.match(r"^(a {10}|longer-name) > ", line) for line in job_lines)
    assert lines.index("a           > one") < lines.index("a           > two")


def test_concurrency_one_runs_jobs_one_after_the_other(tmp_path: Path, state: Path) -> None:
    jobs = "".join(f"job{i}:\n  script: [echo start {i}, echo end {i}]\n" for i in range(3))
    project = make_project(tmp_path / "p", jobs)
    result = kuberunner("--cwd", str(project), "--state-dir", str(state), "--concurrency", "1")
    assert result.code == 0
    order = [line.split(" > ", 1)[0] for line in result.stdout.splitlines() if " > " in line]
    assert order == sorted(order)  # job0's whole log, then job1's, then job2's
    assert [line for line in result.stdout.splitlines() if "> start" in line or "> end" in line] == [
        f"job{i} > {what} {i}" for i in range(3) for what in ("start", "end")
    ]


def test_failing_pipeline_exits_1_and_runs_on_failure_and_always_jobs(tmp_path: Path, state: Path) -> None:
    project = make_project(
        tmp_path / "p",
        """
stages: [build, test, cleanup]
compile:
  stage: build
  script: [echo compiling, exit 2]
unit:
  stage: test
  script: [echo never]
report-failure:
  stage: cleanup
  when: on_failure
  script: [echo reporting]
tidy:
  stage: cleanup
  when: always
  script: [echo tidying]
""",
    )
    result = kuberunner("--cwd", str(project), "--state-dir", str(state))
    assert result.code == 1
    assert result.statuses == {
        "compile": "failed",
        "unit": "skipped",
        "report-failure": "success",
        "tidy": "success",
    }
    assert result.summary["compile"][1][-1] == "exit code 2"
    assert result.output("report-failure") == ["reporting"]
    assert result.lines("unit") == []
    assert result.stdout.splitlines()[-1] == "Pipeline failed: compile failed"


def test_retry_timeout_and_after_script(tmp_path: Path, state: Path) -> None:
    counter = tmp_path / "counter"
    counter.mkdir()
    project = make_project(
        tmp_path / "p",
        """
flaky:
  retry: {max: 2, when: script_failure}
  script:
    - n=$(cat "$COUNTER/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNTER/n"
    - echo "attempt $n"
    - test $n -ge 2
slow:
  timeout: 2s
  script: [echo started, sleep 30]
  after_script: [echo "after $CI_JOB_STATUS"]
never-retried:
  retry: {max: 2, exit_codes: [137]}
  script: [exit 1]
""",
    )
    result = kuberunner("--cwd", str(project), "--state-dir", str(state), "--variable", f"COUNTER={counter}")
    assert result.code == 1
    assert result.statuses == {"flaky": "success", "slow": "failed", "never-retried": "failed"}
    assert "2 attempts" in result.summary["flaky"][1]
    assert "flaky: retrying, attempt 2 of 3" in result.stdout.splitlines()
    assert result.output("flaky") == ["attempt 1", "attempt 2"]
    assert "execution took longer than 2s" in result.summary["slow"][1][-1]
    assert result.output("slow")[0] == "started"
    assert all("attempts" not in field for field in result.summary["never-retried"][1])


def test_jobs_get_the_working_tree_as_gitlab_would_after_a_commit(tmp_path: Path, state: Path) -> None:
    project = make_project(
        tmp_path / "p",
        """
look:
  script:
    - cat tracked.txt
    - cat new.txt
    - test ! -e ignored.log && echo "no ignored files"
    - test "$(git rev-parse HEAD)" = "$CI_COMMIT_SHA" && echo "HEAD is the commit"
    - git status --porcelain
    - echo "$CI_PROJECT_DIR" | grep -q "/builds/look/" && echo "own directory"
empty:
  variables: {GIT_STRATEGY: none}
  script:
    - 'echo "files: $(ls -A | wc -l)"'
""",
        {"tracked.txt": "committed\n", ".gitignore": "*.log\n"},
    )
    (project / "tracked.txt").write_text("edited, not committed\n")
    (project / "new.txt").write_text("untracked\n")
    (project / "ignored.log").write_text("noise\n")
    result = kuberunner("--cwd", str(project), "--state-dir", str(state))
    assert result.code == 0, result.stdout + result.stderr
    assert result.output("look") == [
        "edited, not committed",
        "untracked",
        "no ignored files",
        "HEAD is the commit",
        " M tracked.txt",
        "?? new.txt",
        "own directory",
    ]
    assert result.output("empty") == ["files: 0"]
    assert (project / "tracked.txt").read_text() == "edited, not committed\n"  # the source is untouched


def test_list_list_json_and_preview(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        """
.base:
  image: alpine
build:
  extends: .base
  stage: build
  script: [make]
test:
  stage: test
  needs: [build]
  allow_failure: {exit_codes: [3]}
  script: [make test]
deploy:
  stage: deploy
  when: manual
  environment: production
  script: [make deploy]
""",
    )
    listed = kuberunner("--cwd", str(project), "--list")
    assert listed.code == 0
    assert listed.stdout.splitlines() == [
        "name    stage   when        allow_failure  needs",
        "build   build   on_success  false",
        "test    test    on_success  3              [build]",
        "deploy  deploy  manual      true",
    ]
    rows = json.loads(kuberunner("--cwd", str(project), "--list-json").stdout)
    assert rows[2] == {
        "name": "deploy",
        "stage": "deploy",
        "when": "manual",
        "allow_failure": True,
        "environment": "production",
        "needs": None,
    }
    preview = YAML(typ="safe", pure=True).load(kuberunner("--cwd", str(project), "--preview").stdout)
    assert preview["stages"] == [".pre", "build", "test", "deploy", ".post"]
    assert preview["build"] == {"image": {"name": "alpine"}, "script": ["make"], "stage": "build"}
    assert ".base" not in preview


def test_invalid_yaml_is_reported_with_file_line_and_column(tmp_path: Path, state: Path) -> None:
    project = make_project(tmp_path / "p", "build:\n  script: [make\n  stage: build\n")
    result = kuberunner("--cwd", str(project), "--state-dir", str(state))
    assert result.code == 1
    assert re.match(r"^\.gitlab-ci\.yml:\d+:\d+: .+", result.stderr), result.stderr
    assert result.stdout == ""


def test_invalid_selection_and_executor_fail_before_any_job(tmp_path: Path, state: Path) -> None:
    project = make_project(tmp_path / "p", "build:\n  script: [echo hi]\n")
    missing = kuberunner("--cwd", str(project), "--state-dir", str(state), "nope")
    assert missing.code == 1 and "nope" in missing.stderr and missing.stdout == ""
    # no cluster anywhere (no host, not in a cluster, no kubeconfig): said before anything starts
    nowhere = {"HOME": str(tmp_path), "KUBECONFIG": "", "KUBERNETES_SERVICE_HOST": ""}
    kube = kuberunner("--cwd", str(project), "--state-dir", str(state), "--executor", "kubernetes", **nowhere)
    assert kube.code == 1
    assert "--executor kubernetes: no Kubernetes API address" in kube.stderr
    assert "KUBECONFIG or ~/.kube/config" in kube.stderr
    assert kube.stdout == ""
    docker = kuberunner("--cwd", str(project), "--executor", "docker")
    assert docker.code == 2 and "'docker' is not one of" in docker.stderr
    bad = kuberunner("--cwd", str(project), "--variable", "NO_EQUALS_SIGN")
    assert bad.code == 2 and "KEY=VALUE" in bad.stderr


def test_coverage_and_environment_in_the_summary(tmp_path: Path, state: Path) -> None:
    project = make_project(
        tmp_path / "p",
        """
variables: {HOST: example.test}
unit:
  coverage: '/TOTAL.*? (\\d+(?:\\.\\d+)?)%/'
  script: [echo "TOTAL   12   3   81.25%"]
review:
  environment: {name: review/$CI_COMMIT_REF_SLUG, url: https://$HOST/$CI_COMMIT_REF_SLUG}
  script: [echo "$CI_ENVIRONMENT_SLUG"]
""",
    )
    result = kuberunner("--cwd", str(project), "--state-dir", str(state))
    assert result.code == 0
    assert "coverage 81.25%" in result.summary["unit"][1]
    assert "environment review/main (https://example.test/main)" in result.summary["review"][1]


def test_interrupt_cancels_running_jobs_after_their_after_script(tmp_path: Path, state: Path) -> None:
    project = make_project(
        tmp_path / "p",
        """
stages: [one, two]
wait:
  stage: one
  script: [echo started, sleep 60]
  after_script: ['echo "after: $CI_JOB_STATUS"']
later:
  stage: two
  script: [echo never]
""",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberunner", "exec", "--cwd", str(project), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + TIMEOUT
    for line in proc.stdout:  # wait for the job to be running, then press "Ctrl-C"
        seen.append(line)
        if line.rstrip("\n").endswith("> started"):
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline
    out, err = proc.communicate(timeout=TIMEOUT)
    result = Result(proc.returncode, "".join(seen) + out, err)
    assert result.code == 130
    assert result.statuses == {"wait": "canceled", "later": "canceled"}
    assert result.output("wait") == [
        "started",
        "WARNING: the job was canceled: its script was stopped",
        "after: canceled",
    ]
    assert "Canceling" in result.stderr


def test_terminal_output_shows_progress_and_a_summary_table(tmp_path: Path, state: Path) -> None:
    pipeline = "hello:\n  parallel: {matrix: [{X: [a]}]}\n  script: [echo hi from the job]\n"
    project = make_project(tmp_path / "p", pipeline)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberunner", "exec", "--cwd", str(project), "--state-dir", str(state)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=_env(TERM="xterm-256color", COLUMNS="120"),
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=TIMEOUT) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    assert "hello: [a] > hi from the job" in screen
    assert "Summary" in screen and "Pipeline passed" in screen
    # names with brackets are shown as they are (not taken for rich markup)
    assert re.search(r"hello: \[a\]\s+│?\s*test\s+│?\s*success", screen)


# --------------------------------------------------------------------------- the example project


def test_example_pipeline_runs_green_in_place(tmp_path: Path) -> None:
    """The README's quick start: the example is a subdirectory of kuberunner's own repository."""
    result = kuberunner("--cwd", str(EXAMPLE), "--state-dir", str(tmp_path / "state"))
    assert result.code == 0, result.stdout + result.stderr
    statuses = result.statuses
    assert statuses.pop("todo-check") == "warning"  # the job that is allowed to fail, failing
    assert statuses.pop("release") == "manual"
    assert set(statuses.values()) == {"success"}
    assert {
        "build",
        "lint",
        "unit-tests: [tokenize]",
        "unit-tests: [report]",
        "smoke",
        "deploy-staging",
    } == set(statuses)
    deployed = [line for line in result.output("deploy-staging") if line.startswith("deployed")]
    assert deployed == [
        f"deployed wordfreq 1.4.0 ({git(REPO, 'rev-parse', '--short=8', 'HEAD')}) "
        "to http://localhost:8080/wordfreq/1.4.0"
    ]
    assert not (EXAMPLE / ".kuberunner").exists() or (EXAMPLE / ".kuberunner" / ".gitignore").exists()


def test_example_pipeline_runs_from_a_tarball_without_git(tmp_path: Path) -> None:
    """Unpacked without .git: every file counts as tracked and there are no commit variables."""
    copy = tmp_path / "unpacked" / "pipeline"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(".kuberunner", "dist", "public", ".cache"))
    result = kuberunner("--cwd", str(copy))
    assert result.code == 0, result.stdout + result.stderr
    assert result.statuses["deploy-staging"] == "success"
    assert (
        "deployed wordfreq 1.4.0 (a working tree) to http://localhost:8080/wordfreq/1.4.0"
        in result.output("deploy-staging")
    )
    assert (copy / ".kuberunner" / "cache").is_dir()
    rerun = kuberunner("--cwd", str(copy), "build")
    assert "stopwords: reusing .cache/stopwords.txt from the cache" in rerun.output("build")


# --------------------------------------------------------------------------- building blocks


def test_sources_leave_out_ignored_files_and_the_state_dir(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "x:\n  script: [true]\n", {".gitignore": "*.tmp\n", "a.txt": "a"})
    (project / "junk.tmp").write_text("x")
    (project / "b.txt").write_text("b")
    (project / ".kuberunner").mkdir()
    (project / ".kuberunner" / "file").write_text("state")
    (project / "a.txt").unlink()  # deleted, not committed
    tree = list_sources(project, [project / ".kuberunner"])
    assert tree.files == (".gitignore", ".gitlab-ci.yml", "b.txt")
    assert tree.git_sha == git(project, "rev-parse", "HEAD")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f").write_text("f")
    (plain / ".git").mkdir()  # not a repository, but never copied either
    assert list_sources(plain).files == ("f",)


def test_coverage_follows_gitlab() -> None:
    lines = ["  Lines:   48.46% (510/650)", "  Lines:   78.46% (510/650)", "done"]
    assert coverage_of(r"/^\s*Lines:\s*(\d+.\d+)\%/", lines) == "78.46"
    assert (
        coverage_of(r"/(?i)total.*? (100(?:\.0+)?\%|[1-9]?\d(?:\.\d+)?\%)$/", ["TOTAL  18  0   100%"])
        == "100"
    )
    assert coverage_of(r"/Coverage: \d+\.\d+/", ["Coverage: 12.5", "other"]) == "12.5"
    assert coverage_of(r"/nothing/", lines) is None


def test_dotenv_reports_follow_gitlab_rules() -> None:
    assert parse_dotenv("A=1\n\n# note\nB= x \nC='quoted'\n") == {"A": "1", "B": "x", "C": "'quoted'"}
    with pytest.raises(DotenvError, match="line 2"):
        parse_dotenv("A=1\nnot a variable\n")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ArtifactStore]:
    with ArtifactStore(tmp_path / "store") as s:
        s.register_job(7, "tok-7")
        yield s


def _zip(entries: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_artifact_store_round_trip_and_token_checks(store: ArtifactStore, tmp_path: Path) -> None:
    url = f"{store.url}/api/v4/jobs/7/artifacts"
    payload = _zip({"out/app.txt": "hello"}) + b"\r\n--not-the-boundary\r\n" * 3
    files = {"file": ("my artifacts.zip", payload, "application/octet-stream")}
    assert httpx.post(url, files=files, headers={"JOB-TOKEN": "wrong"}).status_code == 403
    assert httpx.post(f"{store.url}/api/v4/jobs/8/artifacts", files=files).status_code == 404
    created = httpx.post(url, files=files, headers={"JOB-TOKEN": "tok-7"})
    assert created.status_code == 201, created.text
    got = httpx.get(url, headers={"JOB-TOKEN": "tok-7"})
    assert got.status_code == 200 and got.content == payload
    assert 'filename="my artifacts.zip"' in got.headers["Content-Disposition"]
    assert httpx.get(url, headers={"JOB-TOKEN": "nope"}).status_code == 403
    stored = store.archive(7)
    assert stored is not None and stored.path.parent == tmp_path / "store" / "7"


def test_artifact_store_refuses_what_gitlab_refuses(store: ArtifactStore, tmp_path: Path) -> None:
    url = f"{store.url}/api/v4/jobs/7/artifacts"
    headers = {"JOB-TOKEN": "tok-7"}
    escape = httpx.post(
        url, params={"artifact_type": "../../escape"}, files={"file": ("x", b"x")}, headers=headers
    )
    assert escape.status_code == 400
    assert not (tmp_path / "escape").exists()
    no_file = httpx.post(url, files={"other": ("x", b"x")}, headers=headers)
    assert no_file.status_code == 400 and "file is missing" in no_file.json()["message"]
    bad_env = httpx.post(
        url,
        params={"artifact_type": "dotenv", "artifact_format": "gzip"},
        files={"file": ("dotenv.gz", gzip.compress(b"OK=1\nthis is not dotenv\n"))},
        headers=headers,
    )
    assert bad_env.status_code == 400 and "line 2" in bad_env.json()["message"]
    good_env = httpx.post(
        url,
        params={"artifact_type": "dotenv", "artifact_format": "gzip"},
        files={"file": ("dotenv.gz", gzip.compress(b"VERSION=2.0\n"))},
        headers=headers,
    )
    assert good_env.status_code == 201
    assert store.dotenv(7) == {"VERSION": "2.0"}
    traversal_name = httpx.post(url, files={"file": ("../../../evil", b"data")}, headers=headers)
    assert traversal_name.status_code == 201
    assert not (tmp_path / "evil").exists()


# --------------------------------------------------------------------------- --config / --runner

RUNNERS_TOML = """\
[[runners]]
  name = "local-shell"
  url = "https://gitlab.example.com"
  token = "glrt-x"
  executor = "shell"
  output_limit = 1

[[runners]]
  name = "cluster"
  url = "https://gitlab.example.com"
  token = "glrt-y"
  executor = "kubernetes"
"""


def test_a_config_toml_runner_s_settings_apply_to_local_jobs(tmp_path: Path, state: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(RUNNERS_TOML)
    project = make_project(tmp_path / "p", "job:\n  script:\n    - head -c 3000 /dev/zero | tr '\\\\0' x\n")
    several = kuberunner("--cwd", str(project), "--state-dir", str(state), "--config", str(config))
    assert several.code == 1
    assert (
        "several [[runners]] entries ('local-shell', 'cluster'): choose one with --runner NAME"
        in several.stderr
    )
    missing = kuberunner("--cwd", str(project), "--config", str(config), "--runner", "nope")
    assert missing.code == 1 and "no [[runners]] entry named 'nope'" in missing.stderr
    # by name; its executor (shell) is the default, and its output_limit (1 KiB) holds
    ran = kuberunner(
        "--cwd", str(project), "--state-dir", str(state), "--config", str(config), "--runner", "local-shell"
    )
    assert ran.code == 0, ran.stderr
    assert "Job's log exceeded limit of 1024 bytes." in ran.stdout
    # --executor picks among several when it leaves one
    shell = kuberunner(
        "--cwd", str(project), "--state-dir", str(state), "--config", str(config), "--executor", "shell"
    )
    assert shell.code == 0 and "exceeded limit of 1024 bytes" in shell.stdout


def test_a_broken_config_toml_is_named_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[runners]]\n  name = "x"\n  executor = 3\n')
    project = make_project(tmp_path / "p", "job:\n  script: [echo hi]\n")
    result = kuberunner("--cwd", str(project), "--config", str(config))
    assert result.code == 1 and result.stdout == ""
    assert f"{config}:3" in result.stderr and "kuberunner config check" in result.stderr

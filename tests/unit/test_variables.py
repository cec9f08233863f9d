"""Job variables: precedence, expansion, raw values, masking, file variables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberunner.config.schema import RunnerConfig
from kuberunner.job import JobPayload, JobVariable
from kuberunner.variables import Variable, Variables, build_variables, expand, parse_bool


def _payload(shared_dir: Path, **changes: object) -> JobPayload:
    data = json.loads((shared_dir / "docs/fixtures/job-payload.json").read_text())
    data.update(changes)
    return JobPayload.parse(data)


def _variables(job: JobPayload, runner: RunnerConfig, **kw: object) -> Variables:
    args: dict[str, object] = {
        "builds_dir": "/builds",
        "project_dir": "/builds/acme/webapp",
        "concurrent_id": 3,
        "runner_version": "0.1.0",
        "runner_revision": "abc123",
        "executor": "kubernetes",
        "file_dir": "/builds/acme/webapp.tmp",
        "arch": "linux/amd64",
    }
    args.update(kw)
    return build_variables(job, runner, **args)  # type: ignore[arg-type]


# ------------------------------------------------------------------ expansion


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "a"),
        ("${A}", "a"),
        ("x${A}y", "xay"),
        ("$A$B", "ab"),
        ("$UNKNOWN-", "-"),
        ("${UNKNOWN}", ""),
        ("cost: 5$", "cost: 5$"),  # a trailing $ stays
        ("$ A", "$ A"),  # $ not followed by a name stays
        ("${}", ""),  # bad syntax is eaten, as Go's os.Expand does
        ("${A", "A"),  # unterminated: "${" eaten
        ("${A:-default}", ""),  # no shell operators: the whole text is a (missing) name
        ("$A_B", "ab_"),
        ("$A.B", "a.B"),
        ("ünïcode $A", "ünïcode a"),
    ],
)
def test_expand_follows_go_os_expand(text: str, expected: str) -> None:
    values = {"A": "a", "B": "b", "A_B": "ab_"}
    assert expand(text, lambda name: values.get(name, "")) == expected


def test_dollar_dollar_is_a_dollar_and_shell_specials_are_empty() -> None:
    v = Variables([Variable("A", "a")])
    assert v.expand("$$A $${A} $1$*$#$@$?$!") == "$A ${A} "


def test_expansion_is_recursive_and_last_definition_wins() -> None:
    v = Variables(
        [
            Variable("A", "one"),
            Variable("B", "$A/two"),
            Variable("C", "${B}/three"),
            Variable("A", "uno"),  # redefined later: every reference sees this one
        ]
    )
    assert v.value("C") == "uno/two/three"
    assert v.expand("[$C]") == "[uno/two/three]"
    assert [x.value for x in v.resolved()] == ["one", "uno/two", "uno/two/three", "uno"]


def test_a_reference_to_a_later_variable_is_resolved() -> None:
    # GitLab lists .gitlab-ci.yml variables before project variables: both must see each other.
    v = Variables([Variable("URL", "$HOST/path"), Variable("HOST", "https://example.com")])
    assert v.value("URL") == "https://example.com/path"


def test_self_reference_means_the_previous_definition() -> None:
    v = Variables([Variable("P", "/usr/bin"), Variable("P", "/opt/bin:$P"), Variable("Q", "/x:$Q")])
    assert v.value("P") == "/opt/bin:/usr/bin"
    assert v.value("Q") == "/x:"  # nothing before it: unknown, so empty


def test_cycles_expand_to_empty_instead_of_hanging() -> None:
    v = Variables([Variable("A", "a$B"), Variable("B", "b$A")])
    assert v.value("A") == "ab"
    assert v.value("B") == "ba"


def test_raw_values_are_never_expanded_but_can_be_referenced() -> None:
    v = Variables([Variable("X", "x"), Variable("LIT", "$X and $$", raw=True), Variable("Y", "<$LIT>")])
    assert v.value("LIT") == "$X and $$"
    # gitlab-runner's Expand is one pass over the value: what a raw value contains stays as it is
    assert v.value("Y") == "<$X and $$>"


def test_file_variables_expand_to_their_path() -> None:
    v = Variables(
        [Variable("KUBECONFIG", "apiVersion: v1\n", file=True), Variable("K", "--kubeconfig=$KUBECONFIG")],
        file_dir="/b/p.tmp",
    )
    assert v.get("KUBECONFIG") == "/b/p.tmp/KUBECONFIG"
    assert v.value("KUBECONFIG") == "apiVersion: v1\n"
    assert v.value("K") == "--kubeconfig=/b/p.tmp/KUBECONFIG"


@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.text(alphabet="ABCD${}x ", max_size=12)), max_size=8))
def test_expansion_terminates_and_does_not_depend_on_the_order_of_questions(
    pairs: list[tuple[str, str]],
) -> None:
    forward = Variables([Variable(k, val) for k, val in pairs])
    backward = Variables([Variable(k, val) for k, val in pairs])
    keys = [k for k, _ in pairs]
    answers = {k: forward.value(k) for k in keys}
    assert {k: backward.value(k) for k in reversed(keys)} == answers


def test_expansion_that_would_explode_is_cut_short() -> None:
    items = [Variable("V0", "x" * 64)]
    items += [Variable(f"V{i}", f"$V{i - 1}$V{i - 1}") for i in range(1, 40)]
    value = Variables(items).value("V39")  # 2**39 * 64 bytes if expanded in full
    assert len(value) < 64 * 1024 * 1024


def test_flag_parses_like_gitlab_runner() -> None:
    v = Variables([Variable("T", "TRUE"), Variable("ONE", "1"), Variable("TWO", "2"), Variable("BAD", "yes")])
    assert v.flag("T") and v.flag("ONE")
    assert not v.flag("TWO")
    assert not v.flag("BAD") and v.flag("BAD", default=True)
    assert not v.flag("MISSING")
    assert parse_bool("t") is True and parse_bool("no") is None


def test_repr_never_shows_values() -> None:
    v = Variables([Variable("DEPLOY_TOKEN", "s3cr3tV4lu3xyz99", masked=True)])
    assert "s3cr3t" not in repr(v)
    assert "s3cr3t" not in repr(v[0])


# ----------------------------------------------------------------- precedence


def test_precedence_is_gitlab_runners(shared_dir: Path) -> None:
    job = _payload(
        shared_dir,
        variables=[
            {"key": "FROM_RUNNER", "value": "job"},  # the job overrides the runner's environment
            {"key": "CI_RUNNER_VERSION", "value": "spoofed"},  # the runner's own facts win
        ],
    )
    runner = RunnerConfig(
        token="glrt-AbCdEfGh123456789",
        environment=["FROM_RUNNER=runner", "ONLY_RUNNER=r=1", "CI_PROJECT_DIR=/elsewhere"],
    )
    v = _variables(job, runner)
    assert v.value("FROM_RUNNER") == "job"
    assert v.value("ONLY_RUNNER") == "r=1"
    assert v.value("CI_PROJECT_DIR") == "/builds/acme/webapp"
    assert v.value("CI_RUNNER_VERSION") == "0.1.0"
    assert v.value("CI_RUNNER_REVISION") == "abc123"
    assert v.value("CI_RUNNER_SHORT_TOKEN") == "AbCdEfGh"
    assert v.value("CI_RUNNER_EXECUTABLE_ARCH") == "linux/amd64"
    assert v.value("CI_BUILDS_DIR") == "/builds"
    assert v.value("CI_CONCURRENT_ID") == "3"
    assert v.value("CI_CONCURRENT_PROJECT_ID") == "3"
    assert v.value("CI_SERVER") == "yes"
    assert v.value("CI_JOB_STATUS") == "running"
    assert v.value("CI_JOB_TIMEOUT") == "3600"
    assert v.value("CI_JOB_IMAGE") == "docker:24.0.5"
    assert v.value("CI_DISPOSABLE_ENVIRONMENT") == "true"
    assert "CI_SHARED_ENVIRONMENT" not in v
    assert v.value("RUNNER_TEMP_PROJECT_DIR") == "/builds/acme/webapp.tmp"
    last = {x.key: i for i, x in enumerate(v)}
    # the documented order: runner environment < runner-decided directories < job < runner facts
    assert last["ONLY_RUNNER"] < last["CI_PROJECT_DIR"] < last["FROM_RUNNER"] < last["CI_RUNNER_VERSION"]


def test_shell_executor_is_a_shared_environment(shared_dir: Path) -> None:
    v = _variables(_payload(shared_dir), RunnerConfig(), executor="shell", concurrent_project_id=1)
    assert v.value("CI_SHARED_ENVIRONMENT") == "true"
    assert "CI_DISPOSABLE_ENVIRONMENT" not in v
    assert v.value("CI_CONCURRENT_PROJECT_ID") == "1"


def test_tls_ca_is_a_file_variable_only_when_configured(shared_dir: Path) -> None:
    job = _payload(shared_dir)
    assert "CI_SERVER_TLS_CA_FILE" not in _variables(job, RunnerConfig())
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    v = _variables(job, RunnerConfig(), tls_ca_chain=pem)
    entry = v.entry("CI_SERVER_TLS_CA_FILE")
    assert entry is not None and entry.file
    assert v.value("CI_SERVER_TLS_CA_FILE") == pem
    assert v.get("CI_SERVER_TLS_CA_FILE") == "/builds/acme/webapp.tmp/CI_SERVER_TLS_CA_FILE"


def test_runner_environment_may_reference_predefined_variables(shared_dir: Path) -> None:
    runner = RunnerConfig(environment=["OUT=$CI_PROJECT_DIR/out", "JOB=${CI_JOB_ID}"])
    v = _variables(_payload(shared_dir), runner)
    assert v.value("OUT") == "/builds/acme/webapp/out"
    assert v.value("JOB") == "4821"


def test_fixture_payload_variables(shared_dir: Path) -> None:
    v = _variables(_payload(shared_dir), RunnerConfig())
    assert v.value("LITERAL") == "$NOT_EXPANDED"
    assert v.get("KUBECONFIG_DATA") == "/builds/acme/webapp.tmp/KUBECONFIG_DATA"
    assert v.value("KUBECONFIG_DATA") == "apiVersion: v1\nkind: Config\n"
    assert v.masked_values() == ["glcbt-64_Zx9yQ2mN4kP7rT1vW3sA", "s3cr3tV4lu3xyz99"]


def test_masked_values_include_the_expanded_form() -> None:
    v = Variables([Variable("HOST", "db"), Variable("DSN", "postgres://u:pw@$HOST", masked=True)])
    assert v.masked_values() == ["postgres://u:pw@$HOST", "postgres://u:pw@db"]


def test_job_status_override_wins() -> None:
    v = Variables([JobVariable(key="CI_JOB_STATUS", value="running")])
    assert v.with_variables(Variable("CI_JOB_STATUS", "canceled")).value("CI_JOB_STATUS") == "canceled"
    assert re.fullmatch(r"Variables\(\['CI_JOB_STATUS'\]\)", repr(v))

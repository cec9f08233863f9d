"""The step, after_script and cleanup scripts, run for real under bash, dash and busybox sh."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from script_support import MakeBuild, RunStage, echo, notice, run_script, steps

from kuberunner.config.schema import RunnerConfig
from kuberunner.script import generate


def test_each_command_is_echoed_then_run(make_build: MakeBuild, run_stage: RunStage) -> None:
    build = make_build(steps=steps("echo one", 'echo "two  spaces"', "printf '%s\\n' \"it's $CI_JOB_ID\""))
    ran = run_stage(build, "step_script")
    assert ran.rc == 0, ran.text
    assert ran.text == (
        echo("echo one")
        + "one\n"
        + echo('echo "two  spaces"')
        + "two  spaces\n"
        + echo("printf '%s\\n' \"it's $CI_JOB_ID\"")
        + "it's 77\n"
    )


def test_first_failing_command_ends_the_script_with_its_exit_code(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    ran = run_stage(make_build(steps=steps("echo a", "sh -c 'exit 42'", "echo b")), "step_script")
    assert ran.rc == 42
    assert "a\n" in ran.text and "b\n" not in ran.text
    ran = run_stage(make_build(steps=steps("exit 3", "echo never")), "step_script")
    assert ran.rc == 3 and "never\n" not in ran.text


def test_a_failure_inside_one_line_stops_there_like_gitlab(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    ran = run_stage(make_build(steps=steps("false; echo no", "echo next")), "step_script")
    assert ran.rc == 1
    assert "no\n" not in ran.text and "next\n" not in ran.text


def test_a_failing_line_inside_a_multi_line_command_stops_the_script(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    command = "if true; then\n  echo inside\n  false\n  echo not-reached\nfi"
    ran = run_stage(make_build(steps=steps(command, "echo next")), "step_script")
    assert ran.rc == 1
    assert ran.text == echo("if true; then # collapsed multi-line command") + "inside\n"


def test_a_condition_that_fails_is_not_a_failure_unless_the_exit_code_check_is_on(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    script = steps("test -f /nonexistent/file && echo found", "echo after")
    ran = run_stage(make_build(steps=script), "step_script")
    assert ran.rc == 0 and "after\n" in ran.text  # gitlab-runner's default: `set -e` semantics
    flag = [{"key": "FF_ENABLE_BASH_EXIT_CODE_CHECK", "value": "true"}]
    ran = run_stage(make_build(steps=script, variables=flag), "step_script")
    assert ran.rc == 1 and "after\n" not in ran.text
    runner = RunnerConfig(feature_flags={"FF_ENABLE_BASH_EXIT_CODE_CHECK": True})
    ran = run_stage(make_build(runner, steps=script), "step_script")
    assert ran.rc == 1


def test_cd_and_export_carry_over_to_the_next_command(make_build: MakeBuild, run_stage: RunStage) -> None:
    build = make_build(
        steps=steps("mkdir -p sub/dir", "cd sub/dir", "export LATER=set-earlier", 'echo "$PWD $LATER"')
    )
    ran = run_stage(build, "step_script")
    assert ran.rc == 0, ran.text
    assert ran.text.endswith(f"{build.project_dir}/sub/dir set-earlier\n")


def test_commands_read_no_stdin(make_build: MakeBuild, run_stage: RunStage) -> None:
    ran = run_stage(make_build(steps=steps("cat", "read x || echo eof")), "step_script")
    assert ran.rc == 0 and ran.text.endswith("eof\n")


def test_empty_command_prints_an_empty_line(make_build: MakeBuild, run_stage: RunStage) -> None:
    ran = run_stage(make_build(steps=steps("echo a", "   ", "echo b")), "step_script")
    assert ran.text == echo("echo a") + "a\n\n" + echo("echo b") + "b\n"


def test_pre_and_post_build_scripts_wrap_the_step(make_build: MakeBuild, run_stage: RunStage) -> None:
    runner = RunnerConfig(pre_build_script="echo pre", post_build_script="echo post")
    ran = run_stage(make_build(runner, steps=steps("echo main")), "step_script")
    assert (
        ran.text == echo("echo pre") + "pre\n" + echo("echo main") + "main\n" + echo("echo post") + "post\n"
    )


def test_other_steps_run_as_their_own_stage_and_release_lines_are_expanded(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    build = make_build(
        steps=[
            {"name": "script", "script": ["echo script"]},
            {"name": "release", "script": ["echo 'release $CI_JOB_ID'"]},
        ]
    )
    ran = run_stage(build, "step_release")
    assert ran.text == echo("echo 'release 77'") + "release 77\n"


def test_pipefail_where_the_shell_has_it(
    make_build: MakeBuild, run_stage: RunStage, shell: list[str]
) -> None:
    ran = run_stage(make_build(steps=steps("false | cat", "echo after")), "step_script")
    if shell == ["dash"]:
        assert ran.rc == 0  # dash has no pipefail: the pipe's status is cat's
    else:
        assert ran.rc == 1 and "after\n" not in ran.text


def test_variables_with_nasty_values_reach_the_job_unchanged(
    make_build: MakeBuild, run_stage: RunStage, tmp_path: Path
) -> None:
    nasty = {
        "QUOTES": "it's \"quoted\" and 'single'",
        "DOLLARS": "$HOME ${HOME} $(id) `id` $$ \\$",
        "NEWLINES": "line1\nline2\n\n",
        "BACKSLASH": "a\\nb\\'c\\",
        "INJECT": "'; touch pwned; echo '",
        "UNICODE": "ünïcødé ✓ \t tab",
        "EMPTY": "",
    }
    variables = [{"key": k, "value": v, "raw": True} for k, v in nasty.items()]
    out = tmp_path / "out"
    out.mkdir()
    script = [f'printf "%s" "${k}" > {out}/{k}' for k in nasty]
    ran = run_stage(make_build(variables=variables, steps=steps(*script)), "step_script")
    assert ran.rc == 0, ran.text
    for key, value in nasty.items():
        assert (out / key).read_bytes() == value.encode(), key
    assert not list(tmp_path.rglob("pwned"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
        min_size=1,
        max_size=5,
    )
)
def test_any_value_and_any_echoed_command_survive_quoting(
    values: list[str], make_build: MakeBuild, tmp_path: Path, shell: list[str]
) -> None:
    out = tmp_path / "hyp"
    out.mkdir(exist_ok=True)
    variables = [{"key": f"V{i}", "value": v, "raw": True} for i, v in enumerate(values)]
    script = [f'printf "%s" "$V{i}" > {out}/{i}' for i in range(len(values))]
    # a command that does nothing with a quoted argument: its text must be echoed byte for byte
    echoed = [": " + shlex.quote(v.replace("\n", " ").replace("\r", " ")) for v in values]
    build = make_build(variables=variables, steps=steps(*script, *[f"true || {e}" for e in echoed]))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    ran = run_script(
        shell, generate(build, "step_script"), tmp_path, {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    )
    assert ran.rc == 0, ran.text
    for i, value in enumerate(values):
        assert (out / str(i)).read_bytes() == value.encode()
    for e in echoed:
        assert echo(f"true || {e}".strip()).encode() in ran.output


def test_variables_are_expanded_before_export_but_raw_ones_are_not(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    variables = [
        {"key": "BASE", "value": "/opt"},
        {"key": "TOOL", "value": "$BASE/bin"},
        {"key": "LITERAL", "value": "$BASE", "raw": True},
    ]
    ran = run_stage(make_build(variables=variables, steps=steps('echo "$TOOL|$LITERAL"')), "step_script")
    assert ran.text.endswith("/opt/bin|$BASE\n")


def test_file_variables_are_private_files_holding_the_value(
    make_build: MakeBuild, run_stage: RunStage, tmp_path: Path
) -> None:
    value = "apiVersion: v1\nkind: Config\n# it's $secret\n"
    variables = [{"key": "KUBECONFIG_DATA", "value": value, "file": True, "raw": True}]
    copy = tmp_path / "copy"
    build = make_build(
        variables=variables, steps=steps(f'cp "$KUBECONFIG_DATA" {copy}', 'echo "$KUBECONFIG_DATA"')
    )
    ran = run_stage(build, "step_script")
    assert ran.rc == 0, ran.text
    path = Path(build.file_variables_dir) / "KUBECONFIG_DATA"
    assert ran.text.endswith(f"{path}\n")
    assert path.read_text() == value
    assert copy.read_text() == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    ran = run_stage(build, "cleanup_file_variables")
    assert ran.rc == 0, ran.text
    assert not path.exists()


def test_after_script_sees_the_job_status_and_runs_apart(make_build: MakeBuild, run_stage: RunStage) -> None:
    build = make_build(
        steps=[
            {"name": "script", "script": ["export FROM_SCRIPT=yes"]},
            {
                "name": "after_script",
                "script": ['echo "status=$CI_JOB_STATUS from_script=${FROM_SCRIPT:-no}"'],
            },
        ]
    )
    for status in ("success", "failed", "canceled"):
        ran = run_stage(build, "after_script", job_status=status)
        assert ran.rc == 0, ran.text
        assert ran.text == (
            notice("Running after script...")
            + echo('echo "status=$CI_JOB_STATUS from_script=${FROM_SCRIPT:-no}"')
            + f"status={status} from_script=no\n"
        )


def test_debug_trace_turns_on_xtrace_unless_the_runner_forbids_it(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    debug = [{"key": "CI_DEBUG_TRACE", "value": "true"}]
    ran = run_stage(make_build(variables=debug, steps=steps("echo traced")), "step_script")
    assert "+ echo traced" in ran.text
    ran = run_stage(make_build(RunnerConfig(debug_trace_disabled=True), variables=debug), "step_script")
    assert "+ " not in ran.text


@pytest.mark.parametrize("key", ["not-a-name", "1STARTS_WITH_DIGIT"])
def test_keys_no_shell_can_hold_are_left_out(make_build: MakeBuild, run_stage: RunStage, key: str) -> None:
    ran = run_stage(make_build(variables=[{"key": key, "value": "x"}], steps=steps("echo ok")), "step_script")
    assert ran.rc == 0 and ran.text.endswith("ok\n")

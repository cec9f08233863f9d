"""load_config: the validated config, every problem with its line, and refusal of broken files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from kuberunner.cli import main
from kuberunner.config import ConfigError, load_config, read_config
from kuberunner.config.load import Problem
from kuberunner.util.quantity import QuantityError, parse_quantity

GOOD = Path(__file__).parent / "good"
CORPUS = Path(__file__).parent / "corpus"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_seed_guide_final_config_loads_with_every_setting_it_needed() -> None:
    loaded = load_config(GOOD / "seed.toml")
    runner = loaded.config.runners[0]
    k = runner.kubernetes
    assert k is not None
    assert runner.executor == "kubernetes"
    assert k.host == "https://192.168.80.130:6443"
    assert k.ca_file == "/etc/kubernetes/pki/ca.crt"
    assert (k.service_account, k.namespace) == ("gitlab-runner", "gitlab")
    assert k.bearer_token.startswith("eyJ") and k.bearer_token_overwrite_allowed is True
    assert k.helper_image == "gitlab/gitlab-runner-helper:x86_64-v14.10.2"
    assert k.privileged is True
    assert [(v.name, v.host_path, v.mount_path) for v in k.volumes.host_path] == [
        ("docker", "/var/run/docker.sock", "/var/run/docker.sock")
    ]
    assert [(a.ip, a.hostnames) for a in k.host_aliases] == [
        ("192.168.80.14", ["gitlab.example.com"]),
        ("192.168.80.33", ["host.docker.example.xuxiaowei.cloud"]),
        ("192.168.80.45", ["registry.docker.example.xuxiaowei.cloud"]),
    ]
    assert not loaded.errors
    # the CA path of the guide does not exist here: a warning with its line, not a failure
    assert [(p.severity, p.line, p.key) for p in loaded.problems if p.severity == "warning"] == [
        ("warning", 26, "runners.kubernetes.ca_file")
    ]


def test_full_config_loads_and_lists_unsupported_keys_without_failing() -> None:
    loaded = load_config(GOOD / "full.toml")
    assert [(p.severity, p.line, p.key) for p in loaded.problems] == [
        ("unsupported", 13, "session_server.listen_address"),
        ("unsupported", 14, "session_server.advertise_address"),
        ("unsupported", 47, "runners.custom_build_dir"),
    ]
    assert all(p.message.startswith("not supported yet") for p in loaded.problems)
    k = loaded.config.runners[0].kubernetes
    assert k is not None
    assert k.cleanup_resources_timeout == 300.0
    assert len(k.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution) == 1  # type: ignore[union-attr]
    assert [
        len(getattr(k.volumes, kind))
        for kind in ("host_path", "pvc", "config_map", "secret", "empty_dir", "csi", "nfs")
    ] == [1] * 7
    assert loaded.config.runners[1].executor == "shell"
    for good in ("seed.toml", "full.toml"):
        result = CliRunner().invoke(main, ["config", "check", str(GOOD / good)])
        assert result.exit_code == 0, result.output


def test_unsupported_keys_are_listed_unless_written_with_their_default(tmp_path: Path) -> None:
    # what `gitlab-runner register` writes by default must not be noise
    defaults = _write(
        tmp_path,
        """\
        [session_server]
          session_timeout = 1800
        [[runners]]
          name = "r"
          url = "https://gitlab.example.com"
          token = "glrt-FAKE0000"
          executor = "kubernetes"
          [runners.custom_build_dir]
          [runners.docker]
          [runners.cache]
            [runners.cache.gcs]
            [runners.cache.azure]
          [runners.kubernetes]
            namespace = "ci"
            namespace_per_job = false
        """,
    )
    assert load_config(defaults).problems == []

    path = _write(
        tmp_path,
        """\
        [[runners]]
          name = "r"
          url = "https://gitlab.example.com"
          token = "glrt-FAKE0000"
          executor = "kubernetes"
          [runners.docker]
            image = "alpine"
          [runners.cache]
            Type = "gcs"
            [runners.cache.gcs]
              BucketName = "b"
          [runners.kubernetes]
            namespace = "ci"
            namespace_per_job = true
        """,
    )
    problems = load_config(path).problems
    assert [(p.severity, p.line, p.key) for p in problems] == [
        ("unsupported", 6, "runners.docker"),
        ("unsupported", 9, "runners.cache.Type"),
        ("unsupported", 11, "runners.cache.gcs.BucketName"),
        ("unsupported", 14, "runners.kubernetes.namespace_per_job"),
    ]
    assert problems[1].message == 'not supported yet: cache Type "gcs" (kuberunner has "s3")'


def test_strict_load_raises_with_every_error_and_keeps_warnings_out_of_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(CORPUS / "multi_two_runners.toml")
    err = caught.value
    assert str(err).startswith(f"{CORPUS / 'multi_two_runners.toml'}: 7 problems must be fixed")
    assert [p.line for p in err.problems if p.severity == "error"] == [1, 2, 4, 7, 12, 17, 18]
    assert 'runners.executor (runner "a"): executor "docker" is not supported by kuberunner' in str(err)
    assert "not supported yet" not in str(err)  # only errors are in the message


def test_non_strict_load_returns_problems_and_the_valid_rest() -> None:
    loaded = load_config(CORPUS / "multi_seed_mistakes.toml", strict=False)
    assert not loaded.ok
    k = loaded.config.runners[0].kubernetes
    assert k is not None
    # the wrongly typed key is dropped; everything else still loads and is checked
    assert k.service_account == "gitlab-runner"
    assert k.bearer_token_overwrite_allowed is False
    assert k.host_aliases == []


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.message == "config file not found"
    assert "kuberunner register" in problem.fix and "--config" in problem.fix

    result = CliRunner().invoke(main, ["config", "check", "-c", str(path)])
    assert result.exit_code == 1
    assert f"{path}: config file not found" in result.stdout
    assert "kuberunner register" in result.stdout


def test_config_file_env_var_is_used_when_no_option_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_FILE", str(CORPUS / "quantity_invalid.toml"))
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 1
    assert "quantity_invalid.toml:10: runners.kubernetes.cpu_limit" in result.stdout


def test_directory_and_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (problem,) = read_config(tmp_path).problems
    assert problem.message == "is a directory, not a config file"

    path = _write(tmp_path, "concurrent = 1\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.message == "cannot read the file: permission denied"
    assert "0600" in problem.fix


def test_problem_renders_file_line_key_message_and_fix(tmp_path: Path) -> None:
    problem = Problem(
        tmp_path / "c.toml",
        12,
        "runners.kubernetes.namespce",
        "error",
        'unknown key; did you mean "namespace"?',
        'rename "namespce" to "namespace"',
        runner='runner "ci"',
    )
    assert problem.render() == (
        f'{tmp_path}/c.toml:12: runners.kubernetes.namespce (runner "ci"): unknown key; did you mean '
        '"namespace"?\n  fix: rename "namespce" to "namespace"'
    )
    assert Problem(tmp_path / "c.toml", None, "", "error", "config file not found", "").render() == (
        f"{tmp_path}/c.toml: config file not found"
    )


def test_a_single_unnamed_runner_is_not_numbered(tmp_path: Path) -> None:
    single = _write(
        tmp_path,
        """\
        [[runners]]
          url = "https://gitlab.example.com"
          executor = "shell"
        """,
    )
    (problem,) = load_config(single, strict=False).problems
    assert (problem.key, problem.runner, problem.line) == ("runners.token", None, 1)


def test_syntax_error_at_end_of_document_names_the_last_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'concurrent = 1\n[[runners]]\n  environment = ["A=1",\n')
    (problem,) = read_config(path).problems
    assert problem.line == 3
    assert problem.message.startswith("TOML syntax error")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1.5", "1.5"),
        ("4Gi", str(4 * 2**30)),
        ("1e3", "1000"),
        ("128Mi", str(2**27)),
        ("1k", "1000"),
        (".5", "0.5"),
    ],
)
def test_kubernetes_quantities(text: str, value: str) -> None:
    from fractions import Fraction

    assert parse_quantity(text) == Fraction(value)


@pytest.mark.parametrize("text", ["2 cores", "1GB", "Gi", "", "1.2.3", "5x", "-"])
def test_not_kubernetes_quantities(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)

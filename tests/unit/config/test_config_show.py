"""`kuberunner config show`: the effective configuration as TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

from kuberunner.cli import main
from kuberunner.config import Config, load_config

GOOD = Path(__file__).parent / "good"
CORPUS = Path(__file__).parent / "corpus"


def _show(path: Path) -> dict[str, object]:
    result = CliRunner().invoke(main, ["config", "show", "-c", str(path)])
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


def test_defaults_are_filled_in_for_the_seed_config() -> None:
    shown = _show(GOOD / "seed.toml")
    assert shown["check_interval"] == 0  # as written
    assert shown["shutdown_timeout"] == 30  # default
    runner = shown["runners"][0]  # type: ignore[index]
    assert runner["output_limit"] == 4096
    k = runner["kubernetes"]
    assert (k["namespace"], k["poll_interval"], k["poll_timeout"]) == ("gitlab", 3, 180)
    assert k["cleanup_resources_timeout"] == 300.0
    assert k["host_aliases"][2] == {
        "ip": "192.168.80.45",
        "hostnames": ["registry.docker.example.xuxiaowei.cloud"],
    }
    assert k["volumes"]["host_path"][0]["read_only"] is False


def test_a_kubernetes_runner_without_its_table_shows_the_table_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[[runners]]\n  url = "https://g.example.com"\n  token = "glrt-FAKE1234"\n  executor = "kubernetes"\n'
    )
    runner = _show(path)["runners"][0]  # type: ignore[index]
    assert runner["kubernetes"]["poll_timeout"] == 180
    assert runner["kubernetes"]["volumes"] == {
        kind: [] for kind in ("host_path", "pvc", "config_map", "secret", "empty_dir", "csi", "nfs")
    }


def test_the_shown_toml_loads_back_to_the_same_configuration() -> None:
    for good in ("seed.toml", "full.toml"):
        original = load_config(GOOD / good).config
        shown = Config.model_validate(_show(GOOD / good), strict=True)
        # identical except for the redacted credentials
        assert shown.runners[0].token == "[REDACTED]"
        assert shown.runners[0].model_dump(exclude={"token", "environment", "kubernetes", "cache"}) == (
            original.runners[0].model_dump(exclude={"token", "environment", "kubernetes", "cache"})
        )
        assert shown.runners[0].kubernetes is not None and original.runners[0].kubernetes is not None
        assert shown.runners[0].kubernetes.model_dump(exclude={"bearer_token"}) == (
            original.runners[0].kubernetes.model_dump(exclude={"bearer_token"})
        )


def test_show_refuses_a_file_with_errors_and_says_why() -> None:
    result = CliRunner().invoke(main, ["config", "show", "-c", str(CORPUS / "unknown_key_typo.toml")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        'unknown_key_typo.toml:10: runners.kubernetes.namespce (runner "corpus"): unknown key'
        in result.stderr
    )
    assert "fix: rename" in result.stderr
    assert "`kuberunner config check` lists everything" in result.stderr


def test_show_mentions_warnings_on_stderr_only() -> None:
    result = CliRunner().invoke(main, ["config", "show", "-c", str(CORPUS / "namespace_empty.toml")])
    assert result.exit_code == 0
    assert "1 warning(s)" in result.stderr
    assert "warning(s)" not in result.stdout
    tomllib.loads(result.stdout)

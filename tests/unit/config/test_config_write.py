"""Editing config.toml: comments and layout survive, writes are atomic and private (0600)."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from kuberunner.config import ConfigError, load_config
from kuberunner.config.write import add_runner, remove_runner, set_key, write_atomic

GOOD = Path(__file__).parent / "good"

NEW_RUNNER = {
    "name": "added",
    "url": "https://gitlab.example.com/",
    "token": "glrt-FAKEaddedTOKEN000",
    "executor": "kubernetes",
    "kubernetes": {
        "namespace": "ci",
        "host_aliases": [{"ip": "10.0.0.1", "hostnames": ["gitlab.example.com"]}],
    },
}


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text((GOOD / "seed.toml").read_text())
    path.chmod(0o644)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_runner_keeps_every_existing_line_and_comment(seed: Path) -> None:
    before = seed.read_text()
    add_runner(seed, NEW_RUNNER)
    after = seed.read_text()
    assert after.startswith(before)  # untouched, comments (Chinese included) and indentation
    loaded = load_config(seed)
    assert [r.name for r in loaded.config.runners] == ["k8s-runner", "added"]
    added = loaded.config.runners[1]
    assert added.kubernetes is not None and added.kubernetes.host_aliases[0].ip == "10.0.0.1"
    assert _mode(seed) == 0o600


def test_add_runner_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "gitlab-runner" / "config.toml"
    add_runner(path, NEW_RUNNER)
    data = tomllib.loads(path.read_text())
    assert data["concurrent"] == 1
    assert data["runners"][0]["token"] == "glrt-FAKEaddedTOKEN000"
    assert _mode(path) == 0o600


def test_remove_runner_removes_only_that_runner(seed: Path) -> None:
    add_runner(seed, NEW_RUNNER)
    assert remove_runner(seed, "k8s-runner") == 1
    text = seed.read_text()
    assert "k8s-runner" not in text and "192.168.80.14" not in text
    assert "# The final config.toml of the seed operator's guide" in text
    assert [r.name for r in load_config(seed).config.runners] == ["added"]

    with pytest.raises(ConfigError) as caught:
        remove_runner(seed, "nope")
    assert caught.value.problems[0].message == 'no runner is named "nope"'
    assert '"added"' in caught.value.problems[0].fix


def test_set_key_changes_one_value_and_creates_missing_tables(seed: Path) -> None:
    set_key(seed, ("runners", 0, "kubernetes", "namespace"), "ci-jobs")
    set_key(seed, ("runners", 0, "kubernetes", "pod_labels", "team"), "platform")
    text = seed.read_text()
    assert '    namespace = "ci-jobs"' in text  # same place, same indentation
    assert "    # k8s 地址" in text
    k = load_config(seed).config.runners[0].kubernetes
    assert k is not None
    assert (k.namespace, k.pod_labels) == ("ci-jobs", {"team": "platform"})


def test_invalid_changes_are_refused_and_the_file_is_left_alone(seed: Path) -> None:
    before = seed.read_text()
    with pytest.raises(ConfigError) as caught:
        set_key(seed, ("runners", 0, "kubernetes", "poll_timeout"), "10s")
    assert caught.value.problems[0].key == "runners.kubernetes.poll_timeout"
    with pytest.raises(ConfigError):
        set_key(seed, ("runners", 3, "name"), "x")
    with pytest.raises(ConfigError):
        set_key(seed, ("concurrent", "x"), 1)
    with pytest.raises(ConfigError):
        add_runner(seed, {**NEW_RUNNER, "token": 5})
    assert seed.read_text() == before
    assert _mode(seed) == 0o644
    assert sorted(os.listdir(seed.parent)) == ["config.toml"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("concurrent = 1\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, "concurrent = 2\n")
    assert path.read_text() == "concurrent = 1\n"
    assert os.listdir(tmp_path) == ["config.toml"]

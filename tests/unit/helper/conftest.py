"""Fixtures for the helper tests: the HTTP doubles, a CLI runner with recorded waits, files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helper_doubles import FakeGitLab, FakeS3, HelperRun


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()
    yield fake
    fake.server.close()


@pytest.fixture
def s3() -> Iterator[FakeS3]:
    fake = FakeS3()
    yield fake
    fake.server.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CI variable from the machine running the tests leaks into the helper."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith(("CI_", "ARTIFACT_", "CACHE_", "FF_")):
            monkeypatch.delenv(name)


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> HelperRun:
    return HelperRun(monkeypatch)


Writer = Callable[..., Path]


def _write(path: Path, content: str | bytes = "x", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    if mode is not None:
        path.chmod(mode)
    return path


@pytest.fixture
def write() -> Writer:
    """``write(path, content="x", mode=None)``: a file with its parent directories."""
    return _write

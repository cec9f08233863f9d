"""Pytest fixtures for the Kubernetes double (import them from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .double import KubeDouble


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeDouble]:
    """A running double for one test; every container it started is gone afterwards."""
    with KubeDouble(state_dir=tmp_path / "kube-double") as api:
        yield api

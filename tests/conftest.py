"""Shared fixtures. Test doubles live in tests/doubles/ and register their fixtures here."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only reference material (../shared beside the checkout, as in CI)."""
    if not SHARED.is_dir():
        raise RuntimeError(f"reference material not found at {SHARED}")
    return SHARED


pytest_plugins = ["tests.doubles.gitlab.fixtures", "tests.doubles.kube.fixtures"]

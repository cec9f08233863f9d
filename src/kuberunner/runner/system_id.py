"""The runner's ``system_id``: stable per machine, kept beside config.toml as gitlab-runner does."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

__all__ = ["load_or_create_system_id"]

FILENAME = ".runner_system_id"
_VALID = re.compile(r"^[sr]_[0-9a-zA-Z]{12}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def load_or_create_system_id(config_path: Path) -> str:
    """Read ``.runner_system_id`` next to config.toml, creating it (mode 0600) on first use."""
    path = config_path.parent / FILENAME
    try:
        value = path.read_text().strip()
        if _VALID.match(value):
            return value
    except FileNotFoundError:
        pass
    value = "s_" + "".join(secrets.choice(_ALPHABET) for _ in range(12))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(FILENAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return value

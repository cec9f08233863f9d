"""The ``[runners.kubernetes]`` lines that point a runner at its new account: printed, or written in place.

``service_account`` is the account job pods run as. It is set to the runner's
own account so pods get whatever image pull secrets or cloud identity that
account carries, but with ``automount_service_account_token = false``: job
scripts must not receive a token that may create pods and read Secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit

from kuberunner.config.write import set_key, write_atomic
from kuberunner.rbac.manifests import AccountPlan

__all__ = ["ca_path", "render_snippet", "snippet_values", "write_ca", "write_snippet"]


def ca_path(config_path: Path, namespace: str) -> Path:
    """Where the cluster CA goes: next to config.toml, named after the namespace."""
    return config_path.parent / f"kuberunner-{namespace}-ca.crt"


def write_ca(config_path: Path, namespace: str, pem: str) -> Path:
    """Write the CA (public, mode 0644) next to config.toml; returns its absolute path."""
    target = ca_path(config_path, namespace).absolute()
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"{target.parent} does not exist: pass -c with the config.toml the runner uses, "
            "so the cluster CA can be written next to it"
        )
    write_atomic(target, pem if pem.endswith("\n") else pem + "\n", mode=0o644)
    return target


def snippet_values(plan: AccountPlan, *, host: str, ca_file: str, token: str) -> dict[str, Any]:
    """The keys, in the order they are printed and written (``ca_file`` only when a CA is needed)."""
    values: dict[str, Any] = {"host": host}
    if ca_file:
        values["ca_file"] = ca_file
    values.update(
        bearer_token=token,
        namespace=plan.namespace,
        service_account=plan.service_account,
        automount_service_account_token=False,
    )
    return values


def render_snippet(values: Mapping[str, Any]) -> str:
    """TOML to paste into the runner's entry (quoting done by tomlkit)."""
    lines = ["[runners.kubernetes]"]
    for key, value in values.items():
        if key == "automount_service_account_token":
            lines.append("  # job pods run as this account, without its token (it may create pods)")
        lines.append(f"  {key} = {tomlkit.item(value).as_string()}")
    return "\n".join(lines) + "\n"


def write_snippet(config_path: Path, runner_index: int, values: Mapping[str, Any]) -> None:
    """Set each key in ``[[runners]]`` #runner_index's ``[runners.kubernetes]``: comments and layout
    are kept, and each write is atomic with mode 0600 (the file holds the token)."""
    for key, value in values.items():
        set_key(config_path, ("runners", runner_index, "kubernetes", key), value)

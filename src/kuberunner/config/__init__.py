"""config.toml: gitlab-runner's schema, loading with line numbers, checks, writing.

The names below load their module on first use (PEP 562): ``kuberunner exec`` needs only
``schema`` (through ``kuberunner.config.schema``), and importing this package must not make
it pay for ``load`` and ``write`` (tomlkit), which only the config commands use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Config",
    "ConfigError",
    "KubernetesConfig",
    "LoadedConfig",
    "Problem",
    "RunnerConfig",
    "add_runner",
    "load_config",
    "read_config",
    "remove_runner",
    "set_key",
]

# name -> the submodule that defines it
_HOMES = {
    "Config": "schema",
    "ConfigError": "load",
    "KubernetesConfig": "schema",
    "LoadedConfig": "load",
    "Problem": "load",
    "RunnerConfig": "schema",
    "add_runner": "write",
    "load_config": "load",
    "read_config": "load",
    "remove_runner": "write",
    "set_key": "write",
}

if TYPE_CHECKING:
    from kuberunner.config.load import ConfigError, LoadedConfig, Problem, load_config, read_config
    from kuberunner.config.schema import Config, KubernetesConfig, RunnerConfig
    from kuberunner.config.write import add_runner, remove_runner, set_key
else:  # for type checkers the imports above define the names, and a misspelt one is an error

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))

"""config.toml: gitlab-runner's schema, loading with line numbers, checks, writing."""

from kuberunner.config.load import ConfigError, LoadedConfig, Problem, load_config, read_config
from kuberunner.config.schema import Config, KubernetesConfig, RunnerConfig
from kuberunner.config.write import add_runner, remove_runner, set_key

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

"""config.toml: gitlab-runner's schema, loading with line numbers, checks, writing."""

from kuberunner.config.schema import Config, KubernetesConfig, RunnerConfig

__all__ = ["Config", "KubernetesConfig", "RunnerConfig"]

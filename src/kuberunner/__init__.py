"""kuberunner: a GitLab CI runner for Kubernetes.

Reads gitlab-runner's ``config.toml``, speaks GitLab's runner API, runs every
job as a pod (or as local processes with the shell executor), and says why
whenever something fails.
"""

__version__ = "0.1.0"
REVISION = "kr010000"
NAME = "kuberunner"

__all__ = ["NAME", "REVISION", "__version__"]

"""Tunables of the double: node shape and the (scaled down) timings of the cluster's control loops."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Timings:
    """Seconds. Real clusters are slower (phase turns terminal 1-2 s after the last container,
    image pull back-off 10 s doubling to 300 s); the defaults keep tests quick but keep the order."""

    sandbox_ready: float = 0.05
    terminal_phase_delay: float = 0.15
    deletion_delay: float = 0.2  # terminated pod being deleted -> object gone (recorded: ~0.9 s)
    image_pull_failure: float = 0.2
    image_pull_backoff: float = 0.4
    image_pull_backoff_max: float = 3.0
    crash_backoff: float = 0.3
    crash_backoff_max: float = 3.0
    config_retry: float = 0.5
    mount_retry: float = 0.5
    bookmark_interval: float = 60.0
    watch_timeout: float = 1800.0
    grace_period_cap: float | None = None  # cap every termination grace period (None: honour the pod's)


@dataclass
class NodeConfig:
    name: str = "vm"
    ip: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    cpu: str = "2"
    memory: str = "8Gi"
    pods: str = "110"

    def all_labels(self) -> dict[str, str]:
        base = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "node-role.kubernetes.io/control-plane": "",
        }
        base.update(self.labels)
        return base


@dataclass(frozen=True)
class ImageConfig:
    """What an image would contribute: ENTRYPOINT, CMD and WORKDIR (images are otherwise ignored)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"

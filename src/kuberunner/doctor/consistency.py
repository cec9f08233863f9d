"""Settings that contradict each other, or the nodes: found from config.toml alone (no API calls).

- a ``docker:dind`` service without ``privileged = true`` (the daemon cannot start);
- a ``docker.sock`` host path (jobs drive the node's Docker: shared by every job, root on the node);
- ``host_aliases`` whose ``ip`` is not an IP address (Kubernetes rejects the pod);
- a helper image from a registry no job image comes from. Heuristic: if the
  nodes pull job images from registries A and B, a helper from C is one more
  registry they must reach, and the seed's failure 7. ``--probe`` proves it by
  pulling; without it this is a warning, and never raised when the config
  names no job image to compare with.
"""

from __future__ import annotations

import ipaddress

from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor.diagnose import repository_path
from kuberunner.doctor.images import compare_registries
from kuberunner.doctor.model import CheckResult, Fix

__all__ = ["check_consistency", "is_dind"]


def is_dind(image: str) -> bool:
    """docker:dind, docker:27-dind, registry.example.com/library/docker:dind-rootless ..."""
    name, _, tag = image.rpartition("/")[2].partition(":")
    return name == "docker" and "dind" in tag


def _privileged(cfg: KubernetesConfig) -> bool:
    ctx = cfg.service_container_security_context
    if ctx is not None and ctx.privileged is not None:
        return ctx.privileged
    return bool(cfg.privileged)


def _dind(cfg: KubernetesConfig) -> CheckResult:
    title = "Docker-in-Docker"
    dind = [s.name for s in cfg.services if is_dind(s.name)]
    if not dind:
        return CheckResult("dind", title, "pass", "no docker:dind service in [[runners.kubernetes.services]]")
    if _privileged(cfg):
        return CheckResult("dind", title, "pass", f"{dind[0]} runs privileged, as a Docker daemon must")
    return CheckResult(
        "dind",
        title,
        "fail",
        f"service {dind[0]} runs a Docker daemon, which cannot start without privileged = true",
        ("every job gets this service; its daemon fails with 'permission denied' / mount errors",),
        (Fix("toml", "[runners.kubernetes]\n  privileged = true", note="run job pods privileged:"),),
    )


def _docker_socket(cfg: KubernetesConfig) -> CheckResult:
    title = "Docker socket"
    for volume in cfg.volumes.host_path:
        host = volume.host_path or volume.mount_path
        if host.rstrip("/").endswith("docker.sock"):
            return CheckResult(
                "docker-socket",
                title,
                "warn",
                f"host_path volume {volume.name!r} mounts the node's {host}: jobs drive the node's Docker",
                (
                    "every job on a node shares that daemon (images, containers, networks) and is root "
                    "on the node",
                    "nodes with containerd only (Kubernetes 1.24+ default) have no Docker daemon at all",
                ),
                (
                    Fix(
                        "toml",
                        "[runners.kubernetes]\n  privileged = true\n"
                        '[[runners.kubernetes.services]]\n  name = "docker:dind"\n  alias = "docker"',
                        note="give each job its own daemon instead (jobs set DOCKER_HOST=tcp://docker:2375 "
                        'and DOCKER_TLS_CERTDIR=""), then remove the host_path volume:',
                    ),
                ),
            )
    return CheckResult("docker-socket", title, "pass", "no host_path volume mounts a Docker socket")


def _host_aliases(cfg: KubernetesConfig) -> CheckResult:
    title = "host aliases"
    bad: list[str] = []
    for number, alias in enumerate(cfg.host_aliases, 1):
        try:
            ipaddress.ip_address(alias.ip)
        except ValueError:
            bad.append(
                f'[[runners.kubernetes.host_aliases]] #{number}: ip = "{alias.ip}" is not an IP address'
            )
    if bad:
        return CheckResult(
            "host-aliases",
            title,
            "fail",
            "host_aliases need IP addresses: Kubernetes rejects the job pod otherwise",
            tuple(bad),
            (
                Fix(
                    "toml",
                    '[[runners.kubernetes.host_aliases]]\n  ip = "192.168.80.14"\n'
                    '  hostnames = ["gitlab.example.com"]',
                    note="write the address each name should resolve to (`getent hosts <name>` shows it):",
                ),
            ),
        )
    count = len(cfg.host_aliases)
    return CheckResult("host-aliases", title, "pass", f"{count} host alias(es), all with IP addresses")


def _helper_registry(cfg: KubernetesConfig, probe: CheckResult | None) -> CheckResult:
    title = "helper image"
    found = compare_registries(cfg)
    default = "" if cfg.helper_image else " (the default; helper_image is not set)"
    if probe is not None and probe.status in ("pass", "warn"):
        return CheckResult(
            "helper-image", title, "pass", f"{found.helper}{default}: a node pulled it (probe)"
        )
    if not found.extra_registry:
        jobs = ", ".join(found.job_registries) or "no job image in config.toml to compare with"
        return CheckResult("helper-image", title, "pass", f"{found.helper}{default}; job images: {jobs}")
    mirror = found.job_registries[0]
    path = repository_path(found.helper)
    return CheckResult(
        "helper-image",
        title,
        "warn",
        f"the helper image comes from {found.helper_registry}, a registry none of the job images use "
        f"({', '.join(found.job_registries)}): the nodes must reach it too",
        (
            f"helper image {found.helper}{default}",
            "run `kuberunner doctor --probe` to pull it from a node",
        ),
        (
            Fix(
                "toml",
                f'[runners.kubernetes]\n  helper_image = "{mirror}/{path}"',
                note=f"if the nodes cannot reach {found.helper_registry}, mirror the helper next to your job "
                "images and use the copy:",
            ),
        ),
    )


def check_consistency(cfg: KubernetesConfig, *, probe: CheckResult | None = None) -> list[CheckResult]:
    """``probe``: the probe's result, when one ran (a pulled helper image needs no guessing)."""
    return [_dind(cfg), _docker_socket(cfg), _host_aliases(cfg), _helper_registry(cfg, probe)]

"""Which images a job pod pulls, and from which registries: the helper image above all.

The seed's failure 7 is the helper image's default registry being unreachable
from the nodes. Without ``--probe`` doctor can only compare registries: when the
helper image comes from a registry no job image uses, that registry is one more
the nodes must reach, and the usual reason a first job hangs in ``ErrImagePull``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberunner.config.schema import KubernetesConfig
from kuberunner.executors.kubernetes import DEFAULT_HELPER_IMAGE
from kuberunner.executors.kubernetes.podspec import registry_of

__all__ = ["DEFAULT_HELPER_IMAGE", "RegistryComparison", "compare_registries", "helper_image"]


def helper_image(cfg: KubernetesConfig) -> str:
    """The image of a job's init and helper containers, resolved exactly as the executor does."""
    return cfg.helper_image or DEFAULT_HELPER_IMAGE


@dataclass(frozen=True)
class RegistryComparison:
    helper: str  # the helper image
    helper_registry: str
    job_registries: tuple[str, ...]  # from image and [[runners.kubernetes.services]]

    @property
    def extra_registry(self) -> bool:
        """The helper's registry is one no configured job image comes from."""
        return bool(self.job_registries) and self.helper_registry not in self.job_registries


def compare_registries(cfg: KubernetesConfig) -> RegistryComparison:
    image = helper_image(cfg)
    jobs = [cfg.image] if cfg.image else []
    jobs.extend(service.name for service in cfg.services)
    registries = tuple(dict.fromkeys(registry_of(i) for i in jobs if "$" not in i))
    return RegistryComparison(image, registry_of(image), registries)

"""A job pod whose "GitLab" it cannot reach: what goes in through Secrets, what comes out through its log.

``kuberunner exec --executor kubernetes`` runs against whatever cluster the
kubeconfig names, and a pod there usually cannot open a connection back to the
developer's machine, where the local artifact store listens. The Kubernetes
API is the one road both ends have, so a :class:`Relay` given to the executor
is used this way (the pod side is :mod:`kuberunner.helper.relay`):

- :meth:`Relay.files` are carried into the pod as Secrets (:func:`relay_secrets`:
  parts of at most :data:`PART_BYTES`, packed into at most :data:`MAX_SECRETS`
  Secrets) mounted at :data:`RELAY_DIR` in the init and helper containers only
  (never where the job's own script runs). :data:`SOURCES_FILE` among them is
  the working tree, unpacked into the project directory by get_sources.
- The helper's other HTTP requests come back as marker lines of the pod log,
  which the executor removes from the job log and hands to :meth:`Relay.received`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kuberunner.executors.base import BuildError
from kuberunner.helper.relay import PART_GLOB, part_name
from kuberunner.helper.transport import human_size

if TYPE_CHECKING:
    from kuberunner.build import Build
    from kuberunner.helper.relay import RelayedRequest

__all__ = [
    "MAX_SECRETS",
    "PART_BYTES",
    "RELAY_DIR",
    "SOURCES_FILE",
    "Relay",
    "RelayPlan",
    "relay_secrets",
    "sources_glob",
]

RELAY_DIR = "/kuberunner/relay"
SOURCES_FILE = "sources.tar.gz"
# A Secret holds at most 1 MiB; a part leaves room for its key and the object's other fields.
PART_BYTES = 768 * 1024
MAX_SECRETS = 16


class Relay(Protocol):
    """What a runner whose GitLab the pod cannot reach gives the executor, per job."""

    async def files(self, build: Build) -> Mapping[str, bytes]:
        """Files for the pod's :data:`RELAY_DIR` (names: letters, digits, ``-``, ``_``, ``.``)."""
        ...

    def received(self, build: Build, request: RelayedRequest) -> None:
        """A request the pod's helper made, in the order it made them."""
        ...

    def lost(self, build: Build, why: str) -> None:
        """A request came out of the pod damaged (lines missing from its log)."""
        ...


@dataclass(frozen=True)
class RelayPlan:
    """The relay part of a pod: its Secrets and the marker the helper writes requests with."""

    secrets: tuple[str, ...]
    mark: str
    has_sources: bool = False
    origin: str = ""  # the URL whose requests go through the relay (the job's "GitLab")


def sources_glob() -> str:
    """The shell glob of the working tree's parts, in order."""
    return f"{RELAY_DIR}/{SOURCES_FILE}{PART_GLOB}"


def relay_secrets(
    pod_name: str, namespace: str, labels: Mapping[str, str], files: Mapping[str, bytes]
) -> list[dict[str, Any]]:
    """The Secrets carrying ``files`` (each split in parts ``<name>.000``, ``<name>.001``...).

    Raises :class:`BuildError` naming the size and what to do when they need
    more than :data:`MAX_SECRETS` Secrets.
    """
    parts: list[tuple[str, bytes]] = []
    for name, content in files.items():
        chunks = [content[i : i + PART_BYTES] for i in range(0, len(content), PART_BYTES)] or [b""]
        if len(chunks) > 1000:
            raise BuildError(f"relay file {name!r} is too large", "runner_configuration_error")
        parts += [(part_name(name, n), chunk) for n, chunk in enumerate(chunks)]
    secrets: list[dict[str, Any]] = []
    data: dict[str, str] = {}
    size = 0
    for key, chunk in parts:
        if data and size + len(chunk) > PART_BYTES:
            secrets.append(_secret(f"{pod_name}-relay-{len(secrets)}", namespace, labels, data))
            data, size = {}, 0
        data[key] = base64.b64encode(chunk).decode("ascii")
        size += len(chunk)
    if data:
        secrets.append(_secret(f"{pod_name}-relay-{len(secrets)}", namespace, labels, data))
    if len(secrets) > MAX_SECRETS:
        total = human_size(sum(len(c) for c in files.values()))
        limit = human_size(MAX_SECRETS * PART_BYTES)
        raise BuildError(
            f"the job's working tree and artifacts take {total} compressed, "
            f"more than the {limit} kuberunner exec can carry into a pod (through Secrets): "
            "leave large files out with .gitignore, set GIT_STRATEGY: none for jobs that do not "
            "need the sources, or make the artifacts they depend on smaller",
            "runner_configuration_error",
        )
    return secrets


def _secret(name: str, namespace: str, labels: Mapping[str, str], data: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "data": data}

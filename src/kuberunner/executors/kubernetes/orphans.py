"""Removing what a crashed runner left behind: its pods, and their secrets. Only its own.

Every object of a job carries ``app.kubernetes.io/managed-by=kuberunner``,
``kuberunner.io/runner=<short token>`` and ``kuberunner.io/system-id=<system
id>``. A pod with all three, in a namespace this runner uses, that no running
job of this process owns, is an orphan: the process that made it is gone.
The same runner token on another machine has another system id, so its pods
are never touched. (Two processes with the same system id, i.e. the same
config directory, would take each other's pods for orphans: run one.)

Secrets are found through their pod: the names derived from the pod's
(:func:`secret_names`) and those listed in its ``kuberunner.io/secrets``
annotation, but only names that start with the pod's name, so an edited
annotation cannot make the runner delete anything else. Where the account may
``list secrets`` (optional), the secrets with the three labels are listed too,
which finds those whose pod was never created (a runner killed between the two
requests); one belonging to a pod of a running job (its name starts with the
pod's, which the job claims before it creates anything) is kept.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection

from kuberunner.kube import KubeClient, KubeError, KubeForbidden, KubeNotFound

__all__ = [
    "ANNOTATION_SECRETS",
    "LABEL_JOB_ID",
    "LABEL_MANAGED_BY",
    "LABEL_PROJECT_ID",
    "LABEL_RUNNER",
    "LABEL_SYSTEM_ID",
    "MANAGED_BY",
    "label_value",
    "orphan_selector",
    "remove_orphans",
    "secret_names",
]

log = logging.getLogger(__name__)

MANAGED_BY = "kuberunner"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUNNER = "kuberunner.io/runner"
LABEL_SYSTEM_ID = "kuberunner.io/system-id"
LABEL_JOB_ID = "kuberunner.io/job-id"
LABEL_PROJECT_ID = "kuberunner.io/project-id"
ANNOTATION_SECRETS = "kuberunner.io/secrets"


def label_value(text: str) -> str:
    """``text`` as a valid label value (63 characters, alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return cleaned.strip("-_.") or "none"


def secret_names(pod_name: str) -> tuple[str, str]:
    """(scripts Secret, registry Secret) of a job pod."""
    return f"{pod_name}-scripts", f"{pod_name}-registry"


def orphan_selector(runner_short_token: str, system_id: str) -> str:
    """The label selector matching every pod of this runner on this machine."""
    return (
        f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RUNNER}={label_value(runner_short_token)},"
        f"{LABEL_SYSTEM_ID}={label_value(system_id)}"
    )


async def remove_orphans(
    client: KubeClient,
    runner_short_token: str,
    system_id: str,
    active_pod_names: Collection[str],
) -> list[str]:
    """Delete this runner's pods in the client's namespace that are not in ``active_pod_names``.

    Returns the names of the pods removed. A failure to delete one object is
    logged and the rest go on; a failure to list raises :class:`KubeError`.
    """
    if not system_id:
        raise ValueError(
            "remove_orphans needs the runner's system id: without it, other machines' pods match"
        )
    listing = await client.list_pods(label_selector=orphan_selector(runner_short_token, system_id))
    removed: list[str] = []
    for pod in listing.get("items") or []:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name or name in active_pod_names:
            continue
        try:
            await client.delete_pod(name, grace_period=0)
        except KubeNotFound:
            pass
        except KubeError as exc:
            log.warning("orphaned pod %s could not be deleted: %s", name, exc)
            continue
        removed.append(name)
        listed = str((meta.get("annotations") or {}).get(ANNOTATION_SECRETS) or "").split(",")
        names = dict.fromkeys([*secret_names(name), *(s.strip() for s in listed)])
        await asyncio.gather(*(_delete_secret(client, s) for s in names if s.startswith(name + "-")))
    await _remove_podless_secrets(client, orphan_selector(runner_short_token, system_id), active_pod_names)
    return removed


async def _remove_podless_secrets(
    client: KubeClient, selector: str, active_pod_names: Collection[str]
) -> None:
    """The labelled secrets no running job owns (skipped without ``secrets list``)."""
    try:
        listing = await client.list_secrets(label_selector=selector)
    except KubeForbidden:
        return  # optional: the pods' own secrets were found through them above
    except KubeError as exc:
        log.warning("secrets of orphaned jobs could not be listed: %s", exc)
        return
    names = [str((s.get("metadata") or {}).get("name") or "") for s in listing.get("items") or []]
    active = tuple(f"{pod}-" for pod in active_pod_names)
    await asyncio.gather(*(_delete_secret(client, n) for n in names if n and not n.startswith(active)))


async def _delete_secret(client: KubeClient, name: str) -> None:
    try:
        await client.delete_secret(name)
    except KubeNotFound:
        pass
    except KubeError as exc:
        log.warning("secret %s of an orphaned pod could not be deleted: %s", name, exc)

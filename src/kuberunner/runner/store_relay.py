"""The local artifact store, reached from job pods through the Kubernetes API (``kuberunner exec``).

:class:`StoreRelay` is the :class:`~kuberunner.executors.kubernetes.relay.Relay`
of a local run on the Kubernetes executor: before a job's pod exists it packs
the working tree and fetches, from the store, the artifacts and cache archives
the job will ask for; after the job it sends the store what the pod's helper uploaded (it came
out in the pod log) and says what the store refused.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kuberunner.build import Build
from kuberunner.executors.kubernetes.relay import SOURCES_FILE
from kuberunner.helper.relay import HOP_HEADERS, RelayedRequest, encode_response, response_key
from kuberunner.script import restore_cache_keys

__all__ = ["Delivery", "StoreRelay", "pack_sources"]

# what an answer keeps of the store's headers (the rest is the transport's business)
_KEPT_HEADERS = ("content-type", "content-disposition")


def pack_sources(root: Path, files: Sequence[str]) -> bytes:
    """``files`` (POSIX paths under ``root``: regular files and symlinks) as a ``.tar.gz``.

    Owners are left out (root in the archive): the pod's user owns what it unpacks.
    """

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            path = root / rel
            try:
                tar.add(path, arcname=rel, recursive=False, filter=anonymous)
            except FileNotFoundError:
                continue  # deleted since it was listed
    return out.getvalue()


class StoreRelay:
    """Carries a local run's sources and artifacts between the store at ``store_url`` and job pods.

    ``sources`` packs the working tree (called once, in a thread, when the first job
    needs it); ``wants_sources(job_id)`` is False for jobs with ``GIT_STRATEGY: none``.
    """

    def __init__(
        self,
        store_url: str,
        sources: Callable[[], bytes],
        wants_sources: Callable[[int], bool] = lambda _: True,
    ) -> None:
        self.store_url = store_url
        self._pack = sources
        self._wants_sources = wants_sources
        self._sources: asyncio.Task[bytes] | None = None
        self._requests: dict[int, list[RelayedRequest]] = {}
        self._lost: dict[int, list[str]] = {}

    async def files(self, build: Build) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        if self._wants_sources(build.job.id):
            if self._sources is None:
                self._sources = asyncio.ensure_future(asyncio.to_thread(self._pack))
            files[SOURCES_FILE] = await asyncio.shield(self._sources)
        gets = [
            (f"/api/v4/jobs/{d.id}/artifacts", {"JOB-TOKEN": d.token})
            for d in build.job.dependencies
            if d.artifacts_file and d.artifacts_file.filename
        ]
        for key in restore_cache_keys(build):  # the store's cache objects (not an S3 bucket's)
            url = build.cache_url("GET", key) or ""
            if url.startswith(self.store_url + "/"):
                gets.append((url[len(self.store_url) :], {}))
        if gets:
            async with httpx.AsyncClient(base_url=self.store_url, timeout=60.0) as client:
                for path, headers in gets:
                    response = await client.get(path, headers=headers)
                    if response.status_code == 404 and not headers:
                        continue  # no such cache yet: the helper's own 404 says the same
                    kept = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
                    files[response_key("GET", path)] = encode_response(
                        response.status_code, kept, response.content
                    )
        return files

    def received(self, build: Build, request: RelayedRequest) -> None:
        self._requests.setdefault(build.job.id, []).append(request)

    def lost(self, build: Build, why: str) -> None:
        self._lost.setdefault(build.job.id, []).append(why)

    async def deliver(self, job_id: int) -> Delivery:
        """Send the store what job ``job_id``'s pod uploaded, in order, and say what went wrong:
        a refused artifact upload is an error (the upload stage would have failed), a refused
        cache upload a warning (creating a cache never fails a job)."""
        delivery = Delivery(errors=self._lost.pop(job_id, []))
        requests = self._requests.pop(job_id, [])
        if not requests:
            return delivery
        async with httpx.AsyncClient(base_url=self.store_url, timeout=60.0) as client:
            for request in requests:
                headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
                response = await client.request(
                    request.method, request.path, headers=headers, content=request.body
                )
                if response.is_success:
                    continue
                path = request.path.split("?", 1)[0]
                problem = f"{request.method} {path}: {_refusal(response)}"
                (delivery.warnings if path.startswith("/cache/") else delivery.errors).append(problem)
        return delivery


@dataclass
class Delivery:
    """What the store refused of a job's uploads."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
    except ValueError:
        message = response.text.strip()[:200]
    return f"{response.status_code} {response.reason_phrase}" + (f": {message}" if message else "")

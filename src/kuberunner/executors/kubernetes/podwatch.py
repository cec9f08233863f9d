"""One pod's state as the API reports it, kept current by a WATCH (never polled).

The watch is reopened from the last ``resourceVersion`` when the server ends
it (its timeout) or the connection drops; an expired version (HTTP 200 then an
``ERROR`` event with 410 ``Expired``) makes it read the pod once (``GET``) and
watch again from there. ``DELETED`` (or a 404 on that read) marks the pod
gone; the object of the ``DELETED`` event is kept, it holds the final
container states. Anything else the API refuses (403, say) ends the watch
with :attr:`PodWatch.error` set; waiters wake up and see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kuberunner.kube import KubeAPIError, KubeClient, KubeError, KubeGone, KubeNotFound, KubeUnreachable

__all__ = ["PodWatch"]

log = logging.getLogger(__name__)

Pod = dict[str, Any]


class PodWatch:
    """Latest state of one pod; ``wait_until`` wakes on every change. Start with :meth:`start`."""

    def __init__(
        self,
        client: KubeClient,
        name: str,
        *,
        pod: Pod | None = None,
        max_outage: float = 300.0,
        first_retry: float = 0.1,
        max_retry: float = 5.0,
    ) -> None:
        self.client = client
        self.name = name
        self.pod: Pod | None = pod
        self.gone = False
        self.error: KubeError | None = None
        self.events = 0  # updates seen, for tests and the bench
        self.reconnects = 0
        self._version = ""
        if pod is not None:
            self._version = str((pod.get("metadata") or {}).get("resourceVersion") or "")
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._max_outage = max_outage
        self._first_retry = first_retry
        self._max_retry = max_retry

    @property
    def done(self) -> bool:
        """No more updates will come (the pod is gone, or the watch failed for good)."""
        return self.gone or self.error is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch pod {self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_until(self, predicate: Callable[[PodWatch], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate(self)`` holds or no update can come any more; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self._changed:
            while not predicate(self):
                if self.done:
                    return predicate(self)
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return predicate(self)
            return True

    async def wait_for_update(self, seen: int, timeout: float | None = None) -> bool:
        """Wait for an update after the ``seen``-th (:attr:`events`); False on timeout."""
        return await self.wait_until(lambda w: w.events != seen or w.done, timeout)

    async def _publish(
        self, pod: Pod | None = None, *, gone: bool = False, error: KubeError | None = None
    ) -> None:
        async with self._changed:
            if pod is not None:
                self.pod = pod
                self.events += 1
            self.gone = self.gone or gone
            if error is not None:
                self.error = error
            self._changed.notify_all()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._first_retry
        outage_since: float | None = None
        while True:
            got_event = False
            try:
                async for kind, obj in self.client.watch_pod(self.name, resource_version=self._version):
                    got_event = True
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                    if version:
                        self._version = version
                    outage_since, delay = None, self._first_retry
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        await self._publish(obj, gone=True)
                        return
                    await self._publish(obj)
                # the server ended the watch (its timeout): go on from the last version at once,
                # unless it ended without saying anything (then back off: a proxy cutting watches)
                self.reconnects += 1
                if got_event:
                    continue
            except KubeGone:
                self.reconnects += 1
                try:
                    current = await self.client.get_pod(self.name)
                except KubeNotFound:
                    await self._publish(gone=True)
                    return
                except KubeUnreachable as exc:
                    log.debug("pod %s: re-reading after 410 failed: %s", self.name, exc)
                    outage_since = outage_since or loop.time()
                else:
                    self._version = str((current.get("metadata") or {}).get("resourceVersion") or "")
                    await self._publish(current)
                    continue
            except KubeUnreachable as exc:
                log.debug("pod %s: watch interrupted: %s", self.name, exc)
                self.reconnects += 1
                outage_since = outage_since or loop.time()
            except KubeAPIError as exc:
                await self._publish(error=exc)
                return
            if outage_since is not None and loop.time() - outage_since > self._max_outage:
                await self._publish(
                    error=KubeUnreachable(
                        f"lost the watch on pod {self.name!r} for more than {int(self._max_outage)}s"
                    )
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry)

"""Fault injection: what real clusters do to clients on a bad day, on demand and deterministic."""

from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .resources import NODES

if TYPE_CHECKING:
    from .double import KubeDouble
    from .kubelet import PodWorker


def pull_error_message(image: str) -> str:
    """containerd's wording for an image whose registry host does not resolve (as recorded)."""
    ref = image
    host, _, rest = ref.partition("/")
    if "." not in host and ":" not in host and host != "localhost":
        host, rest = "registry-1.docker.io", ref if "/" in ref else f"library/{ref}"
    name, _, tag = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "latest")
    return (
        f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": failed to '
        "do request: "
        f'Head "https://{host}/v2/{name}/manifests/{tag}": dial tcp: lookup {host} on 127.0.0.53:53: no '
        "such host"
    )


@dataclass
class PullRule:
    pattern: str
    error: str | None = None
    delay: float = 0.0


@dataclass
class HttpFailure:
    path: re.Pattern[str]
    method: str | None
    status: int
    remaining: int
    retry_after: int | None
    message: str

    def response(self) -> ApiError:
        reasons = {
            429: "TooManyRequests",
            500: "InternalError",
            502: None,
            503: "ServiceUnavailable",
            504: "Timeout",
        }
        reason = reasons.get(self.status, "InternalError")
        details: dict[str, Any] = {"causes": [{"message": self.message}]} if self.status == 500 else {}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        message = f"Internal error occurred: {self.message}" if self.status == 500 else self.message
        err = ApiError(self.status, reason, message, details or None)
        if self.retry_after is not None:
            err.headers["Retry-After"] = str(self.retry_after)
        return err


@dataclass(eq=False)
class StreamControl:
    """Lets a fault end or cut one live watch/log stream."""

    kind: str  # watch | log
    resource: str = ""
    namespace: str | None = None
    pod: str = ""
    container: str = ""
    ended: threading.Event = field(default_factory=threading.Event)
    abrupt: bool = False
    cut: bool = False


class Faults:
    """`api.faults`: every method takes effect at once and is thread safe."""

    def __init__(self, cluster: KubeDouble) -> None:
        self._c = cluster
        self._lock = threading.Lock()
        self._http: list[HttpFailure] = []
        self._pull: list[PullRule] = [PullRule("*.invalid/*", error="")]
        self._oom_markers: list[tuple[str, str | None]] = []
        self._streams: set[StreamControl] = set()
        self._pending_cuts: list[tuple[str | None, str | None]] = []

    # ------------------------------------------------------------ HTTP
    def fail_requests(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int = 503,
        times: int = 1,
        retry_after: int | None = None,
        message: str = "injected fault",
    ) -> None:
        """The next `times` requests whose path (with query) matches the regex `path` get `status`."""
        with self._lock:
            self._http.append(
                HttpFailure(
                    re.compile(path), method.upper() if method else None, status, times, retry_after, message
                )
            )

    def take_http_failure(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            for rule in self._http:
                if (
                    rule.remaining > 0
                    and (rule.method is None or rule.method == method)
                    and rule.path.search(path)
                ):
                    rule.remaining -= 1
                    return rule.response()
        return None

    # ------------------------------------------------------------ streams
    def register(self, ctl: StreamControl) -> None:
        with self._lock:
            self._streams.add(ctl)
            if ctl.kind == "log":
                for i, (pod, container) in enumerate(self._pending_cuts):
                    if (pod is None or pod == ctl.pod) and (container is None or container == ctl.container):
                        ctl.cut = True
                        del self._pending_cuts[i]
                        break

    def unregister(self, ctl: StreamControl) -> None:
        with self._lock:
            self._streams.discard(ctl)

    def active_streams(self, kind: str) -> int:
        with self._lock:
            return sum(1 for s in self._streams if s.kind == kind and not s.ended.is_set())

    def end_watches(self, *, resource: str | None = None, abrupt: bool = False) -> int:
        """End live watch streams (cleanly: the chunked body ends; abrupt: the connection drops)."""
        count = 0
        with self._lock:
            for ctl in self._streams:
                if ctl.kind == "watch" and (resource is None or ctl.resource == resource):
                    ctl.abrupt = abrupt
                    ctl.ended.set()
                    count += 1
        self._c.store.touch()
        return count

    def cut_log_follow(self, *, pod: str | None = None, container: str | None = None) -> None:
        """The next line sent on a matching pods/log follow stream stops half way and the connection drops
        (armed for the next stream if none is open now)."""
        with self._lock:
            for ctl in self._streams:
                if (
                    ctl.kind == "log"
                    and (pod is None or ctl.pod == pod)
                    and (container is None or ctl.container == container)
                ):
                    ctl.cut = True
                    return
            self._pending_cuts.append((pod, container))

    # ------------------------------------------------------------ images
    def image_pull_error(self, pattern: str, message: str | None = None) -> None:
        """Images matching the glob fail to pull: ErrImagePull / ImagePullBackOff alternate, as recorded.
        Images on `*.invalid` hosts fail by default."""
        with self._lock:
            self._pull.insert(0, PullRule(pattern, error=message or ""))

    def slow_image_pull(self, pattern: str, seconds: float) -> None:
        """Matching images take `seconds` to pull (the pod stays Pending with a Pulling event)."""
        with self._lock:
            self._pull.insert(0, PullRule(pattern, delay=seconds))

    def clear_image_rules(self) -> None:
        with self._lock:
            self._pull = []

    def pull_rule(self, image: str) -> PullRule | None:
        with self._lock:
            for rule in self._pull:
                if fnmatch.fnmatchcase(image, rule.pattern):
                    if rule.error is not None:
                        return PullRule(rule.pattern, error=rule.error or pull_error_message(image))
                    return rule
        return None

    # ------------------------------------------------------------ processes
    def oom_kill(self, namespace: str, pod: str, container: str, *, timeout: float = 10.0) -> None:
        """Wait until the container runs, then kill it like the OOM killer (exit 137, reason OOMKilled)."""

        def running() -> bool:
            worker = self._c.kubelet.worker(namespace, pod)
            slot = worker.slot(container) if worker is not None else None
            return slot is not None and slot.running

        if not self._c.store.wait_until(running, timeout):
            raise TimeoutError(
                f"container {container} of pod {namespace}/{pod} did not start within {timeout}s"
            )
        worker = self._c.kubelet.worker(namespace, pod)
        if worker is None or not worker.oom_kill(container):
            raise RuntimeError(f"container {container} of pod {namespace}/{pod} is not running")

    def oom_kill_on_output(self, marker: str, *, container: str | None = None) -> None:
        """OOM-kill a container (any, or the ones named `container`) once it prints a line with `marker`."""
        with self._lock:
            self._oom_markers.append((marker, container))

    def observe_line(self, worker: PodWorker, container: str, line: bytes) -> None:
        with self._lock:
            markers = list(self._oom_markers)
        text = line.decode(errors="replace")
        for marker, name in markers:
            if marker in text and (name is None or name == container):
                worker.oom_kill(container)
                return

    # ------------------------------------------------------------ cluster
    def evict(self, namespace: str, name: str) -> None:
        """What the Eviction API (or a node drain) does to the pod."""
        self._c.evict_pod(namespace, name, None)

    def cordon(self, unschedulable: bool = True) -> None:
        """Mark the node unschedulable: new pods stay Pending with FailedScheduling."""

        def update(node: dict[str, Any]) -> None:
            if unschedulable:
                node["spec"]["unschedulable"] = True
            else:
                node["spec"].pop("unschedulable", None)

        self._c.store.mutate(NODES.key, "", self._c.node.name, update)

    def uncordon(self) -> None:
        self.cordon(False)

    def compact_watch_history(self) -> None:
        """Drop the watch history like an etcd compaction: older resourceVersions now get 410 Expired."""
        self._c.store.compact()

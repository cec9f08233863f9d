"""Following a container's log (cut, resumed, deduplicated), markers into sections, and the pod watch.

The client is a scripted stand-in speaking the API's behaviour as recorded (see
``shared/docs/fixtures/kubernetes``): ``sinceTime`` counts from the start of its second,
timestamps have 9 fractional digits, a cut stream raises KubeUnreachable, a pod not started
answers 400 "waiting to start", a deleted pod 404, an expired watch an ERROR 410.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kuberunner.executors.kubernetes as kubernetes_package
from kuberunner.executors.kubernetes.logs import (
    LogFollower,
    StageEnd,
    StageSections,
    split_timestamp,
    timestamp_key,
)
from kuberunner.executors.kubernetes.podwatch import PodWatch
from kuberunner.kube import (
    REGISTRY,
    KubeClient,
    KubeForbidden,
    KubeGone,
    KubeInvalid,
    KubeNotFound,
    KubeUnreachable,
)
from kuberunner.trace import JobTrace

NONCE = "n0nce123"
T = "2026-11-29T15:40:13"


def ts(fraction: str) -> str:
    return f"{T}.{fraction}Z"


def line(stamp: str, text: str, newline: bool = True) -> bytes:
    return f"{stamp} {text}".encode() + (b"\n" if newline else b"")


def pod(container_state: dict[str, Any] | None, version: str = "1", name: str = "build") -> dict[str, Any]:
    statuses = [{"name": name, "state": container_state}] if container_state is not None else []
    return {
        "metadata": {"name": "p", "resourceVersion": version},
        "spec": {"containers": [{"name": name, "image": "alpine"}]},
        "status": {"phase": "Running", "containerStatuses": statuses},
    }


RUNNING = {"running": {"startedAt": "2026-11-29T15:40:12Z"}}
DONE = {"terminated": {"exitCode": 0, "reason": "Completed"}}


@dataclass
class LogAnswer:
    """One pods/log request: chunks, then a clean end, or raise ``error`` (after the chunks)."""

    chunks: list[bytes] = field(default_factory=list)
    error: Exception | None = None
    before: Any = None  # awaited before answering (to order things with the watch)


class FakeClient:
    def __init__(self) -> None:
        self.watch_events: asyncio.Queue[tuple[str, dict[str, Any]] | Exception | None] = asyncio.Queue()
        self.watch_calls: list[str] = []
        self.pod_now: dict[str, Any] | None = None
        self.logs: list[LogAnswer] = []
        self.log_calls: list[str] = []
        self._called = asyncio.Condition()

    async def wait_log_calls(self, count: int) -> None:
        async with self._called:
            await asyncio.wait_for(self._called.wait_for(lambda: len(self.log_calls) >= count), 5)

    async def watch_pod(
        self, name: str, *, resource_version: str = ""
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watch_calls.append(resource_version)
        while True:
            item = await self.watch_events.get()
            if item is None:
                return  # the server ended the watch
            if isinstance(item, Exception):
                raise item
            yield item

    async def get_pod(self, name: str) -> dict[str, Any]:
        if self.pod_now is None:
            raise KubeNotFound(404, "NotFound", f'pods "{name}" not found')
        return self.pod_now

    async def pod_log(
        self, name: str, container: str, *, follow: bool = True, since_time: str = ""
    ) -> AsyncIterator[bytes]:
        async with self._called:
            self.log_calls.append(since_time)
            self._called.notify_all()
        answer = self.logs.pop(0)
        if answer.before is not None:
            await answer.before
        for chunk in answer.chunks:
            yield chunk
        if answer.error is not None:
            raise answer.error


def cut() -> KubeUnreachable:
    return KubeUnreachable("log of p/build: the stream from https://api was cut: ClientPayloadError")


async def started_watch(client: FakeClient, state: dict[str, Any] = RUNNING) -> PodWatch:
    watch = PodWatch(cast(KubeClient, client), "p", first_retry=0.001)
    watch.start()
    await client.watch_events.put(("MODIFIED", pod(state, "2")))
    await watch.wait_until(lambda w: w.pod is not None)
    return watch


def follower(client: FakeClient, watch: PodWatch, got: list[bytes], **kw: Any) -> LogFollower:
    return LogFollower(
        cast(KubeClient, client), watch, "build", got.append, first_retry=0.001, settle=5.0, **kw
    )


# ------------------------------------------------------------------------------ timestamps


def test_timestamps_are_split_off_and_compare_in_time_order() -> None:
    assert split_timestamp(b"2026-11-29T15:40:13.696460760Z hello world\n") == (
        "2026-11-29T15:40:13.696460760Z",
        b"hello world\n",
    )
    assert split_timestamp(b"no timestamp here\n") == ("", b"no timestamp here\n")
    assert split_timestamp(b"2026-11-29T15:40:13.1Z \n") == ("2026-11-29T15:40:13.1Z", b"\n")
    assert timestamp_key("2026-11-29T15:40:13.1Z") == timestamp_key("2026-11-29T15:40:13.100000000Z")
    early, late, next_second = (timestamp_key(t) for t in (ts("099999999"), ts("1"), f"{T[:-2]}14Z"))
    assert early is not None and late is not None and next_second is not None
    assert early < late < next_second
    assert timestamp_key("yesterday") is None


# ------------------------------------------------------------------------------ sections


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def __call__(self, chunk: bytes) -> None:
        self.data += chunk


def test_markers_become_sections_with_titles_and_are_never_forwarded() -> None:
    sink = Sink()
    trace = JobTrace(sink, [], clock=lambda: 1700000000.0)
    warnings = {"after_script": "after_script failed, but job will continue unaffected: exit code 2"}
    sections = StageSections(trace, NONCE, on_end=lambda e: warnings.get(e.stage))
    prefix = f"\x1ekuberunner:{NONCE}:".encode()
    for content in [
        prefix + b"stage:start:get_sources\n",
        b"cloning\n",
        b"no newline" + prefix + b"stage:end:get_sources:0\n",
        prefix + b"stage:start:after_script\n",
        prefix + b"stage:end:after_script:2\n",
        prefix + b"result:0:success\n",
        b"\x1ekuberunner:otherjob:stage:start:x\n",
    ]:
        sections.line(content)
    trace.finish()

    assert sink.data == (
        b"section_start:1700000000:get_sources\r\x1b[0K"
        b"\x1b[0K\x1b[36;1mGetting source from Git repository\x1b[0;m\n"
        b"cloning\nno newline"
        b"section_end:1700000000:get_sources\r\x1b[0K"
        b"section_start:1700000000:after_script\r\x1b[0K\x1b[0K\x1b[36;1mRunning after_script\x1b[0;m\n"
        b"\x1b[0;33mWARNING: after_script failed, but job will continue unaffected: exit code 2\x1b[0;m\n"
        b"section_end:1700000000:after_script\r\x1b[0K"
        b"\x1ekuberunner:otherjob:stage:start:x\n"
    )
    assert sections.ends == [StageEnd("get_sources", 0), StageEnd("after_script", 2)]
    assert sections.result == (0, "success")


def test_a_stage_cut_off_by_a_killed_container_still_gets_its_section_closed() -> None:
    sink = Sink()
    sections = StageSections(JobTrace(sink, [], clock=lambda: 5.0), NONCE)
    sections.line(f"\x1ekuberunner:{NONCE}:stage:start:step_script\n".encode())
    sections.line(b"working\n")
    sections.close()
    sections.close()
    assert sink.data.endswith(b"working\nsection_end:5:step_script\r\x1b[0K")


# ------------------------------------------------------------------------------ following


async def test_a_cut_stream_resumes_at_the_last_timestamp_without_losing_or_repeating_lines() -> None:
    client = FakeClient()
    watch = await started_watch(client)
    a, b = ts("100000000"), ts("200000000")
    client.logs = [
        # three lines share timestamp b (one write in the container); the stream breaks mid-line
        LogAnswer([line(a, "one"), line(b, "two"), line(b, "three"), line(b, "fou", newline=False)], cut()),
        # sinceTime counts from the start of the second: everything comes again, then more
        LogAnswer(
            [line(a, "one"), line(b, "two"), line(b, "three"), line(b, "four"), line(ts("3"), "five")],
            cut(),
        ),
        LogAnswer([line(b, "four"), line(ts("3"), "five"), line(ts("4"), "six", newline=False)]),
    ]
    got: list[bytes] = []
    follow = follower(client, watch, got)
    task = asyncio.create_task(follow.run())
    await asyncio.sleep(0)
    await client.watch_events.put(("MODIFIED", pod(DONE, "3")))
    await asyncio.wait_for(task, 5)

    assert got == [b"one\n", b"two\n", b"three\n", b"four\n", b"five\n", b"six"]
    assert client.log_calls == ["", b, ts("3")]
    await watch.close()


async def test_a_clean_end_while_the_container_runs_reopens_and_a_partial_line_waits_for_the_end() -> None:
    client = FakeClient()
    watch = await started_watch(client)
    t1, t2 = ts("1"), ts("2")
    finished = asyncio.get_running_loop().create_future()
    client.logs = [
        LogAnswer([line(t1, "first"), line(t2, "progress ", newline=False)]),  # the server ended it
        LogAnswer(
            [line(t1, "first"), line(t2, "progress 100%"), line(ts("3"), "done", newline=False)],
            before=finished,
        ),
    ]
    got: list[bytes] = []
    follow = LogFollower(cast(KubeClient, client), watch, "build", got.append, settle=0.05, first_retry=0.001)
    task = asyncio.create_task(follow.run())
    await client.wait_log_calls(2)
    assert got == [b"first\n"]  # the partial "progress " was not emitted
    await client.watch_events.put(("MODIFIED", pod(DONE, "3")))
    finished.set_result(None)
    await asyncio.wait_for(task, 5)

    assert got == [b"first\n", b"progress 100%\n", b"done"]
    assert client.log_calls == ["", t1]
    await watch.close()


async def test_reading_stops_at_the_driver_s_last_line_without_waiting_for_the_stream_end() -> None:
    client = FakeClient()
    watch = PodWatch(cast(KubeClient, client), "p")
    watch.start()
    await client.watch_events.put(("MODIFIED", pod(RUNNING, name="helper")))  # and keeps saying so
    sink = Sink()
    sections = StageSections(JobTrace(sink, []), NONCE)
    hang: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stream() -> AsyncIterator[bytes]:
        yield line(ts("1"), "uploading")
        yield line(ts("2"), f"\x1ekuberunner:{NONCE}:done:helper:0")
        await hang  # the server would end the body only later

    client.pod_log = lambda *a, **k: stream()  # type: ignore[method-assign]
    follow = LogFollower(
        cast(KubeClient, client),
        watch,
        "helper",
        sections.line,
        complete=lambda: "helper" in sections.finished,
    )
    await asyncio.wait_for(follow.run(), 5)
    assert sink.data == b"uploading\n" and sections.finished == {"helper"}
    await watch.close()


async def test_waiting_to_start_waits_for_the_next_pod_update() -> None:
    client = FakeClient()
    watch = await started_watch(client)
    update = asyncio.get_running_loop().create_future()
    waiting = KubeInvalid(
        400, "BadRequest", 'container "build" in pod "p" is waiting to start: PodInitializing'
    )
    client.logs = [LogAnswer([], waiting), LogAnswer([line(ts("1"), "hello")], before=update)]
    got: list[bytes] = []
    task = asyncio.create_task(follower(client, watch, got).run())
    await client.wait_log_calls(1)
    await client.watch_events.put(("MODIFIED", pod(DONE, "3")))
    update.set_result(None)
    await asyncio.wait_for(task, 5)

    assert got == [b"hello\n"]
    assert len(client.log_calls) == 2
    await watch.close()


async def test_a_deleted_pod_ends_the_follow_with_what_was_read() -> None:
    client = FakeClient()
    watch = await started_watch(client)
    client.logs = [
        LogAnswer([line(ts("1"), "before the end")], cut()),
        LogAnswer([], KubeNotFound(404, "NotFound", 'pods "p" not found')),
    ]
    got: list[bytes] = []
    await asyncio.wait_for(follower(client, watch, got).run(), 5)
    assert got == [b"before the end\n"]
    await watch.close()


async def test_a_container_that_never_started_is_not_read() -> None:
    client = FakeClient()
    watch = PodWatch(cast(KubeClient, client), "p")
    watch.start()
    await client.watch_events.put(("MODIFIED", pod({"waiting": {"reason": "ContainerCreating"}})))
    got: list[bytes] = []
    task = asyncio.create_task(follower(client, watch, got).run())
    await client.watch_events.put(("DELETED", pod({"waiting": {"reason": "ContainerCreating"}}, "9")))
    await asyncio.wait_for(task, 5)
    assert client.log_calls == [] and got == []


async def test_a_log_that_stays_unreachable_is_given_up_and_said_so() -> None:
    client = FakeClient()
    watch = await started_watch(client)
    client.logs = [LogAnswer([], cut()) for _ in range(200)]
    got: list[bytes] = []
    follow = follower(client, watch, got, max_outage=0.05, max_retry=0.005)
    await asyncio.wait_for(follow.run(), 5)
    assert follow.lost is not None and "was cut" in follow.lost
    await watch.close()


# ------------------------------------------------------------------------------ the watch


async def test_the_watch_reopens_from_the_last_version_and_relists_after_410() -> None:
    client = FakeClient()
    watch = PodWatch(cast(KubeClient, client), "p", pod=pod(None, "5"), first_retry=0.001)
    client.pod_now = pod(DONE, "12")  # what a GET answers after the 410
    for event in [
        ("MODIFIED", pod(RUNNING, "7")),
        ("BOOKMARK", {"metadata": {"resourceVersion": "8"}}),
        None,  # the server's watch timeout: a clean end
        KubeGone(410, "Expired", "too old resource version: 8 (11)"),
        ("DELETED", pod(DONE, "13")),
    ]:
        client.watch_events.put_nowait(event)
    watch.start()
    assert await watch.wait_until(lambda w: w.gone, timeout=5)

    assert client.watch_calls == ["5", "8", "12"]
    assert watch.pod is not None and watch.pod["metadata"]["resourceVersion"] == "13"  # the final state
    await watch.close()


async def test_a_refused_watch_ends_with_its_error_and_wakes_the_waiters() -> None:
    client = FakeClient()
    watch = PodWatch(cast(KubeClient, client), "p")
    watch.start()
    waiter = asyncio.create_task(watch.wait_until(lambda w: w.pod is not None))
    denied = KubeForbidden(403, "Forbidden", 'pods is forbidden: User "x" cannot watch resource "pods"')
    await client.watch_events.put(denied)
    assert await asyncio.wait_for(waiter, 5) is False
    assert watch.error is denied and watch.done
    await watch.close()


async def test_a_watch_that_cannot_reconnect_gives_up_after_the_outage_limit() -> None:
    client = FakeClient()
    watch = PodWatch(cast(KubeClient, client), "p", max_outage=0.02, first_retry=0.001, max_retry=0.002)
    for _ in range(500):
        client.watch_events.put_nowait(KubeUnreachable("watch pod 'p': connection refused"))
    watch.start()
    assert await watch.wait_until(lambda w: w.done, timeout=5)
    assert isinstance(watch.error, KubeUnreachable) and "lost the watch" in str(watch.error)
    await watch.close()


# ------------------------------------------------------------------------------ RBAC

# The Role of the seed guide (shared/docs/seed-walkthrough.md): what operators already granted.
SEED_ROLE = (
    {("pods", verb) for verb in ("list", "get", "watch", "create", "delete")}
    | {("pods/exec", "create"), ("pods/log", "get")}
    | {
        (resource, verb)
        for resource in ("pods/attach", "secrets", "configmaps")
        for verb in ("list", "get", "create", "delete", "update")
    }
)
NOT_API_CALLS = {"close"}


def test_the_executor_reaches_kubernetes_only_through_registered_client_methods() -> None:
    package = Path(kubernetes_package.__file__).parent
    client_methods = {name for name in dir(KubeClient) if not name.startswith("_")}
    used: set[str] = set()
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("_api", "call_api", "_call", "_raw"), f"{path.name}:{node.lineno}"
                if node.attr in client_methods:
                    used.add(node.attr)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                for module in modules:
                    assert not module.startswith(("kubernetes_asyncio", "aiohttp", "httpx")), (
                        f"{path.name}:{node.lineno} talks to Kubernetes around the client: {module}"
                    )
    calls = used - NOT_API_CALLS - {"host", "namespace", "source"}
    assert {"create_pod", "watch_pod", "pod_log", "delete_pod", "create_secret", "list_pods"} <= calls
    unregistered = sorted(name for name in calls if name not in REGISTRY)
    assert unregistered == [], f"KubeClient methods used without an RBAC entry: {unregistered}"
    needed = {(p.resource, p.verb) for name in calls if (p := REGISTRY[name]) is not None and not p.optional}
    optional = {(p.resource, p.verb) for name in calls if (p := REGISTRY[name]) is not None and p.optional}
    assert needed <= SEED_ROLE, f"not in the seed guide's Role: {sorted(needed - SEED_ROLE)}"
    # richer messages, and secrets whose pod was never created found by the orphan sweep
    assert optional == {("events", "watch"), ("secrets", "list")}

"""Replays the recorded exchanges with a real v1.36 API server against the double.

Requests are sent as recorded (same paths, bodies, identities); answers must match: status
code, Content-Type, Warning headers and whole Status bodies (uids normalised). Pod lifecycles
are compared as the sequence of distinct observable states of the watch (phase, conditions,
container states, deletion) after collapsing repeats; sleeps in the recorded scripts are
shortened and the 30 s termination grace is capped at 1 s so the suite stays fast.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from tests.doubles.kube import KubeDouble, Timings

NS = "kr-rec"
RUNNER_RULES: list[dict[str, Any]] = [
    {"verbs": ["create", "get", "list", "watch", "delete"], "apiGroups": [""], "resources": ["pods"]},
    {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]},
    {"verbs": ["create", "get", "delete"], "apiGroups": [""], "resources": ["secrets"]},
    {"verbs": ["list", "watch"], "apiGroups": [""], "resources": ["events"]},
]
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
API_ACCESS_RE = re.compile(r"kube-api-access-[a-z0-9]{5}")


def load(shared_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_dir / "docs/fixtures/kubernetes" / f"{name}.json").read_text())
    return data


def normalize(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True)
    text = UUID_RE.sub("<uid>", text)
    text = API_ACCESS_RE.sub("kube-api-access-<x>", text)
    text = re.sub(
        r"too old resource version: (\d+) \(\d+\)", r"too old resource version: \1 (<oldest>)", text
    )
    return json.loads(text)


class Replay:
    """Sends recorded requests as the recorded identity and checks the answers."""

    def __init__(self, api: KubeDouble) -> None:
        self.api = api
        self.runner = api.add_service_account(NS, "runner", rules=RUNNER_RULES)
        self.nobind = api.add_service_account(NS, "nobind")
        api.create_namespace(
            "psa-restricted",
            {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        )
        ctx = ssl.create_default_context(cafile=api.ca_file)
        admin_ctx = ssl.create_default_context(cafile=api.ca_file)
        admin_ctx.load_cert_chain(*api.admin_cert)
        self.http = httpx.Client(base_url=api.host, verify=ctx, timeout=30)
        self.admin = httpx.Client(base_url=api.host, verify=admin_ctx, timeout=30)

    def close(self) -> None:
        self.http.close()
        self.admin.close()

    def client(self, auth: str) -> tuple[httpx.Client, dict[str, str]]:
        if auth.startswith("admin client certificate"):
            return self.admin, {}
        if auth.startswith("no credentials"):
            return self.http, {}
        if "garbage" in auth:
            return self.http, {"Authorization": "Bearer not-a-jwt-just-garbage"}
        if "kr-rec/nobind" in auth:
            return self.http, {"Authorization": f"Bearer {self.nobind}"}
        assert "kr-rec/runner" in auth, auth
        return self.http, {"Authorization": f"Bearer {self.runner}"}

    def request(
        self, exchange: dict[str, Any], *, path: str | None = None, body: Any = None
    ) -> httpx.Request:
        req = exchange["request"]
        http, headers = self.client(req["auth"])
        headers = {
            **headers,
            "Accept": req["headers"].get("Accept", "application/json"),
            "User-Agent": "python-httpx/0.28.1",
        }
        content: bytes | None = None
        if "body_raw" in req:
            content = req["body_raw"].encode()
        elif body is not None or req.get("body") is not None:
            content = json.dumps(body if body is not None else req["body"]).encode()
        if content is not None:
            headers["Content-Type"] = req["headers"].get("Content-Type", "application/json")
        return http.build_request(req["method"], path or req["path"], headers=headers, content=content)

    def send(self, exchange: dict[str, Any], *, path: str | None = None, body: Any = None) -> httpx.Response:
        req = self.request(exchange, path=path, body=body)
        http, _ = self.client(exchange["request"]["auth"])
        return http.send(req)

    def stream(
        self, exchange: dict[str, Any], *, path: str | None = None
    ) -> Iterator[tuple[httpx.Response, Iterator[str]]]:
        http, _ = self.client(exchange["request"]["auth"])
        response = http.send(self.request(exchange, path=path), stream=True)
        try:
            yield response, response.iter_lines()
        finally:
            response.close()


def assert_answer(exchange: dict[str, Any], response: httpx.Response) -> None:
    """Status code, Content-Type, Warning headers and (for Status bodies) the whole body."""
    recorded = exchange["response"]
    name = exchange["name"]
    assert response.status_code == recorded["status"], (name, response.text)
    content_type = recorded["headers"].get("Content-Type")
    assert response.headers.get("content-type") == content_type, name
    assert response.headers.get_list("warning") == recorded["headers"].get("Warning", []), name
    body = recorded.get("body")
    if isinstance(body, dict) and body.get("kind") == "Status":
        assert normalize(response.json()) == normalize(body), name


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Replay]:
    with KubeDouble(
        state_dir=tmp_path / "kube", timings=Timings(grace_period_cap=1.0, deletion_delay=0.6)
    ) as api:
        player = Replay(api)
        try:
            yield player
        finally:
            player.close()
        assert api.errors == []


# --------------------------------------------------------------------------- plain request/answer pairs
STATUS_SCENARIOS = [
    "auth-anonymous-create-secret",
    "auth-invalid-token",
    "auth-sa-without-binding",
    "auth-wrong-namespace",
    "pod-invalid-spec",
    "psa-privileged-denied",
]


@pytest.mark.parametrize("scenario", STATUS_SCENARIOS)
def test_error_answers_match_the_recording(replay: Replay, shared_dir: Path, scenario: str) -> None:
    for exchange in load(shared_dir, scenario)["exchanges"]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        if exchange["response"]["status"] == 201:
            assert_same_pod(exchange, response.json())


def assert_same_pod(exchange: dict[str, Any], got: dict[str, Any]) -> None:
    """A created Pod: defaulted spec, initial status and the request's managedFields as recorded."""
    expected = exchange["response"]["body"]
    assert normalize(got["spec"]) == normalize(expected["spec"]), exchange["name"]
    assert got["status"] == expected["status"]
    assert ("resourceVersion" in got["metadata"]) == ("resourceVersion" in expected["metadata"])
    assert got["metadata"]["generation"] == expected["metadata"]["generation"]
    assert (
        got["metadata"]["managedFields"][0]["fieldsV1"]
        == expected["metadata"]["managedFields"][0]["fieldsV1"]
    )
    assert got["metadata"]["managedFields"][0]["manager"] == "python-httpx"


def test_unknown_fields_strict_warn_ignore(replay: Replay, shared_dir: Path) -> None:
    for exchange in load(shared_dir, "pod-unknown-field-strict")["exchanges"]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        if response.status_code == 201:
            assert_same_pod(exchange, response.json())
            assert "alsoBogus" not in response.json()["spec"]
    assert replay.api.pods(NS) == []  # everything was dryRun or rejected


def test_dockerconfigjson_secret_lifecycle(replay: Replay, shared_dir: Path) -> None:
    bodies = {  # recorded values are redacted; these are equivalent real values
        "create dockerconfigjson secret": '{"auths":{"registry.example":{"auth":"dTpw"}}}',
        "create it again -> AlreadyExists": '{"auths":{"registry.example":{"auth":"dTpw"}}}',
        "dockerconfigjson whose value is not JSON -> 422": "not json",
    }
    import base64

    for exchange in load(shared_dir, "secret-dockerconfigjson-create")["exchanges"]:
        body = exchange["request"].get("body")
        if body is not None:
            body = json.loads(json.dumps(body))
            for section in ("data", "stringData"):
                for key in body.get(section, {}):
                    raw = bodies.get(exchange["name"], '{"auths":{}}') if key == ".dockerconfigjson" else "x"
                    body[section][key] = base64.b64encode(raw.encode()).decode() if section == "data" else raw
        response = replay.send(exchange, body=body)
        assert_answer(exchange, response)
        expected = exchange["response"]["body"]
        if expected.get("kind") == "Secret":
            got = response.json()
            assert got["type"] == expected["type"]
            assert sorted(got["data"]) == sorted(expected["data"])
            assert got["metadata"].get("labels") == expected["metadata"].get("labels")
            assert ("resourceVersion" in got["metadata"]) == ("resourceVersion" in expected["metadata"])
            assert (
                got["metadata"]["managedFields"][0]["fieldsV1"]
                == expected["metadata"]["managedFields"][0]["fieldsV1"]
            )
        if expected.get("status") == "Success":
            assert response.json()["details"]["uid"]


def test_access_reviews_and_whoami(replay: Replay, shared_dir: Path) -> None:
    for exchange in load(shared_dir, "selfsubjectaccessreview")["exchanges"]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        expected = exchange["response"]["body"]
        got = response.json()
        if expected["kind"] in ("SelfSubjectAccessReview", "SelfSubjectRulesReview"):
            assert got["spec"] == expected["spec"]
            assert got["status"] == expected["status"]
            if expected["metadata"].get("managedFields"):
                assert (
                    got["metadata"]["managedFields"][0]["fieldsV1"]
                    == expected["metadata"]["managedFields"][0]["fieldsV1"]
                )
        elif expected["kind"] == "SelfSubjectReview":
            user, want = got["status"]["userInfo"], expected["status"]["userInfo"]
            assert (user["username"], user["groups"]) == (want["username"], want["groups"])
            assert UUID_RE.fullmatch(user["uid"])
            assert re.fullmatch(
                r"JTI=" + UUID_RE.pattern, user["extra"]["authentication.kubernetes.io/credential-id"][0]
            )


def test_version_and_discovery(replay: Replay, shared_dir: Path) -> None:
    for exchange in load(shared_dir, "version-and-discovery")["exchanges"]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        expected = exchange["response"]["body"]
        if isinstance(expected, str):
            assert response.text == expected
        elif expected.get("kind") == "APIResourceList":
            got = response.json()
            assert ("apiVersion" in got) == ("apiVersion" in expected)
            served = {r["name"]: r for r in got["resources"]}
            for resource in expected["resources"]:
                assert served[resource["name"]] == resource
        else:
            assert response.json() == expected


def test_watch_and_list_resource_versions(replay: Replay, shared_dir: Path) -> None:
    exchanges = load(shared_dir, "watch-expired-resource-version")["exchanges"]
    replay.api.faults.compact_watch_history()
    for exchange in exchanges:
        recorded = exchange["response"]
        path = exchange["request"]["path"]
        if "stream" not in recorded:
            if "resourceVersion=1&" in path or path.endswith("resourceVersion=1"):
                replay.api.faults.compact_watch_history()
            response = replay.send(exchange)
            assert_answer(exchange, response)
            if recorded["body"].get("kind") == "PodList":
                assert response.json()["items"] == []
                assert int(response.json()["metadata"]["resourceVersion"]) > 0
            continue
        fast = path.replace("timeoutSeconds=3", "timeoutSeconds=1")
        if "resourceVersion=1134" in fast:
            fast = fast.replace("1134", str(replay.api.store.current_rv))
        started = time.monotonic()
        for response, lines in replay.stream(exchange, path=fast):
            assert response.status_code == recorded["status"]
            assert response.headers["content-type"] == "application/json"
            assert response.headers["transfer-encoding"] == "chunked"
            events = [json.loads(line) for line in lines if line]
        assert normalize(events) == normalize([s["event"] for s in recorded["stream"]])
        if "timeoutSeconds" in fast:
            assert 0.9 < time.monotonic() - started < 5  # ended by the server at the timeout


def test_untrusted_ca_and_hostname_mismatch(replay: Replay, shared_dir: Path) -> None:
    cases = load(shared_dir, "tls-untrusted-ca")["observations"]["cases"]
    default = cases[0]["exception_chain"]
    with pytest.raises(httpx.ConnectError) as failed, httpx.Client() as untrusting:
        untrusting.get(f"{replay.api.host}/version")
    chain = [failed.value, failed.value.__cause__]
    assert isinstance(chain[1], httpcore.ConnectError)
    inner = chain[1].__cause__ or chain[1].__context__
    assert isinstance(inner, ssl.SSLCertVerificationError)
    assert inner.verify_code == default[2]["verify_code"]
    assert inner.verify_message == default[2]["verify_message"]
    ctx = ssl.create_default_context(cafile=replay.api.ca_file)
    with pytest.raises(httpx.ConnectError) as mismatch, httpx.Client(verify=ctx) as trusting:
        trusting.get(f"{replay.api.host}/version", extensions={"sni_hostname": "wrong.example"})
    inner = mismatch.value.__cause__.__cause__ or mismatch.value.__cause__.__context__  # type: ignore[union-attr]
    assert isinstance(inner, ssl.SSLCertVerificationError)
    assert (inner.verify_code, inner.verify_message) == (
        cases[2]["exception_chain"][2]["verify_code"],
        cases[2]["exception_chain"][2]["verify_message"],
    )


# --------------------------------------------------------------------------- pod lifecycles
def signature(event: dict[str, Any]) -> tuple[Any, ...]:
    """What a client can observe in one watch event, without names, times and ids."""
    obj = event["object"]
    meta = obj["metadata"]
    status = obj.get("status") or {}
    conditions = tuple(
        sorted(
            (c["type"], c["status"], c.get("reason"), c.get("message"))
            for c in status.get("conditions") or []
        )
    )

    def containers(key: str) -> tuple[Any, ...]:
        out = []
        for c in status.get(key) or []:
            kind, detail = next(iter(c["state"].items())) if c["state"] else (None, {})
            out.append(
                (c["name"], kind, detail.get("reason"), detail.get("exitCode"), c["ready"], c["started"])
            )
        return tuple(out)

    return (
        event["type"],
        status.get("phase"),
        status.get("reason"),
        bool(meta.get("deletionTimestamp")),
        meta.get("deletionGracePeriodSeconds"),
        conditions,
        containers("initContainerStatuses"),
        containers("containerStatuses"),
    )


def distinct(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in events:
        sig = signature(event)
        if not out or out[-1] != sig:
            out.append(sig)
    return out


def collapse_pull_retries(sigs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """ErrImagePull/ImagePullBackOff alternate for as long as one waits; keep one round of it."""
    out: list[tuple[Any, ...]] = []
    for sig in sigs:
        if sig in out and not sig[3]:
            continue
        out.append(sig)
    return out


class Watcher:
    """The recorded pod watch (list, then watch from the list's resourceVersion), in a thread."""

    def __init__(self, replay: Replay, exchanges: list[dict[str, Any]]) -> None:
        self.replay = replay
        listing = exchanges[0]
        assert listing["request"]["path"].startswith(f"/api/v1/namespaces/{NS}/pods?fieldSelector")
        response = replay.send(listing)
        assert_answer(listing, response)
        rv = response.json()["metadata"]["resourceVersion"]
        self.exchange = exchanges[1]
        self.path = re.sub(r"resourceVersion=\d+", f"resourceVersion={rv}", self.exchange["request"]["path"])
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as exc:  # the double went away (a failed test tearing down)
            self.error = exc

    def _read(self) -> None:
        for response, lines in self.replay.stream(self.exchange, path=self.path):
            assert response.status_code == 200
            for line in lines:
                if not line:
                    continue
                event = json.loads(line)
                with self.cond:
                    self.events.append(event)
                    self.cond.notify_all()
                if event["type"] == "DELETED":
                    return

    def wait(self, predicate: Any, timeout: float = 20, after: int = 0) -> dict[str, Any]:
        """The first event (from index `after` on) whose object satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events[after:]:
                    if predicate(event["object"]):
                        return event
                remaining = deadline - time.monotonic()
                assert remaining > 0, [signature(e) for e in self.events]
                self.cond.wait(remaining)

    def finish(self) -> list[dict[str, Any]]:
        self.thread.join(20)
        assert not self.thread.is_alive()
        assert self.error is None
        return self.events


def phase(obj: dict[str, Any]) -> str:
    return str(obj.get("status", {}).get("phase"))


def terminal(obj: dict[str, Any]) -> bool:
    return phase(obj) in ("Succeeded", "Failed")


def container_state(obj: dict[str, Any], name: str) -> dict[str, Any]:
    status = obj.get("status", {})
    for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        if c["name"] == name:
            return dict(c["state"])
    return {}


def scaled(
    body: dict[str, Any], factor: float = 0.25, replacements: dict[str, str] | None = None
) -> dict[str, Any]:
    text = json.dumps(body)
    for old, new in (replacements or {}).items():
        text = text.replace(old, new)

    def shorten(match: re.Match[str]) -> str:
        seconds = float(match.group(1))
        return match.group(0) if seconds >= 100 else f"sleep {seconds * factor:g}"

    result: dict[str, Any] = json.loads(re.sub(r"sleep (\d+(?:\.\d+)?)", shorten, text))
    return result


def recorded_watch(exchanges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item["event"] for item in exchanges[1]["response"]["stream"]]


@pytest.mark.parametrize(
    "scenario",
    ["pod-lifecycle-success-watch", "pod-lifecycle-failure-watch", "pod-lifecycle-sidecar-handles-term"],
)
def test_native_sidecar_lifecycles(replay: Replay, shared_dir: Path, scenario: str) -> None:
    exchanges = load(shared_dir, scenario)["exchanges"]
    watcher = Watcher(replay, exchanges)
    create = exchanges[2]
    response = replay.send(create, body=scaled(create["request"]["body"]))
    assert response.status_code == 201
    watcher.wait(terminal)
    for exchange in exchanges[3:]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        expected = exchange["response"]["body"]
        if isinstance(expected, str):
            assert response.text == expected, exchange["name"]
        elif expected.get("kind") == "Pod":
            got = response.json()
            assert signature({"type": "X", "object": got}) == signature({"type": "X", "object": expected})
    assert distinct(watcher.finish()) == distinct(recorded_watch(exchanges))


def test_oom_killed(replay: Replay, shared_dir: Path) -> None:
    exchanges = load(shared_dir, "pod-oomkilled")["exchanges"]
    if not replay.api.memory_limits_enforced:
        replay.api.faults.oom_kill_on_output("allocating")
    watcher = Watcher(replay, exchanges)
    response = replay.send(exchanges[2])
    assert response.status_code == 201
    final = watcher.wait(terminal)["object"]
    assert container_state(final, "build")["terminated"]["reason"] == "OOMKilled"
    for exchange in exchanges[3:]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        expected = exchange["response"]["body"]
        if isinstance(expected, str):
            assert response.text == expected
        elif expected.get("kind") == "EventList":
            want = [
                (e["reason"], e["message"].replace("kr-oom", "X"))
                for e in expected["items"]
                if e["reason"] != "MissingClusterDNS"
            ]
            got = [(e["reason"], e["message"].replace("kr-oom", "X")) for e in response.json()["items"]]
            assert got == want
        elif expected.get("kind") == "Pod" and exchange["request"]["method"] == "GET":
            assert response.json()["status"]["qosClass"] == "Burstable"
            assert response.json()["status"]["containerStatuses"][0]["allocatedResources"] == {
                "cpu": "100m",
                "memory": "16Mi",
            }
    assert distinct(watcher.finish()) == distinct(recorded_watch(exchanges))


def test_unschedulable(replay: Replay, shared_dir: Path) -> None:
    exchanges = load(shared_dir, "pod-unschedulable")["exchanges"]
    watcher = Watcher(replay, exchanges)
    assert replay.send(exchanges[2]).status_code == 201
    watcher.wait(
        lambda o: any(c.get("reason") == "Unschedulable" for c in o["status"].get("conditions") or [])
    )
    for exchange in exchanges[3:]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
        expected = exchange["response"]["body"]
        if exchange["response"]["status"] == 204:
            assert response.content == b""
        elif expected.get("kind") == "EventList":
            recorded_event = {
                k: v for k, v in expected["items"][-1].items() if k not in ("metadata", "involvedObject")
            }
            served = response.json()["items"]
            assert len(served) == 1
            got = {k: v for k, v in served[0].items() if k not in ("metadata", "involvedObject")}
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", got.pop("eventTime"))
            recorded_event.pop("eventTime")
            assert got == recorded_event
    assert distinct(watcher.finish()) == distinct(recorded_watch(exchanges))


def test_image_pull_error(replay: Replay, shared_dir: Path) -> None:
    exchanges = load(shared_dir, "pod-image-pull-error")["exchanges"]
    watcher = Watcher(replay, exchanges)
    assert replay.send(exchanges[2]).status_code == 201

    def waiting(reason: str) -> Any:
        return lambda o: container_state(o, "build").get("waiting", {}).get("reason") == reason

    first_error = watcher.wait(waiting("ErrImagePull"))["object"]
    message = container_state(first_error, "build")["waiting"]["message"]
    recorded_message = container_state(recorded_watch(exchanges)[4]["object"], "build")["waiting"]["message"]
    assert message.replace("127.0.0.53", "<dns-server-ip>") == recorded_message
    for exchange in exchanges[3:5]:
        assert_answer(exchange, replay.send(exchange))
    backoff = watcher.wait(waiting("ImagePullBackOff"))
    with watcher.cond:
        seen = watcher.events.index(backoff) + 1
    watcher.wait(waiting("ErrImagePull"), after=seen)  # the next pull attempt: delete while it failed again
    events_exchange = exchanges[5]
    response = replay.send(events_exchange)
    assert_answer(events_exchange, response)
    got = {
        (e["reason"], e["message"].replace("127.0.0.53", "<dns-server-ip>")) for e in response.json()["items"]
    }
    want = {
        (e["reason"], e["message"])
        for e in events_exchange["response"]["body"]["items"]
        if e["reason"] != "MissingClusterDNS"
    }
    assert got == want
    counts = {
        (e["reason"], e["message"]): e["count"]
        for e in response.json()["items"]
        if e["reason"] != "Scheduled"
    }
    assert min(counts.values()) >= 1 and max(counts.values()) >= 2  # repeats are counted, not duplicated
    delete = exchanges[-1]
    assert replay.send(delete).status_code == 200
    assert collapse_pull_retries(distinct(watcher.finish())) == collapse_pull_retries(
        distinct(recorded_watch(exchanges))
    )


def test_graceful_delete(replay: Replay, shared_dir: Path) -> None:
    exchanges = load(shared_dir, "graceful-delete")["exchanges"]
    watcher = Watcher(replay, exchanges)
    assert replay.send(exchanges[2]).status_code == 201
    watcher.wait(lambda o: phase(o) == "Running")
    follow, delete, after, gone = exchanges[3:7]
    chunks: list[str] = []
    ready = threading.Event()

    def follow_log() -> None:
        for response, _ in replay.stream(follow):
            assert_answer(follow, response)
            for chunk in response.iter_text():
                chunks.append(chunk)
                ready.set()

    reader = threading.Thread(target=follow_log, daemon=True)
    reader.start()
    assert ready.wait(10)
    response = replay.send(delete)
    assert response.status_code == 200
    assert response.json()["metadata"]["deletionGracePeriodSeconds"] == 10
    watcher.wait(terminal)
    reader.join(10)
    assert [c.split(" ", 1)[1] for c in chunks] == [
        c["chunk"].split(" ", 1)[1] for c in follow["response"]["stream"]
    ]
    response = replay.send(after)
    assert_answer(after, response)
    assert response.text == after["response"]["body"]
    assert distinct(watcher.finish()) == distinct(recorded_watch(exchanges))
    assert_answer(gone, replay.send(gone))


def test_eviction(replay: Replay, shared_dir: Path) -> None:
    exchanges = load(shared_dir, "eviction")["exchanges"]
    watcher = Watcher(replay, exchanges)
    assert replay.send(exchanges[2]).status_code == 201
    watcher.wait(lambda o: phase(o) == "Running")
    replay.api.wait_for(lambda: "started" in replay.api.container_log(NS, "kr-evict", "build"))  # handler set
    for exchange in exchanges[3:6]:
        response = replay.send(exchange)
        assert_answer(exchange, response)
    watcher.finish()
    assert_answer(exchanges[6], replay.send(exchanges[6]))
    assert distinct(watcher.events) == distinct(recorded_watch(exchanges))


def test_pods_log_answers(replay: Replay, shared_dir: Path) -> None:
    exchanges = {e["name"]: e for e in load(shared_dir, "pods-log")["exchanges"]}
    ordered = load(shared_dir, "pods-log")["exchanges"]
    watcher = Watcher(replay, ordered)
    create = ordered[2]
    body = scaled(create["request"]["body"], replacements={"sleep 20": "sleep 1.5"})
    assert replay.send(create, body=body).status_code == 201
    assert_answer(ordered[3], replay.send(ordered[3]))  # right after create: PodInitializing
    watcher.wait(lambda o: "running" in container_state(o, "init"))
    for name in (
        "(a) log of build while the init container runs",
        "(a) same with follow=true (does not wait)",
        "(a) log of a container name that does not exist",
    ):
        assert_answer(exchanges[name], replay.send(exchanges[name]))
    running_init = exchanges["(d) log of the running init container"]
    response = replay.send(running_init)
    assert_answer(running_init, response)
    assert [line.split(" ", 1)[1] for line in response.text.splitlines()] == ["init line 1", "init line 2"]
    watcher.wait(lambda o: "running" in container_state(o, "build"))
    follow = exchanges["(b) follow=true&timestamps=true on build (started when the watch shows it running)"]
    chunks: list[str] = []
    for response, _ in replay.stream(follow):
        assert_answer(follow, response)
        chunks = list(response.iter_text())
    expected_lines = [c["chunk"] for c in follow["response"]["stream"]]
    assert [c.split(" ", 1)[1] for c in chunks] == [c.split(" ", 1)[1] for c in expected_lines]
    stamps = [c.split(" ", 1)[0] for c in chunks]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", s) for s in stamps)
    watcher.wait(terminal)
    for name in (
        "(d) log of the init container after it finished",
        "tailLines=2",
        "limitBytes=20",
        "follow=true on a container that has already exited (returns everything and closes)",
    ):
        response = replay.send(exchanges[name])
        assert_answer(exchanges[name], response)
        assert response.text == exchanges[name]["response"]["body"], name
    full = replay.send(exchanges["(c) full log with timestamps (reference for sinceTime)"]).text.splitlines()
    assert [line.split(" ", 1)[1] for line in full] == [
        line.split(" ", 1)[1]
        for line in exchanges["(c) full log with timestamps (reference for sinceTime)"]["response"][
            "body"
        ].splitlines()
    ]
    _check_since_time(replay, exchanges, full)
    for name in ("(c) sinceTime that is not RFC3339", "(c) sinceSeconds=1 and sinceTime together"):
        assert_answer(exchanges[name], replay.send(exchanges[name]))
    for name, letter, size in (
        ("(f) log of container with a 20,000-char and a 40,000-char line", "", 0),
        ("(f) same with timestamps=true", "ts", 31),
    ):
        lines = replay.send(exchanges[name]).text.split("\n")
        assert [len(line) for line in lines] == [20000 + size, 40000 + size, 10 + size, 0], (letter, name)
    deleted = exchanges["delete pod kr-logs"]
    assert replay.send(deleted).status_code == 200
    watcher.finish()
    assert_answer(
        exchanges["(e) log of the deleted pod"], replay.send(exchanges["(e) log of the deleted pod"])
    )
    assert distinct(watcher.events) == distinct(recorded_watch(ordered))


def _check_since_time(replay: Replay, exchanges: dict[str, Any], full: list[str]) -> None:
    """sinceTime counts from the start of its second, whatever the fraction (as recorded)."""
    reference = exchanges["(c) sinceTime = exact timestamp of line 7 (nanoseconds)"]
    stamp = full[7].split(" ", 1)[0]
    second = stamp[:19]
    expected = [line for line in full if line.split(" ", 1)[0][:19] >= second]
    for variant in (stamp, stamp[:26] + "Z", second + "Z", second + ".999999999Z", stamp[:-1] + "+00:00"):
        path = re.sub(
            r"sinceTime=[^&]+",
            "sinceTime=" + variant.replace(":", "%3A").replace("+", "%2B"),
            reference["request"]["path"],
        )
        response = replay.send(reference, path=path)
        assert response.status_code == 200
        assert response.text.splitlines() == expected, variant

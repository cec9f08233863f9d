"""The Kubernetes double driven by a real client library (kubernetes_asyncio) over TLS.

Each test starts its own double; pods really run here (bwrap/unshare sandboxes), so what a job
prints, writes into shared volumes and exits with is what the client sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from tests.doubles.kube import KubeDouble, Timings

NS = "kr-rec"
RUNNER_RULES: list[dict[str, Any]] = [
    {"verbs": ["create", "get", "list", "watch", "delete"], "apiGroups": [""], "resources": ["pods"]},
    {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]},
    {"verbs": ["create", "get", "delete"], "apiGroups": [""], "resources": ["secrets"]},
    {"verbs": ["list", "watch"], "apiGroups": [""], "resources": ["events"]},
]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeDouble]:
    with KubeDouble(state_dir=tmp_path / "kube", timings=Timings(grace_period_cap=5)) as double:
        yield double
        assert double.errors == []


def _config(api: KubeDouble, token: str | None = None, ca_file: str | None = None) -> Configuration:
    cfg = Configuration(host=api.host)
    cfg.ssl_ca_cert = ca_file or api.ca_file
    if token is not None:
        cfg.api_key = {"BearerToken": token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return cfg


@pytest.fixture
async def runner(api: KubeDouble) -> AsyncIterator[client.CoreV1Api]:
    token = api.add_service_account(NS, "runner", rules=RUNNER_RULES)
    async with ApiClient(_config(api, token)) as c:
        yield client.CoreV1Api(c)


@pytest.fixture
async def admin(api: KubeDouble) -> AsyncIterator[ApiClient]:
    async with ApiClient(_config(api, api.admin_token)) as c:
        yield c


async def _watch_until_terminal(v1: client.CoreV1Api, name: str, rv: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    w = watch.Watch()
    async for ev in w.stream(
        v1.list_namespaced_pod,
        NS,
        field_selector=f"metadata.name={name}",
        resource_version=rv,
        timeout_seconds=30,
    ):
        events.append({"type": ev["type"], "raw": ev["raw_object"]})
        if ev["raw_object"]["status"].get("phase") in ("Succeeded", "Failed") or ev["type"] == "DELETED":
            break
    await w.close()
    return events


def _wait_for_output(api: KubeDouble, pod: str, text: str, container: str = "build") -> None:
    def printed() -> bool:
        return api.pod(NS, pod) is not None and text in api.container_log(NS, pod, container)

    api.wait_for(printed, what=f"{text!r} in the log of {pod}")


def _states(pod: dict[str, Any], key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s["state"] for s in pod["status"].get(key) or []}


async def test_job_pod_runs_with_shared_volume_secret_and_sidecar(
    api: KubeDouble, runner: client.CoreV1Api
) -> None:
    await runner.create_namespaced_secret(
        NS, {"metadata": {"name": "job-vars"}, "stringData": {"TOKEN": "s3cr3t"}}
    )
    pod = {
        "metadata": {"name": "job-1", "labels": {"job": "1"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 3,
            "volumes": [
                {"name": "builds", "emptyDir": {}},
                {"name": "vars", "secret": {"secretName": "job-vars"}},
            ],
            "initContainers": [
                {
                    "name": "proxy",
                    "image": "busybox:1.35",
                    "restartPolicy": "Always",
                    "command": [
                        "sh",
                        "-c",
                        "trap 'echo proxy stopping; exit 0' TERM; echo proxy up; "
                        "while true; do sleep 0.05; done",
                    ],
                },
                {
                    "name": "clone",
                    "image": "busybox:1.35",
                    "command": ["sh", "-c", "echo source > /builds/README"],
                    "volumeMounts": [{"name": "builds", "mountPath": "/builds"}],
                },
            ],
            "containers": [
                {
                    "name": "build",
                    "image": "busybox:1.35",
                    "workingDir": "/builds",
                    "command": [
                        "sh",
                        "-c",
                        'cat README; echo "token=$TOKEN"; cat /vars/TOKEN; echo; echo pod=$POD; exit 4',
                    ],
                    "env": [
                        {
                            "name": "TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "job-vars", "key": "TOKEN"}},
                        },
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                    "volumeMounts": [
                        {"name": "builds", "mountPath": "/builds"},
                        {"name": "vars", "mountPath": "/vars", "readOnly": True},
                    ],
                },
                {
                    "name": "helper",
                    "image": "busybox:1.35",
                    "command": ["sh", "-c", "ls /builds; echo helper done"],
                    "volumeMounts": [{"name": "builds", "mountPath": "/builds"}],
                },
            ],
        },
    }
    created = await runner.create_namespaced_pod(NS, pod)
    events = await _watch_until_terminal(runner, "job-1", created.metadata.resource_version)
    final = events[-1]["raw"]
    assert final["status"]["phase"] == "Failed"
    build = _states(final)["build"]["terminated"]
    assert (build["exitCode"], build["reason"]) == (4, "Error")
    assert _states(final)["helper"]["terminated"]["reason"] == "Completed"
    # the sidecar was stopped after the main containers; its exit code does not count
    assert _states(final, "initContainerStatuses")["proxy"]["terminated"]["exitCode"] == 0
    phases = [e["raw"]["status"].get("phase") for e in events]
    assert phases.index("Running") < phases.index("Failed")
    log = await runner.read_namespaced_pod_log("job-1", NS, container="build")
    assert log == "source\ntoken=s3cr3t\ns3cr3t\npod=job-1\n"
    assert await runner.read_namespaced_pod_log("job-1", NS, container="helper") == "README\nhelper done\n"
    assert (
        await runner.read_namespaced_pod_log("job-1", NS, container="proxy") == "proxy up\nproxy stopping\n"
    )
    reasons = [
        e.reason
        for e in (await runner.list_namespaced_event(NS, field_selector="involvedObject.name=job-1")).items
    ]
    assert reasons[0] == "Scheduled" and "Started" in reasons and "Killing" in reasons
    await runner.delete_namespaced_pod("job-1", NS)
    await runner.delete_namespaced_secret("job-vars", NS)
    api.wait_for_pod_gone(NS, "job-1")
    assert api.running_containers() == []
    assert api.secrets(NS) == []


async def test_log_follow_streams_lines_while_the_container_runs(
    api: KubeDouble, runner: client.CoreV1Api
) -> None:
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "follow"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done"],
                    }
                ],
            },
        },
    )
    api.wait_for_pod(NS, "follow", lambda p: p["status"].get("phase") == "Running")
    response = await runner.read_namespaced_pod_log(
        "follow", NS, container="build", follow=True, timestamps=True, _preload_content=False
    )
    lines = []
    async for raw in response.content:
        lines.append(raw.decode())
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert [line.split(" ", 1)[1] for line in lines] == ["line 1\n", "line 2\n", "line 3\n"]
    assert all(len(s) == 30 and s[19] == "." and s.endswith("Z") for s in stamps)  # 9 fractional digits
    assert stamps == sorted(stamps)


async def test_rbac_denies_with_the_servers_message_and_reviews_explain(
    api: KubeDouble, admin: ApiClient
) -> None:
    nobind = api.add_service_account(NS, "nobind")
    async with ApiClient(_config(api, nobind)) as c:
        with pytest.raises(ApiException) as denied:
            await client.CoreV1Api(c).read_namespaced_pod_log("x", NS, container="build")
        body = json.loads(denied.value.body)
        assert denied.value.status == 403
        assert body["message"] == (
            'pods "x" is forbidden: User "system:serviceaccount:kr-rec:nobind" cannot get '
            'resource "pods/log" in API group "" in the namespace "kr-rec"'
        )
        review = await client.AuthorizationV1Api(c).create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"namespace": NS, "verb": "create", "resource": "pods"}}}
        )
        assert review.status.allowed is False
        whoami = await client.AuthenticationV1Api(c).create_self_subject_review({})
        assert whoami.status.user_info.username == "system:serviceaccount:kr-rec:nobind"
    token = api.add_service_account(NS, "runner", rules=RUNNER_RULES)
    async with ApiClient(_config(api, token)) as c:
        review = await client.AuthorizationV1Api(c).create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"namespace": NS, "verb": "create", "resource": "pods"}}}
        )
        assert review.status.allowed is True
        assert review.status.reason == (
            'RBAC: allowed by RoleBinding "runner/kr-rec" of Role "runner" to ServiceAccount "runner/kr-rec"'
        )
        with pytest.raises(ApiException) as elsewhere:
            await client.CoreV1Api(c).create_namespaced_secret("default", {"metadata": {"name": "x"}})
        assert elsewhere.value.status == 403


async def test_rbac_objects_and_token_requests_through_the_api(api: KubeDouble, admin: ApiClient) -> None:
    """What `kuberunner rbac --apply` does: namespace, ServiceAccount, Role, RoleBinding, then a token."""
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    await core.patch_namespace(
        "ci",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ci"}},
        field_manager="kuberunner",
        _content_type="application/apply-patch+yaml",
    )
    await core.create_namespaced_service_account("ci", {"metadata": {"name": "kuberunner"}})
    await rbac.patch_namespaced_role(
        "kuberunner",
        "ci",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "kuberunner"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
        field_manager="kuberunner",
        _content_type="application/apply-patch+yaml",
    )
    await rbac.create_namespaced_role_binding(
        "ci",
        {
            "metadata": {"name": "kuberunner"},
            "subjects": [{"kind": "ServiceAccount", "name": "kuberunner", "namespace": "ci"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kuberunner"},
        },
    )
    tr = await core.create_namespaced_service_account_token(
        "kuberunner", "ci", {"spec": {"expirationSeconds": 3600}}
    )
    async with ApiClient(_config(api, tr.status.token)) as c:
        pods = await client.CoreV1Api(c).list_namespaced_pod("ci")
        assert pods.items == []
        with pytest.raises(ApiException) as denied:
            await client.CoreV1Api(c).list_namespaced_secret("ci")
        assert denied.value.status == 403
    # applying again updates in place (200) and keeps one Role
    await rbac.patch_namespaced_role(
        "kuberunner",
        "ci",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "kuberunner"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["list"]}],
        },
        field_manager="kuberunner",
        _content_type="application/apply-patch+yaml",
    )
    async with ApiClient(_config(api, tr.status.token)) as c:
        assert (await client.CoreV1Api(c).list_namespaced_secret("ci")).items == []
    await core.delete_namespaced_service_account("kuberunner", "ci")
    async with ApiClient(_config(api, tr.status.token)) as c:
        with pytest.raises(ApiException) as gone:
            await client.CoreV1Api(c).list_namespaced_pod("ci")
        assert gone.value.status == 401


async def test_pod_security_restricted_namespace_rejects_privileged_pod(
    api: KubeDouble, admin: ApiClient
) -> None:
    api.create_namespace("psa-restricted", {"pod-security.kubernetes.io/enforce": "restricted"})
    with pytest.raises(ApiException) as denied:
        await client.CoreV1Api(admin).create_namespaced_pod(
            "psa-restricted",
            {
                "metadata": {"name": "kr-priv"},
                "spec": {
                    "containers": [
                        {"name": "build", "image": "busybox:1.35", "securityContext": {"privileged": True}}
                    ]
                },
            },
        )
    message = json.loads(denied.value.body)["message"]
    assert denied.value.status == 403
    assert message.startswith(
        'pods "kr-priv" is forbidden: violates PodSecurity "restricted:latest": privileged '
        '(container "build" must not set securityContext.privileged=true)'
    )
    assert api.pods("psa-restricted") == []


async def test_eviction_adds_disruption_target_then_terminates(
    api: KubeDouble, runner: client.CoreV1Api, admin: ApiClient
) -> None:
    created = await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "evict-me"},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": [
                            "sh",
                            "-c",
                            "trap 'echo got TERM; exit 143' TERM; echo started; while true; do sleep 1 "
                            "& wait $!; done",
                        ],
                    }
                ],
            },
        },
    )
    _wait_for_output(api, "evict-me", "started\n")  # the TERM handler is installed
    with pytest.raises(ApiException) as denied:
        await runner.create_namespaced_pod_eviction(
            "evict-me", NS, {"metadata": {"name": "evict-me", "namespace": NS}}
        )
    assert denied.value.status == 403
    watcher = asyncio.create_task(_watch_events(runner, "evict-me", created.metadata.resource_version))
    await client.CoreV1Api(admin).create_namespaced_pod_eviction(
        "evict-me", NS, {"metadata": {"name": "evict-me", "namespace": NS}}
    )
    events = await asyncio.wait_for(watcher, 20)
    disrupted = [
        e for e in events if any(c["type"] == "DisruptionTarget" for c in e["raw"]["status"]["conditions"])
    ]
    first = disrupted[0]["raw"]
    assert first["metadata"].get("deletionTimestamp") is None  # the condition comes one event before deletion
    assert (
        next(c for c in first["status"]["conditions"] if c["type"] == "DisruptionTarget")["reason"]
        == "EvictionByEvictionAPI"
    )
    failed = next(e for e in events if e["raw"]["status"].get("phase") == "Failed")["raw"]
    assert _states(failed)["build"]["terminated"]["exitCode"] == 143
    assert events[-1]["type"] == "DELETED"


async def _watch_events(v1: client.CoreV1Api, name: str, rv: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    w = watch.Watch()
    async for ev in w.stream(
        v1.list_namespaced_pod,
        NS,
        field_selector=f"metadata.name={name}",
        resource_version=rv,
        timeout_seconds=30,
    ):
        out.append({"type": ev["type"], "raw": ev["raw_object"]})
        if ev["type"] == "DELETED":
            break
    await w.close()
    return out


async def test_graceful_delete_runs_the_term_handler(api: KubeDouble, runner: client.CoreV1Api) -> None:
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "graceful"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": [
                            "sh",
                            "-c",
                            "trap 'echo got TERM; echo cleaning up; exit 143' TERM; echo started; "
                            "while true; do sleep 1 & wait $!; done",
                        ],
                    }
                ],
            },
        },
    )
    _wait_for_output(api, "graceful", "started\n")  # the TERM handler is installed
    uid = api.pod(NS, "graceful")["metadata"]["uid"]  # type: ignore[index]
    deleted = await runner.delete_namespaced_pod("graceful", NS, grace_period_seconds=10)
    assert deleted.metadata.deletion_grace_period_seconds == 10
    api.wait_for_pod_gone(NS, "graceful")
    assert api.container_log(NS, "graceful", "build", uid=uid) == "started\ngot TERM\ncleaning up\n"
    with pytest.raises(ApiException) as gone:
        await runner.read_namespaced_pod_log("graceful", NS, container="build")
    assert gone.value.status == 404


async def test_host_aliases_and_dns_config_reach_the_container(
    api: KubeDouble, runner: client.CoreV1Api
) -> None:
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "net"},
            "spec": {
                "restartPolicy": "Never",
                "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["postgres", "redis"]}],
                "dnsPolicy": "None",
                "dnsConfig": {
                    "nameservers": ["192.0.2.53"],
                    "searches": ["ci.example"],
                    "options": [{"name": "ndots", "value": "2"}],
                },
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": ["sh", "-c", "tail -1 /etc/hosts; cat /etc/resolv.conf; hostname"],
                    }
                ],
            },
        },
    )
    api.wait_for_pod(NS, "net", lambda p: p["status"].get("phase") == "Succeeded")
    log = await runner.read_namespaced_pod_log("net", NS)
    assert (
        log == "127.0.0.1\tpostgres\tredis\nnameserver 192.0.2.53\nsearch ci.example\noptions ndots:2\nnet\n"
    )


async def test_tls_with_the_wrong_ca_fails_verification(api: KubeDouble, tmp_path: Path) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with ApiClient(_config(api, api.admin_token, ca_file=str(other))) as c:
        with pytest.raises(Exception) as failed:
            await client.VersionApi(c).get_code()
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
    ctx = ssl.create_default_context(cafile=api.ca_file)
    ctx.load_cert_chain(*api.admin_cert)
    async with httpx.AsyncClient(verify=ctx) as http:
        whoami = await http.post(
            f"{api.host}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    assert whoami.status_code == 201
    user = whoami.json()["status"]["userInfo"]
    assert (user["username"], user["groups"]) == (
        "kubernetes-admin",
        ["system:masters", "system:authenticated"],
    )


async def test_faults_oom_image_pull_unschedulable(api: KubeDouble, runner: client.CoreV1Api) -> None:
    api.faults.oom_kill_on_output("allocating", container="build")
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "oom"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": ["sh", "-c", "echo allocating; sleep 30"],
                    }
                ],
            },
        },
    )
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "pull"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "build", "image": "registry.example.invalid/nothing:1"}],
            },
        },
    )
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "nowhere"},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"gpu": "yes"},
                "containers": [{"name": "build", "image": "busybox:1.35"}],
            },
        },
    )
    oom = api.wait_for_pod(NS, "oom", lambda p: p["status"].get("phase") == "Failed")
    assert _states(oom)["build"]["terminated"]["reason"] == "OOMKilled"
    assert _states(oom)["build"]["terminated"]["exitCode"] == 137
    assert await runner.read_namespaced_pod_log("oom", NS) == "allocating\n"
    seen: set[str] = set()

    def pull_state(p: dict[str, Any]) -> bool:
        reason = (_states(p).get("build") or {}).get("waiting", {}).get("reason")
        if reason:
            seen.add(reason)
        return {"ErrImagePull", "ImagePullBackOff"} <= seen

    api.wait_for_pod(NS, "pull", pull_state)
    with pytest.raises(ApiException) as waiting:
        await runner.read_namespaced_pod_log("pull", NS, container="build")
    assert (
        json.loads(waiting.value.body)["message"]
        == 'container "build" in pod "pull" is waiting to start: image can\'t be pulled'
    )
    nowhere = api.wait_for_pod(NS, "nowhere", lambda p: bool(p["status"].get("conditions")))
    cond = nowhere["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
    api.set_node_labels({"gpu": "yes"})
    api.wait_for_pod(NS, "nowhere", lambda p: p["spec"].get("nodeName") == "vm")
    events = (await runner.list_namespaced_event(NS, field_selector="involvedObject.name=nowhere")).items
    assert [e.reason for e in events][:2] == ["FailedScheduling", "Scheduled"]


async def test_http_faults_and_watch_interruptions(api: KubeDouble, runner: client.CoreV1Api) -> None:
    api.faults.fail_requests(r"/namespaces/kr-rec/pods$", method="GET", status=503, times=2, retry_after=1)
    for _ in range(2):
        with pytest.raises(ApiException) as unavailable:
            await runner.list_namespaced_pod(NS)
        assert unavailable.value.status == 503
        assert unavailable.value.headers["Retry-After"] == "1"
    listed = await runner.list_namespaced_pod(NS)
    # a clean server-side end of a watch: the stream finishes without error
    w = watch.Watch()
    stream = w.stream(
        runner.list_namespaced_pod, NS, resource_version=listed.metadata.resource_version, timeout_seconds=30
    )
    task = asyncio.create_task(_drain(stream))
    await asyncio.to_thread(api.wait_for, lambda: api.faults.active_streams("watch") == 1)
    assert api.faults.end_watches() == 1
    assert await asyncio.wait_for(task, 10) == []
    await w.close()
    # an expired resourceVersion: HTTP 200 then one ERROR event (the client raises 410)
    api.faults.compact_watch_history()
    with pytest.raises(ApiException) as expired:
        w2 = watch.Watch()
        async for _ in w2.stream(runner.list_namespaced_pod, NS, resource_version="1", timeout_seconds=5):
            pass
    assert expired.value.status == 410


async def _drain(stream: Any) -> list[Any]:
    return [ev async for ev in stream]


async def test_log_follow_cut_mid_line(api: KubeDouble, runner: client.CoreV1Api) -> None:
    await runner.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "cut"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": ["sh", "-c", "echo first line; sleep 0.3; echo second line here; sleep 5"],
                    }
                ],
            },
        },
    )
    api.wait_for_pod(NS, "cut", lambda p: p["status"].get("phase") == "Running")
    api.faults.cut_log_follow(pod="cut")
    response = await runner.read_namespaced_pod_log("cut", NS, follow=True, _preload_content=False)
    received = b""
    with pytest.raises(Exception):  # noqa: B017 - aiohttp reports the truncated chunked body
        async for chunk in response.content.iter_any():
            received += chunk
    assert received == b"first"


def test_active_deadline_and_cleanup_of_processes(tmp_path: Path) -> None:
    first, second = random.sample(range(100_000, 999_999), 2)  # unique even when suites run in parallel
    with KubeDouble(state_dir=tmp_path / "k") as api:
        token = api.add_service_account(NS, "runner", rules=RUNNER_RULES)
        ctx = ssl.create_default_context(cafile=api.ca_file)
        with httpx.Client(
            base_url=api.host, verify=ctx, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            created = http.post(
                f"/api/v1/namespaces/{NS}/pods",
                json={
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "slow"},
                    "spec": {
                        "restartPolicy": "Never",
                        "activeDeadlineSeconds": 1,
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {"name": "build", "image": "busybox:1.35", "command": ["sleep", "300"]}
                        ],
                    },
                },
            )
            assert created.status_code == 201
            pod = api.wait_for_pod(
                NS,
                "slow",
                lambda p: p["status"].get("phase") == "Failed" and "terminated" in _states(p)["build"],
            )
            assert (pod["status"]["reason"], pod["status"]["message"]) == (
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )
            assert _states(pod)["build"]["terminated"]["exitCode"] == 137  # sleep as PID 1 ignores TERM
            http.post(
                f"/api/v1/namespaces/{NS}/pods",
                json={
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "forever"},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "build",
                                "image": "busybox:1.35",
                                "command": ["sh", "-c", f"sleep {first} & sleep {second}"],
                            }
                        ],
                    },
                },
            )
            api.wait_for(lambda: len(_sleepers(first, second)) == 2, what="both sleep processes")
            assert len(api.running_containers()) == 1
    assert _sleepers(first, second) == []


def _sleepers(*seconds: int) -> list[str]:
    return [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _cmdline(p) in [f"sleep\x00{n}\x00" for n in seconds]
    ]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


async def test_volumes_configmap_items_subpath_readonly_and_hostpath(
    api: KubeDouble, admin: ApiClient, tmp_path: Path
) -> None:
    core = client.CoreV1Api(admin)
    host_dir = tmp_path / "cache"
    api.create_namespace(NS)
    await core.create_namespaced_config_map(
        NS, {"metadata": {"name": "scripts"}, "data": {"run.sh": "echo from configmap", "other": "x"}}
    )
    await core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "vols"},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [
                    {
                        "name": "scripts",
                        "configMap": {
                            "name": "scripts",
                            "defaultMode": 0o755,
                            "items": [{"key": "run.sh", "path": "bin/run.sh"}],
                        },
                    },
                    {"name": "work", "emptyDir": {}},
                    {"name": "cache", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
                ],
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "command": [
                            "sh",
                            "-c",
                            "/scripts/bin/run.sh; ls /scripts/bin; stat -c %a /scripts/bin/run.sh; "
                            "echo sub > /sub/f && ls /work; touch /ro/x 2>/dev/null || echo read-only; "
                            "echo kept > /cache/out",
                        ],
                        "volumeMounts": [
                            {"name": "scripts", "mountPath": "/scripts"},
                            {"name": "work", "mountPath": "/work"},
                            {"name": "work", "mountPath": "/sub", "subPath": "nested"},
                            {"name": "work", "mountPath": "/ro", "readOnly": True},
                            {"name": "cache", "mountPath": "/cache"},
                        ],
                    }
                ],
            },
        },
    )
    pod = api.wait_for_pod(NS, "vols", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded"
    assert (
        await core.read_namespaced_pod_log("vols", NS) == "from configmap\nrun.sh\n755\nnested\nread-only\n"
    )
    assert (host_dir / "out").read_text() == "kept\n"


async def test_restart_on_failure_keeps_the_previous_log(
    api: KubeDouble, admin: ApiClient, tmp_path: Path
) -> None:
    core = client.CoreV1Api(admin)
    marker = tmp_path / "attempts"
    marker.mkdir()
    await core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "flaky"},
            "spec": {
                "restartPolicy": "OnFailure",
                "volumes": [{"name": "state", "hostPath": {"path": str(marker)}}],
                "containers": [
                    {
                        "name": "build",
                        "image": "busybox:1.35",
                        "volumeMounts": [{"name": "state", "mountPath": "/s"}],
                        "command": [
                            "sh",
                            "-c",
                            "echo try >> /s/n; n=$(wc -l < /s/n); echo attempt $n; [ $n -ge 2 ]",
                        ],
                    }
                ],
            },
        },
    )
    pod = api.wait_for_pod("default", "flaky", lambda p: p["status"].get("phase") == "Succeeded")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert await core.read_namespaced_pod_log("flaky", "default") == "attempt 2\n"
    assert await core.read_namespaced_pod_log("flaky", "default", previous=True) == "attempt 1\n"
    reasons = [e["reason"] for e in api.events_for("default", "flaky")]
    assert "BackOff" in reasons


async def test_listing_selectors_pagination_and_namespace_deletion(api: KubeDouble, admin: ApiClient) -> None:
    core = client.CoreV1Api(admin)
    api.create_namespace("ci")
    for i in range(3):
        await core.create_namespaced_secret(
            "ci", {"metadata": {"name": f"s{i}", "labels": {"job": str(i % 2)}}, "stringData": {"k": "v"}}
        )
    assert [
        s.metadata.name for s in (await core.list_namespaced_secret("ci", label_selector="job=1")).items
    ] == ["s1"]
    assert [
        s.metadata.name for s in (await core.list_namespaced_secret("ci", label_selector="job in (0)")).items
    ] == ["s0", "s2"]
    page = await core.list_namespaced_secret("ci", limit=2, label_selector="job")
    assert [s.metadata.name for s in page.items] == ["s0", "s1"] and page.metadata.remaining_item_count == 1
    rest = await core.list_namespaced_secret(
        "ci", limit=2, label_selector="job", _continue=page.metadata._continue
    )
    assert [s.metadata.name for s in rest.items] == ["s2"] and rest.metadata._continue is None
    pod = await core.create_namespaced_pod(
        "ci",
        {
            "metadata": {"name": "owner"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox:1.35", "command": ["sleep", "60"]}],
            },
        },
    )
    await core.create_namespaced_secret(
        "ci",
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": pod.metadata.uid}
                ],
            },
            "stringData": {"k": "v"},
        },
    )
    api.wait_for_pod("ci", "owner", lambda p: p["status"].get("phase") == "Running")
    await core.delete_namespaced_pod("owner", "ci", grace_period_seconds=0)
    api.wait_for(
        lambda: all(s["metadata"]["name"] != "owned" for s in api.secrets("ci")), what="garbage collection"
    )
    deleted = await core.delete_namespace("ci", _preload_content=False)
    assert json.loads(await deleted.read())["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as terminating:
        await core.create_namespaced_secret("ci", {"metadata": {"name": "late"}})
    assert terminating.value.status in (403, 404)
    api.wait_for(
        lambda: not [n for n in api.objects("namespaces") if n["metadata"]["name"] == "ci"], what="ns gone"
    )
    assert api.secrets("ci") == [] and api.running_containers() == []


async def test_slow_image_pull_and_cordoned_node(api: KubeDouble, admin: ApiClient) -> None:
    core = client.CoreV1Api(admin)
    api.faults.slow_image_pull("registry.example/slow:*", 0.5)
    api.faults.cordon()
    await core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "slow"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "registry.example/slow:1", "command": ["true"]}],
            },
        },
    )
    pending = api.wait_for_pod("default", "slow", lambda p: bool(p["status"].get("conditions")))
    assert pending["status"]["conditions"][0]["message"].startswith(
        "0/1 nodes are available: 1 node(s) were unschedulable."
    )
    api.faults.uncordon()
    api.wait_for_pod(
        "default", "slow", lambda p: any(e["reason"] == "Pulling" for e in api.events_for("default", "slow"))
    )
    assert api.pod("default", "slow")["status"]["phase"] == "Pending"  # type: ignore[index]
    api.wait_for_pod("default", "slow", lambda p: p["status"].get("phase") == "Succeeded")
    pulled = [e["message"] for e in api.events_for("default", "slow") if e["reason"] == "Pulled"]
    assert pulled and pulled[0].startswith('Successfully pulled image "registry.example/slow:1" in 0.5s')


def test_unshare_runtime_runs_pods_too(tmp_path: Path) -> None:
    with KubeDouble(state_dir=tmp_path / "k", sandbox="unshare") as api:
        assert api.sandbox_mode == "unshare"
        token = api.add_service_account(NS, "runner", rules=RUNNER_RULES)
        ctx = ssl.create_default_context(cafile=api.ca_file)
        with httpx.Client(
            base_url=api.host, verify=ctx, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            http.post(
                f"/api/v1/namespaces/{NS}/pods",
                json={
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "u"},
                    "spec": {
                        "restartPolicy": "Never",
                        "volumes": [{"name": "w", "emptyDir": {}}],
                        "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["db"]}],
                        "containers": [
                            {
                                "name": "build",
                                "image": "busybox:1.35",
                                "workingDir": "/builds/p",
                                "volumeMounts": [{"name": "w", "mountPath": "/builds"}],
                                "command": ["sh", "-c", "pwd; tail -1 /etc/hosts; exit 7"],
                            }
                        ],
                    },
                },
            )
            pod = api.wait_for_pod(NS, "u", lambda p: p["status"].get("phase") == "Failed")
            assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
            assert http.get(f"/api/v1/namespaces/{NS}/pods/u/log").text == "/builds/p\n127.0.0.1\tdb\n"

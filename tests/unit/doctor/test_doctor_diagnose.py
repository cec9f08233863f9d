"""Kubernetes' recorded messages (docs/fixtures/kubernetes) read into a cause and a fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor.diagnose import admission, parse_denial, pull_failure, repository_path, scheduling
from kuberunner.kube.errors import KubeAPIError, api_error


def recording(shared_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_dir / "docs/fixtures/kubernetes" / f"{name}.json").read_text())
    return data


def answer(shared_dir: Path, scenario: str, exchange: str) -> KubeAPIError:
    """The client error for one recorded exchange, built the way the client builds it."""
    for item in recording(shared_dir, scenario)["exchanges"]:
        if item["name"] == exchange:
            return api_error(item["response"]["status"], item["response"]["body"])
    raise KeyError(exchange)


def cfg(**values: Any) -> KubernetesConfig:
    return KubernetesConfig.model_validate(values)


def test_denial_parsed_from_every_recorded_403(shared_dir: Path) -> None:
    err = answer(shared_dir, "auth-wrong-namespace", "create secret in default as runner")
    denial = parse_denial(err.message)
    assert denial is not None
    assert (denial.user, denial.verb, denial.resource, denial.group, denial.namespace) == (
        "system:serviceaccount:kr-rec:runner",
        "create",
        "secrets",
        "",
        "default",
    )
    log = answer(shared_dir, "auth-sa-without-binding", "pods/log as nobind")
    assert parse_denial(log.message) is not None and parse_denial(log.message).resource == "pods/log"  # type: ignore[union-attr]
    review = answer(shared_dir, "selfsubjectaccessreview", "anonymous: SSAR")
    cluster_scope = parse_denial(review.message)
    assert cluster_scope is not None and cluster_scope.namespace == ""
    assert cluster_scope.group == "authorization.k8s.io"


def test_seed5_wrong_namespace(shared_dir: Path) -> None:
    err = answer(shared_dir, "auth-wrong-namespace", "create secret in default as runner")
    found = admission(err, cfg(), "default")
    assert found.category == "wrong-namespace"
    assert 'belongs to "kr-rec" and has no rights in "default"' in found.summary
    assert found.fixes[0].text == '[runners.kubernetes]\n  namespace = "kr-rec"'


def test_seed3_anonymous(shared_dir: Path) -> None:
    err = answer(shared_dir, "auth-anonymous-create-secret", "create secret anonymously")
    found = admission(err, cfg(), "kr-rec")
    assert found.category == "anonymous"
    assert "bearer_token" in found.fixes[0].text
    assert "service_account only names the account job pods run as" in found.fixes[0].note


def test_seed6_no_binding(shared_dir: Path) -> None:
    err = answer(shared_dir, "auth-sa-without-binding", "create secret as nobind")
    found = admission(err, cfg(), "kr-rec")
    assert found.category == "rbac"
    assert found.fixes[0].text == (
        "kubectl create rolebinding nobind --namespace=kr-rec --role=nobind --serviceaccount=kr-rec:nobind"
    )


def test_pod_security_with_privileged(shared_dir: Path) -> None:
    err = answer(shared_dir, "psa-privileged-denied", "privileged pod")
    found = admission(err, cfg(privileged=True), "psa-restricted")
    assert found.category == "pod-security"
    assert found.summary == (
        'namespace "psa-restricted" enforces Pod Security "restricted", which refuses privileged containers '
        "(privileged = true in config.toml)"
    )
    assert (
        'violation: privileged (container "build" must not set securityContext.privileged=true)'
        in found.evidence
    )
    assert len([e for e in found.evidence if e.startswith("violation: ")]) == 5
    assert found.fixes[0].text == (
        "kubectl label --overwrite namespace psa-restricted pod-security.kubernetes.io/enforce=privileged"
    )
    # dry run: the same 403, the same answer
    dry = answer(shared_dir, "psa-privileged-denied", "privileged pod, dryRun=All")
    assert admission(dry, cfg(privileged=True), "psa-restricted").summary == found.summary


def test_pod_security_plain_ci_pod_gets_restricted_settings(shared_dir: Path) -> None:
    err = answer(
        shared_dir, "psa-privileged-denied", "plain pod without any securityContext (typical CI pod)"
    )
    found = admission(err, cfg(), "psa-restricted")
    assert found.summary == (
        'namespace "psa-restricted" enforces Pod Security "restricted" and the job pod violates it'
    )
    snippet = found.fixes[0].text
    assert "run_as_non_root = true" in snippet and 'drop = ["ALL"]' in snippet and "RuntimeDefault" in snippet
    loaded = KubernetesConfig.model_validate(_toml_tables(snippet))
    assert loaded.pod_security_context is not None and loaded.pod_security_context.run_as_non_root
    assert "pod-security.kubernetes.io/enforce=baseline" in found.fixes[1].text


def _toml_tables(snippet: str) -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(snippet)
    kubernetes: dict[str, Any] = data["runners"]["kubernetes"]
    return kubernetes


@pytest.mark.parametrize(
    ("message", "category", "needle"),
    [
        (
            'pods "runner-x" is forbidden: exceeded quota: compute-resources, requested: requests.cpu=2, '
            "used: requests.cpu=3, limited: requests.cpu=4",
            "quota",
            "kubectl -n ci describe resourcequota",
        ),
        (
            'pods "runner-x" is forbidden: failed quota: compute-resources: must specify limits.cpu for: '
            "build,helper; limits.memory for: build,helper",
            "quota",
            'cpu_limit = "2"',
        ),
        (
            'pods "runner-x" is forbidden: error looking up service account ci/gitlab-runner: '
            'serviceaccount "gitlab-runner" not found',
            "service-account",
            "kubectl -n ci create serviceaccount gitlab-runner",
        ),
    ],
)
def test_other_admission_denials(message: str, category: str, needle: str) -> None:
    body = {"kind": "Status", "status": "Failure", "message": message, "reason": "Forbidden", "code": 403}
    found = admission(api_error(403, body), cfg(), "ci")
    assert found.category == category
    assert any(needle in fix.text for fix in found.fixes), found.fixes


def test_missing_namespace_is_404_for_allowed_users() -> None:
    body = {
        "kind": "Status",
        "message": 'namespaces "no-such-ns" not found',
        "reason": "NotFound",
        "code": 404,
    }
    found = admission(api_error(404, body), cfg(), "no-such-ns")
    assert found.fixes[0].text == "kubectl create namespace no-such-ns"


def test_invalid_pod_lists_the_fields(shared_dir: Path) -> None:
    for item in recording(shared_dir, "pod-invalid-spec")["exchanges"]:
        if item["response"]["status"] == 422:
            found = admission(api_error(422, item["response"]["body"]), cfg(), "kr-rec")
            assert found.category == "invalid"
            cause = item["response"]["body"]["details"]["causes"][0]
            assert f"{cause['field']}: {cause['message']}" in found.evidence
            return
    raise AssertionError("no 422 in the recording")


def test_recorded_pull_error_is_a_network_problem(shared_dir: Path) -> None:
    observed = recording(shared_dir, "pod-image-pull-error")["observations"]["status_polls_every_5s"]
    message = next(
        p["build_state"]["waiting"]["message"]
        for p in observed
        if "waiting" in p["build_state"] and p["build_state"]["waiting"]["reason"] == "ErrImagePull"
    )
    image = "registry.example.invalid/nothing:1"
    found = pull_failure(
        "build", image, "registry.example.invalid", message, role="build", mirror_registry=""
    )
    assert found.category == "network"
    assert found.summary == f"the nodes cannot reach registry registry.example.invalid to pull {image}"
    assert (
        found.fixes[0].text == '[runners.kubernetes]\n  image = "<a registry your nodes can reach>/nothing:1"'
    )


@pytest.mark.parametrize(
    ("message", "category"),
    [
        (
            "failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized",
            "registry-auth",
        ),
        ("pull access denied, repository does not exist or may require authorization", "registry-auth"),
        ('failed to resolve reference "r.example.com/a:1": r.example.com/a:1: not found', "missing-image"),
        ("tls: failed to verify certificate: x509: certificate signed by unknown authority", "registry-tls"),
    ],
)
def test_pull_failure_kinds(message: str, category: str) -> None:
    found = pull_failure("helper", "r.example.com/a:1", "r.example.com", message, role="helper")
    assert found.category == category


def test_repository_path() -> None:
    assert repository_path("registry.gitlab.com/gitlab-org/helper:x86_64-1") == "gitlab-org/helper:x86_64-1"
    assert (
        repository_path("gitlab/gitlab-runner-helper:x86_64-v14.10.2")
        == "gitlab/gitlab-runner-helper:x86_64-v14.10.2"
    )
    assert repository_path("localhost:5000/helper:1") == "helper:1"
    assert repository_path("busybox") == "busybox"


def test_recorded_unschedulable_message(shared_dir: Path) -> None:
    watch = recording(shared_dir, "pod-unschedulable")["observations"]["watch_summary"]
    message = next(c["message"] for e in watch for c in e["conditions"] if c.get("reason") == "Unschedulable")
    found = scheduling(message, cfg(node_selector={"disktype": "ssd"}), "kr-rec")
    assert found.category == "selector"
    assert 'node_selector in config.toml: "disktype" = "ssd"' in found.evidence


def test_untolerated_taint() -> None:
    message = (
        "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: ci}. preemption: 0/3 nodes are "
        "available: 3 Preemption is not helpful for scheduling."
    )
    found = scheduling(message, cfg(), "ci")
    assert found.fixes[0].text == '[runners.kubernetes.node_tolerations]\n  "dedicated=ci" = "NoSchedule"'

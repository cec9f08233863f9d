"""What a job may override with KUBERNETES_* variables: allowed, refused, over the maximum."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from k8s_support import config, container, make_plan, payload, render

from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.overrides import (
    Overrides,
    map_overrides,
    resolve_bearer_token,
    resolve_namespace,
    resolve_overrides,
    resolve_resources,
    resolve_service_account,
)
from kuberunner.executors.kubernetes.podspec import render_pod

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImpvYi10b2tlbiJ9.secret-part"


def _refused(call: Any, *args: Any) -> str:
    with pytest.raises(BuildError) as caught:
        call(*args)
    assert caught.value.reason == "runner_configuration_error"
    return str(caught.value)


# ------------------------------------------------------------------- namespace, identity


@pytest.mark.parametrize(
    ("values", "variables", "namespace"),
    [
        ({}, [], "default"),
        ({"namespace": "ci"}, [], "ci"),
        (
            {"namespace": "ci", "namespace_overwrite_allowed": "^ci-.*"},
            [("KUBERNETES_NAMESPACE_OVERWRITE", "ci-web")],
            "ci-web",
        ),
        # Go's MatchString is unanchored, and so is this check: an unanchored
        # pattern in config.toml means what it meant for gitlab-runner.
        (
            {"namespace": "ci", "namespace_overwrite_allowed": "ci-"},
            [("KUBERNETES_NAMESPACE_OVERWRITE", "my-ci-x")],
            "my-ci-x",
        ),
        ({"namespace": "ci"}, [("KUBERNETES_NAMESPACE_OVERWRITE", "")], "ci"),
        (
            {"namespace": "ci", "namespace_overwrite_allowed": ".*"},
            [("KUBERNETES_NAMESPACE_OVERWRITE", "a"), ("KUBERNETES_NAMESPACE_OVERWRITE", "b")],
            "b",
        ),
    ],
)
def test_namespace(values: dict[str, Any], variables: list[tuple[str, str]], namespace: str) -> None:
    assert resolve_namespace(config(**values), variables) == namespace


def test_a_namespace_override_the_runner_does_not_enable_fails_naming_the_key() -> None:
    message = _refused(
        resolve_namespace, config(namespace="ci"), [("KUBERNETES_NAMESPACE_OVERWRITE", "prod")]
    )
    assert "KUBERNETES_NAMESPACE_OVERWRITE" in message
    assert "namespace_overwrite_allowed" in message
    assert "'prod'" in message


def test_a_namespace_override_the_pattern_refuses_fails_naming_the_pattern() -> None:
    cfg = config(namespace="ci", namespace_overwrite_allowed="^ci-[a-z]+$")
    message = _refused(resolve_namespace, cfg, [("KUBERNETES_NAMESPACE_OVERWRITE", "prod")])
    assert "'^ci-[a-z]+$'" in message
    assert "'prod'" in message


def test_an_invalid_namespace_name_fails() -> None:
    cfg = config(namespace_overwrite_allowed=".*")
    assert "not a valid namespace" in _refused(
        resolve_namespace, cfg, [("KUBERNETES_NAMESPACE_OVERWRITE", "Prod_1")]
    )


def test_an_invalid_pattern_fails_naming_the_key() -> None:
    cfg = config(service_account_overwrite_allowed="(unclosed")
    message = _refused(resolve_service_account, cfg, [("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", "x")])
    assert "service_account_overwrite_allowed" in message


def test_service_account_override() -> None:
    cfg = config(service_account="ci-bot", service_account_overwrite_allowed="^ci-")
    assert resolve_service_account(cfg, []) == "ci-bot"
    assert (
        resolve_service_account(cfg, [("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", "ci-deploy")]) == "ci-deploy"
    )
    assert "does not match" in _refused(
        resolve_service_account, cfg, [("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", "cluster-admin")]
    )
    message = _refused(
        resolve_service_account,
        config(service_account="ci-bot"),
        [("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", "x")],
    )
    assert "KUBERNETES_SERVICE_ACCOUNT_OVERWRITE" in message
    assert "service_account_overwrite_allowed" in message


def test_a_refused_service_account_override_fails_the_pod_too() -> None:
    plan = make_plan()
    plan = replace(
        plan, variables=(*plan.variables, ("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", "cluster-admin"))
    )
    assert "service_account_overwrite_allowed" in _refused(render_pod, plan, config())


def test_bearer_token_override_is_allowed_only_when_enabled_and_never_shown() -> None:
    variables = [("KUBERNETES_BEARER_TOKEN", TOKEN)]
    assert resolve_bearer_token(config(bearer_token="configured"), []) == "configured"
    assert resolve_bearer_token(config(bearer_token_overwrite_allowed=True), variables) == TOKEN
    message = _refused(resolve_bearer_token, config(bearer_token="configured"), variables)
    assert "bearer_token_overwrite_allowed" in message
    assert TOKEN not in message
    assert "configured" not in message


def test_overrides_never_show_the_token() -> None:
    overrides = resolve_overrides(
        config(namespace="ci", bearer_token_overwrite_allowed=True), [("KUBERNETES_BEARER_TOKEN", TOKEN)]
    )
    assert overrides == Overrides(namespace="ci", service_account="", bearer_token=TOKEN)
    assert TOKEN not in repr(overrides)


# ------------------------------------------------------------------------- map overrides


def test_map_overrides_check_each_value_against_the_pattern() -> None:
    notices: list[str] = []
    result = map_overrides(
        {"pool": "ci", "zone": "a"},
        [
            ("KUBERNETES_NODE_SELECTOR_POOL", "pool=gpu"),
            ("KUBERNETES_NODE_SELECTOR_X", "disk=ssd"),
            ("OTHER", "y=z"),
        ],
        "KUBERNETES_NODE_SELECTOR_",
        "^(pool|disk)=",
        "node_selector_overwrite_allowed",
        notices,
    )
    assert result == {"pool": "gpu", "zone": "a", "disk": "ssd"}
    assert notices == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("zone=b", "does not match"), ("pool", "key=value")],
)
def test_map_override_mistakes_fail_naming_the_variable(value: str, expected: str) -> None:
    message = _refused(
        map_overrides,
        {},
        [("KUBERNETES_NODE_SELECTOR_1", value)],
        "KUBERNETES_NODE_SELECTOR_",
        "^pool",
        "node_selector_overwrite_allowed",
        [],
    )
    assert "KUBERNETES_NODE_SELECTOR_1" in message
    assert expected in message


# ----------------------------------------------------------------------------- resources


def _resources(
    values: dict[str, Any], variables: list[tuple[str, str]], kind: Any = "build", **kw: Any
) -> Any:
    notices: list[str] = []
    return resolve_resources(config(**values), kind, variables, notices, **kw), notices


def test_a_resource_override_up_to_the_maximum_is_used() -> None:
    resources, notices = _resources(
        {"cpu_request": "500m", "cpu_request_overwrite_max_allowed": "2"},
        [("KUBERNETES_CPU_REQUEST", "2000m")],
    )
    assert resources.requests == {"cpu": "2000m"}  # 2000m is exactly 2: allowed
    assert notices == []


def test_a_resource_override_above_the_maximum_fails_naming_variable_value_and_max() -> None:
    cfg = {"memory_limit": "1Gi", "memory_limit_overwrite_max_allowed": "2Gi"}
    message = _refused(resolve_resources, config(**cfg), "build", [("KUBERNETES_MEMORY_LIMIT", "3G")], [])
    assert "KUBERNETES_MEMORY_LIMIT" in message
    assert "'3G'" in message
    assert "memory_limit_overwrite_max_allowed" in message
    assert "'2Gi'" in message


def test_binary_and_decimal_units_compare_exactly() -> None:
    cfg = {"memory_limit_overwrite_max_allowed": "1Gi"}
    resources, _ = _resources(cfg, [("KUBERNETES_MEMORY_LIMIT", "1073741824")])
    assert resources.limits == {"memory": "1073741824"}
    assert "more than" in _refused(
        resolve_resources, config(**cfg), "build", [("KUBERNETES_MEMORY_LIMIT", "1.1G")], []
    )


def test_without_a_maximum_the_override_is_ignored_with_a_notice() -> None:
    resources, notices = _resources(
        {"helper_cpu_limit": "1"}, [("KUBERNETES_HELPER_CPU_LIMIT", "4")], "helper"
    )
    assert resources.limits == {"cpu": "1"}
    assert len(notices) == 1
    assert "KUBERNETES_HELPER_CPU_LIMIT" in notices[0]
    assert "helper_cpu_limit_overwrite_max_allowed" in notices[0]


def test_a_malformed_override_fails_naming_the_variable() -> None:
    cfg = config(ephemeral_storage_request_overwrite_max_allowed="10Gi")
    message = _refused(
        resolve_resources, cfg, "build", [("KUBERNETES_EPHEMERAL_STORAGE_REQUEST", "lots")], []
    )
    assert "KUBERNETES_EPHEMERAL_STORAGE_REQUEST" in message
    assert "'lots'" in message


def test_a_service_can_override_its_own_resources() -> None:
    job = payload(
        services=[
            {
                "name": "postgres:16",
                "alias": "db",
                "variables": [{"key": "KUBERNETES_SERVICE_MEMORY_LIMIT", "value": "2Gi"}],
            },
            {"name": "redis:7", "alias": "kv"},
        ]
    )
    plan = make_plan(job)
    plan = replace(plan, variables=(*plan.variables, ("KUBERNETES_SERVICE_MEMORY_LIMIT", "1Gi")))
    cfg = config(service_memory_limit="512Mi", service_memory_limit_overwrite_max_allowed="4Gi")
    pod = render(plan, cfg).pod
    assert container(pod, "db")["resources"] == {"limits": {"memory": "2Gi"}}
    assert container(pod, "kv")["resources"] == {"limits": {"memory": "1Gi"}}


def test_a_service_override_above_the_maximum_fails_naming_the_service() -> None:
    job = payload(
        services=[
            {
                "name": "postgres:16",
                "alias": "db",
                "variables": [{"key": "KUBERNETES_SERVICE_CPU_LIMIT", "value": "8"}],
            }
        ]
    )
    message = _refused(render_pod, make_plan(job), config(service_cpu_limit_overwrite_max_allowed="2"))
    assert "KUBERNETES_SERVICE_CPU_LIMIT of service 'db'" in message

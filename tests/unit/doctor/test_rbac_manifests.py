"""`kuberunner rbac`'s objects and snippet, and the setup-call registry kept apart from the runner's."""

from __future__ import annotations

import inspect
import stat
import tomllib
from pathlib import Path

import kubernetes_validate
from ruamel.yaml import YAML

from kuberunner.config.schema import KubernetesConfig
from kuberunner.kube.client import KubeClient
from kuberunner.kube.manage import (
    SETUP_REGISTRY,
    SetupClient,
    binding_command,
    runner_permissions,
    subject_for,
)
from kuberunner.kube.rbac import REGISTRY, Permission, rules_for
from kuberunner.rbac import plan_for, render_snippet, render_yaml, snippet_values, write_ca, write_snippet


def test_setup_calls_never_widen_the_runners_role() -> None:
    own = {name for name, _ in inspect.getmembers(SetupClient, inspect.iscoroutinefunction)} - {
        name for name, _ in inspect.getmembers(KubeClient, inspect.iscoroutinefunction)
    }
    tagged = {name for name in own if getattr(getattr(SetupClient, name), "__kuberunner_setup__", False)}
    # every setup call is tagged, in its own registry, and none is in the runner's
    assert tagged == set(SETUP_REGISTRY) - {"apply"}
    assert own - tagged == {"apply", "_apply"}  # the dispatcher and the plumbing it calls
    assert not set(SETUP_REGISTRY) & set(REGISTRY)
    resources = {(p.group, p.resource) for p in runner_permissions()}
    assert ("rbac.authorization.k8s.io", "roles") not in resources
    assert ("", "serviceaccounts/token") not in resources and ("", "namespaces") not in resources


def test_runner_permissions_are_the_registry_required_winning() -> None:
    perms = runner_permissions()
    expected = {(p.group, p.resource, p.verb) for p in REGISTRY.values() if p is not None}
    assert {(p.group, p.resource, p.verb) for p in perms} == expected
    assert len(perms) == len(expected)
    saved = dict(REGISTRY)
    try:
        REGISTRY["_test_optional_twin"] = Permission("pods", "create", optional=True, why="twin")
        create = [p for p in runner_permissions() if (p.resource, p.verb) == ("pods", "create")]
        assert [p.optional for p in create] == [False]
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved)


def test_yaml_stream_is_strictly_valid_and_exact() -> None:
    text = render_yaml(plan_for(None, namespace="gitlab", service_account="gitlab-runner"))
    assert text.startswith("# kuberunner rbac")
    documents = list(YAML(typ="safe", pure=True).load_all(text))
    for document in documents:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    role = next(d for d in documents if d["kind"] == "Role")
    assert role["rules"] == rules_for(runner_permissions())
    for perm in runner_permissions():
        assert f"# {perm.verb}: {perm.why}" in text


def test_names_from_options_then_config_then_default() -> None:
    cfg = KubernetesConfig.model_validate({"namespace": "gitlab", "service_account": "gitlab-runner"})
    assert plan_for(cfg) == plan_for(None, namespace="gitlab", service_account="gitlab-runner")
    assert plan_for(cfg, namespace="ci").namespace == "ci"
    plan = plan_for(None)
    assert (plan.namespace, plan.service_account, plan.token_secret) == (
        "kuberunner",
        "kuberunner",
        "kuberunner-token",
    )


def test_subjects_and_the_seed_one_liner() -> None:
    sa = subject_for("system:serviceaccount:gitlab:gitlab-runner", "default")
    assert sa == {"kind": "ServiceAccount", "name": "gitlab-runner", "namespace": "gitlab"}
    assert binding_command("gitlab-runner", "gitlab", "gitlab-runner", sa) == (
        "kubectl create rolebinding gitlab-runner --namespace=gitlab --role=gitlab-runner "
        "--serviceaccount=gitlab:gitlab-runner"
    )
    user = subject_for("alice@example.com", "ci")
    assert user == {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"}
    assert binding_command("kr", "ci", "kr", user).endswith("--user=alice@example.com")


def test_snippet_is_toml_and_quotes_safely() -> None:
    plan = plan_for(None, namespace="gitlab", service_account="gitlab-runner")
    values = snippet_values(
        plan, host="https://10.0.0.1:6443", ca_file='/etc/gitlab-runner/k "ca".crt', token="t.o.k"
    )
    parsed = tomllib.loads(render_snippet(values))["runners"]["kubernetes"]
    assert parsed == {
        "host": "https://10.0.0.1:6443",
        "ca_file": '/etc/gitlab-runner/k "ca".crt',
        "bearer_token": "t.o.k",
        "namespace": "gitlab",
        "service_account": "gitlab-runner",
        "automount_service_account_token": False,
    }
    assert "ca_file" not in snippet_values(plan, host="https://h", ca_file="", token="x")


def test_write_keeps_comments_and_replaces_the_placeholder(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '# top comment\nconcurrent = 1\n\n[[runners]]\n  name = "a"\n  executor = "shell"\n\n'
        '[[runners]]\n  name = "k8s"  # the one\n  executor = "kubernetes"\n  [runners.kubernetes]\n'
        '    # 先随便写一个 means "write anything for now"\n    bearer_token = "先随便写一个"\n'
    )
    plan = plan_for(None, namespace="gitlab", service_account="gitlab-runner")
    ca = write_ca(config, "gitlab", "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----")
    assert ca == (tmp_path / "kuberunner-gitlab-ca.crt").absolute()
    assert stat.S_IMODE(ca.stat().st_mode) == 0o644 and ca.read_text().endswith("-----\n")
    write_snippet(config, 1, snippet_values(plan, host="https://h:6443", ca_file=str(ca), token="new.tok.en"))
    text = config.read_text()
    assert "# top comment" in text and "# the one" in text and "write anything for now" in text
    assert '先随便写一个"' not in text
    data = tomllib.loads(text)
    assert data["runners"][0] == {"name": "a", "executor": "shell"}
    assert data["runners"][1]["kubernetes"]["bearer_token"] == "new.tok.en"
    assert data["runners"][1]["kubernetes"]["ca_file"] == str(ca)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

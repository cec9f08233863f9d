"""Settings that contradict each other, found from config.toml alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kuberunner.config.load import load_config
from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor.cluster import extra_rights
from kuberunner.doctor.consistency import check_consistency, is_dind
from kuberunner.doctor.images import DEFAULT_HELPER_IMAGE, helper_image
from kuberunner.doctor.model import CheckResult
from kuberunner.kube.manage import runner_permissions

SEED = Path(__file__).resolve().parents[1] / "config" / "good" / "seed.toml"


def results(probe: CheckResult | None = None, **values: Any) -> dict[str, CheckResult]:
    cfg = KubernetesConfig.model_validate(values)
    return {r.id: r for r in check_consistency(cfg, probe=probe)}


def test_the_seeds_final_config() -> None:
    """The guide's last config.toml: privileged, docker.sock mounted, three host aliases."""
    loaded = load_config(SEED, strict=False)
    cfg = loaded.config.runners[0].kubernetes
    assert cfg is not None
    found = {r.id: r for r in check_consistency(cfg)}
    socket = found["docker-socket"]
    assert socket.status == "warn"
    assert "mounts the node's /var/run/docker.sock" in socket.summary
    assert 'name = "docker:dind"' in socket.fixes[0].text
    assert found["host-aliases"].summary == "3 host alias(es), all with IP addresses"
    assert found["dind"].status == "pass"
    # no default image in the seed: nothing to compare the helper's registry with
    assert found["helper-image"].status == "pass"
    assert "no job image in config.toml to compare with" in found["helper-image"].summary


def test_dind_without_privileged() -> None:
    found = results(services=[{"name": "docker:24-dind", "alias": "docker"}])["dind"]
    assert found.status == "fail"
    assert found.fixes[0].text == "[runners.kubernetes]\n  privileged = true"
    assert results(services=[{"name": "docker:dind"}], privileged=True)["dind"].status == "pass"
    assert (
        results(services=[{"name": "docker:dind"}], service_container_security_context={"privileged": True})[
            "dind"
        ].status
        == "pass"
    )
    assert is_dind("registry.example.com/library/docker:dind-rootless")
    assert not is_dind("docker:27-cli") and not is_dind("mydocker:dind")


def test_host_alias_that_is_a_name() -> None:
    found = results(host_aliases=[{"ip": "gitlab.example.com", "hostnames": ["gitlab.example.com"]}])
    alias = found["host-aliases"]
    assert alias.status == "fail"
    assert alias.evidence == (
        '[[runners.kubernetes.host_aliases]] #1: ip = "gitlab.example.com" is not an IP address',
    )


def test_helper_from_another_registry_than_the_job_images() -> None:
    helper = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-7178588d"
    found = results(image="registry.example.com/ci/maven:3", helper_image=helper)["helper-image"]
    assert found.status == "warn"
    assert (
        "registry.gitlab.com, a registry none of the job images use (registry.example.com)" in found.summary
    )
    assert found.fixes[0].text == (
        '[runners.kubernetes]\n  helper_image = "registry.example.com/gitlab-org/gitlab-runner/'
        'gitlab-runner-helper:x86_64-7178588d"'
    )
    same = results(image="registry.example.com/ci/maven:3", helper_image="registry.example.com/ci/helper:1")
    assert same["helper-image"].status == "pass"


def test_a_successful_probe_settles_the_helper_question() -> None:
    helper = "registry.gitlab.com/x/helper:1"
    pulled = CheckResult("pod", "job pod (probe)", "pass", "a job pod started in 1.0s")
    assert results(pulled, image="maven:3", helper_image=helper)["helper-image"].status == "pass"
    failed = CheckResult(
        "pod", "job pod (probe)", "fail", "the nodes cannot reach registry registry.gitlab.com"
    )
    assert results(failed, image="maven:3", helper_image=helper)["helper-image"].status == "warn"


def test_helper_image_is_the_executors() -> None:
    from kuberunner.executors.kubernetes import DEFAULT_HELPER_IMAGE as EXECUTORS

    assert helper_image(KubernetesConfig.model_validate({})) == DEFAULT_HELPER_IMAGE == EXECUTORS
    assert helper_image(KubernetesConfig.model_validate({"helper_image": "mirror.example.com/h:1"})) == (
        "mirror.example.com/h:1"
    )


def test_rights_beyond_need_from_a_recorded_rules_review(shared_dir: Path) -> None:
    data = json.loads((shared_dir / "docs/fixtures/kubernetes/selfsubjectaccessreview.json").read_text())
    review = next(e for e in data["exchanges"] if e["name"] == "runner: SelfSubjectRulesReview for kr-rec")
    rules = review["response"]["body"]["status"]["resourceRules"]
    # the recording's runner Role has exactly what kuberunner uses, minus nothing extra
    assert extra_rights(rules, runner_permissions()) == ""
    seed_role = [  # the Role the seed's operator ended with (apiGroups "*")
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["list", "get", "watch", "create", "delete"]},
        {"apiGroups": ["*"], "resources": ["pods/exec"], "verbs": ["create"]},
        {
            "apiGroups": ["*"],
            "resources": ["secrets"],
            "verbs": ["list", "get", "create", "delete", "update"],
        },
    ]
    assert extra_rights(seed_role, runner_permissions()) == "create pods/exec; update secrets"
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    assert extra_rights(everything, runner_permissions()) == "anything on all resources"

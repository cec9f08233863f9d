"""The pod's layout and the rules behind it: services, env, images, pull policies, volumes, errors."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from k8s_support import (
    BASE_LABELS,
    HELPER_IMAGE,
    config,
    container,
    containers,
    env_of,
    make_plan,
    payload,
    pod_of,
    render,
)

from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.podspec import (
    BUILDS_VOLUME,
    CACHE_VOLUME,
    SCRIPTS_FILE_MODE,
    active_deadline_seconds,
    container_pull_policies,
    image_allowed,
    next_pull_policy,
    render_pod,
    termination_grace_period_seconds,
)


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def _fails(plan: Any = None, cfg: Any = None) -> BuildError:
    with pytest.raises(BuildError) as caught:
        render_pod(plan or make_plan(), cfg or config())
    assert caught.value.reason == "runner_configuration_error"
    return caught.value


def _service(name: str, alias: str = "", **more: Any) -> dict[str, Any]:
    return {"name": name, "alias": alias, **more}


# ------------------------------------------------------------------------------ layout


def test_with_native_sidecars_services_start_first_and_gate_init() -> None:
    pod = pod_of(make_plan(service_ports={"postgres": [5432]}))
    spec = pod["spec"]
    assert _names(spec["initContainers"]) == ["db", "init"]
    assert _names(spec["containers"]) == ["build", "helper"]
    db = container(pod, "db")
    assert db["restartPolicy"] == "Always"
    assert db["startupProbe"]["tcpSocket"] == {"port": 5432}
    assert db["startupProbe"]["periodSeconds"] == 1
    assert spec["restartPolicy"] == "Never"


def test_without_native_sidecars_services_are_ordinary_containers() -> None:
    pod = pod_of(make_plan(native_sidecars=False, service_ports={"postgres": [5432]}))
    assert _names(pod["spec"]["initContainers"]) == ["init"]
    assert _names(pod["spec"]["containers"]) == ["build", "helper", "db"]
    db = container(pod, "db")
    assert "restartPolicy" not in db
    assert "startupProbe" not in db


def test_job_containers_run_their_stage_script_from_the_scripts_secret() -> None:
    pod = pod_of()
    assert container(pod, "init")["command"] == ["sh", "/kuberunner/scripts/init"]
    assert container(pod, "build")["command"] == ["sh", "/kuberunner/scripts/build"]
    assert container(pod, "helper")["command"] == ["sh", "/kuberunner/scripts/helper"]
    assert container(pod, "init")["image"] == HELPER_IMAGE
    assert container(pod, "helper")["image"] == HELPER_IMAGE
    assert container(pod, "build")["image"] == "golang:1.22"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes == {
        "repo": {"name": "repo", "emptyDir": {}},
        "scripts": {
            "name": "scripts",
            "secret": {"secretName": "runner-abc123-project-42-job-4821-scripts", "defaultMode": 0o444},
        },
        "kuberunner-state": {"name": "kuberunner-state", "emptyDir": {}},
        "kuberunner-cache": {"name": "kuberunner-cache", "emptyDir": {}},
    }
    assert SCRIPTS_FILE_MODE == 0o444
    for name in ("init", "build", "helper"):
        assert container(pod, name)["volumeMounts"] == [
            {"name": "repo", "mountPath": "/builds"},
            {"name": "scripts", "mountPath": "/kuberunner/scripts", "readOnly": True},
            {"name": "kuberunner-state", "mountPath": "/kuberunner/state"},
            {"name": "kuberunner-cache", "mountPath": "/cache"},
        ]
    # services share the checkout, never the scripts (they hold file variables) or the state
    assert container(pod, "db")["volumeMounts"] == [{"name": "repo", "mountPath": "/builds"}]


@pytest.mark.parametrize(
    ("entrypoint", "command", "args"),
    [
        (None, ["sh", "/kuberunner/scripts/build"], None),
        ([""], ["sh", "/kuberunner/scripts/build"], None),
        ([], ["sh", "/kuberunner/scripts/build"], None),
        (["/usr/local/bin/setup-env"], ["/usr/local/bin/setup-env"], ["sh", "/kuberunner/scripts/build"]),
    ],
)
def test_a_job_image_entrypoint_gets_the_build_script_as_arguments(
    entrypoint: list[str] | None, command: list[str], args: list[str] | None
) -> None:
    pod = pod_of(make_plan(payload(image={"name": "golang:1.22", "entrypoint": entrypoint})))
    build = container(pod, "build")
    assert build["command"] == command
    assert build.get("args") == args


@pytest.mark.parametrize(
    ("definition", "command", "args"),
    [
        ({}, None, None),
        ({"command": ["postgres", "-c", "fsync=off"]}, None, ["postgres", "-c", "fsync=off"]),
        ({"entrypoint": ["/bin/run"]}, ["/bin/run"], None),
        ({"entrypoint": ["/bin/run"], "command": ["--fast"]}, ["/bin/run"], ["--fast"]),
        (
            {"entrypoint": [""], "command": ["postgres", "-c", "fsync=off"]},
            ["postgres", "-c", "fsync=off"],
            None,
        ),
    ],
)
def test_service_entrypoint_and_command_keep_docker_meaning(
    definition: dict[str, Any], command: list[str] | None, args: list[str] | None
) -> None:
    job = payload(services=[_service("postgres:16", "db", **definition)])
    db = container(pod_of(make_plan(job)), "db")
    assert db.get("command") == command
    assert db.get("args") == args


# ------------------------------------------------------------------------------ services


@pytest.mark.parametrize(
    ("config_services", "job_services", "names"),
    [
        ([], [_service("postgres:16", "db")], ["db"]),
        ([], [_service("postgres:16", "db"), _service("postgres:15", "db")], ["db", "svc-0"]),
        ([], [_service("postgres:16"), _service("redis:7")], ["svc-0", "svc-1"]),
        ([], [_service("postgres:16", "my.db")], ["svc-0"]),
        ([], [_service("postgres:16", "pg.local,pg")], ["pg"]),
        ([], [_service("postgres:16", "build"), _service("redis:7", "helper")], ["svc-0", "svc-1"]),
        ([], [_service("postgres:16", "svc-0"), _service("redis:7")], ["svc-0", "svc-1"]),
        ([{"name": "docker:24-dind", "alias": "db"}], [_service("postgres:16", "db")], ["db", "svc-0"]),
    ],
)
def test_service_container_names(
    config_services: list[dict[str, Any]], job_services: list[dict[str, Any]], names: list[str]
) -> None:
    """The first unused alias that is a DNS label, else svc-<n>; config services first, as gitlab-runner.

    Unlike gitlab-runner, init/build/helper and aliases already taken are never
    reused by svc-<n>, so two containers never share a name.
    """
    job = payload(services=job_services)
    pod = pod_of(make_plan(job), config(services=config_services))
    assert _names(pod["spec"]["initContainers"])[:-1] == names


def test_services_are_reachable_by_alias_and_image_derived_names() -> None:
    job = payload(
        services=[
            _service("registry.example.com:5000/group/redis:7", "cache,kv"),
            _service("tutum/wordpress@sha256:" + "a" * 64),
        ]
    )
    pod = pod_of(make_plan(job))
    assert pod["spec"]["hostAliases"] == [
        {
            "ip": "127.0.0.1",
            # "registry.example.com__group__redis" is what gitlab-runner derives first; it is
            # not a valid host name, so it is dropped, as gitlab-runner does
            "hostnames": ["registry.example.com-group-redis", "cache", "kv", "tutum-wordpress"],
        }
    ]


def test_a_service_alias_that_is_not_a_host_name_fails_the_job() -> None:
    job = payload(services=[_service("postgres:16", "Primary_DB")])
    error = _fails(make_plan(job))
    assert "'Primary_DB'" in str(error)
    assert "postgres:16" in str(error)


def test_services_get_public_variables_only_and_their_own_win() -> None:
    job = payload(
        services=[
            _service(
                "postgres:16",
                "db",
                variables=[
                    {"key": "GREETING", "value": "hi"},
                    {"key": "POSTGRES_DB", "value": "app_$CI_JOB_ID"},
                    {"key": "POSTGRES_PASSWORD", "value": "p$(GREETING)w"},
                ],
            )
        ]
    )
    env = env_of(container(pod_of(make_plan(job)), "db"))
    assert env["CI_JOB_ID"] == "4821"
    assert env["GREETING"] == "hi"
    assert env["POSTGRES_DB"] == "app_4821"
    # Kubernetes expands $(NAME) in env values; $$ keeps the value exactly as defined
    assert env["POSTGRES_PASSWORD"] == "p$$(GREETING)w"
    for hidden in ("CI_JOB_TOKEN", "DEPLOY_PASSWORD", "KUBECONFIG_DATA"):
        assert hidden not in env


def test_job_containers_carry_no_job_variables_and_no_secret_is_in_the_pod() -> None:
    plan = make_plan(registry_secret="job-registry")
    pod = pod_of(plan, config(services=[{"name": "redis:7"}]))
    for name in ("init", "build", "helper"):
        assert env_of(container(pod, name)) == {
            "KUBERUNNER_SCRIPTS_DIR": "/kuberunner/scripts",
            "KUBERUNNER_STATE_DIR": "/kuberunner/state",
        }
    text = json.dumps(pod)
    assert "glcbt-job-token-not-for-pods" not in text
    assert "s3cr3t-project-variable" not in text


def test_environment_names_kubernetes_refuses_are_left_out_with_a_notice() -> None:
    plan = make_plan()
    plan = replace(plan, variables=(*plan.variables, ("1BAD", "x"), ("GOOD.NAME", "y")))
    rendered = render(plan)
    env = env_of(container(rendered.pod, "db"))
    assert "1BAD" not in env
    assert env["GOOD.NAME"] == "y"
    assert any("1BAD" in notice for notice in rendered.notices)


@pytest.mark.parametrize(
    ("service", "service_ports", "port"),
    [
        (
            _service("postgres:16", "db", variables=[{"key": "HEALTHCHECK_TCP_PORT", "value": "6432"}]),
            {},
            6432,
        ),
        (
            _service("postgres:16", "db", ports=[{"number": 5433, "protocol": "tcp"}]),
            {"postgres": [5432]},
            5433,
        ),
        (_service("postgres:16", "db"), {"postgres": [5432]}, 5432),
        (_service("docker.io/library/postgres:16", "db"), {"postgres": [5432]}, 5432),
        (_service("mirror.example.com/postgres:16", "db"), {"mirror.example.com/postgres": [15432]}, 15432),
        (_service("postgres:16", "db"), {}, None),
    ],
)
def test_startup_probe_port(
    service: dict[str, Any], service_ports: dict[str, list[int]], port: int | None
) -> None:
    """HEALTHCHECK_TCP_PORT (as gitlab-runner), else the first declared port, else a known one."""
    pod = pod_of(make_plan(payload(services=[service]), service_ports=service_ports))
    probe = container(pod, "db").get("startupProbe")
    assert (probe["tcpSocket"]["port"] if probe else None) == port


def test_a_service_port_without_a_number_fails_the_job() -> None:
    job = payload(services=[_service("postgres:16", "db", ports=[{"name": "pg"}])])
    assert "port" in str(_fails(make_plan(job)))


# ---------------------------------------------------------------------------- images


def test_a_job_without_image_and_no_default_fails_naming_both_places() -> None:
    message = str(_fails(make_plan(payload(image=None))))
    assert "image" in message
    assert "[runners.kubernetes]" in message


def test_image_names_are_expanded_with_job_variables() -> None:
    job = payload(image={"name": "golang:$GO_VERSION"}, services=[_service("$DB_IMAGE", "db")])
    plan = make_plan(job)
    plan = replace(
        plan,
        variables=(*plan.variables, ("GO_VERSION", "1.23"), ("DB_IMAGE", "postgres:17"), ("KV", "redis:7")),
    )
    pod = pod_of(plan, config(services=[{"name": "$KV", "alias": "kv-$CI_JOB_ID"}]))
    assert container(pod, "build")["image"] == "golang:1.23"
    assert container(pod, "db")["image"] == "postgres:17"
    assert container(pod, "kv-4821")["image"] == "redis:7"


def test_an_image_outside_allowed_images_fails_naming_image_and_list() -> None:
    message = str(_fails(cfg=config(allowed_images=["ruby:*", "python:*"])))
    assert "'golang:1.22'" in message
    assert "'ruby:*'" in message
    assert "'python:*'" in message
    assert "allowed_images" in message


def test_a_service_outside_allowed_services_fails() -> None:
    message = str(_fails(cfg=config(allowed_services=["redis:*"])))
    assert "'postgres:16'" in message
    assert "allowed_services" in message


def test_the_runner_default_image_is_always_allowed() -> None:
    pod = pod_of(make_plan(payload(image=None)), config(image="alpine:3.20", allowed_images=["ruby:*"]))
    assert container(pod, "build")["image"] == "alpine:3.20"


@pytest.mark.parametrize(
    ("pattern", "image", "allowed"),
    [
        ("ruby:*", "ruby:3.1", True),
        ("ruby:*", "library/ruby:3.1", False),
        ("*/*:*", "ruby:3.1", False),
        ("*/*:*", "library/ruby:3.1", True),
        ("**/ruby:*", "ruby:3.1", True),
        ("**/ruby:*", "registry.example.com/library/ruby:3.1", True),
        ("registry.example.com/**", "registry.example.com/a/b/c:1", True),
        ("registry.example.com/*", "registry.example.com/a/b:1", False),
        ("{ruby,python}:*", "python:3.12", True),
        ("{ruby,python}:*", "perl:5", False),
        ("ruby:3.[0-2]", "ruby:3.1", True),
        ("ruby:3.[!0-2]", "ruby:3.1", False),
        ("ru?y:*", "ruby:3", True),
        ("ruby:3.1", "ruby:3.10", False),
    ],
)
def test_allowed_images_globs(pattern: str, image: str, allowed: bool) -> None:
    assert image_allowed(image, [pattern]) is allowed


# ------------------------------------------------------------------------ pull policies


def test_the_job_pull_policy_wins_over_the_config_and_services_have_their_own() -> None:
    job = payload(
        image={"name": "golang:1.22", "pull_policy": ["if-not-present"]},
        services=[_service("postgres:16", "db", pull_policy=["never"])],
    )
    pod = pod_of(make_plan(job), config(pull_policy=["always"]))
    policies = {name: c.get("imagePullPolicy") for name, c in containers(pod).items()}
    assert policies == {
        "db": "Never",
        "init": "IfNotPresent",
        "build": "IfNotPresent",
        "helper": "IfNotPresent",
    }


def test_pull_policies_are_limited_to_allowed_pull_policies() -> None:
    job = payload(image={"name": "golang:1.22", "pull_policy": ["always", "if-not-present"]})
    cfg = config(allowed_pull_policies=["if-not-present", "never"])
    assert container_pull_policies(make_plan(job), cfg)["build"] == ["IfNotPresent"]


def test_a_pull_policy_outside_allowed_pull_policies_fails_naming_both() -> None:
    job = payload(image={"name": "golang:1.22", "pull_policy": ["always"]})
    message = str(_fails(make_plan(job), config(allowed_pull_policies=["if-not-present"])))
    assert "['always']" in message
    assert "['if-not-present']" in message
    assert "allowed_pull_policies" in message


def test_an_unknown_pull_policy_fails() -> None:
    job = payload(image={"name": "golang:1.22", "pull_policy": ["sometimes"]})
    assert "'sometimes'" in str(_fails(make_plan(job)))


def test_after_a_failed_pull_the_next_policy_is_used() -> None:
    cfg = config(pull_policy=["always", "if-not-present"])
    plan = make_plan()
    policies = container_pull_policies(plan, cfg)["build"]
    assert policies == ["Always", "IfNotPresent"]
    assert next_pull_policy(policies, 1) == "IfNotPresent"
    assert next_pull_policy(policies, 2) is None
    assert next_pull_policy(["Always", "Always"], 1) == "Always"  # documented: retry once
    retry = replace(plan, pull_policies={"build": "IfNotPresent"})
    pod = pod_of(retry, cfg)
    assert container(pod, "build")["imagePullPolicy"] == "IfNotPresent"
    assert container(pod, "helper")["imagePullPolicy"] == "Always"


# ----------------------------------------------------------------------------- volumes


def test_a_configured_volume_at_builds_dir_replaces_the_builds_emptydir_everywhere() -> None:
    cfg = config(volumes={"pvc": [{"name": "workspace", "mount_path": "/builds"}]})
    pod = pod_of(make_plan(), cfg)
    assert BUILDS_VOLUME not in _names(pod["spec"]["volumes"])
    for name in ("build", "helper", "init", "db"):
        mounts = {m["mountPath"]: m["name"] for m in container(pod, name)["volumeMounts"]}
        assert mounts["/builds"] == "workspace"


def test_a_pvc_at_cache_dir_replaces_the_cache_emptydir() -> None:
    cfg = config(volumes={"pvc": [{"name": "ci-cache", "mount_path": "/cache/"}]})
    pod = pod_of(make_plan(), cfg)
    assert CACHE_VOLUME not in _names(pod["spec"]["volumes"])
    assert {"name": "ci-cache", "persistentVolumeClaim": {"claimName": "ci-cache"}} in pod["spec"]["volumes"]


def test_volumes_named_builds_or_cache_as_in_gitlab_runner_configs_are_fine() -> None:
    cfg = config(
        volumes={
            "pvc": [{"name": "cache", "mount_path": "/cache"}],
            "host_path": [{"name": "builds", "mount_path": "/mnt/builds"}],
        }
    )
    pod = pod_of(make_plan(), cfg)
    assert {"repo", "cache", "builds"} <= set(_names(pod["spec"]["volumes"]))
    assert CACHE_VOLUME not in _names(pod["spec"]["volumes"])


def test_the_same_pvc_may_be_mounted_twice() -> None:
    cfg = config(
        volumes={
            "pvc": [
                {"name": "shared", "mount_path": "/a"},
                {"name": "shared", "mount_path": "/b", "sub_path": "b"},
            ]
        }
    )
    pod = pod_of(make_plan(), cfg)
    assert _names(pod["spec"]["volumes"]).count("shared") == 1
    assert [m["mountPath"] for m in container(pod, "build")["volumeMounts"] if m["name"] == "shared"] == [
        "/a",
        "/b",
    ]


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        ({"empty_dir": [{"name": "scripts", "mount_path": "/x"}]}, "kuberunner's own 'scripts' volume"),
        ({"host_path": [{"name": "repo", "mount_path": "/x"}]}, "kuberunner's own 'repo' volume"),
        (
            {"empty_dir": [{"name": "a", "mount_path": "/x"}], "pvc": [{"name": "a", "mount_path": "/y"}]},
            "already has the name 'a'",
        ),
        (
            {
                "empty_dir": [{"name": "a", "mount_path": "/x"}],
                "host_path": [{"name": "a", "mount_path": "/y"}],
            },
            "already has the name 'a'",
        ),
        (
            {"empty_dir": [{"name": "a", "mount_path": "/x"}, {"name": "b", "mount_path": "/x/"}]},
            "already used",
        ),
        ({"empty_dir": [{"name": "a", "mount_path": "/kuberunner/scripts"}]}, "kuberunner mounts its own"),
        ({"empty_dir": [{"name": "a", "mount_path": "relative"}]}, "absolute path"),
        ({"secret": [{"name": "Bad_Name", "mount_path": "/x"}]}, "DNS label"),
        (
            {"host_path": [{"name": "dev", "mount_path": "/dev/fuse", "mount_propagation": "Bidirectional"}]},
            "privileged",
        ),
    ],
)
def test_volume_mistakes_fail_before_the_api_does(volumes: dict[str, Any], expected: str) -> None:
    assert expected in str(_fails(cfg=config(volumes=volumes)))


def test_bidirectional_propagation_works_in_privileged_containers() -> None:
    cfg = config(
        privileged=True,
        volumes={
            "host_path": [{"name": "dev", "mount_path": "/dev/fuse", "mount_propagation": "Bidirectional"}]
        },
    )
    mount = next(
        m for m in container(pod_of(make_plan(), cfg), "build")["volumeMounts"] if m["name"] == "dev"
    )
    assert mount["mountPropagation"] == "Bidirectional"


def test_an_invalid_empty_dir_size_limit_is_ignored_with_a_notice() -> None:
    cfg = config(volumes={"empty_dir": [{"name": "scratch", "mount_path": "/scratch", "size_limit": "lots"}]})
    rendered = render(make_plan(), cfg)
    scratch = next(v for v in rendered.pod["spec"]["volumes"] if v["name"] == "scratch")
    assert scratch == {"name": "scratch", "emptyDir": {}}
    assert any("size_limit" in n and "'lots'" in n for n in rendered.notices)


# -------------------------------------------------------------------------- resources


def test_a_request_above_its_limit_fails_naming_both_sources() -> None:
    plan = make_plan()
    plan = replace(plan, variables=(*plan.variables, ("KUBERNETES_MEMORY_REQUEST", "2Gi")))
    cfg = config(memory_limit="1Gi", memory_request_overwrite_max_allowed="4Gi")
    message = str(_fails(plan, cfg))
    assert "KUBERNETES_MEMORY_REQUEST" in message
    assert "memory_limit" in message
    assert "'2Gi'" in message


def test_a_malformed_configured_quantity_fails_naming_the_key() -> None:
    message = str(_fails(cfg=config(helper_cpu_limit="half a core")))
    assert "helper_cpu_limit" in message
    assert "'half a core'" in message


# --------------------------------------------------------------------- labels, annotations


def test_the_runners_own_labels_cannot_be_changed() -> None:
    plan = make_plan()
    plan = replace(plan, variables=(*plan.variables, ("KUBERNETES_POD_LABELS_1", "kuberunner.io/job-id=1")))
    cfg = config(
        pod_labels={"app.kubernetes.io/managed-by": "me", "job.runner.gitlab.com/pod": "x", "team": "a"},
        pod_labels_overwrite_allowed=".*",
    )
    rendered = render(plan, cfg)
    assert rendered.pod["metadata"]["labels"] == {**BASE_LABELS, "team": "a"}
    assert sum("cannot be changed" in notice for notice in rendered.notices) == 3


def test_an_invalid_label_key_fails_naming_it() -> None:
    assert "'bad key'" in str(_fails(cfg=config(pod_labels={"bad key": "x"})))


def test_default_annotations() -> None:
    plan = make_plan(timeout=5400)
    plan = replace(
        plan,
        variables=(*plan.variables, ("CI_JOB_URL", "https://gitlab.example.com/acme/webapp/-/jobs/4821")),
    )
    assert pod_of(plan)["metadata"]["annotations"] == {
        "job.runner.gitlab.com/id": "4821",
        "job.runner.gitlab.com/url": "https://gitlab.example.com/acme/webapp/-/jobs/4821",
        "job.runner.gitlab.com/sha": "3f1c0b9d",
        "job.runner.gitlab.com/before_sha": "00000000",
        "job.runner.gitlab.com/ref": "main",
        "job.runner.gitlab.com/name": "build-image",
        "job.runner.gitlab.com/timeout": "1h30m0s",
        "project.runner.gitlab.com/id": "42",
    }


def test_the_job_url_falls_back_to_the_project_url() -> None:
    annotations = pod_of(make_plan(timeout=45))["metadata"]["annotations"]
    assert annotations["job.runner.gitlab.com/url"] == "https://gitlab.example.com/acme/webapp/-/jobs/4821"
    assert annotations["job.runner.gitlab.com/timeout"] == "45s"


@pytest.mark.parametrize(
    ("variable", "where"),
    [
        ("KUBERNETES_POD_LABELS_1", lambda pod: pod["metadata"]["labels"]),
        ("KUBERNETES_POD_ANNOTATIONS_1", lambda pod: pod["metadata"]["annotations"]),
        ("KUBERNETES_NODE_SELECTOR_1", lambda pod: pod["spec"].get("nodeSelector")),
        ("KUBERNETES_NODE_TOLERATIONS_1", lambda pod: pod["spec"].get("tolerations")),
    ],
)
def test_map_overrides_a_runner_does_not_allow_are_ignored_with_a_notice(
    variable: str, where: Callable[[dict[str, Any]], Any]
) -> None:
    """gitlab-runner ignores them silently; kuberunner ignores them and says so in the job log."""
    plan = make_plan()
    plan = replace(plan, variables=(*plan.variables, (variable, "gpu=true")))
    rendered = render(plan)
    assert "gpu" not in json.dumps(where(rendered.pod))
    assert any(variable in n and "ignored" in n for n in rendered.notices)


# -------------------------------------------------------------------- timing, scheduling


def test_deadline_and_grace_leave_room_for_after_script() -> None:
    plan = make_plan(timeout=1800, after_script_timeout=120)
    cfg = config(poll_timeout=90)
    pod = pod_of(plan, cfg)
    assert pod["spec"]["activeDeadlineSeconds"] == active_deadline_seconds(plan, cfg) == 90 + 1800 + 120 + 300
    assert pod["spec"]["terminationGracePeriodSeconds"] == termination_grace_period_seconds(plan, cfg) == 150


@pytest.mark.parametrize(
    ("tolerations", "expected"),
    [
        ({"=value": "NoSchedule"}, "needs a key"),
        ({"gpu": "Sometimes"}, "'Sometimes'"),
    ],
)
def test_tolerations_kubernetes_would_refuse_fail_early(tolerations: dict[str, str], expected: str) -> None:
    assert expected in str(_fails(cfg=config(node_tolerations=tolerations)))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"dns_policy": "none"}, "nameserver"),
        ({"privileged": True, "allow_privilege_escalation": False}, "allow_privilege_escalation"),
        (
            {"build_container_security_context": {"seccomp_profile": {"type": "Localhost"}}},
            "localhost_profile",
        ),
        (
            {
                "pod_security_context": {
                    "seccomp_profile": {"type": "RuntimeDefault", "localhost_profile": "x"}
                }
            },
            "only valid with type Localhost",
        ),
        ({"hostname": "Not_A_Host"}, "hostname"),
        ({"host_aliases": [{"ip": "not-an-ip", "hostnames": ["a"]}]}, "not an IP address"),
        ({"host_aliases": [{"ip": "10.0.0.1", "hostnames": ["Bad_Host"]}]}, "'Bad_Host'"),
    ],
)
def test_settings_kubernetes_would_refuse_fail_early(values: dict[str, Any], expected: str) -> None:
    assert expected in str(_fails(cfg=config(**values)))


def test_capabilities_of_a_container_table_replace_cap_add_and_cap_drop() -> None:
    cfg = config(
        cap_add=["SYS_TIME"],
        cap_drop=["MKNOD"],
        build_container_security_context={"capabilities": {"add": ["NET_ADMIN"]}},
    )
    pod = pod_of(make_plan(), cfg)
    assert container(pod, "build")["securityContext"]["capabilities"] == {
        "add": ["NET_ADMIN"],
        "drop": ["NET_RAW"],
    }
    assert container(pod, "helper")["securityContext"]["capabilities"] == {
        "add": ["SYS_TIME"],
        "drop": ["NET_RAW", "MKNOD"],
    }


def test_rendering_is_pure() -> None:
    plan = make_plan(registry_secret="reg")
    cfg = config(pod_labels={"a": "b"}, volumes={"pvc": [{"name": "p", "mount_path": "/p"}]})
    before = (copy.deepcopy(plan), cfg.model_copy(deep=True))
    first = render_pod(plan, cfg)
    second = render_pod(plan, cfg)
    assert first == second
    assert first.pod is not second.pod
    assert (plan, cfg) == before

"""``[[runners.kubernetes.pod_spec]]``: merge (RFC 7386), json (RFC 6902) and strategic patches."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_support import config, container, make_plan, render

from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.overrides import (
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from kuberunner.executors.kubernetes.podspec import render_pod

# ------------------------------------------------------------------------- RFC 7386


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # the examples of RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


# ------------------------------------------------------------------------- RFC 6902

_DOC = {"foo": ["bar", "baz"], "obj": {"a": 1}}


@pytest.mark.parametrize(
    ("operations", "result"),
    [
        ([{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"], "obj": {"a": 1}}),
        ([{"op": "add", "path": "/foo/-", "value": "end"}], {"foo": ["bar", "baz", "end"], "obj": {"a": 1}}),
        (
            [{"op": "add", "path": "/obj/b", "value": {"c": 2}}],
            {"foo": ["bar", "baz"], "obj": {"a": 1, "b": {"c": 2}}},
        ),
        ([{"op": "remove", "path": "/foo/0"}], {"foo": ["baz"], "obj": {"a": 1}}),
        ([{"op": "replace", "path": "/obj/a", "value": 9}], {"foo": ["bar", "baz"], "obj": {"a": 9}}),
        (
            [{"op": "move", "from": "/obj/a", "path": "/moved"}],
            {"foo": ["bar", "baz"], "obj": {}, "moved": 1},
        ),
        (
            [{"op": "copy", "from": "/foo", "path": "/obj/foo"}],
            {"foo": ["bar", "baz"], "obj": {"a": 1, "foo": ["bar", "baz"]}},
        ),
        (
            [{"op": "test", "path": "/obj/a", "value": 1}, {"op": "remove", "path": "/obj"}],
            {"foo": ["bar", "baz"]},
        ),
        (
            [{"op": "add", "path": "/a~1b", "value": 1}, {"op": "add", "path": "/m~0n", "value": 2}],
            {"foo": ["bar", "baz"], "obj": {"a": 1}, "a/b": 1, "m~n": 2},
        ),
        ([{"op": "replace", "path": "", "value": {"x": 1}}], {"x": 1}),
    ],
)
def test_json_patch(operations: list[dict[str, Any]], result: Any) -> None:
    assert json_patch(_DOC, operations) == result
    assert _DOC == {"foo": ["bar", "baz"], "obj": {"a": 1}}  # the input is never changed


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        ({"op": "add"}, "list of operations"),
        ([{"op": "add", "path": "/x"}], "needs a 'value'"),
        ([{"op": "remove", "path": "/missing"}], "/missing does not exist"),
        ([{"op": "add", "path": "/foo/5", "value": 1}], "out of range"),
        ([{"op": "add", "path": "/foo/01", "value": 1}], "not an array index"),
        ([{"op": "replace", "path": "/nope", "value": 1}], "/nope does not exist"),
        ([{"op": "test", "path": "/obj/a", "value": True}], "test failed"),
        ([{"op": "move", "from": "/obj", "path": "/obj/inner"}], "its own child"),
        ([{"op": "frobnicate", "path": "/x"}], "unknown op"),
        ([{"op": "add", "path": "x", "value": 1}], "not a JSON pointer"),
        ([{"op": "copy", "path": "/x"}], "needs a 'from'"),
    ],
)
def test_json_patch_errors(operations: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        json_patch(_DOC, operations)


# ---------------------------------------------------------------------- strategic merge

_SPEC: dict[str, Any] = {
    "containers": [
        {
            "name": "build",
            "image": "golang:1.22",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumeMounts": [{"name": "builds", "mountPath": "/builds"}],
        },
        {"name": "helper", "image": "helper"},
    ],
    "volumes": [{"name": "builds", "emptyDir": {}}],
    "tolerations": [{"key": "a", "operator": "Exists"}],
    "nodeSelector": {"pool": "ci"},
}


def test_strategic_merge_merges_containers_env_and_mounts_by_their_keys() -> None:
    patch = {
        "containers": [
            {
                "name": "build",
                "resources": {"requests": {"cpu": "500m"}},
                "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
            }
        ],
        "volumes": [{"name": "extra", "emptyDir": {"medium": "Memory"}}],
    }
    result = strategic_merge_patch(_SPEC, patch)
    build = result["containers"][0]
    assert build["image"] == "golang:1.22"
    assert build["resources"] == {"requests": {"cpu": "500m"}}
    assert build["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert [m["mountPath"] for m in build["volumeMounts"]] == ["/builds", "/extra"]
    assert result["containers"][1] == {"name": "helper", "image": "helper"}
    assert [v["name"] for v in result["volumes"]] == ["builds", "extra"]


def test_strategic_merge_replaces_lists_without_a_merge_key_and_deletes_with_null() -> None:
    result = strategic_merge_patch(
        _SPEC, {"tolerations": [{"key": "b", "operator": "Exists"}], "nodeSelector": None}
    )
    assert result["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert "nodeSelector" not in result


def test_strategic_merge_directives() -> None:
    patch = {
        "containers": [
            {"name": "helper", "$patch": "delete"},
            {"name": "build", "env": [{"$patch": "replace"}, {"name": "Z", "value": "z"}]},
        ],
        "$setElementOrder/containers": [{"name": "build"}],
        "nodeSelector": {"$patch": "replace", "gpu": "yes"},
    }
    result = strategic_merge_patch(_SPEC, patch)
    assert [c["name"] for c in result["containers"]] == ["build"]
    assert result["containers"][0]["env"] == [{"name": "Z", "value": "z"}]
    assert result["nodeSelector"] == {"gpu": "yes"}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (["not", "an", "object"], "is an object"),
        ({"containers": [{"image": "no-name"}]}, "'name'"),
        ({"$retainKeys": ["a"]}, "not supported"),
        ({"nodeSelector": {"$patch": "sometimes"}}, "unknown \\$patch"),
        ({"$patch": "delete"}, "whole PodSpec"),
    ],
)
def test_strategic_merge_errors(patch: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        strategic_merge_patch(_SPEC, patch)


# --------------------------------------------------------------- through config.toml


def _pod_with(patches: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return render(make_plan(), config(pod_spec=patches), **kw).pod


def test_gitlab_runner_docs_examples_apply_to_the_generated_spec() -> None:
    pod = _pod_with(
        [
            {"name": "hostname", "patch": 'hostname: "custom-pod-hostname"', "patch_type": "merge"},
            {"name": "subdomain", "patch": 'subdomain: "subdomain"', "patch_type": "strategic"},
            {
                "name": "terminationGracePeriodSeconds",
                "patch": '[{"op": "replace", "path": "/terminationGracePeriodSeconds", "value": 60}]',
                "patch_type": "json",
            },
            {
                "name": "val1 node",
                "patch": '[{ "op": "add", "path": "/nodeSelector", "value": { key1: "val1" } }]',
                "patch_type": "json",
            },
            {
                "name": "cpu request 500m",
                "patch_type": "strategic",
                "patch": "\n        containers:\n        - name: build\n          resources:\n"
                '            requests:\n              cpu: "500m"\n      ',
            },
        ]
    )
    spec = pod["spec"]
    assert spec["hostname"] == "custom-pod-hostname"
    assert spec["subdomain"] == "subdomain"
    assert spec["terminationGracePeriodSeconds"] == 60
    assert spec["nodeSelector"] == {"key1": "val1"}
    assert container(pod, "build")["resources"] == {"requests": {"cpu": "500m"}}
    assert container(pod, "build")["command"] == ["sh", "/kuberunner/scripts/build"]


def test_the_default_patch_type_is_strategic() -> None:
    """The documented ephemeral-PVC example has no patch_type and relies on merging by name."""
    patch = """
containers:
- name: build
  volumeMounts:
  - name: ws
    mountPath: /workspace
volumes:
- name: ws
  ephemeral:
    volumeClaimTemplate:
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
"""
    pod = _pod_with([{"name": "ephemeral-pvc", "patch": patch}])
    assert {"name": "ws", "mountPath": "/workspace"} in container(pod, "build")["volumeMounts"]
    assert {v["name"] for v in pod["spec"]["volumes"]} == {
        "repo",
        "scripts",
        "kuberunner-state",
        "kuberunner-cache",
        "ws",
    }


def test_the_documented_ephemeral_builds_volume_replaces_the_builds_mount() -> None:
    """gitlab-runner's docs: a patch adding volume "builds" at /builds; mounts merge by mountPath."""
    patch = """
    containers:
    - name: build
      volumeMounts:
      - name: builds
        mountPath: /builds
    - name: helper
      volumeMounts:
      - name: builds
        mountPath: /builds
    volumes:
    - name: builds
      ephemeral:
        volumeClaimTemplate:
          spec:
            storageClassName: fast
            accessModes: [ ReadWriteOnce ]
            resources:
              requests:
                storage: 1Gi
  """
    pod = _pod_with([{"name": "ephemeral-pvc", "patch": patch}])
    for name in ("build", "helper"):
        by_path = {m["mountPath"]: m["name"] for m in container(pod, name)["volumeMounts"]}
        assert by_path["/builds"] == "builds"
    builds = next(v for v in pod["spec"]["volumes"] if v["name"] == "builds")
    assert set(builds) == {"name", "ephemeral"}


def test_patch_path_is_read_through_the_given_reader() -> None:
    files = {"/etc/kuberunner/hostusers.json": '[{"op": "add", "path": "/hostUsers", "value": false}]'}
    pod = _pod_with(
        [{"name": "userns", "patch_path": "/etc/kuberunner/hostusers.json", "patch_type": "json"}],
        read_file=files.__getitem__,
    )
    assert pod["spec"]["hostUsers"] is False


def _patch_error(patches: list[dict[str, Any]], **kw: Any) -> str:
    with pytest.raises(BuildError) as caught:
        render_pod(make_plan(), config(pod_spec=patches), **kw)
    return str(caught.value)


def _unreadable(path: str) -> str:
    raise FileNotFoundError(2, "No such file or directory", path)


@pytest.mark.parametrize(
    ("patches", "kw", "expected"),
    [
        (
            [{"name": "both", "patch": "{}", "patch_path": "/x.json"}],
            {},
            "'both': set either patch or patch_path",
        ),
        ([{"name": "none"}], {}, "'none': set patch"),
        (
            [{"name": "missing", "patch_path": "/nope.yaml"}],
            {"read_file": _unreadable},
            "'missing': cannot read patch_path '/nope.yaml': No such file or directory",
        ),
        ([{"patch": "containers: [unclosed"}], {}, "#1: the patch is neither JSON nor YAML"),
        (
            [{"name": "bad op", "patch": '[{"op": "remove", "path": "/nope"}]', "patch_type": "json"}],
            {},
            "'bad op' (json patch) cannot be applied: operation 1: /nope does not exist",
        ),
        ([{"name": "list", "patch": "[1, 2]", "patch_type": "merge"}], {}, "merge patch is an object"),
        (
            [{"name": "whole", "patch": '[{"op": "replace", "path": "", "value": 1}]', "patch_type": "json"}],
            {},
            "the result is not a PodSpec",
        ),
    ],
)
def test_patch_mistakes_fail_naming_the_entry(
    patches: list[dict[str, Any]], kw: dict[str, Any], expected: str
) -> None:
    assert expected in _patch_error(patches, **kw)

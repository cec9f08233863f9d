"""Loading: includes, inputs, extends, !reference, default:, stages and structural errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kuberunner.pipeline import InputValues, PipelineError, load_pipeline

ProjectFactory = Callable[..., Path]


def _error(project_dir: Path, **kwargs: Any) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        load_pipeline(project_dir, **kwargs)
    return info.value


def test_extends_merges_hashes_deeply_and_replaces_arrays(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            .base:
              stage: build
              variables: {A: base, B: base}
              tags: [one, two]
              script: [echo base]
            .middle:
              extends: .base
              variables: {B: middle}
            job:
              extends: [.middle]
              variables: {C: job}
              tags: [three]
            """
        }
    )
    job = load_pipeline(root).job("job")
    assert job.stage == "build"
    assert job.variables == {"A": "base", "B": "middle", "C": "job"}
    assert job.tags == ("three",)
    assert job.script == ("echo base",)


def test_extends_list_applies_parents_in_order(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            .a: {script: [from a], stage: build}
            .b: {script: [from b]}
            job: {extends: [.a, .b]}
            """
        }
    )
    job = load_pipeline(root).job("job")
    assert (job.script, job.stage) == (("from b",), "build")


def test_extends_of_unknown_job_names_it_with_location(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "job:\n  extends: .nope\n  script: [x]\n"})
    err = _error(root)
    assert "`.nope`" in err.message and "job" in err.message
    assert (err.file, err.line, err.column) == (".gitlab-ci.yml", 2, 12)


def test_extends_cycle_is_reported(project: ProjectFactory) -> None:
    root = project(
        {".gitlab-ci.yml": ".a: {extends: .b}\n.b: {extends: .a}\njob: {extends: .a, script: [x]}\n"}
    )
    assert "circular" in _error(root).message


def test_reference_resolves_nested_references_and_flattens_scripts(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            .setup:
              script: [echo setup]
            .more:
              script:
                - !reference [.setup, script]
                - echo more
            job:
              variables:
                X: !reference [.vars, variables, X]
              script:
                - !reference [.more, script]
                - echo job
            .vars:
              variables: {X: from-ref}
            """
        }
    )
    job = load_pipeline(root).job("job")
    assert job.script == ("echo setup", "echo more", "echo job")
    assert job.variables["X"] == "from-ref"


def test_reference_to_missing_key_points_at_the_tag(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": ".t: {script: [a]}\njob:\n  script: !reference [.t, before_script]\n"})
    err = _error(root)
    assert "!reference [.t, before_script]" in err.message
    assert (err.line, err.column) == (3, 11)


def test_script_nesting_deeper_than_ten_levels_is_rejected(project: ProjectFactory) -> None:
    nested = "x"
    for _ in range(11):
        nested = f"[{nested}]"
    root = project({".gitlab-ci.yml": f"job:\n  script: {nested}\n"})
    assert "up to 10 level deep" in _error(root).message


def test_includes_local_string_list_nested_and_wildcard(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            include:
              - ci/base.yml
              - local: /ci/jobs/*.yml
            job-main:
              script: [main]
            """,
            "ci/base.yml": "include: ci/nested.yml\nvariables: {FROM_BASE: '1'}\n",
            "ci/nested.yml": "nested-job: {script: [nested]}\n",
            "ci/jobs/a.yml": "job-a: {script: [a]}\n",
            "ci/jobs/b.yaml": "job-b: {script: [b]}\n",
            "ci/jobs/not-yaml.txt": "ignored: {script: [x]}\n",
        }
    )
    pipeline = load_pipeline(root)
    assert [j.name for j in pipeline.jobs] == ["nested-job", "job-a", "job-main"]
    assert pipeline.global_variables == {"FROM_BASE": "1"}


def test_including_file_overrides_included_job_keys(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": "include: base.yml\njob:\n  variables: {B: main}\n",
            "base.yml": "job:\n  script: [base]\n  variables: {A: base, B: base}\n",
        }
    )
    job = load_pipeline(root).job("job")
    assert job.script == ("base",)
    assert job.variables == {"A": "base", "B": "main"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing.yml", "cannot be found"),
        ("./base.yml", "cannot start with `./`"),
        ("../other/base.yml", "directory traversal"),
        ("base.txt", "YAML extension"),
        ("none/*.yml", "matches no file"),
    ],
)
def test_bad_local_includes_are_located_errors(project: ProjectFactory, path: str, message: str) -> None:
    root = project({".gitlab-ci.yml": f"include:\n  - local: '{path}'\n", "base.txt": "x"})
    err = _error(root)
    assert message in err.message
    assert (err.file, err.line) == (".gitlab-ci.yml", 2)


def test_include_paths_expand_variables(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "include: {local: $WHERE}\n", "ci/x.yml": "j: {script: [x]}\n"})
    assert [j.name for j in load_pipeline(root, variables={"WHERE": "ci/x.yml"}).jobs] == ["j"]


def test_remote_include_is_refused_with_advice(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "include: https://example.com/ci.yml\n"})
    assert "include:local" in _error(root).message


def test_include_with_inputs_interpolates_typed_values(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            include:
              - local: tpl.yml
                inputs: {name: web, replicas: 3, extra: [a, b]}
            """,
            "tpl.yml": """
            spec:
              inputs:
                name:
                replicas: {type: number, default: 1}
                extra: {type: array, default: []}
                flag: {type: boolean, default: true}
            ---
            deploy-$[[ inputs.name ]]:
              script:
                - echo $[[ inputs.name ]] x$[[ inputs.replicas ]] $[[ inputs.flag ]] $[[ inputs.extra ]]
                - $[[ inputs.extra ]]
            """,
        }
    )
    job = load_pipeline(root).job("deploy-web")
    assert job.script == ('echo web x3 true ["a","b"]', "a", "b")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("{}", "`name` input: required value has not been provided"),
        ("{name: 3}", "`name` input: provided value is not a string"),
        ("{name: ok, other: 1}", "unknown input arguments: other"),
        ("{name: bad}", "`bad` cannot be used because it is not in the list of allowed options"),
    ],
)
def test_input_validation_errors_name_the_input(project: ProjectFactory, inputs: str, message: str) -> None:
    root = project(
        {
            ".gitlab-ci.yml": f"include:\n  - local: tpl.yml\n    inputs: {inputs}\n",
            "tpl.yml": (
                "spec:\n  inputs:\n    name:\n      options: [ok, fine]\n---\n"
                "j:\n  script:\n    - echo $[[ inputs.name ]]\n"
            ),
        }
    )
    err = _error(root)
    assert message in err.message
    assert "tpl.yml" in err.message


def test_root_inputs_from_cli_and_components_from_templates(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            spec:
              inputs:
                env: {default: dev}
            ---
            include:
              - component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/deploy@$CI_COMMIT_SHA
            root-$[[ inputs.env ]]: {script: [x]}
            """,
            "templates/deploy.yml": """
            spec:
              inputs:
                env: {default: dev}
                replicas: {type: number, default: 1}
            ---
            deploy-$[[ inputs.env ]]-$[[ inputs.replicas ]]: {script: [x]}
            """,
        }
    )
    names = [j.name for j in load_pipeline(root, inputs=["env=prod", "deploy:replicas=4"]).jobs]
    assert names == ["deploy-prod-4", "root-prod"]


def test_scoped_file_inputs_beat_global_command_line_inputs(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": "include:\n  - component: gitlab.example.com/grp/app/c@main\n",
            "templates/c/template.yml": (
                "spec:\n  inputs:\n    n: {default: d}\n---\nj-$[[ inputs.n ]]: {script: [x]}\n"
            ),
            "inputs.yml": "c: {n: from-file}\n",
        }
    )
    cli = InputValues.from_args(["n=from-cli"])
    pipeline = load_pipeline(root, inputs=cli, inputs_file=root / "inputs.yml")
    assert [j.name for j in pipeline.jobs] == ["j-from-file"]


def test_component_of_another_project_is_refused(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "include:\n  - component: gitlab.com/other/proj/c@1.0\n"})
    assert "another project" in _error(root).message


def test_unknown_interpolation_key_is_an_error(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": (
                "spec:\n  inputs:\n    a: {default: x}\n---\nj:\n  script:\n    - echo $[[ inputs.b ]]\n"
            )
        }
    )
    assert "unknown interpolation key: `b`" in _error(root).message


def test_default_and_legacy_globals_are_inherited_unless_overridden(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            image: legacy:1
            before_script: [legacy-before]
            default:
              image: {name: "ruby:3", entrypoint: [""]}
              after_script: [cleanup]
              retry: 2
              timeout: 1h 30m
              interruptible: true
              tags: [docker]
            a: {script: [a]}
            b:
              image: alpine
              script: [b]
              inherit:
                default: [after_script]
            """
        }
    )
    pipeline = load_pipeline(root)
    a, b = pipeline.job("a"), pipeline.job("b")
    assert a.image is not None and (a.image.name, a.image.entrypoint) == ("ruby:3", ("",))
    assert (a.before_script, a.after_script) == (("legacy-before",), ("cleanup",))
    assert (a.retry.max, a.timeout, a.interruptible, a.tags) == (2, 5400, True, ("docker",))
    assert b.image is not None and b.image.name == "alpine"
    assert (b.before_script, b.after_script, b.retry.max, b.tags) == ((), ("cleanup",), 0, ())


def test_stages_default_and_pre_post_are_added(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j: {script: [x]}\n"})
    assert load_pipeline(root).stages == (".pre", "build", "test", "deploy", ".post")


def test_declared_stages_keep_their_order_between_pre_and_post(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "stages: [lint, .pre, ship]\nj: {stage: lint, script: [x]}\n"})
    assert load_pipeline(root).stages == (".pre", "lint", "ship", ".post")


def test_stage_must_be_declared(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "stages: [build]\nj:\n  stage: test\n  script: [x]\n"})
    err = _error(root)
    assert "`test` does not exist" in err.message and "build" in err.message
    assert (err.line, err.column) == (3, 10)


def test_several_problems_are_reported_at_once(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            a:
              scrpt: [x]
            b:
              when: sometimes
              script: [x]
            c:
              script: []
            """
        }
    )
    err = _error(root)
    text = str(err)
    assert "jobs:a config contains unknown keys: scrpt" in text
    assert "a must have script specified" in text
    assert "when `sometimes` is invalid" in text
    assert "c has empty script" in text
    assert [p.location.line for p in err.problems if p.location] == [3, 2, 5, 8]


def test_top_level_keyword_typo_is_an_invalid_job(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "variabels:\n  A: b\nj: {script: [x]}\n"})
    assert "variabels must have script specified" in str(_error(root))


def test_job_level_when_never_is_rejected(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j:\n  when: never\n  script: [x]\n"})
    assert "when:never can only be used in a rules section" in _error(root).message


def test_missing_pipeline_file_is_reported(project: ProjectFactory) -> None:
    root = project({"README": "x"})
    assert "could not be found" in str(_error(root))


def test_a_project_outside_git_has_no_commit_variables(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.mkdir()
    (path / ".gitlab-ci.yml").write_text("j: {script: [x]}\n")
    pipeline = load_pipeline(path)
    variables = pipeline.expanded_variables(pipeline.job("j"))
    assert not {"CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_COMMIT_BRANCH", "CI_COMMIT_TAG"} & set(variables)
    assert variables["CI_PROJECT_PATH"] == "local/plain"


def test_interpolation_functions(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            spec:
              inputs:
                name: {default: "my project"}
                path: {default: "$CI_PROJECT_PATH/x"}
            ---
            j:
              script:
                - echo $[[ inputs.name | truncate(0,2) ]]
                - echo $[[ inputs.name | posix_escape ]]
                - echo $[[ inputs.path | expand_vars ]]
            """
        }
    )
    assert load_pipeline(root).job("j").script == ("echo my", "echo 'my project'", "echo grp/app/x")


def test_too_many_interpolation_functions(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": (
                "spec:\n  inputs:\n    a: {default: x}\n---\nj:\n  script:\n"
                "    - echo $[[ inputs.a | posix_escape | posix_escape | posix_escape | posix_escape ]]\n"
            )
        }
    )
    assert "too many functions in interpolation block" in _error(root).message


def test_command_line_inputs_are_read_as_yaml() -> None:
    values = InputValues.from_args(["n=3", 's="3"', "l=[a, b]", "b=true", "comp:k=v", "t=a: b"])
    assert values.global_values == {"n": 3, "s": "3", "l": ["a", "b"], "b": True, "t": "a: b"}
    assert values.scoped == {"comp": {"k": "v"}}
    with pytest.raises(PipelineError, match="NAME=VALUE"):
        InputValues.from_args(["novalue"])


def test_include_rules_and_same_project_files(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            include:
              - local: a.yml
                rules:
                  - if: $CI_COMMIT_BRANCH == "feature/x"
              - local: b.yml
                rules:
                  - if: $CI_COMMIT_TAG
              - project: grp/app
                file: [c.yml]
            """,
            "a.yml": "a: {script: [x]}\n",
            "b.yml": "b: {script: [x]}\n",
            "c.yml": "c: {script: [x]}\n",
        }
    )
    assert [j.name for j in load_pipeline(root).jobs] == ["a", "c"]


def test_include_of_another_project_is_refused(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "include:\n  - project: other/lib\n    file: ci.yml\n"})
    assert "another project" in _error(root).message


def test_trigger_jobs_need_no_script_and_delayed_jobs_keep_start_in(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            child: {trigger: {include: child.yml}}
            later: {when: delayed, start_in: 30 minutes, script: [x]}
            """
        }
    )
    pipeline = load_pipeline(root)
    assert pipeline.job("child").trigger == {"include": "child.yml"}
    later = pipeline.job("later")
    assert (later.when, later.start_in) == ("delayed", "30 minutes")


def test_inherit_variables_false_drops_global_variables(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            variables: {G: g, H: h}
            a: {script: [x]}
            b: {script: [x], inherit: {variables: false}}
            c: {script: [x], inherit: {variables: [H]}}
            """
        }
    )
    pipeline = load_pipeline(root)
    assert pipeline.job("a").variables == {"G": "g", "H": "h"}
    assert pipeline.job("b").variables == {}
    assert pipeline.job("c").variables == {"H": "h"}


def test_variables_file_in_gitlab_ci_local_format(tmp_path: Path) -> None:
    from kuberunner.pipeline import read_variables_file

    path = tmp_path / "vars.yml"
    path.write_text("A: one\nB: {values: {'*': two, prod: three}}\nC: {type: file, values: {'*': content}}\n")
    variables = read_variables_file(path)
    assert {k: (v.value, v.file) for k, v in variables.items()} == {
        "A": ("one", False),
        "B": ("two", False),
        "C": ("content", True),
    }

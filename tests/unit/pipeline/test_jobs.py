"""Rules, only/except, needs, parallel, variables, scope selection, previews and payloads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kuberunner.pipeline import PipelineError, PipelineVariable, load_pipeline, to_payload

ProjectFactory = Callable[..., Path]


def _error(project_dir: Path, **kwargs: Any) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        load_pipeline(project_dir, **kwargs)
    return info.value


def _names(project_dir: Path, **kwargs: Any) -> list[str]:
    return [j.name for j in load_pipeline(project_dir, **kwargs).jobs]


# ------------------------------------------------------------------ rules


def test_rules_first_match_decides_when_allow_failure_and_variables(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            variables: {LEVEL: global}
            j:
              script: [x]
              variables: {LEVEL: job}
              rules:
                - if: $CI_COMMIT_BRANCH == "main"
                  when: never
                - if: $CI_COMMIT_BRANCH =~ /^feature\\//
                  when: manual
                  variables: {LEVEL: rule}
                - when: always
            """
        }
    )
    job = load_pipeline(root).job("j")
    assert (job.when, job.allow_failure, job.variables["LEVEL"]) == ("manual", False, "rule")


def test_job_level_manual_may_fail_by_default(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": (
                "j: {when: manual, script: [x]}\nk: {allow_failure: {exit_codes: [3]}, script: [x]}\n"
            )
        }
    )
    pipeline = load_pipeline(root)
    assert pipeline.job("j").allow_failure is True
    k = pipeline.job("k")
    assert (k.allow_failure, k.allow_failure_exit_codes) == (False, (3,))


def test_no_matching_rule_leaves_the_job_out(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            kept: {script: [x], rules: [{if: $CI_COMMIT_BRANCH}]}
            dropped: {script: [x], rules: [{if: $CI_COMMIT_TAG}]}
            """
        }
    )
    pipeline = load_pipeline(root)
    assert [j.name for j in pipeline.jobs] == ["kept"]
    assert pipeline.excluded == ("dropped",)


def test_rules_exists_globs_the_project_with_variables(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            variables: {DIR: src}
            yes-file: {script: [x], rules: [{exists: [Dockerfile]}]}
            yes-deep: {script: [x], rules: [{exists: {paths: ["$DIR/**/*.py"]}}]}
            no-file: {script: [x], rules: [{exists: [missing.txt]}]}
            """,
            "Dockerfile": "FROM x\n",
            "src/pkg/mod.py": "",
        }
    )
    assert _names(root) == ["yes-file", "yes-deep"]


def test_rules_changes_count_as_true_locally(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j: {script: [x], rules: [{changes: [nothing/**]}]}\n"})
    assert _names(root) == ["j"]


def test_rules_can_replace_needs(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            a: {stage: build, script: [x]}
            b: {stage: build, script: [x]}
            c:
              script: [x]
              needs: [a]
              rules:
                - if: $CI_COMMIT_BRANCH
                  needs: [b]
            """
        }
    )
    job = load_pipeline(root).job("c")
    assert job.needs is not None and [n.job for n in job.needs] == ["b"]


def test_invalid_rule_expression_is_located(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j:\n  script: [x]\n  rules:\n    - if: $A ==\n"})
    err = _error(root)
    assert "rules:if `$A ==` is invalid" in err.message
    assert err.line == 4


def test_empty_rules_are_rejected(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j: {script: [x], rules: []}\n"})
    assert "rules: config can't be blank" in _error(root).message


@pytest.mark.parametrize(
    ("only_except", "kept"),
    [
        ("only: [branches]", True),
        ("only: [tags]", False),
        ("only: [/^feature\\/.*/]", True),
        ("only: [main]", False),
        ("except: [/^feature/]", False),
        ("only: {variables: [$CI_COMMIT_BRANCH == 'feature/x']}", True),
        ("only: {refs: [branches], variables: [$NOPE]}", False),
        ("except: {refs: [branches], variables: [$NOPE]}", True),
        ("only: [schedules]", False),
    ],
)
def test_only_and_except(project: ProjectFactory, only_except: str, kept: bool) -> None:
    root = project({".gitlab-ci.yml": f"j:\n  script: [x]\n  {only_except}\n"})
    assert _names(root) == (["j"] if kept else [])


def test_tag_pipelines_set_ci_commit_tag_and_match_only_tags(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j: {script: [x], only: [tags]}\n"}, tag="v1.0.0")
    pipeline = load_pipeline(root)
    assert _names(root) == ["j"]
    assert pipeline.predefined["CI_COMMIT_TAG"] == "v1.0.0"
    assert "CI_COMMIT_BRANCH" not in pipeline.predefined


def test_workflow_rules_add_variables_or_stop_the_pipeline(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            workflow:
              rules:
                - if: $CI_PIPELINE_SOURCE == "merge_request_event"
                - if: $CI_COMMIT_BRANCH == "feature/x"
                  variables: {DEPLOY: staging}
            variables: {DEPLOY: none}
            j: {script: [x], environment: {name: $DEPLOY}}
            """
        }
    )
    pipeline = load_pipeline(root)
    assert pipeline.created
    job = pipeline.job("j")
    assert job.environment is not None and job.environment.name == "staging"

    stopped = load_pipeline(root, variables={"CI_COMMIT_BRANCH": "other"})
    assert not stopped.created
    with pytest.raises(PipelineError, match="workflow:rules"):
        stopped.select()


# ------------------------------------------------------------------ needs


def test_needs_resolve_to_instances_and_keep_options(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            build: {stage: build, script: [x], parallel: 2}
            lint: {stage: build, script: [x]}
            test:
              script: [x]
              needs:
                - build
                - {job: lint, artifacts: false}
                - {job: ghost, optional: true}
                - {job: other, pipeline: "123"}
            """
        }
    )
    job = load_pipeline(root).job("test")
    assert job.needs is not None
    assert [(n.job, n.instances, n.artifacts) for n in job.needs] == [
        ("build", ("build 1/2", "build 2/2"), True),
        ("lint", ("lint",), False),
        ("other", (), True),
    ]


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "a: {stage: test, script: [x]}\nb: {stage: build, needs: [a], script: [x]}\n",
            "needs: [a] for b is in a future stage",
        ),
        ("b: {needs: [nope], script: [x]}\n", "needs: [nope] for b could not be found"),
        ("b: {needs: [b], script: [x]}\n", "circular dependencies"),
        (
            "a: {needs: [b], script: [x]}\nb: {needs: [a], script: [x]}\n",
            "circular dependencies: a -> b -> a",
        ),
        ("b: {needs: a, script: [x]}\na: {script: [x]}\n", "b needs: must be an array"),
        ("b: {needs: [~], script: [x]}\n", "b needs: entries cannot be empty"),
        (
            "a: {script: [x], rules: [{when: never}]}\nb: {needs: [a], script: [x]}\n",
            "b needs a, but rules/only/except leave a out",
        ),
        (
            "a: {stage: build, script: [x]}\nc: {stage: build, script: [x]}\n"
            "b: {needs: [a], dependencies: [c], script: [x]}\n",
            "doesn't fully contain dependencies: 'c'",
        ),
        ("b: {dependencies: [zzz], script: [x]}\n", "dependencies: [zzz] for b cannot be found"),
    ],
)
def test_needs_and_dependencies_errors(project: ProjectFactory, yaml: str, message: str) -> None:
    root = project({".gitlab-ci.yml": yaml})
    assert message in str(_error(root))


def test_optional_need_on_excluded_job_is_dropped(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": (
                "a: {script: [x], rules: [{when: never}]}\n"
                "b: {needs: [{job: a, optional: true}], script: [x]}\n"
            )
        }
    )
    job = load_pipeline(root).job("b")
    assert job.needs == ()


def test_needs_parallel_matrix_selects_permutations(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            build:
              stage: build
              script: [x]
              parallel:
                matrix:
                  - {OS: [linux, mac], ARCH: [amd64, arm64]}
            test:
              script: [x]
              parallel:
                matrix:
                  - {OS: [linux, mac]}
              needs:
                - job: build
                  parallel:
                    matrix:
                      - {OS: "$[[ matrix.OS ]]", ARCH: amd64}
            """
        }
    )
    pipeline = load_pipeline(root)
    assert [j.name for j in pipeline.jobs][:2] == ["build: [linux, amd64]", "build: [linux, arm64]"]
    mac = pipeline.job("test: [mac]")
    assert mac.needs is not None and mac.needs[0].instances == ("build: [mac, amd64]",)
    assert mac.matrix_variables == {"OS": "mac"} and (mac.node_index, mac.node_total) == (2, 2)


def test_parallel_names_and_gitlab_ci_local_spellings(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": (
                "t: {script: [x], parallel: 3}\nm: {script: [x], parallel: {matrix: [{A: [1, 2], B: z}]}}\n"
            )
        }
    )
    pipeline = load_pipeline(root)
    assert [j.name for j in pipeline.jobs] == ["t 1/3", "t 2/3", "t 3/3", "m: [1, z]", "m: [2, z]"]
    assert pipeline.job("t: [2/3]").name == "t 2/3"
    assert pipeline.job("m: [2,z]").name == "m: [2, z]"
    assert pipeline.job("m: [1, z]").aliases == ("m: [1,z]",)


# ------------------------------------------------------------------ variables


def test_variable_precedence_and_expansion(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            variables:
              G: {value: global, description: "shown in the UI"}
              CI_PIPELINE_ID: yaml-wins-over-predefined
              RAW: {value: "$G-literal", expand: false}
              COMBINED: "$G/$CI_COMMIT_REF_SLUG"
            j:
              variables: {J: "${G}-job", P: from-yaml}
              script: [x]
            """
        }
    )
    pipeline = load_pipeline(root, variables={"C": "cli"}, project_variables={"P": "project"})
    job = pipeline.job("j")
    values = pipeline.expanded_variables(job)
    assert values["G"] == "global"
    assert values["J"] == "global-job"
    assert values["CI_PIPELINE_ID"] == "yaml-wins-over-predefined"
    assert values["RAW"] == "$G-literal"
    assert values["COMBINED"] == "global/feature-x"
    assert values["P"] == "project"
    assert values["C"] == "cli"
    assert job.raw_variables == frozenset({"RAW"})


def test_unset_variables_disappear_everywhere(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j: {variables: {A: a}, script: [x]}\n"})
    pipeline = load_pipeline(root, unset_variables=["A", "CI_COMMIT_SHA"])
    values = pipeline.expanded_variables(pipeline.job("j"))
    assert "A" not in values and "CI_COMMIT_SHA" not in values


def test_predefined_variables_come_from_git(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j: {script: [x], parallel: 2, environment: Review App}\n"})
    pipeline = load_pipeline(root)
    values = pipeline.expanded_variables(pipeline.job("j 2/2"))
    assert values["CI_COMMIT_BRANCH"] == values["CI_COMMIT_REF_NAME"] == "feature/x"
    assert values["CI_COMMIT_REF_SLUG"] == "feature-x"
    assert values["CI_DEFAULT_BRANCH"] == "main"
    assert values["CI_PROJECT_PATH"] == "grp/app"
    assert (values["CI_PROJECT_NAME"], values["CI_PROJECT_NAMESPACE"]) == ("app", "grp")
    assert values["CI_SERVER_HOST"] == "gitlab.example.com"
    assert values["CI_PROJECT_URL"] == "https://gitlab.example.com/grp/app"
    assert values["CI_COMMIT_TITLE"] == "Add pipeline"
    assert values["CI_COMMIT_MESSAGE"] == "Add pipeline\n\nWith a body line."
    assert values["CI_COMMIT_SHORT_SHA"] == values["CI_COMMIT_SHA"][:8]
    assert values["GITLAB_USER_LOGIN"] == "jane.doe"
    assert values["GITLAB_USER_NAME"] == "Jane Doe"
    assert values["CI_COMMIT_AUTHOR"] == "Jane Doe <jane.doe@example.com>"
    assert (values["CI_NODE_INDEX"], values["CI_NODE_TOTAL"]) == ("2", "2")
    assert (values["CI_JOB_NAME"], values["CI_JOB_NAME_SLUG"]) == ("j 2/2", "j-2-2")
    assert values["CI_ENVIRONMENT_NAME"] == "Review App"
    assert values["CI_ENVIRONMENT_SLUG"].startswith("review-app-")
    assert values["CI_PIPELINE_SOURCE"] == "push"


def test_invalid_variables_are_reported_per_job(project: ProjectFactory) -> None:
    root = project(
        {".gitlab-ci.yml": "a: {variables: true, script: [x]}\nb: {variables: [1], script: [x]}\n"}
    )
    text = str(_error(root))
    assert "jobs:a variables config should be a hash" in text
    assert "jobs:b variables config should be a hash" in text


# ------------------------------------------------------------------ shapes


def test_keyword_shapes_are_normalised(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            j:
              script: echo one
              image: {name: "node:20", pull_policy: if-not-present}
              services:
                - postgres:16
                - {name: redis, alias: cache, command: [redis-server], variables: {X: 1}}
              artifacts:
                paths: [dist/]
                exclude: [dist/*.map]
                when: always
                expire_in: 1 week
                reports: {dotenv: build.env, junit: [a.xml, b.xml]}
              cache:
                - {key: deps, paths: [node_modules/], policy: pull}
                - {key: {files: [package.json], prefix: npm}, paths: [.npm/]}
              retry: {max: 2, when: [runner_system_failure], exit_codes: 137}
              timeout: 2h 15m
              coverage: '/Total: (\\d+)%/'
              resource_group: prod
              environment: {name: prod, url: "https://$CI_PROJECT_NAME.example.com", action: prepare}
            """,
            "package.json": "{}\n",
        }
    )
    job = load_pipeline(root).job("j")
    assert job.script == ("echo one",)
    assert job.image is not None and job.image.pull_policy == ("if-not-present",)
    assert [(s.name, s.alias, s.command, s.variables) for s in job.services] == [
        ("postgres:16", "", None, {}),
        ("redis", "cache", ("redis-server",), {"X": "1"}),
    ]
    assert job.artifacts is not None
    assert (job.artifacts.paths, job.artifacts.exclude, job.artifacts.when) == (
        ("dist/",),
        ("dist/*.map",),
        "always",
    )
    assert job.artifacts.reports == {"dotenv": ("build.env",), "junit": ("a.xml", "b.xml")}
    assert job.cache[0].policy == "pull"
    assert job.cache[1].key.startswith("npm-") and len(job.cache[1].key) == 4 + 40
    assert (job.retry.max, job.retry.when, job.retry.exit_codes) == (2, ("runner_system_failure",), (137,))
    assert job.timeout == 8100
    assert job.coverage == "/Total: (\\d+)%/"
    assert job.environment is not None
    assert (job.environment.url, job.environment.action) == ("https://app.example.com", "prepare")


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        (
            "{key: {files: [a, b, c]}, paths: [x]}",
            "cache:key:files should be an array of one or two file paths. Got 3",
        ),
        ("{key: k, paths: folder}", "j cache[0].paths must be array"),
        ("{key: k, paths: [x], policy: sometimes}", "cache:policy `sometimes`"),
    ],
)
def test_cache_errors(project: ProjectFactory, cache: str, message: str) -> None:
    root = project({".gitlab-ci.yml": f"j:\n  script: [x]\n  cache: {cache}\n"})
    assert message in str(_error(root))


def test_artifact_report_of_wrong_type_is_rejected(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "j:\n  script: [x]\n  artifacts: {reports: {junit: 3}}\n"})
    assert "reports:junit should be a string or an array of strings" in str(_error(root))


# ------------------------------------------------------------------ scope


SCOPE_YAML = """
stages: [build, test, deploy]
setup: {stage: .pre, script: [x], when: manual}
build: {stage: build, script: [x]}
approve: {stage: build, script: [x], when: manual}
unit: {stage: test, script: [x], needs: [build]}
gated: {stage: test, script: [x], needs: [approve]}
deploy: {stage: deploy, script: [x]}
"""


def test_whole_pipeline_refuses_needs_on_untriggered_manual_jobs(project: ProjectFactory) -> None:
    pipeline = load_pipeline(project({".gitlab-ci.yml": SCOPE_YAML}))
    with pytest.raises(PipelineError, match="approve is when:manual, its needed by gated"):
        pipeline.select()
    scoped = pipeline.select(manual=["approve"])
    assert scoped.names == ["setup", "build", "approve", "unit", "gated", "deploy"]
    states = {s.job.name: s.state for s in scoped.jobs}
    assert states["setup"] == "manual" and states["approve"] == "pending"
    deploy = scoped.get("deploy")
    assert deploy is not None and deploy.waits_for == ("build", "approve", "unit", "gated")


def test_named_jobs_with_needs_bring_their_closure(project: ProjectFactory) -> None:
    pipeline = load_pipeline(project({".gitlab-ci.yml": SCOPE_YAML}))
    assert pipeline.select(["unit"]).names == ["unit"]
    assert pipeline.select(["unit"], with_needs=True).names == ["build", "unit"]
    # a job without needs: brings the earlier stages' jobs that can run
    # (not gated: it needs an untriggered manual job)
    assert pipeline.select(["deploy"], with_needs=True).names == ["build", "unit", "deploy"]
    with pytest.raises(PipelineError, match="approve is when:manual"):
        pipeline.select(["gated"], with_needs=True)
    assert pipeline.select(["gated"], with_needs=True, manual=["approve"]).names == ["approve", "gated"]


def test_named_manual_job_runs_and_stage_selection(project: ProjectFactory) -> None:
    pipeline = load_pipeline(project({".gitlab-ci.yml": SCOPE_YAML}))
    only = pipeline.select(["setup"])
    assert [(s.job.name, s.state) for s in only.jobs] == [("setup", "pending")]
    assert pipeline.select(stage="build").names == ["build", "approve"]
    with pytest.raises(PipelineError, match="`nope` could not be found"):
        pipeline.select(["nope"])
    with pytest.raises(PipelineError, match="stage `nope` does not exist"):
        pipeline.select(stage="nope")


# ------------------------------------------------------------------ views and payload


def test_preview_and_list_rows(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            variables: {V: {value: "1", description: d}}
            default: {before_script: [b]}
            .t: {stage: build}
            j:
              extends: .t
              image: alpine
              script: s
              cache: {key: k, paths: [p]}
              environment: {name: review/$CI_COMMIT_REF_SLUG}
            k: {script: [x], needs: [j], allow_failure: {exit_codes: [2]}}
            """
        }
    )
    pipeline = load_pipeline(root)
    assert pipeline.preview() == {
        "stages": [".pre", "build", "test", "deploy", ".post"],
        "variables": {"V": "1"},
        "j": {
            "stage": "build",
            "image": {"name": "alpine"},
            "script": ["s"],
            "cache": [{"key": "k", "paths": ["p"], "policy": "pull-push", "when": "on_success"}],
            "environment": {"name": "review/$CI_COMMIT_REF_SLUG"},
            "before_script": ["b"],
        },
        "k": {"script": ["x"], "needs": ["j"], "allow_failure": {"exit_codes": [2]}, "before_script": ["b"]},
    }
    assert pipeline.list_rows() == [
        {
            "name": "j",
            "stage": "build",
            "when": "on_success",
            "allow_failure": False,
            "environment": "review/feature-x",
            "needs": None,
        },
        {
            "name": "k",
            "stage": "test",
            "when": "on_success",
            "allow_failure": [2],
            "environment": None,
            "needs": ["j"],
        },
    ]


def test_payload_has_gitlab_shape_and_hides_the_token(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            j:
              image: {name: "python:3.12", entrypoint: [""]}
              services: [{name: "postgres:16", alias: db}]
              before_script: [pip install .]
              script: [pytest]
              after_script: [echo done]
              variables: {RAW: {value: "$X", expand: false}}
              artifacts: {paths: [out/], reports: {dotenv: vars.env}}
              cache: {key: pip, paths: [.pip/]}
              timeout: 10m
            """
        }
    )
    pipeline = load_pipeline(root, project_variables={"KUBECONFIG": PipelineVariable("cfg", file=True)})
    job = pipeline.job("j")
    payload = to_payload(job, pipeline, job_id=42, project_dir=root, token="glcbt-secret")
    assert [(s.name, s.script, s.when) for s in payload.steps] == [
        ("script", ["pip install .", "pytest"], "on_success"),
        ("after_script", ["echo done"], "always"),
    ]
    assert payload.steps[0].timeout == 600 and payload.runner_info.timeout == 600
    variables = {v.key: v for v in payload.variables}
    assert variables["CI_JOB_ID"].value == "42"
    assert variables["CI_JOB_TOKEN"].masked and variables["CI_JOB_TOKEN"].value == "glcbt-secret"
    assert variables["RAW"].raw and not variables["RAW"].masked
    assert variables["KUBECONFIG"].file
    assert payload.image is not None and payload.image.entrypoint == [""]
    assert payload.services[0].aliases == ["db"]
    assert [(a.artifact_type, a.paths, a.artifact_format) for a in payload.artifacts] == [
        ("archive", ["out/"], "zip"),
        ("dotenv", ["vars.env"], "gzip"),
    ]
    assert (payload.cache[0].key, payload.cache[0].paths) == ("pip", [".pip/"])
    assert payload.git_info.ref == "feature/x" and payload.git_info.sha == pipeline.git.sha
    assert payload.job_info.project_full_path == "grp/app"
    # the token only travels as the masked CI_JOB_TOKEN and the payload's repr-hidden token field
    assert [v.key for v in payload.variables if v.value == "glcbt-secret"] == ["CI_JOB_TOKEN"]
    assert payload.token == "glcbt-secret"


def test_needs_errors_point_at_the_needs_line(project: ProjectFactory) -> None:
    root = project({".gitlab-ci.yml": "a:\n  script: [x]\n  needs:\n    - nope\n"})
    err = _error(root)
    assert (err.file, err.line, err.column) == (".gitlab-ci.yml", 4, 5)


def test_rules_allow_failure_exit_codes_and_interruptible(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            j:
              script: [x]
              rules:
                - allow_failure: {exit_codes: [42, 43]}
                  interruptible: true
            """
        }
    )
    job = load_pipeline(root).job("j")
    assert (job.allow_failure, job.allow_failure_exit_codes, job.interruptible) == (False, (42, 43), True)


def test_unknown_job_lookup_is_an_error(project: ProjectFactory) -> None:
    pipeline = load_pipeline(project({".gitlab-ci.yml": "t: {script: [x], parallel: 2}\n"}))
    with pytest.raises(PipelineError, match="`t` could not be found"):
        pipeline.job("t")
    assert pipeline.select(["t"]).names == ["t 1/2", "t 2/2"]
    assert pipeline.select(["t: [2/2]"]).names == ["t 2/2"]


def test_rules_see_job_matrix_and_environment_variables(project: ProjectFactory) -> None:
    root = project(
        {
            ".gitlab-ci.yml": """
            m:
              script: [x]
              parallel:
                matrix:
                  - {PROVIDER: aws, SKIP: "false"}
                  - {PROVIDER: ovh, SKIP: "true"}
              rules: [{if: $SKIP == "false"}]
            j:
              script: [x]
              variables: {RUN: "yes"}
              rules: [{if: $RUN == "yes"}]
            e:
              script: [x]
              environment: {name: dev}
              rules: [{if: $CI_ENVIRONMENT_NAME == "dev"}]
            """
        }
    )
    assert _names(root) == ["m: [aws, false]", "j", "e"]

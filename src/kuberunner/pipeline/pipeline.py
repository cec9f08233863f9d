"""The local pipeline: :func:`load_pipeline` and :class:`Pipeline`.

Loading reads the file and its includes, resolves ``!reference``/``extends``/
``default:``, evaluates ``workflow:rules`` and each job's ``rules``/``only``/
``except`` with the predefined variables of the local repository, expands
``parallel`` and checks ``needs``/``dependencies`` across jobs, reporting every
independent problem at once with its file, line and column.

Local-run choices (documented GitLab behaviour where it exists):
``rules:changes``/``only:changes`` count as true, as GitLab does when there is no
previous pipeline to compare with; ``CI_PIPELINE_SOURCE`` is ``push``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kuberunner.pipeline.errors import Location, PipelineError, Problem
from kuberunner.pipeline.gitdata import GitData, read_git_data
from kuberunner.pipeline.globs import project_files
from kuberunner.pipeline.inputs import InputValues
from kuberunner.pipeline.jobs import (
    JobShape,
    default_allow_failure,
    ensure_when,
    environment_spec,
    evaluate_rules,
    matrix_instances,
    only_except,
    parse_job_shape,
    parse_variables,
)
from kuberunner.pipeline.loader import LoadContext, load_root
from kuberunner.pipeline.model import Need, PipelineJob, PipelineVariable
from kuberunner.pipeline.resolve import ResolvedConfig, resolve_config
from kuberunner.pipeline.variables import (
    expand,
    expand_all,
    job_predefined_variables,
    predefined_variables,
)
from kuberunner.pipeline.yamlio import LMap, LSeq, load_documents, plain

__all__ = ["Pipeline", "ScopedJob", "ScopedJobs", "load_pipeline", "read_variables_file"]

_MATRIX_EXPR = re.compile(r"\$\[\[\s*matrix\.([A-Za-z0-9_-]+)\s*\]\]")


@dataclass(frozen=True)
class ScopedJob:
    """A job in scope for a local run and how it starts.

    ``state`` is ``pending`` (runs once ``waits_for`` are done, subject to its ``when``) or
    ``manual`` (a ``when: manual`` job nobody triggered: it is reported, not run).
    """

    job: PipelineJob
    state: Literal["pending", "manual"]
    waits_for: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScopedJobs:
    """The jobs of one local run, in pipeline order."""

    jobs: tuple[ScopedJob, ...]

    @property
    def names(self) -> list[str]:
        return [s.job.name for s in self.jobs]

    def get(self, name: str) -> ScopedJob | None:
        return next((s for s in self.jobs if s.job.name == name), None)


@dataclass
class Pipeline:
    """A pipeline file resolved for the local repository."""

    project_dir: Path
    file: str
    stages: tuple[str, ...]
    #: the jobs rules/only/except keep, in file order (``parallel`` expanded).
    jobs: tuple[PipelineJob, ...]
    git: GitData
    predefined: dict[str, str]
    #: YAML global variables (values only) after workflow:rules variables.
    global_variables: dict[str, str]
    project_variables: dict[str, PipelineVariable] = field(default_factory=dict)
    cli_variables: dict[str, PipelineVariable] = field(default_factory=dict)
    unset_variables: frozenset[str] = frozenset()
    #: False when ``workflow:rules`` decide GitLab would not create this pipeline.
    created: bool = True
    workflow_reason: str = ""
    #: base names of jobs that rules/only/except leave out of this pipeline.
    excluded: tuple[str, ...] = ()
    pipeline_id: int = 1
    _config: ResolvedConfig | None = field(default=None, repr=False)
    _files: list[str] | None = field(default=None, repr=False)

    def project_files(self) -> list[str]:
        """The project's files (for ``rules:exists``), listed once per pipeline."""
        if self._files is None:
            self._files = project_files(self.project_dir)
        return self._files

    # ----------------------------------------------------------------- lookups
    def job(self, name: str) -> PipelineJob:
        """The job instance called ``name`` (either spelling :meth:`PipelineJob.is_named` accepts)."""
        for job in self.jobs:
            if job.is_named(name):
                return job
        raise PipelineError(f"job `{name}` could not be found in {self.file}")

    def stage_index(self, job: PipelineJob) -> int:
        return self.stages.index(job.stage)

    # --------------------------------------------------------------- variables
    def job_variables(
        self, job: PipelineJob, extra_predefined: Mapping[str, PipelineVariable] | None = None
    ) -> list[tuple[str, PipelineVariable, bool]]:
        """Every variable of ``job`` as ``(key, variable, public)``, lowest precedence first, one per key.

        Order (GitLab's precedence, lowest first): predefined (plus ``extra_predefined``,
        e.g. ``CI_JOB_ID``), YAML (global, workflow, job, matrix, rules), project
        variables, ``--variable``.
        """
        layers: dict[str, tuple[PipelineVariable, bool]] = {}
        for key, value in self.predefined.items():
            layers[key] = (PipelineVariable(value), True)
        for key, value in _job_predefined(job).items():
            layers[key] = (PipelineVariable(value), True)
        for key, var in (extra_predefined or {}).items():
            layers[key] = (var, not var.masked)
        for key, value in job.variables.items():
            layers[key] = (PipelineVariable(value, raw=key in job.raw_variables), True)
        for key, var in self.project_variables.items():
            layers[key] = (var, False)
        for key, var in self.cli_variables.items():
            layers[key] = (var, False)
        return [(k, v, public) for k, (v, public) in layers.items() if k not in self.unset_variables]

    def expanded_variables(self, job: PipelineJob) -> dict[str, str]:
        """The job's variables with references expanded (what a shell would see; raw ones kept)."""
        items = self.job_variables(job)
        values = {k: v.value for k, v, _ in items}
        raw = frozenset(k for k, v, _ in items if v.raw)
        return expand_all(values, raw)

    # --------------------------------------------------------------- views
    def preview(self) -> dict[str, Any]:
        """The expanded configuration in gitlab-ci-local's ``--preview`` shape (plain data)."""
        assert self._config is not None
        out: dict[str, Any] = {"stages": list(self.stages)}
        raw_globals = self._config.variables
        if raw_globals:
            out["variables"] = {
                k: (v.get("value") if isinstance(v, dict) else v) for k, v in plain(raw_globals).items()
            }
        for name, cfg in self._config.jobs.items():
            out[name] = _preview_job(cfg)
        return out

    def list_rows(self) -> list[dict[str, Any]]:
        """One row per job (rules-excluded jobs left out), sorted by stage: name, stage, when,
        allow_failure, environment and needs (``None`` when the job has no ``needs:``)."""
        rows = []
        for job in sorted(self.jobs, key=self.stage_index):
            allow: bool | list[int] = (
                list(job.allow_failure_exit_codes) if job.allow_failure_exit_codes else job.allow_failure
            )
            rows.append(
                {
                    "name": job.name,
                    "stage": job.stage,
                    "when": job.when,
                    "allow_failure": allow,
                    "environment": job.environment.name if job.environment else None,
                    "needs": None if job.needs is None else [n.job for n in job.needs if n.is_local],
                }
            )
        return rows

    # --------------------------------------------------------------- scope
    def select(
        self,
        job_names: Sequence[str] = (),
        *,
        with_needs: bool = False,
        manual: Collection[str] = (),
        stage: str | None = None,
    ) -> ScopedJobs:
        """The jobs a local run covers and how each starts.

        * no names, no stage: the whole pipeline; untriggered ``when: manual`` jobs are
          ``manual``; a job that ``needs`` one of them is an error (it could never start).
        * ``stage``: the jobs of that stage.
        * names: those jobs (a base name covers all its ``parallel`` instances), run as if
          triggered; with ``with_needs`` also their ``needs:`` closure, or for a job without
          ``needs:`` the jobs of earlier stages that can run.
        """
        if not self.created:
            raise PipelineError(self.workflow_reason)
        if job_names and stage is not None:
            raise PipelineError("give job names or a stage, not both")

        def is_triggered(job: PipelineJob) -> bool:
            return any(job.matches(m) for m in manual)

        named: list[PipelineJob] = []
        for wanted in job_names:
            found = [j for j in self.jobs if j.matches(wanted)]
            if not found:
                if wanted in self.excluded:
                    raise PipelineError(
                        f"job `{wanted}` could not be found: its rules/only/except leave it out "
                        "of this pipeline"
                    )
                raise PipelineError(
                    f"job `{wanted}` could not be found (jobs: "
                    f"{', '.join(j.name for j in self.jobs) or 'none'})"
                )
            named.extend(j for j in found if j not in named)

        if named:
            chosen = {j.name for j in named}
            scope_set = {j.name for j in named}
            if with_needs:
                scope_set |= self._closure(named, lambda j: j.name in chosen or is_triggered(j))
            scope = [j for j in self.jobs if j.name in scope_set]
            triggered = {j.name for j in scope if j.name in chosen or is_triggered(j)}
        else:
            if stage is not None:
                if stage not in self.stages:
                    raise PipelineError(f"stage `{stage}` does not exist (stages: {', '.join(self.stages)})")
                scope = [j for j in self.jobs if j.stage == stage]
            else:
                scope = list(self.jobs)
            triggered = {j.name for j in scope if is_triggered(j)}

        def state(job: PipelineJob) -> Literal["pending", "manual"]:
            return "manual" if job.when == "manual" and job.name not in triggered else "pending"

        states = {j.name: state(j) for j in scope}
        names = set(states)
        for job in scope:
            if states[job.name] != "pending" or job.needs is None:
                continue
            for need in job.needs:
                for target in need.instances:
                    if target in names and states[target] == "manual":
                        raise _manual_needed(target, job.name)
        scoped = []
        for job in scope:
            if job.needs is not None:
                waits = [t for n in job.needs for t in n.instances if t in names]
            else:
                index = self.stage_index(job)
                waits = [o.name for o in scope if self.stage_index(o) < index and states[o.name] == "pending"]
            scoped.append(ScopedJob(job=job, state=states[job.name], waits_for=tuple(dict.fromkeys(waits))))
        return ScopedJobs(tuple(scoped))

    def _closure(self, start: list[PipelineJob], triggered: Callable[[PipelineJob], bool]) -> set[str]:
        by_name = {j.name: j for j in self.jobs}
        runnable: dict[str, bool] = {}

        def can_run(job: PipelineJob, trail: frozenset[str]) -> bool:
            """Whether every job ``job`` transitively waits for can start (no untriggered manual job)."""
            if job.name in runnable:
                return runnable[job.name]
            if job.name in trail:
                return True
            ok = True
            for dep in self._predecessors(job, by_name):
                if dep.when == "manual" and not triggered(dep):
                    if job.needs is not None:
                        ok = False
                        break
                    continue
                if not can_run(dep, trail | {job.name}):
                    ok = False
                    break
            runnable[job.name] = ok
            return ok

        result: set[str] = set()
        work = list(start)
        while work:
            job = work.pop()
            for dep in self._predecessors(job, by_name):
                if dep.name in result:
                    continue
                untriggered_manual = dep.when == "manual" and not triggered(dep)
                if job.needs is not None:
                    if untriggered_manual:
                        raise _manual_needed(dep.name, job.name)
                elif untriggered_manual or not can_run(dep, frozenset()):
                    continue
                result.add(dep.name)
                work.append(dep)
        return result

    def _predecessors(self, job: PipelineJob, by_name: Mapping[str, PipelineJob]) -> list[PipelineJob]:
        if job.needs is not None:
            return [by_name[t] for n in job.needs for t in n.instances if t in by_name]
        index = self.stage_index(job)
        return [o for o in self.jobs if self.stage_index(o) < index]


def _manual_needed(target: str, needer: str) -> PipelineError:
    return PipelineError(
        f"{target} is when:manual, its needed by {needer}, and not specified in --manual "
        f"(trigger it with --manual '{target}')"
    )


def _job_predefined(job: PipelineJob) -> dict[str, str]:
    variables = job_predefined_variables(
        name=job.name,
        stage=job.stage,
        node_index=job.node_index,
        node_total=job.node_total,
        manual=job.when == "manual",
    )
    if job.environment is not None:
        env = job.environment
        variables["CI_ENVIRONMENT_NAME"] = env.name
        variables["CI_ENVIRONMENT_SLUG"] = env.slug
        variables["CI_ENVIRONMENT_ACTION"] = env.action
        variables["CI_ENVIRONMENT_TIER"] = env.tier
        if env.url is not None:
            variables["CI_ENVIRONMENT_URL"] = env.url
    return variables


def _preview_job(cfg: LMap) -> dict[str, Any]:
    out: dict[str, Any] = plain(cfg)
    if "image" in out:
        image = out["image"]
        out["image"] = {"name": image} if isinstance(image, str) else image
    if "services" in out and isinstance(out["services"], list):
        out["services"] = [{"name": s} if isinstance(s, str) else s for s in out["services"]]
    if "cache" in out:
        caches = out["cache"] if isinstance(out["cache"], list) else [out["cache"]]
        normal = []
        for c in caches:
            if isinstance(c, dict):
                c = {**c, "policy": c.get("policy", "pull-push"), "when": c.get("when", "on_success")}
            normal.append(c)
        out["cache"] = normal
    if isinstance(out.get("variables"), dict):
        out["variables"] = {
            k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in out["variables"].items()
        }
    return out


def read_variables_file(path: Path) -> dict[str, PipelineVariable]:
    """Read project-level variables from a YAML file (gitlab-ci-local's variables file format).

    Each key is a plain value, or ``{type: file|variable, values: {ENV_GLOB: value}}`` of
    which the ``"*"`` entry applies (a local run deploys to no environment).
    """
    docs = load_documents(path.read_text(encoding="utf-8"), path.name)
    data = docs[0] if docs else None
    if data is None:
        return {}
    if not isinstance(data, LMap):
        raise PipelineError("a variables file must be a mapping of NAME: value", Location(path.name, 1, 1))
    out: dict[str, PipelineVariable] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            values = value.get("values")
            chosen = values.get("*") if isinstance(values, dict) else value.get("value")
            if chosen is None:
                continue
            out[str(key)] = PipelineVariable(str(chosen), file=value.get("type") == "file")
        elif value is not None:
            out[str(key)] = PipelineVariable(str(value))
    return out


def _as_pipeline_variables(values: Mapping[str, str | PipelineVariable]) -> dict[str, PipelineVariable]:
    return {k: v if isinstance(v, PipelineVariable) else PipelineVariable(str(v)) for k, v in values.items()}


def load_pipeline(
    project_dir: Path,
    *,
    file: str = ".gitlab-ci.yml",
    variables: Mapping[str, str | PipelineVariable] | None = None,
    project_variables: Mapping[str, str | PipelineVariable] | None = None,
    unset_variables: Collection[str] = (),
    inputs: Mapping[str, str] | Sequence[str] | InputValues | None = None,
    inputs_file: Path | None = None,
    pipeline_id: int = 1,
) -> Pipeline:
    """Load and resolve ``file`` of the git project at ``project_dir`` for a local run.

    ``variables`` are ``--variable`` values (highest precedence), ``project_variables``
    stand in for the project's CI/CD settings. ``inputs`` are ``--input`` values
    (``name=value``/``component:name=value`` strings, a mapping, or :class:`InputValues`),
    ``inputs_file`` a YAML file of input values that ``inputs`` override.
    Raises :class:`PipelineError` with every problem found.
    """
    project_dir = Path(project_dir).resolve()
    git = read_git_data(project_dir)
    cli = _as_pipeline_variables(variables or {})
    project = _as_pipeline_variables(project_variables or {})
    unset = frozenset(unset_variables)
    predefined = predefined_variables(git, project_dir=project_dir, config_path=file, pipeline_id=pipeline_id)

    def outside(extra: Mapping[str, str]) -> dict[str, str]:
        values = {
            **predefined,
            **extra,
            **{k: v.value for k, v in project.items()},
            **{k: v.value for k, v in cli.items()},
        }
        for key in unset:
            values.pop(key, None)
        return values

    sources: list[InputValues] = []
    if inputs is not None:
        sources.append(inputs if isinstance(inputs, InputValues) else InputValues.from_args(inputs))
    if inputs_file is not None and inputs_file.is_file():
        sources.append(InputValues.from_file(inputs_file))
    ctx = LoadContext(
        project_dir=project_dir,
        variables=expand_all(outside({})),
        input_sources=sources,
        server_fqdn=predefined["CI_SERVER_FQDN"],
        project_path=git.project_path,
    )
    merged = load_root(ctx, file)
    problems: list[Problem] = []
    config = resolve_config(merged, problems)
    global_values, global_raw = parse_variables(
        config.variables, "", config.variables.loc, problems, allow_description=True
    )

    pipeline = Pipeline(
        project_dir=project_dir,
        file=file,
        stages=config.stages,
        jobs=(),
        git=git,
        predefined=predefined,
        global_variables=global_values,
        project_variables=project,
        cli_variables=cli,
        unset_variables=unset,
        pipeline_id=pipeline_id,
        _config=config,
    )
    created, reason, workflow_vars = _workflow(config, pipeline, outside(global_values), file)
    effective_globals = {**global_values, **workflow_vars}
    pipeline.created, pipeline.workflow_reason = created, reason
    pipeline.global_variables = effective_globals
    built, excluded = _build_jobs(pipeline, config, effective_globals, global_raw, problems)
    if problems:
        raise PipelineError(problems)
    jobs = _link_needs(pipeline, config, built, excluded, problems)
    if problems:
        raise PipelineError(problems)
    pipeline.jobs = tuple(jobs)
    pipeline.excluded = tuple(excluded)
    return pipeline


def _workflow(
    config: ResolvedConfig, pipeline: Pipeline, variables: Mapping[str, str], file: str
) -> tuple[bool, str, dict[str, str]]:
    workflow = config.workflow
    if workflow is None or "rules" not in workflow:
        return True, "", {}
    rules = workflow["rules"]
    loc = workflow.value_loc("rules")
    if not isinstance(rules, list):
        raise PipelineError("workflow:rules should be an array of rules", loc)
    outcome = evaluate_rules(
        rules, "workflow", loc, expand_all(dict(variables)), pipeline.project_files, "always", workflow=True
    )
    if outcome.when is None:
        return (
            False,
            (
                f"{file}: workflow:rules do not create a pipeline for this commit (ref "
                f"`{variables.get('CI_COMMIT_REF_NAME', '')}`, source `push`), so GitLab would run no job; "
                "pass --variable to satisfy a rule (e.g. CI_PIPELINE_SOURCE=merge_request_event)"
            ),
            {},
        )
    return True, "", dict(outcome.variables or {})


def _build_jobs(
    pipeline: Pipeline,
    config: ResolvedConfig,
    globals_: dict[str, str],
    global_raw: frozenset[str],
    problems: list[Problem],
) -> tuple[list[tuple[PipelineJob, Any]], list[str]]:
    jobs: list[tuple[PipelineJob, Any]] = []
    excluded: list[str] = []
    shapes: dict[str, JobShape] = {}
    for name, cfg in config.jobs.items():
        shapes[name] = parse_job_shape(name, cfg, config.stages, pipeline.project_dir, problems)
    if problems:
        return [], []
    for name, cfg in config.jobs.items():
        shape = shapes[name]
        try:
            built = _instances(pipeline, name, cfg, shape, globals_, global_raw, problems)
        except PipelineError as exc:
            problems.extend(exc.problems)
            continue
        if not built:
            excluded.append(name)
        jobs.extend(built)
    return jobs, excluded


def _expand_with(values: Mapping[str, str], text: str) -> str:
    return expand(text, values)


def _inherited_globals(cfg: LMap, globals_: dict[str, str]) -> dict[str, str]:
    inherit = cfg.get("inherit")
    if isinstance(inherit, dict) and "variables" in inherit:
        choice = inherit["variables"]
        if choice is False:
            return {}
        if isinstance(choice, list):
            return {k: v for k, v in globals_.items() if k in choice}
    return dict(globals_)


def _instances(
    pipeline: Pipeline,
    name: str,
    cfg: LMap,
    shape: JobShape,
    globals_: dict[str, str],
    global_raw: frozenset[str],
    problems: list[Problem],
) -> list[tuple[PipelineJob, Any]]:
    matrix = matrix_instances(cfg, name)
    plans: list[tuple[str, dict[str, str], int | None, int | None]]
    total: int | None
    if matrix is not None:
        total = len(matrix)
        plans = [(f"{name}: [{', '.join(m.values())}]", m, i + 1, total) for i, m in enumerate(matrix)]
    elif shape.parallel_count is not None:
        total = shape.parallel_count
        plans = [(f"{name} {i}/{total}", {}, i, total) for i in range(1, total + 1)]
    else:
        plans = [(name, {}, None, None)]
    inherited = _inherited_globals(cfg, globals_)
    out: list[tuple[PipelineJob, Any]] = []
    for instance_name, matrix_vars, index, total in plans:
        yaml_vars = {**inherited, **shape.variables, **matrix_vars}
        raw_names = (global_raw & set(inherited)) | shape.raw_variables
        draft = PipelineJob(
            name=instance_name,
            base_name=name,
            stage=shape.stage,
            variables=yaml_vars,
            raw_variables=frozenset(raw_names),
            matrix_variables=dict(matrix_vars),
            node_index=index,
            node_total=total,
            source=cfg.loc,
        )
        env_vars = pipeline.expanded_variables(draft)
        raw_env = cfg.get("environment")
        raw_env_name = raw_env.get("name") if isinstance(raw_env, dict) else raw_env
        if isinstance(raw_env_name, str):
            # GitLab sets CI_ENVIRONMENT_NAME before evaluating the job's rules
            env_vars.setdefault("CI_ENVIRONMENT_NAME", expand(raw_env_name, env_vars))
        when = shape.when
        allow_failure = shape.allow_failure
        exit_codes: tuple[int, ...] = shape.allow_failure_exit_codes
        needs_raw = cfg.get("needs")
        start_in = shape.start_in
        interruptible = shape.interruptible
        from_rules = False
        if "rules" in cfg:
            outcome = evaluate_rules(
                cfg["rules"],
                f"jobs:{name}",
                cfg.value_loc("rules"),
                env_vars,
                pipeline.project_files,
                shape.when,
            )
            if outcome.when is None:
                continue
            when = outcome.when
            from_rules = outcome.when_from_rule
            if outcome.allow_failure is not None:
                allow_failure = outcome.allow_failure
                exit_codes = outcome.allow_failure_exit_codes or ()
            if outcome.variables:
                yaml_vars = {**yaml_vars, **outcome.variables}
                raw_names = raw_names - set(outcome.variables)
            if outcome.needs is not None:
                needs_raw = outcome.needs
            if outcome.start_in is not None:
                start_in = outcome.start_in
            if outcome.interruptible is not None:
                interruptible = outcome.interruptible
        elif not only_except(
            cfg, name, env_vars, pipeline.git.ref, pipeline.git.is_tag, pipeline.git.project_path
        ):
            continue
        if allow_failure is None:
            allow_failure = default_allow_failure(when, from_rules)
        job = replace(
            draft,
            when=ensure_when(when),
            allow_failure=bool(allow_failure),
            allow_failure_exit_codes=exit_codes,
            dependencies=shape.dependencies,
            before_script=shape.before_script,
            script=shape.script,
            after_script=shape.after_script,
            variables=yaml_vars,
            raw_variables=frozenset(raw_names),
            image=shape.image,
            services=shape.services,
            artifacts=shape.artifacts,
            cache=shape.cache,
            timeout=shape.timeout,
            retry=shape.retry,
            tags=shape.tags,
            coverage=shape.coverage,
            interruptible=interruptible,
            resource_group=shape.resource_group,
            start_in=start_in,
            pre_get_sources_script=shape.pre_get_sources_script,
            trigger=shape.trigger,
        )
        full_vars = pipeline.expanded_variables(job)
        env = environment_spec(
            cfg.get("environment"),
            name,
            cfg.value_loc("environment"),
            functools.partial(_expand_with, full_vars),
            problems,
        )
        if env is not None:
            job = replace(job, environment=env)
        out.append((job, needs_raw))
    return out


def _parse_needs(
    job: PipelineJob, raw: Any, loc: Location, problems: list[Problem]
) -> tuple[Need, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        problems.append(Problem(f"{job.base_name} needs: must be an array", loc))
        return None
    needs: list[Need] = []
    for index, entry in enumerate(raw):
        where = raw.item_loc(index) if isinstance(raw, LSeq) else loc
        if entry is None:
            problems.append(Problem(f"{job.base_name} needs: entries cannot be empty", where))
            continue
        if isinstance(entry, str):
            needs.append(Need(job=entry))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("job"), str):
            problems.append(
                Problem(f"{job.base_name} needs: each entry is a job name or a hash with job:", where)
            )
            continue
        bad = [
            k
            for k in entry
            if k not in {"job", "artifacts", "optional", "pipeline", "project", "ref", "parallel"}
        ]
        if bad:
            problems.append(
                Problem(
                    f"{job.base_name} needs:{entry['job']} contains unknown keys: {', '.join(map(str, bad))}",
                    where,
                )
            )
            continue
        matrix = None
        if "parallel" in entry:
            matrix = _need_matrix(job, entry["job"], entry["parallel"], where, problems)
        needs.append(
            Need(
                job=entry["job"],
                artifacts=bool(entry.get("artifacts", True)),
                optional=bool(entry.get("optional", False)),
                pipeline=str(entry["pipeline"]) if entry.get("pipeline") is not None else None,
                project=str(entry["project"]) if entry.get("project") is not None else None,
                ref=str(entry["ref"]) if entry.get("ref") is not None else None,
                matrix=matrix,
            )
        )
    return tuple(needs)


def _need_matrix(
    job: PipelineJob, target: str, raw: Any, loc: Location, problems: list[Problem]
) -> tuple[dict[str, tuple[str, ...]], ...] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("matrix"), list):
        problems.append(
            Problem(f"{job.base_name} needs:{target}:parallel should be a hash with matrix:", loc)
        )
        return None
    selectors: list[dict[str, tuple[str, ...]]] = []
    for entry in raw["matrix"]:
        if not isinstance(entry, dict):
            problems.append(
                Problem(f"{job.base_name} needs:{target}:parallel:matrix entries should be hashes", loc)
            )
            return None
        selector: dict[str, tuple[str, ...]] = {}
        for key, value in entry.items():
            values = value if isinstance(value, list) else [value]
            resolved: list[str] = []
            for v in values:
                text = str(v)
                for ident in _MATRIX_EXPR.findall(text):
                    if not job.matrix_variables:
                        problems.append(
                            Problem(
                                f"{job.base_name} uses $[[ matrix.X ]] expressions in "
                                "needs.parallel.matrix but is not "
                                "parallelized with parallel:matrix",
                                loc,
                            )
                        )
                        return None
                    if ident not in job.matrix_variables:
                        problems.append(
                            Problem(
                                f"{job.name}: '{ident}' does not exist in matrix configuration "
                                f"(needs:{target}:parallel:matrix)",
                                loc,
                            )
                        )
                        return None
                resolved.append(_MATRIX_EXPR.sub(lambda m: job.matrix_variables.get(m.group(1), ""), text))
            selector[str(key)] = tuple(resolved)
        selectors.append(selector)
    return tuple(selectors)


def _link_needs(
    pipeline: Pipeline,
    config: ResolvedConfig,
    built: list[tuple[PipelineJob, Any]],
    excluded: list[str],
    problems: list[Problem],
) -> list[PipelineJob]:
    defined = set(config.jobs)
    instances: dict[str, list[PipelineJob]] = {}
    for job, _ in built:
        instances.setdefault(job.base_name, []).append(job)
    stage_of = {s: i for i, s in enumerate(pipeline.stages)}
    linked: list[PipelineJob] = []
    for job, raw in built:
        cfg = config.jobs[job.base_name]
        loc = cfg.value_loc("needs") if "needs" in cfg else cfg.loc
        needs = _parse_needs(job, raw, loc, problems)
        resolved_needs: list[Need] | None = None if needs is None else []
        for need in needs or ():
            if not need.is_local:
                assert resolved_needs is not None
                resolved_needs.append(need)
                continue
            if need.job not in defined:
                if not need.optional:
                    problems.append(
                        Problem(
                            f"needs: [{need.job}] for {job.base_name} could not be found: "
                            f"`{need.job}` is not a job "
                            "of this pipeline",
                            loc,
                        )
                    )
                continue
            targets = instances.get(need.job, [])
            if not targets:
                if not need.optional:
                    problems.append(
                        Problem(
                            f"{job.name} needs {need.job}, but rules/only/except leave {need.job} out "
                            "of this "
                            "pipeline (mark the need `optional: true`)",
                            loc,
                        )
                    )
                continue
            if need.matrix is not None:
                if not any(t.matrix_variables for t in targets):
                    problems.append(
                        Problem(
                            f"{job.base_name} uses needs.parallel.matrix targeting {need.job}, but "
                            f"{need.job} has no "
                            "parallel:matrix configuration",
                            loc,
                        )
                    )
                    continue
                targets = [t for t in targets if _selected(t, need.matrix)]
                if not targets:
                    problems.append(
                        Problem(
                            f"{job.base_name} needs.parallel.matrix selector for {need.job} matched "
                            "zero permutations",
                            loc,
                        )
                    )
                    continue
            for target in targets:
                if target.name == job.name:
                    problems.append(
                        Problem(
                            f"The pipeline has circular dependencies: self-dependency: {job.name} "
                            "needs itself",
                            loc,
                        )
                    )
                elif stage_of[target.stage] > stage_of[job.stage]:
                    problems.append(
                        Problem(
                            f"needs: [{target.name}] for {job.name} is in a future stage "
                            f"({target.stage} comes after "
                            f"{job.stage})",
                            loc,
                        )
                    )
            assert resolved_needs is not None
            resolved_needs.append(replace(need, instances=tuple(t.name for t in targets)))
        deps = job.dependencies
        if deps:
            dloc = cfg.value_loc("dependencies")
            for dep in deps:
                if dep not in defined:
                    problems.append(
                        Problem(
                            f"dependencies: [{dep}] for {job.name} cannot be found: `{dep}` is not "
                            "a job of this pipeline",
                            dloc,
                        )
                    )
                    continue
                for target in instances.get(dep, []):
                    if stage_of[target.stage] > stage_of[job.stage]:
                        problems.append(
                            Problem(f"dependencies: [{dep}] for {job.name} is in a future stage", dloc)
                        )
                        break
            if resolved_needs:
                local = [n.job for n in resolved_needs if n.is_local]
                missing = [d for d in deps if d not in local]
                if missing:
                    problems.append(
                        Problem(
                            f"{job.name} needs: '{','.join(local)}' doesn't fully contain dependencies: "
                            f"'{','.join(deps)}' (with needs:, every dependency must also be needed)",
                            dloc,
                        )
                    )
        linked.append(replace(job, needs=None if resolved_needs is None else tuple(resolved_needs)))
    if not problems:
        _check_cycles(linked, config, problems)
    return linked


def _selected(job: PipelineJob, selectors: tuple[dict[str, tuple[str, ...]], ...]) -> bool:
    return any(
        all(job.matrix_variables.get(k) in values for k, values in selector.items()) for selector in selectors
    )


def _check_cycles(jobs: list[PipelineJob], config: ResolvedConfig, problems: list[Problem]) -> None:
    graph = {j.name: [t for n in (j.needs or ()) for t in n.instances] for j in jobs}
    state: dict[str, int] = {}
    by_name = {j.name: j for j in jobs}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in graph.get(name, []):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [name, nxt]
                job = by_name[name]
                problems.append(
                    Problem(
                        f"The pipeline has circular dependencies: {' -> '.join(cycle)}",
                        config.jobs[job.base_name].loc,
                    )
                )
            elif state.get(nxt) is None:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name, [name])

"""The update step: render the job's template at its commit, annotate it, apply it, read it back.

The template is read from the commit (not the work tree), filled with that commit's
values and the image the build and push steps produced, annotated with where it came
from, validated, written under the git common dir's `pachhook/specs/` and applied by a
backend (`pachctl` by default, the Pachyderm API with `backend = "api"`). The pipeline is
then inspected: its version and image are the step's result, and an image other than the
one just applied fails the job.

Idempotent: when the cluster already runs this image with this commit's annotation, the
step records what is there and applies nothing (a worker that died after applying, or a
retried job, never updates a pipeline twice).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pachhook.core import gitrepo
from pachhook.core.config import load_config_at
from pachhook.core.diagnostics import format_json_path
from pachhook.core.environments import IMPLICIT_NAME, branch_slug, environment_for
from pachhook.deliver import order

# api.py imports pachyderm-sdk only when a job is applied through it (see there).
from pachhook.deliver.backends.api import ApiBackend
from pachhook.deliver.backends.pachctl import Apply, BackendError, PachctlBackend
from pachhook.deliver.backends.session import open_session
from pachhook.deliver.earlyread import ReadAhead
from pachhook.deliver.steps.base import StepContext, StepError, StepResult
from pachhook.queue.affected import commit_templates, input_repos, parse_template, pfs_inputs
from pachhook.spec import jsonnet, loader
from pachhook.spec import template as templating
from pachhook.validate import checks as validate

COMMIT_ANNOTATION = "pachhook.io/commit"
DIGEST_ANNOTATION = "pachhook.io/image-digest"
TEMPLATE_ANNOTATION = "pachhook.io/template"
ENVIRONMENT_ANNOTATION = "pachhook.io/environment"
CONTEXT_ANNOTATION = "pachhook.io/context"
SPEC_FOLDER = ("pachhook", "specs")
# How many versions below its own an update looks through for the one it replaced.
LOOK_BACK = 5


class RenderError(Exception):
    """A template could not be rendered into a valid spec; `problems` holds one line each."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems")
        self.problems = problems


@dataclass
class RenderedSpec:
    """One pipeline's spec as pachhook applies it."""

    pipeline: str
    project: str  # "" when the spec names none (pachd's default project)
    template: str
    commit: str
    spec: Dict[str, Any]
    image: str  # transform.image as applied ("" when the spec has none)
    built_image: Optional[str] = None  # the repository pachhook builds for it, None if none
    inputs: List[str] = field(default_factory=list)  # pfs repos it reads (for ordering)

    def to_json(self) -> str:
        # UTF-8, never ASCII escapes: an escaped emoji is a surrogate pair (\ud83d\ude00),
        # which pachctl's YAML reader (yaml.v3) refuses
        return json.dumps(self.spec, indent=2, ensure_ascii=False) + "\n"


def render_values(commit: str, branch: str, tag_form: str = "full") -> Dict[str, str]:
    """The placeholder values of a commit (`tag` is the full SHA unless configured short)."""
    short = commit[:7]
    return {
        "commit": commit,
        "short_commit": short,
        "tag": short if tag_form == "short" else commit,
        "branch": branch,
        "branch_slug": branch_slug(branch),
    }


def render_template(
    repo_root: Path,
    commit: str,
    template: str,
    values: Dict[str, str],
    digest: str = "",
    pin_digest: bool = False,
    annotate: bool = True,
    source: Optional[bytes] = None,
    jsonnet_args: Optional[Dict[str, str]] = None,
) -> List[RenderedSpec]:
    """Every pipeline of `template` as it stands in `commit`, rendered, annotated and checked.

    A Jsonnet template is evaluated with `values` and `jsonnet_args` as its top-level
    arguments; the JSON it renders to is what is applied.

    Raises RenderError (one line per problem) when the file is missing, does not parse,
    or renders into a spec the validator refuses.
    """
    data = source if source is not None else gitrepo.show_file(commit, template, repo_root)
    if data is None:
        raise RenderError([f"{template}: not in commit {commit[:12]}"])
    is_jsonnet = jsonnet.is_jsonnet(template)
    if is_jsonnet:
        loaded = jsonnet.load(template, data, jsonnet.arguments(values, jsonnet_args))
    else:
        loaded = loader.load_bytes(template, data)
    problems = [f"{d.file}:{d.line}:{d.column}: {d.message}" for d in loaded.diagnostics if d.severity == "error"]
    if problems:
        raise RenderError(problems)

    specs: List[RenderedSpec] = []
    for document in loaded.documents:
        if is_jsonnet:
            rendered = document.value  # a fresh value: the engine's output, parsed
            built = jsonnet.built_image(rendered, values.get("tag", ""))
        else:
            rendered, render_problems = templating.render(document.value, values)
            for problem in render_problems:
                line, column = document.locate(problem.path)
                problems.append(f"{template}:{line}:{column}: {problem.message}")
            if render_problems:
                continue
            built = templating.image_to_build(document.value, values)
        image = _transform_image(rendered)
        if built and digest and pin_digest and image:
            image = image.split("@", 1)[0] + "@" + digest
            rendered["transform"]["image"] = image
        if annotate:
            try:
                _annotate(rendered, commit, template, digest if built else "")
            except ValueError as error:
                line, column = document.locate(("metadata",))
                problems.append(f"{template}:{line}:{column}: {error}")
                continue
        for problem in validate.check_document(rendered, rendered=is_jsonnet):
            if problem.severity != "error":
                continue
            line, column = document.locate(problem.path)
            where = format_json_path(problem.path)
            problems.append(
                f"{template}:{line}:{column}: rendered spec: {problem.message}" + (f" ({where})" if where else "")
            )
        pipeline_value = rendered.get("pipeline")
        pipeline = pipeline_value if isinstance(pipeline_value, dict) else {}
        project_value = pipeline.get("project")
        project = project_value if isinstance(project_value, dict) else {}
        specs.append(
            RenderedSpec(
                pipeline=str(pipeline.get("name", "")),
                project=str(project.get("name", "") or ""),
                template=template,
                commit=commit,
                spec=rendered,
                image=image,
                built_image=built,
                inputs=sorted(set(input_repos(rendered.get("input")))),
            )
        )
    if problems:
        raise RenderError(problems)
    return specs


def _transform_image(spec: Dict[str, Any]) -> str:
    transform = spec.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    return image if isinstance(image, str) else ""


def _annotate(spec: Dict[str, Any], commit: str, template: str, digest: str) -> None:
    """Add pachhook's annotations, keeping every annotation and label the template has."""
    metadata = spec.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object to carry pachhook's annotations")
    annotations = metadata.setdefault("annotations", {})
    if not isinstance(annotations, dict):
        raise ValueError("metadata.annotations must be an object of strings")
    annotations[COMMIT_ANNOTATION] = commit
    annotations[TEMPLATE_ANNOTATION] = template
    if digest:
        annotations[DIGEST_ANNOTATION] = digest
    else:
        annotations.pop(DIGEST_ANNOTATION, None)


def make_backend(config: Any, environment: Any = None, session: Any = None, cache_dir: Optional[Path] = None):
    """The update backend the environment (else the configuration) names, in `session`;
    `cache_dir` is where pachctl's client version is remembered across processes."""
    backend = getattr(config, "backend", "pachctl")
    if environment is not None and getattr(environment, "backend", None):
        backend = environment.backend
    if backend == "api":
        return ApiBackend(config_file=session.config_file if session is not None else None)
    return PachctlBackend(
        getattr(config, "pachctl", "pachctl") or "pachctl",
        session=session,
        cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
    )


def job_environment(config: Any, job: Any, root: Path) -> Any:
    """The environment a job delivers to: the one it was queued for, else its branch's.

    StepError (not retryable) when the commit's configuration delivers the branch nowhere.
    """
    environments = getattr(config, "environments", None) or {}
    name = getattr(job, "environment", "")
    if name and name in environments:
        return environments[name]
    try:
        env = environment_for(config, job.branch, root)
    except Exception as error:  # ConfigError: a branch matching two environments
        raise StepError(f"configuration: {error}", retryable=False) from None
    if env is None or (name and name != env.name and not (name == IMPLICIT_NAME and env.implicit)):
        where = f"branch {job.branch}" if job.branch else "a commit on no branch"
        raise StepError(
            f"the configuration at {job.commit[:12]} delivers {where} to no environment"
            + (f" (it was queued for {name})" if name else ""),
            retryable=False,
        )
    return env


def apply_environment(
    spec: RenderedSpec, environment: Any, branch: str, dag: Sequence[str], context: str = ""
) -> RenderedSpec:
    """Name, project and annotations of a spec for its environment.

    A `pipeline_suffix` renames the pipeline and every pfs input that is another pipeline
    of the same DAG (the commit's pipelines), so a feature branch's copy reads its own
    upstream copies, not the production ones.
    """
    suffix = environment.suffix_for(branch)
    rendered = spec.spec
    pipeline = rendered.setdefault("pipeline", {})
    if suffix:
        pipeline["name"] = f"{spec.pipeline}{suffix}"
        names = set(dag)
        for node in pfs_inputs(rendered.get("input")):
            if node.get("repo") in names:
                if "name" not in node:
                    node["name"] = node["repo"]  # the mount folder stays /pfs/<original name>
                node["repo"] = f"{node['repo']}{suffix}"
        spec.pipeline = pipeline["name"]
        spec.inputs = sorted({f"{repo}{suffix}" if repo in names else repo for repo in spec.inputs})
    if environment.project:
        named = spec.project
        if named and named != environment.project:
            raise StepError(
                f"{spec.template} names project {named} but environment {environment.name} delivers to"
                f" project {environment.project}",
                retryable=False,
            )
        pipeline["project"] = {"name": environment.project}
        spec.project = environment.project
    annotations = rendered.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[ENVIRONMENT_ANNOTATION] = environment.name
    if context:
        annotations[CONTEXT_ANNOTATION] = context
    return spec


def same_spec(live: Any, spec: Dict[str, Any], project: str) -> bool:
    """Whether the live pipeline's user spec is `spec`, leaving aside the commit annotation.

    Pachyderm kills the unfinished jobs of a pipeline at every update (api_server.go,
    "all jobs killed because pipeline was updated"), so re-applying what runs costs work.
    """
    if live is None or not isinstance(getattr(live, "user_spec", None), dict):
        return False

    def comparable(value: Dict[str, Any]) -> str:
        copy = json.loads(json.dumps(value))
        pipeline = copy.get("pipeline") if isinstance(copy.get("pipeline"), dict) else {}
        named = (pipeline.get("project") or {}).get("name") if isinstance(pipeline.get("project"), dict) else None
        if named in (project or "default", "default", None):
            pipeline.pop("project", None)
        metadata = copy.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("annotations"), dict):
            metadata["annotations"].pop(COMMIT_ANNOTATION, None)
        return json.dumps(copy, sort_keys=True)

    return comparable(live.user_spec) == comparable(spec)


def dag_pipelines(root: Path, commit: str, config: Any) -> List[str]:
    """The names of every pipeline the commit's templates define (for input renaming)."""
    entries = gitrepo.ls_tree(commit, root)
    paths = commit_templates(entries, config.templates)
    blobs = gitrepo.read_blobs([entries[path].sha for path in paths], root)
    names: List[str] = []
    for path in paths:
        parsed = parse_template(blobs.get(entries[path].sha), path, config.jsonnet_args)
        names += [spec["pipeline"] for spec in parsed.get("specs", [])]
    return names


def _cache_dir(ctx: StepContext) -> Path:
    """The queue's folder, where the delivery remembers what it may ask once (pachctl's version)."""
    return Path(ctx.git_dir) / SPEC_FOLDER[0]


def spec_path_for(git_dir: Path, job_id: Any, pipeline: str, commit: str) -> Path:
    name = f"{job_id}-{pipeline}.json" if job_id else f"{commit[:12]}-{pipeline}.json"
    return Path(git_dir).joinpath(*SPEC_FOLDER, name)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _image_from_results(ctx: StepContext) -> Dict[str, str]:
    build = ctx.results.get("build") or {}
    push = ctx.results.get("push") or {}
    return {
        "image_ref": push.get("image_ref") or build.get("image_ref") or "",
        "digest": push.get("digest") or "",
    }


@dataclass
class Prepared:
    """One pipeline of a delivery, rendered for its environment, up to its apply."""

    ctx: StepContext
    config: Any
    environment: Any
    rendered: RenderedSpec
    reprocess: bool
    dag: List[str]
    where: str = ""
    path: Optional[Path] = None
    spec_json: str = ""
    extra: Dict[str, str] = field(default_factory=dict)
    result: Optional[StepResult] = None  # set when nothing is to be applied
    live_version: str = ""  # the version the order check read ("" when there was no pipeline)


def run(ctx: StepContext) -> StepResult:
    prepared = _setup(ctx)
    environment = prepared.environment
    if ctx.dry_run:
        apply_environment(prepared.rendered, environment, ctx.job.branch, prepared.dag, environment.context)
        backend = make_backend(prepared.config, environment)
        path = spec_path_for(ctx.git_dir, ctx.job.id, prepared.rendered.pipeline, ctx.job.commit)
        ctx.log(f"to {environment.describe()}")
        return _plan(ctx, backend, prepared.rendered, path, prepared.rendered.to_json(), prepared.reprocess)
    try:
        session = open_session(environment.context, environment.project)
    except BackendError as error:
        raise StepError(f"{environment.describe()}: {error}", retryable=error.retryable) from None
    try:
        backend = make_backend(prepared.config, environment, session, _cache_dir(ctx))
        (refused,) = _check_all([prepared], backend, session.context)
        if refused is not None:
            raise refused
        if prepared.result is not None:
            return prepared.result
        _announce(prepared, backend)
        try:
            backend.update(str(prepared.path), prepared.spec_json, prepared.reprocess)
        except BackendError as error:
            raise StepError(str(error), retryable=error.retryable) from None
        return _finish(prepared, backend)
    finally:
        session.close()


def not_applied(blockers: Sequence[Tuple[str, str]]) -> str:
    """Why a commit's updates were held back: `not applied: edges, counts failed; sobel cancelled (...)`.

    `blockers` are (pipeline, why) pairs, why being "failed", "cancelled", "held"...
    """
    reasons: Dict[str, List[str]] = {}
    for pipeline, why in blockers:
        reasons.setdefault(why, []).append(pipeline)
    listed = "; ".join(f"{', '.join(names)} {why}" for why, names in reasons.items())
    return f"not applied: {listed} (a commit's pipelines are applied together or not at all)"


def _log_to_all(contexts: Sequence[StepContext]) -> Any:
    """A log writing to every job of a transaction: each job's log names the transaction it went in."""

    def log(line: str) -> None:
        for ctx in contexts:
            ctx.log(line)

    return log


def run_together(contexts: Sequence[StepContext], ahead: Optional[ReadAhead] = None) -> List[Any]:
    """The update step of several pipelines of one commit, applied in one transaction.

    `contexts` are in delivery order (upstream first) and share commit and branch, so one
    environment and one private session. Returns, per context, its StepResult or the
    StepError that ended it. When any pipeline fails before the apply, or the
    transaction fails, none is applied: a commit's DAG is updated all at once or not at
    all, so no output mixes the new code of one pipeline with the old of another.

    `ahead` is the live read and pachd's version started while the images built
    (deliver/earlyread.py); its session and backend are used when it was made for this
    environment. Its caller closes it.
    """
    outcomes: List[Any] = [None] * len(contexts)
    prepared: List[Optional[Prepared]] = [None] * len(contexts)
    for index, ctx in enumerate(contexts):
        try:
            prepared[index] = _setup(ctx)
        except StepError as error:
            outcomes[index] = error
    ready = [item for item in prepared if item is not None]
    if not ready:
        return outcomes
    environment = ready[0].environment
    if ahead is not None and not ahead.serves(environment):
        ahead = None
    try:
        session = ahead.session if ahead is not None else open_session(environment.context, environment.project)
    except BackendError as error:
        failure = StepError(f"{environment.describe()}: {error}", retryable=error.retryable)
        return [outcome or failure for outcome in outcomes]
    try:
        if ahead is not None:
            backend = ahead.take()
        else:
            backend = make_backend(ready[0].config, environment, session, _cache_dir(ready[0].ctx))
        checked = [(index, item) for index, item in enumerate(prepared) if item is not None]
        refusals = _check_all([item for _, item in checked], backend, session.context, ahead)
        for (index, _), refused in zip(checked, refusals):
            if refused is not None:
                outcomes[index] = refused
                prepared[index] = None
        failed = [contexts[i].job.pipeline for i, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
        to_apply = [(i, item) for i, item in enumerate(prepared) if item is not None and item.result is None]
        if failed and to_apply:
            reason = not_applied([(name, "failed") for name in failed])
            for index, item in to_apply:
                item.ctx.log(reason)
                outcomes[index] = StepError(reason, retryable=True)
            to_apply = []
        for index, checked_item in enumerate(prepared):
            if checked_item is not None and checked_item.result is not None:
                outcomes[index] = checked_item.result
        if not to_apply:
            return outcomes
        for _, item in to_apply:
            _announce(item, backend)
        applies = [
            Apply(item.rendered.pipeline, str(item.path), item.spec_json, item.reprocess, item.rendered.project)
            for _, item in to_apply
        ]
        try:
            backend.apply_all(applies, _log_to_all([item.ctx for _, item in to_apply]))
        except BackendError as error:
            for index, item in to_apply:
                item.ctx.log(f"not applied: {error}")
                outcomes[index] = StepError(str(error), retryable=error.retryable)
            return outcomes
        try:
            afters = _read_live(backend, [item for _, item in to_apply])
        except StepError as error:
            for index, _ in to_apply:
                outcomes[index] = error
            return outcomes
        read_back: List[Tuple[int, Prepared, Dict[str, str], Any]] = []
        for (index, item), after in zip(to_apply, afters):
            try:
                read = _read_back(item, backend, after)
            except StepError as error:
                outcomes[index] = error
                continue
            if isinstance(read, StepResult):
                outcomes[index] = read
            else:
                read_back.append((index, item, *read))
        supported = ahead.version() if ahead is not None else None
        stamps = stamp_and_verify_all(backend, [(item, after) for _, item, _, after in read_back], supported)
        for (index, item, data, after), stamp in zip(read_back, stamps):
            data.update(stamp)
            outcomes[index] = _done(item, data, after)
        return outcomes
    finally:
        if ahead is None:
            session.close()


def _setup(ctx: StepContext) -> Prepared:
    """The commit's configuration and environment, and the job's spec rendered from the commit."""
    job = ctx.job
    try:
        # The commit's configuration, not the work tree's (uncommitted edits stay out).
        config = load_config_at(ctx.repo_root, job.commit)
    except Exception as error:  # ConfigError: one line per problem in `problems`
        problems = getattr(error, "problems", None) or [str(error)]
        for line in problems:
            ctx.log(line)
        raise StepError(f"configuration: {problems[0]}", retryable=False) from None
    environment = job_environment(config, job, ctx.repo_root)
    pin_digest = environment.pin_digest if environment.pin_digest is not None else config.pin_digest
    reprocess = environment.reprocess if environment.reprocess is not None else config.reprocess

    produced = _image_from_results(ctx)
    values = render_values(job.commit, job.branch, getattr(config, "tag", "full"))
    if produced["image_ref"]:
        # The tag the image was pushed under is the one the spec must name.
        values["tag"] = _tag_of(produced["image_ref"]) or values["tag"]
    try:
        specs = render_template(
            ctx.repo_root,
            job.commit,
            job.template,
            values,
            digest=produced["digest"],
            pin_digest=pin_digest,
            jsonnet_args=getattr(config, "jsonnet_args", None),
        )
    except RenderError as error:
        for line in error.problems:
            ctx.log(line)
        raise StepError(
            f"{job.template}: {error.problems[0]}"
            + (f" (and {len(error.problems) - 1} more)" if len(error.problems) > 1 else ""),
            retryable=False,
        ) from None
    matching = [spec for spec in specs if spec.pipeline == job.pipeline]
    if not matching:
        raise StepError(f"{job.template} at {job.commit[:12]} has no pipeline named {job.pipeline!r}", retryable=False)
    rendered = matching[0]
    if rendered.built_image and produced["image_ref"]:
        expected = produced["image_ref"].split("@", 1)[0]
        if rendered.image.split("@", 1)[0] != expected:
            raise StepError(
                f"{job.template} renders image {rendered.image} but the build produced {expected}", retryable=False
            )
    if rendered.built_image and not produced["image_ref"] and not ctx.dry_run:
        raise StepError("no image to deploy: the build and push steps recorded none", retryable=True)
    dag = dag_pipelines(ctx.repo_root, job.commit, config) if environment.pipeline_suffix else []
    return Prepared(ctx, config, environment, rendered, reprocess, dag)


def _check_all(
    items: Sequence[Prepared], backend: Any, context: str, ahead: Optional[ReadAhead] = None
) -> List[Optional[StepError]]:
    """Everything before the apply, for every pipeline of one delivery: per item the StepError
    that keeps it from being applied, else None (with `result` set when it ends without an
    apply). Their live versions are read together (`_read_live`), or were read while the
    images built (`ahead`)."""
    refusals: List[Optional[StepError]] = [None] * len(items)
    placed: List[int] = []
    for index, item in enumerate(items):
        try:
            _place(item, backend, context)
        except StepError as error:
            refusals[index] = error
        else:
            placed.append(index)
    try:
        live = _read_live(backend, [items[index] for index in placed], ahead)
    except StepError as error:
        for index in placed:
            refusals[index] = error
        return refusals
    for index, current in zip(placed, live):
        try:
            _check(items[index], backend, current)
        except StepError as error:
            refusals[index] = error
    return refusals


def _read_live(backend: Any, items: Sequence[Prepared], ahead: Optional[ReadAhead] = None) -> List[Any]:
    """The live pipeline of each item (None when there is none), read together: one read per
    project (`inspect_all`: one `pachctl list pipeline` for several), before the apply for the
    order check and after it for the read-back. A project's pipelines `ahead` read early (for
    the order check only; never the read-back) are not read again."""
    by_project: Dict[str, List[str]] = {}
    for item in items:
        by_project.setdefault(item.rendered.project, []).append(item.rendered.pipeline)
    found: Dict[Tuple[str, str], Any] = {}
    try:
        for project, names in by_project.items():
            early = ahead.live(project, names) if ahead is not None else None
            states = early if early is not None else backend.inspect_all(names, project)
            for name, state in states.items():
                found[(project, name)] = state
    except BackendError as error:
        raise StepError(str(error), retryable=error.retryable) from None
    return [found[(item.rendered.project, item.rendered.pipeline)] for item in items]


def _place(prepared: Prepared, backend: Any, context: str) -> None:
    """The spec for its environment (name, project, annotations) and where it is written."""
    ctx, rendered, environment = prepared.ctx, prepared.rendered, prepared.environment
    job = ctx.job
    apply_environment(rendered, environment, job.branch, prepared.dag, context)
    session = getattr(backend, "session", None)
    project = (getattr(session, "project", "") if session is not None else "") or rendered.project or "default"
    prepared.where = f"env {environment.name} (context {context}, project {project})"
    ctx.log(f"delivering to {prepared.where}")
    prepared.path = spec_path_for(ctx.git_dir, job.id, rendered.pipeline, job.commit)
    prepared.spec_json = rendered.to_json()
    prepared.extra = {"environment": environment.name, "pipeline": rendered.pipeline, "project": rendered.project}


def _check(prepared: Prepared, backend: Any, current: Any) -> None:
    """The cluster's deployment, its order, an identical spec, a cancel, given `current`,
    the live pipeline (None when there is none).

    Sets `prepared.result` when the job ends without an apply; raises StepError when it
    must not apply at all.
    """
    ctx, rendered, environment = prepared.ctx, prepared.rendered, prepared.environment
    job = ctx.job
    path, extra, where = prepared.path, prepared.extra, prepared.where
    assert path is not None
    try:
        if environment.deployment_id:
            found = backend.deployment_id() if hasattr(backend, "deployment_id") else ""
            if found != environment.deployment_id:
                raise StepError(
                    f"{where}: the cluster's deployment ID is {found or 'unknown'}, not"
                    f" {environment.deployment_id} as the environment requires; nothing applied",
                    retryable=False,
                )
    except BackendError as error:
        raise StepError(str(error), retryable=error.retryable) from None
    prepared.live_version = current.version if current is not None else ""
    live_commit = current.annotations.get(COMMIT_ANNOTATION, "") if current is not None else ""
    verdict = order.decide(job.commit, live_commit, job.branch, ctx.repo_root, ctx.force, ctx.log)
    if verdict.action == order.NEWER_LIVE:
        ctx.log(verdict.message)
        prepared.result = StepResult(
            "superseded", dict(extra, live_commit=verdict.live_commit, reason=verdict.message), verdict.message
        )
        return
    if verdict.action == order.REFUSE:
        raise StepError(f"{rendered.pipeline} in {where}: {verdict.message}", retryable=False)
    if verdict.forced:
        ctx.log(verdict.message)
        extra["forced"] = verdict.message
    if current is not None and current.image == rendered.image and verdict.action == order.SAME:
        ctx.log(
            f"pipeline {rendered.pipeline} already runs {current.image} for this commit "
            f"(version {current.version}); not updating again"
        )
        if not path.exists():
            _write_atomically(path, prepared.spec_json)
        prepared.result = StepResult(
            "reused",
            dict(_result(current.version, current.image, path, backend), **extra),
            f"{rendered.pipeline} v{current.version} already up to date",
        )
        return
    if same_spec(current, rendered.spec, rendered.project):
        assert current is not None
        message = f"{rendered.pipeline} v{current.version} already runs this spec (as of {live_commit[:12]})"
        ctx.log(message + "; not applied again")
        prepared.result = StepResult(
            "unchanged",
            dict(
                _result(current.version, current.image, path, backend), live_commit=live_commit, reason=message, **extra
            ),
            message,
        )
        return
    if ctx.is_cancelled is not None and ctx.is_cancelled():
        ctx.log("cancelled before the apply: nothing applied")
        message = "cancelled before the apply: nothing applied"
        prepared.result = StepResult("cancelled", dict(extra, reason=message), message)


def _announce(prepared: Prepared, backend: Any) -> None:
    ctx, path = prepared.ctx, prepared.path
    assert path is not None
    _write_atomically(path, prepared.spec_json)
    ctx.log(f"rendered {ctx.job.template} at {ctx.job.commit[:12]} -> {path}")
    ctx.log(f"applying with {_describe_apply(backend, str(path), prepared.reprocess)}")


def _finish(prepared: Prepared, backend: Any) -> StepResult:
    """Read the pipeline back after the apply, then stamp and verify it."""
    (after,) = _read_live(backend, [prepared])
    read = _read_back(prepared, backend, after)
    if isinstance(read, StepResult):
        return read
    data, after = read
    data.update(stamp_and_verify_all(backend, [(prepared, after)])[0])
    return _done(prepared, data, after)


def _read_back(prepared: Prepared, backend: Any, after: Any) -> Any:
    """The pipeline read back after the apply (`after`, None when it is not there): (result
    data, version read) to stamp, or the StepResult that ends the job (superseded); undoes
    an overtaking, notes a late cancel."""
    ctx, rendered, path, extra = prepared.ctx, prepared.rendered, prepared.path, prepared.extra
    assert path is not None
    try:
        overtaken = _restore_if_overtaken(ctx, backend, rendered, after, path, prepared.live_version)
    except BackendError as error:
        raise StepError(str(error), retryable=error.retryable) from None
    if overtaken:
        message = f"the live pipeline runs {overtaken[:12]}, a newer commit applied while this one was"
        return StepResult("superseded", dict(extra, live_commit=overtaken, reason=message), message)
    if after is None:
        raise StepError(f"pipeline {rendered.pipeline} not found after the update")
    if after.image != rendered.image:
        raise StepError(
            f"pipeline {rendered.pipeline} v{after.version} runs {after.image or '(no image)'}, "
            f"not {rendered.image} as applied",
            retryable=False,
        )
    ctx.log(f"pipeline {rendered.pipeline} is at version {after.version}, running {after.image}")
    data = dict(_result(after.version, after.image, path, backend), **extra)
    if ctx.is_cancelled is not None and ctx.is_cancelled():
        ctx.log("cancelled too late: applied")
        data["late_cancel"] = "1"
    return data, after


def _done(prepared: Prepared, data: Dict[str, str], after: Any) -> StepResult:
    summary = f"{prepared.rendered.pipeline} v{after.version} in {prepared.where}" + _cluster_note(data)
    return StepResult("done", data, summary)


def _restore_if_overtaken(
    ctx: StepContext, backend: Any, rendered: RenderedSpec, after: Any, path: Path, live_version: str = ""
) -> str:
    """Undo the one race the order check leaves open; the newer commit when it had to.

    `update pipeline` has no compare-and-swap: a newer commit may be applied by another
    deliverer between this job's read of the live pipeline and its own apply, which then
    puts the older commit on top. Right after applying, the version below this one is
    read (`inspect pipeline NAME^N`); when it names a descendant of this job's commit, its
    user spec is applied again, so the cluster ends on the newer commit, and the job is
    superseded. The window left is between that read and that re-apply.

    When the version read back is the one right after `live_version` (the version the order
    check read), nothing was applied in between: the version below is the one that check
    approved, and it is not read again (pachd numbers a pipeline's versions one by one:
    src/server/pps/server/api_server.go, initializePipelineInfo,
    `pipelineInfo.Version = oldPipelineInfo.Version + 1`).
    """
    job = ctx.job
    if after is None:
        return ""
    now_live = after.annotations.get(COMMIT_ANNOTATION, "")
    if now_live != job.commit:
        # Another deliverer applied right after this apply: superseded when that is newer.
        return now_live if now_live and _descends_from(now_live, job.commit, ctx) else ""
    if _follows(after.version, live_version):
        return ""
    # The first version below this commit's own (several deliverers may have applied
    # this same commit in a row) is the one this apply replaced.
    previous = None
    for back in range(1, LOOK_BACK + 1):
        try:
            found = backend.inspect(f"{rendered.pipeline}^{back}", rendered.project)
        except Exception:  # a backend without version ancestry, or no such version
            return ""
        if found is None:
            return ""
        if found.annotations.get(COMMIT_ANNOTATION, "") != job.commit:
            previous = found
            break
    newer = previous.annotations.get(COMMIT_ANNOTATION, "") if previous is not None else ""
    if not newer or previous is None or previous.user_spec is None or not _descends_from(newer, job.commit, ctx):
        return ""
    ctx.log(f"{newer[:12]}, a newer commit, was applied between the order check and this apply: restoring it")
    restore = path.with_name(f"{path.stem}-restore-{newer[:12]}.json")
    text = json.dumps(previous.user_spec, indent=2) + "\n"
    _write_atomically(restore, text)
    backend.update(str(restore), text, False)
    return newer


def _follows(version: str, live_version: str) -> bool:
    """Whether `version` is the one right after `live_version` ("": there was no pipeline)."""
    try:
        return int(version) == (int(live_version) if live_version else 0) + 1
    except ValueError:
        return False


def _descends_from(live: str, commit: str, ctx: StepContext) -> bool:
    """Whether `live` is a newer commit of the job's branch, fetched first when this clone lacks it.

    Another clone's deliverer may have applied a commit this one has never fetched; without
    the fetch that newer commit would look unrelated and the job would claim its version.
    """
    if not order.known(live, ctx.repo_root):
        order.fetch_branch(ctx.job.branch, ctx.repo_root)
    return order.known(live, ctx.repo_root) and order.is_ancestor(commit, live, ctx.repo_root)


def stamp_and_verify_all(
    backend: Any, updated: Sequence[Tuple[Prepared, Any]], supported: Optional[Tuple[int, int, int]] = None
) -> List[Dict[str, str]]:
    """After the apply: provenance into Pachyderm metadata, then the jobs the updates started
    (deliver/stamp.py), one result each. Never fails a step: the pipelines are updated.

    `updated` are the applied pipelines with their read-backs: each names its version's spec
    commit (the job to verify), so the stamp needs no read of its own and stamps this
    version's job even when another deliverer applies right after. Pipelines updated
    together (one transaction of one commit and environment) are stamped and verified in one
    go per project, so the pachctl calls after the update do not grow with their number.
    `verify` and `verify_timeout` are the environment's when it sets them, else the top-level keys.
    `supported` is the version view.version() gave before (the read ahead's), None to ask it."""
    from pachhook.deliver.stamp import Updated, after_updates, stamp_values

    results: List[Dict[str, str]] = [{} for _ in updated]
    projects: Dict[str, List[int]] = {}
    for index, (prepared, _) in enumerate(updated):
        projects.setdefault(prepared.rendered.project, []).append(index)
    for project, indexes in projects.items():
        first = updated[indexes[0]][0]
        verify, timeout = _verify_settings(first.config, first.environment)
        batch = []
        for index in indexes:
            prepared, after = updated[index]
            rendered = prepared.rendered
            digest = _image_from_results(prepared.ctx)["digest"] if rendered.built_image else ""
            values = stamp_values(rendered.commit, rendered.template, digest)
            batch.append(Updated(rendered.pipeline, values, after, prepared.ctx.log))
        outcomes = after_updates(backend, project, batch, verify, timeout, supported=supported)
        for index, outcome in zip(indexes, outcomes):
            results[index] = outcome.result()
    return results


def _verify_settings(config: Any, environment: Any) -> Tuple[bool, float]:
    verify = getattr(environment, "verify", None)
    timeout = getattr(environment, "verify_timeout", None)
    return (
        bool(getattr(config, "verify", True) if verify is None else verify),
        float(getattr(config, "verify_timeout", 300.0) if timeout is None else timeout),
    )


def _cluster_note(result: Dict[str, str]) -> str:
    from pachhook.deliver.stamp import failed_in_cluster

    failed = failed_in_cluster(result)
    if failed:
        return f"; failed in cluster: {failed}"
    return f", job {result['job_state'].replace('JOB_', '').lower()}" if result.get("job_state") else ""


def _plan(
    ctx: StepContext, backend: Any, rendered: RenderedSpec, path: Path, spec_json: str, reprocess: bool
) -> StepResult:
    """--dry-run: say what would be applied, apply nothing, write nothing."""
    ctx.log(f"would apply to pipeline {rendered.pipeline}:")
    for line in spec_json.rstrip("\n").splitlines():
        ctx.log("  " + line)
    # The spec file is not written in a dry run: the command names where a real run writes it.
    ctx.log(f"a real run writes it to {path} and applies it with {_describe_apply(backend, str(path), reprocess)}")
    return StepResult("skipped", {"image": rendered.image, "spec_path": str(path), "backend": backend.name}, "dry run")


def _describe_apply(backend: Any, path: str, reprocess: bool) -> str:
    if backend.name == "pachctl":
        try:
            return "`" + " ".join(backend.update_command(path, reprocess)) + "`"
        except BackendError as error:
            # In a dry run the plan is still worth showing without a working pachctl.
            return f"`{backend.executable} update pipeline -f {path}{' --reprocess' if reprocess else ''}` ({error})"
    return f"the Pachyderm API (CreatePipelineV2, update=true, reprocess={str(reprocess).lower()})"


def _result(version: str, image: str, path: Path, backend: Any) -> Dict[str, str]:
    return {"pipeline_version": str(version), "image": image, "spec_path": str(path), "backend": backend.name}


def _tag_of(image_ref: str) -> str:
    reference = image_ref.split("@", 1)[0]
    slash = reference.rfind("/")
    colon = reference.find(":", slash + 1)
    return reference[colon + 1 :] if colon != -1 else ""

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
from typing import Any, Dict, List, Optional

from pachhook.core import gitrepo
from pachhook.core.config import load_config
from pachhook.core.diagnostics import format_json_path

# api.py imports pachyderm-sdk only when a job is applied through it (see there).
from pachhook.deliver.backends.api import ApiBackend
from pachhook.deliver.backends.pachctl import BackendError, PachctlBackend
from pachhook.deliver.steps import StepContext, StepError, StepResult
from pachhook.queue.affected import input_repos
from pachhook.spec import jsonnet, loader
from pachhook.spec import template as templating
from pachhook.validate import checks as validate

COMMIT_ANNOTATION = "pachhook.io/commit"
DIGEST_ANNOTATION = "pachhook.io/image-digest"
TEMPLATE_ANNOTATION = "pachhook.io/template"
SPEC_FOLDER = ("pachhook", "specs")


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


def make_backend(config: Any):
    """The update backend the configuration names."""
    if getattr(config, "backend", "pachctl") == "api":
        return ApiBackend()
    return PachctlBackend(getattr(config, "pachctl", "pachctl") or "pachctl")


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


def run(ctx: StepContext) -> StepResult:
    job = ctx.job
    try:
        config = load_config(ctx.repo_root)
    except Exception as error:  # ConfigError: one line per problem in `problems`
        problems = getattr(error, "problems", None) or [str(error)]
        for line in problems:
            ctx.log(line)
        raise StepError(f"configuration: {problems[0]}", retryable=False) from None

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
            pin_digest=getattr(config, "pin_digest", False),
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

    backend = make_backend(config)
    reprocess = bool(getattr(config, "reprocess", False))
    path = spec_path_for(ctx.git_dir, job.id, job.pipeline, job.commit)
    spec_json = rendered.to_json()

    try:
        if ctx.dry_run:
            return _plan(ctx, backend, rendered, path, spec_json, reprocess)
        current = backend.inspect(rendered.pipeline, rendered.project)
        if (
            current is not None
            and current.image == rendered.image
            and current.annotations.get(COMMIT_ANNOTATION) == job.commit
        ):
            ctx.log(
                f"pipeline {rendered.pipeline} already runs {current.image} for this commit "
                f"(version {current.version}); not updating again"
            )
            if not path.exists():
                _write_atomically(path, spec_json)
            return StepResult(
                "reused",
                _result(current.version, current.image, path, backend),
                f"{rendered.pipeline} v{current.version} already up to date",
            )
        _write_atomically(path, spec_json)
        ctx.log(f"rendered {job.template} at {job.commit[:12]} -> {path}")
        ctx.log(f"applying with {_describe_apply(backend, str(path), reprocess)}")
        backend.update(str(path), spec_json, reprocess)
        after = backend.inspect(rendered.pipeline, rendered.project)
    except BackendError as error:
        raise StepError(str(error), retryable=error.retryable) from None
    if after is None:
        raise StepError(f"pipeline {rendered.pipeline} not found after the update")
    if after.image != rendered.image:
        raise StepError(
            f"pipeline {rendered.pipeline} v{after.version} runs {after.image or '(no image)'}, "
            f"not {rendered.image} as applied",
            retryable=False,
        )
    ctx.log(f"pipeline {rendered.pipeline} is at version {after.version}, running {after.image}")
    result = _result(after.version, after.image, path, backend)
    result.update(stamp_and_verify(ctx, backend, rendered, produced["digest"], config))
    return StepResult("done", result, f"{rendered.pipeline} v{after.version}" + _cluster_note(result))


def stamp_and_verify(
    ctx: StepContext, backend: Any, rendered: RenderedSpec, digest: str, config: Any
) -> Dict[str, str]:
    """After the apply: provenance into Pachyderm metadata, then the job the update started
    (pachhook/provenance/stamp.py). Never fails the step: the pipeline is updated."""
    from pachhook.provenance.stamp import after_update, stamp_values

    outcome = after_update(
        backend,
        rendered.pipeline,
        rendered.project,
        stamp_values(rendered.commit, rendered.template, digest if rendered.built_image else ""),
        verify=bool(getattr(config, "verify", True)),
        timeout=float(getattr(config, "verify_timeout", 300.0)),
        log=ctx.log,
    )
    return outcome.result()


def _cluster_note(result: Dict[str, str]) -> str:
    from pachhook.provenance.stamp import failed_in_cluster

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

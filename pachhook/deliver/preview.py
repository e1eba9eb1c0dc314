"""What delivering a commit would change on the cluster: `pachhook plan`, `run --dry-run`, pre-push.

For every pipeline of the commit's templates (the ones `run --commit` delivers), the spec
pachhook would apply is compared field by field with the *user* spec the cluster records
for the live pipeline (`PipelineInfo.user_spec_json`, pachd 2.8+). The effective spec
(`effective_spec_json`, what `list pipeline --spec` prints) has the cluster's defaults
baked in, so comparing with it would report every default as a change; it stands in only
when the cluster records no user spec, and the plan says so.

An update creates a new pipeline version, and pachd kills every unfinished job of the old
one (`api_server.go`, "all jobs killed because pipeline was updated"); whether datums
processed before are processed again depends on `--reprocess`. Where the cluster answers
`pachctl list datum -f`, the plan gives the number of datums the new spec has.

pachhook's own annotations (`pachhook.io/*`) change with every commit and are left out of
the difference; the live commit is shown instead. The image digest is only known after
the push, so it is never part of the comparison.

The plan is made for one environment (the branch's, or one named with `plan --env`): its
`pipeline_suffix` and project applied to the specs as the update step applies them, and the
cluster asked through the private session of its context (backends/session), never the
user's active context or open transaction.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pachhook.core.config import ConfigError
from pachhook.core.diagnostics import JsonPath, format_json_path
from pachhook.core.environments import environment_for
from pachhook.core.sanitize import one_line
from pachhook.deliver.backends.pachctl import BackendError
from pachhook.deliver.backends.session import open_session
from pachhook.deliver.commit import plan as pipelines_of
from pachhook.deliver.steps.base import StepError
from pachhook.deliver.steps.update import (
    COMMIT_ANNOTATION,
    RenderedSpec,
    apply_environment,
    dag_pipelines,
    make_backend,
    render_template,
    render_values,
)

OWN_ANNOTATION_PREFIX = "pachhook.io/"
MAX_SHOWN_VALUE = 120  # characters of a value shown in a difference line

CREATE, UPDATE, UNCHANGED, UNKNOWN = "create", "update", "unchanged", "unknown"


@dataclass
class FieldChange:
    """One field that differs between the live spec and the one to apply."""

    path: str  # JSON path, "transform.image"
    kind: str  # "added" | "removed" | "changed"
    old: Any = None
    new: Any = None

    def describe(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {_shown(self.new)}"
        if self.kind == "removed":
            return f"- {self.path}: {_shown(self.old)}"
        return f"~ {self.path}: {_shown(self.old)} -> {_shown(self.new)}"


@dataclass
class PipelinePlan:
    pipeline: str
    project: str
    template: str
    action: str  # create | update | unchanged | unknown (no cluster to ask)
    spec: Dict[str, Any]
    live_version: str = ""
    live_commit: str = ""  # the pachhook.io/commit annotation of the live pipeline
    compared_with: str = ""  # "user spec" | "effective spec" | "" (nothing live)
    changes: List[FieldChange] = field(default_factory=list)
    datums: Optional[int] = None
    datums_note: str = ""  # why the datum count is not known
    reprocess: bool = False

    def next_version(self) -> str:
        return str(int(self.live_version) + 1) if self.live_version.isdigit() else "next"

    def consequence(self) -> str:
        """What applying does, in one sentence."""
        if self.action == CREATE:
            return "creates the pipeline (version 1); its first job processes every datum"
        if self.action != UPDATE:
            return ""
        datums = (
            "every datum is processed again (--reprocess)"
            if self.reprocess
            else "datums processed before with the same input are not processed again (no --reprocess)"
        )
        return (
            f"a new version v{self.next_version()}; unfinished jobs of v{self.live_version} are killed"
            f" (pachd kills them on every update); {datums}"
        )

    def summary(self) -> str:
        """One line: what happens to this pipeline."""
        if self.action == CREATE:
            text = f"{self.pipeline}: create"
        elif self.action == UNCHANGED:
            text = f"{self.pipeline}: no change (v{self.live_version} runs this spec)"
        elif self.action == UNKNOWN:
            text = f"{self.pipeline}: not compared (no cluster)"
        else:
            fields = ", ".join(change.path for change in self.changes[:3])
            more = f" and {len(self.changes) - 3} more" if len(self.changes) > 3 else ""
            text = (
                f"{self.pipeline}: update v{self.live_version} -> v{self.next_version()}"
                f" ({len(self.changes)} field(s): {fields}{more})"
            )
        if self.datums is not None and self.action in (CREATE, UPDATE):
            text += f", {self.datums} datum(s)"
        return text


@dataclass
class Plan:
    commit: str
    branch: str
    environment: str = ""  # the environment planned for, described; "" when the branch delivers nowhere
    cluster: str = ""  # the backend, described ("pachctl 2.11.6"), "" when there is none
    cluster_error: str = ""  # why the cluster could not be asked
    pipelines: List[PipelinePlan] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class PlanError(Exception):
    """The commit cannot be planned (unknown revision, templates that do not render)."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__(problems[0] if problems else "cannot plan")
        self.problems = problems


def diff_specs(live: Any, wanted: Any) -> List[FieldChange]:
    """Field-by-field differences, in the order of the paths; pachhook's annotations left out."""
    old = dict(_leaves(live))
    new = dict(_leaves(wanted))
    changes: List[FieldChange] = []
    for path in sorted(set(old) | set(new), key=_sort_key):
        if _is_own_annotation(path):
            continue
        if path not in old:
            changes.append(FieldChange(format_json_path(path), "added", None, new[path]))
        elif path not in new:
            changes.append(FieldChange(format_json_path(path), "removed", old[path], None))
        elif old[path] != new[path] or type(old[path]) is not type(new[path]):
            changes.append(FieldChange(format_json_path(path), "changed", old[path], new[path]))
    return changes


def _leaves(value: Any) -> List[Tuple[JsonPath, Any]]:
    """(path, value) of every scalar, and of every empty object or list (iterative)."""
    found: List[Tuple[JsonPath, Any]] = []
    stack: List[Tuple[JsonPath, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict) and node:
            stack.extend((path + (key,), child) for key, child in node.items())
        elif isinstance(node, list) and node:
            stack.extend((path + (index,), child) for index, child in enumerate(node))
        elif path:
            found.append((path, node))
    return found


def _sort_key(path: JsonPath) -> Tuple[Tuple[int, str], ...]:
    return tuple((1, f"{part:09d}") if isinstance(part, int) else (0, str(part)) for part in path)


def _is_own_annotation(path: JsonPath) -> bool:
    return (
        len(path) >= 3
        and path[0] == "metadata"
        and path[1] == "annotations"
        and str(path[2]).startswith(OWN_ANNOTATION_PREFIX)
    )


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)  # escapes C0 controls; the rest is filtered below
    # outside text: no terminal control characters, bounded
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def make_plan(
    root: Path,
    commit: str,
    branch: str,
    config: Any,
    datums: bool = True,
    backend: Any = None,
    environment: Any = None,
) -> Plan:
    """Render every pipeline of `commit` for `environment` (default: the branch's) and compare
    it with the live pipeline of that environment's cluster.

    Raises PlanError when the templates do not render (or the branch matches two
    environments). A cluster that cannot be asked, or a branch that delivers nowhere, is not
    an error: the plan says why and holds the rendered specs only.
    """
    from pachhook.deliver.commit import DeliverError
    from pachhook.deliver.steps.update import RenderError

    try:
        planned = pipelines_of(root, commit, config)
        if environment is None:
            environment = environment_for(config, branch, root)
    except (DeliverError, ConfigError) as error:
        raise PlanError(error.problems) from None
    values = render_values(commit, branch, getattr(config, "tag", "full"))
    rendered: Dict[str, RenderedSpec] = {}
    problems: List[str] = []
    for template in dict.fromkeys(item.template for item in planned):
        try:
            specs = render_template(root, commit, template, values, jsonnet_args=getattr(config, "jsonnet_args", None))
        except RenderError as error:
            problems += error.problems
            continue
        rendered.update((spec.pipeline, spec) for spec in specs)
    if problems:
        raise PlanError(problems)

    result = Plan(commit=commit, branch=branch)
    if environment is None:
        result.cluster_error = f"branch {branch or '(none)'} delivers to no environment"
        result.pipelines = [_entry(rendered[item.pipeline], config) for item in planned]
        return result
    result.environment = environment.describe()
    session = None
    if backend is None:
        try:
            session = open_session(environment.context, environment.project)
            backend = make_backend(config, environment, session)
        except BackendError as error:
            result.cluster_error = str(error)
    try:
        _fill(result, planned, rendered, environment, backend, session, root, config, datums)
    finally:
        if session is not None:
            session.close()
    return result


def _entry(spec: RenderedSpec, config: Any) -> PipelinePlan:
    reprocess = bool(getattr(config, "reprocess", False))
    return PipelinePlan(spec.pipeline, spec.project, spec.template, UNKNOWN, spec.spec, reprocess=reprocess)


def _fill(
    result: Plan,
    planned: List[Any],
    rendered: Dict[str, RenderedSpec],
    environment: Any,
    backend: Any,
    session: Any,
    root: Path,
    config: Any,
    datums: bool,
) -> None:
    """The environment's names on each spec, then each compared with its live pipeline."""
    dag = dag_pipelines(root, result.commit, config) if environment.pipeline_suffix else []
    context = session.context if session is not None else environment.context
    problems: List[str] = []
    for item in planned:
        try:
            spec = apply_environment(rendered[item.pipeline], environment, result.branch, dag, context)
        except StepError as error:  # a template naming another project than the environment's
            problems.append(str(error))
            continue
        entry = _entry(spec, config)
        if environment.reprocess is not None:
            entry.reprocess = environment.reprocess
        result.pipelines.append(entry)
    if problems:
        raise PlanError(problems)
    if not result.cluster_error:
        try:
            result.cluster = backend.describe()
        except BackendError as error:
            result.cluster_error = str(error)
    for entry, item in zip(result.pipelines, planned):
        if result.cluster_error:
            return
        try:
            live = backend.inspect(entry.pipeline, entry.project)
        except BackendError as error:
            # one failure says the cluster is not answering: do not wait on it once per pipeline
            result.cluster_error = str(error)
            return
        _compare(entry, live)
        if datums and entry.action in (CREATE, UPDATE):
            entry.datums, entry.datums_note = _datums(backend, rendered[item.pipeline])


def _compare(entry: PipelinePlan, live: Any) -> None:
    if live is None:
        entry.action = CREATE
        return
    # what the cluster says is outside text: no control sequences, bounded
    entry.live_version = one_line(live.version, 40)
    entry.live_commit = one_line(live.annotations.get(COMMIT_ANNOTATION, ""), 80)
    if live.user_spec is not None:
        entry.compared_with, baseline = "user spec", live.user_spec
    elif live.effective_spec is not None:
        entry.compared_with, baseline = "effective spec", live.effective_spec
    else:
        entry.compared_with, baseline = "", None
    if baseline is None:
        # a pachd before 2.8 records no spec to compare with: the image is all we know
        entry.changes = (
            []
            if live.image == _image(entry.spec)
            else [FieldChange("transform.image", "changed", live.image, _image(entry.spec))]
        )
    else:
        entry.changes = diff_specs(baseline, entry.spec)
    entry.action = UPDATE if entry.changes else UNCHANGED


def _image(spec: Dict[str, Any]) -> str:
    transform = spec.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    return image if isinstance(image, str) else ""


def _datums(backend: Any, spec: RenderedSpec) -> Tuple[Optional[int], str]:
    count = getattr(backend, "count_datums", None)
    if count is None:
        return None, f"the {backend.name} backend cannot count datums"
    handle, path = tempfile.mkstemp(prefix="pachhook-plan-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(spec.to_json())
        return count(path), ""
    except BackendError as error:
        return None, str(error)
    finally:
        os.unlink(path)


def format_plan(plan: Plan) -> List[str]:
    """The plan as text lines, for `pachhook plan` and `run --dry-run`."""
    head = f"plan for {plan.commit[:12]}" + (f" ({plan.branch})" if plan.branch else "")
    head += f" to {plan.environment}" if plan.environment else ""
    lines = [head + (f" against {plan.cluster}" if plan.cluster and not plan.cluster_error else "")]
    if not plan.environment:
        lines.append(
            f"not compared: {plan.cluster_error} (`pachhook plan --env NAME` compares with one); the specs as rendered:"
        )
    elif plan.cluster_error:
        lines.append(f"no cluster to compare with ({plan.cluster_error}); the specs that would be applied:")
    if plan.cluster_error:
        for entry in plan.pipelines:
            lines.append(f"{entry.pipeline} ({entry.template}):")
            lines += ["  " + line for line in json.dumps(entry.spec, indent=2).splitlines()]
        return lines
    for entry in plan.pipelines:
        lines.append(entry.summary())
        if entry.action == UPDATE:
            live = f"  live: v{entry.live_version}"
            live += f", from commit {entry.live_commit[:12]}" if entry.live_commit else ", not delivered by pachhook"
            if entry.compared_with == "effective spec":
                live += "; compared with the effective spec (the cluster records no user spec: pachd < 2.8)"
            elif not entry.compared_with:
                live += "; the cluster records no spec (pachd < 2.8): only the image is compared"
            lines.append(live)
            lines += ["  " + change.describe() for change in entry.changes]
        if entry.action in (CREATE, UPDATE):
            lines.append(f"  applying: {entry.consequence()}")
            if entry.datums is not None:
                lines.append(f"  datums: {entry.datums} (pachctl list datum -f)")
            elif entry.datums_note:
                lines.append(f"  datums: not known ({entry.datums_note})")
    return lines


def summary_lines(plan: Plan) -> List[str]:
    """One line per pipeline (pre-push with `plan_on_push`)."""
    if not plan.environment:
        return [f"not compared: {plan.cluster_error}"]
    if plan.cluster_error:
        return [f"no cluster to compare with ({plan.cluster_error})"]
    return [entry.summary() for entry in plan.pipelines]

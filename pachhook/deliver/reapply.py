"""`pachhook rollback PIPELINE --to COMMIT|vN`: re-apply a spec that ran before, then hold the pipeline.

Pachyderm 2.x has no way back (pachyderm/pachyderm#6827): `extract pipeline` is gone,
`inspect pipeline NAME^N` does not print a spec that can be applied, and
`list pipeline --spec` prints the *effective* spec, the cluster's defaults baked in. A
rollback here re-applies the *user* spec recorded for the target, nothing rebuilt:

1. from the local ledger: the exact JSON the update step applied for that commit or
   version (`.git/pachhook/specs/`), annotations and image digest included;
2. else from the cluster's history (`pachctl list pipeline NAME --history all --raw`):
   the version's `user_spec_json` (pachd 2.8+), found by version number or by its
   `pachhook.io/commit` annotation. A cluster that records no user spec is not used:
   re-applying its effective spec would freeze today's defaults into the pipeline.

The image is pinned to the recorded digest (`repo:tag@sha256:...`), so a tag pushed
again since cannot change what runs.

The rollback acts on one environment: its context through a private session
(backends/session, never the user's active context or open transaction), its project, and
the pipeline's name there (`pipeline_suffix` applied). It goes through the cluster's order
as a delivery does (see `order`), with one difference: going back along the branch is its
purpose, so that needs no override. What it refuses without `--force`: a live commit this
clone has never seen (delivered from elsewhere since the last fetch: newer than what the
user looked at), a live commit off the target's line (another branch, a force push), a live
pipeline other than the one `--from` names, and a pipeline that moved while the rollback ran.

After the apply the same provenance stamp as a delivery's is written (deliver/stamp: commit,
template, digest), and the pipeline is held (see `holds`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from pachhook.core.environments import IMPLICIT_NAME
from pachhook.core.sanitize import one_line
from pachhook.deliver import order
from pachhook.deliver.backends.pachctl import BackendError
from pachhook.deliver.backends.session import open_session
from pachhook.deliver.holds import HOLD, ROLLBACK, Event, Hold, Holds
from pachhook.deliver.preview import FieldChange, diff_specs
from pachhook.deliver.stamp import after_update, stamp_values
from pachhook.deliver.steps.update import (
    COMMIT_ANNOTATION,
    DIGEST_ANNOTATION,
    SPEC_FOLDER,
    TEMPLATE_ANNOTATION,
    make_backend,
)
from pachhook.queue.jobs import Job

ROLLBACK_ANNOTATION = "pachhook.io/rollback-from-version"
_VERSION = re.compile(r"v?(\d+)\Z")
_SHA = re.compile(r"[0-9a-f]{40}\Z")

Output = Callable[[str], None]


class RollbackError(Exception):
    """The rollback cannot be done; str(error) is one line for the user."""


@dataclass
class Target:
    """The spec to go back to, and where it was found."""

    spec: Dict[str, Any]
    version: str  # the pipeline version that ran it ("" when unknown)
    commit: str  # the git commit it was built from ("" when unknown)
    digest: str  # the recorded image digest ("" when none)
    source: str  # "ledger" | "cluster"
    template: str = ""  # the template it was rendered from ("" when unknown)


@dataclass
class Request:
    """What `pachhook rollback` was asked to do."""

    name: str  # the pipeline as its template names it
    pipeline: str  # its name on the cluster in the environment (pipeline_suffix applied)
    environment: Any  # core.environments.Environment
    to: str  # COMMIT or vN, as typed
    branch: str = ""  # whose copy, when the environment's suffix names branches
    project: str = ""  # "" = the environment's, else the context's
    full_commit: str = ""  # `to` resolved by this clone's git, when it could
    expect: str = ""  # --from: the version or commit the user saw live
    reprocess: bool = False
    dry_run: bool = False
    force: bool = False


@dataclass
class Outcome:
    pipeline: str
    from_version: str
    to_version: str
    target: Target
    image: str
    applied: bool  # False: the live pipeline already ran the target spec
    changes: List[FieldChange]
    stamp: Dict[str, str] = field(default_factory=dict)  # what deliver/stamp wrote and saw


def parse_target(text: str) -> Dict[str, str]:
    """`--to` as {"version": N} (vN, or N) or {"commit": text}."""
    found = _VERSION.match(text.strip())
    if found and (text.startswith("v") or len(text) < 4):
        return {"version": found.group(1)}
    return {"commit": text.strip()}


def from_ledger(
    jobs: List[Job],
    name: str,
    want: Dict[str, str],
    full_commit: str = "",
    environment: str = IMPLICIT_NAME,
    pipeline: str = "",
) -> Optional[Target]:
    """The newest delivery of the template pipeline `name` to `environment` (as `pipeline` on
    the cluster) matching the target, whose applied spec file is still there."""
    candidates = []
    for job in jobs:
        if job.pipeline != name:
            continue
        try:
            update = job.step("update").result or {}
            push = job.step("push").result or {}
        except KeyError:
            continue
        # jobs queued before environments name none: they delivered to the implicit one
        if (update.get("environment") or job.environment or IMPLICIT_NAME) != environment:
            continue
        if (update.get("pipeline") or job.pipeline) != (pipeline or name):
            continue
        version = str(update.get("pipeline_version") or "")
        spec_path = update.get("spec_path") or ""
        if not version or not spec_path:
            continue
        if "version" in want and version != want["version"]:
            continue
        if "commit" in want and not _same_commit(job.commit, want["commit"], full_commit):
            continue
        candidates.append((job.updated_at, job.id, job, version, spec_path, push.get("digest", "")))
    for _, _, job, version, spec_path, digest in sorted(candidates, key=lambda item: item[:2], reverse=True):
        try:
            spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the spec file was removed: the cluster's history may still have it
        if not isinstance(spec, dict):
            continue
        annotations = _annotations(spec)
        digest = digest or annotations.get(DIGEST_ANNOTATION, "")
        return Target(spec, version, job.commit, digest, "ledger", job.template)
    return None


def from_history(history: List[Dict[str, Any]], want: Dict[str, str], full_commit: str = "") -> Optional[Target]:
    """The target among `list pipeline --history all --raw` messages (PipelineInfo, newest first).

    Raises RollbackError when the matching version has no user spec (pachd before 2.8).
    """
    for info in history:
        version = str(info.get("version", ""))
        annotations = _mapping(_mapping(_mapping(info.get("details")).get("metadata")).get("annotations"))
        commit = str(annotations.get(COMMIT_ANNOTATION, ""))
        if "version" in want and version != want["version"]:
            continue
        if "commit" in want and not (commit and _same_commit(commit, want["commit"], full_commit)):
            continue
        text = info.get("userSpecJson", info.get("user_spec_json"))
        try:
            spec = json.loads(text) if isinstance(text, str) and text.strip() else None
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            raise RollbackError(
                f"the cluster records no user spec for v{version} (pachd before 2.8 keeps only the effective"
                " spec, with the cluster's defaults baked in) and the local ledger has none: nothing safe to re-apply"
            )
        own = _annotations(spec)
        template = str(own.get(TEMPLATE_ANNOTATION, ""))
        return Target(spec, version, commit, str(own.get(DIGEST_ANNOTATION, "")), "cluster", template)
    return None


def _mapping(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _same_commit(commit: str, wanted: str, full: str) -> bool:
    if full:
        return commit == full
    return len(wanted) >= 4 and commit.startswith(wanted.lower())


def _annotations(spec: Dict[str, Any]) -> Dict[str, Any]:
    metadata = spec.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def pinned_image(image: str, digest: str) -> str:
    """`repo:tag@digest`: the tag stays readable, the digest decides what runs."""
    if not image or not digest or "@" in image:
        return image
    return f"{image}@{digest}"


def spec_to_apply(target: Target, live_version: str) -> Dict[str, Any]:
    spec = json.loads(json.dumps(target.spec))  # a copy
    transform = spec.get("transform")
    if isinstance(transform, dict) and isinstance(transform.get("image"), str):
        transform["image"] = pinned_image(transform["image"], target.digest)
    metadata = spec.setdefault("metadata", {})
    annotations = metadata.setdefault("annotations", {}) if isinstance(metadata, dict) else {}
    if isinstance(annotations, dict):
        annotations[ROLLBACK_ANNOTATION] = live_version
    return spec


def guard(target_commit: str, live_commit: str, root: Path, force: bool) -> str:
    """The cluster's order for a rollback: a line saying how the target stands to what runs.

    RollbackError (one line, naming `--force`) when the rollback must not go on: a live
    commit this clone has never seen, or one off the target's line. Going back along the
    branch is what a rollback is for and needs no override.
    """
    # only full SHAs reach git: an annotation is outside text and could look like an option
    if not (_SHA.match(live_commit) and _SHA.match(target_commit)) or live_commit == target_commit:
        return ""
    short_live, short_target = live_commit[:12], target_commit[:12]
    if not order.known(live_commit, root):
        return _refuse_or_force(
            f"the live pipeline runs commit {short_live}, which this clone has never seen: it was delivered"
            " from elsewhere, newer than what you looked at; fetch, look at it (`pachhook provenance`),"
            " then roll back again",
            force,
        )
    if not order.known(target_commit, root):
        return f"commit {short_target} is not in this clone: its place in the branch's history is not checked"
    if order.is_ancestor(target_commit, live_commit, root):
        return "going back along the branch: the forward-only order is overridden for this rollback"
    if order.is_ancestor(live_commit, target_commit, root):
        return f"{short_target} is newer than the live commit {short_live}: this moves the pipeline forward"
    return _refuse_or_force(
        f"the live pipeline runs commit {short_live}, which is not on the line of {short_target}"
        " (another branch, or a force push, delivered it)",
        force,
    )


def _refuse_or_force(reason: str, force: bool) -> str:
    if force:
        return f"forced: {reason}"
    raise RollbackError(f"refused: {reason}; `pachhook rollback --force` overrides")


def expected_live(expect: str, live_version: str, live_commit: str) -> bool:
    """Whether `--from` (vN, or a commit prefix of 4+ characters) names what runs."""
    wanted = parse_target(expect)
    if "version" in wanted:
        return wanted["version"] == live_version
    return len(wanted["commit"]) >= 4 and live_commit.startswith(wanted["commit"].lower())


def rollback(root: Path, common_dir: Path, config: Any, request: Request, jobs: List[Job], out: Output) -> Outcome:
    """Find the target, re-apply it in the environment's private session, stamp it, hold the
    pipeline; RollbackError (one line) when it cannot."""
    environment = request.environment
    try:
        session = open_session(environment.context, request.project or environment.project)
    except BackendError as error:
        raise RollbackError(f"{environment.describe()}: {error}") from None
    try:
        backend = make_backend(config, environment, session)
        return _rollback(root, common_dir, config, request, jobs, out, backend, session)
    finally:
        session.close()


def _rollback(
    root: Path,
    common_dir: Path,
    config: Any,
    request: Request,
    jobs: List[Job],
    out: Output,
    backend: Any,
    session: Any,
) -> Outcome:
    environment, pipeline, project = request.environment, request.pipeline, request.project
    where = f"env {environment.name} (context {session.context}, project {session.project or 'default'})"
    want = {"commit": request.full_commit} if request.full_commit else parse_target(request.to)
    try:
        if environment.deployment_id:
            found = backend.deployment_id() if hasattr(backend, "deployment_id") else ""
            if found != environment.deployment_id:
                raise RollbackError(
                    f"{where}: the cluster's deployment ID is {one_line(found, 80) or 'unknown'}, not"
                    f" {environment.deployment_id} as the environment requires; nothing applied"
                )
        live = backend.inspect(pipeline, project)
    except BackendError as error:
        raise RollbackError(f"cannot read pipeline {pipeline} in {where}: {error}") from None
    if live is None:
        raise RollbackError(f"pipeline {pipeline} does not exist in {where}: nothing to roll back")
    target = from_ledger(jobs, request.name, want, request.full_commit, environment.name, pipeline)
    if target is None:
        target = from_history(_history(backend, pipeline, project), want, request.full_commit)
    if target is None:
        wanted = f"v{want['version']}" if "version" in want else f"commit {want['commit'][:12]}"
        raise RollbackError(
            f"no recorded spec of {pipeline} for {wanted}: neither the local ledger nor the cluster's"
            f" history has one (`pachhook provenance {pipeline}` lists what ran)"
        )
    # the cluster's words are outside text: no control sequences, bounded
    live_commit = one_line(live.annotations.get(COMMIT_ANNOTATION, ""), 80)
    live_version = one_line(live.version, 40)
    target.version, target.commit, target.digest = (
        one_line(target.version, 40),
        one_line(target.commit, 80),
        one_line(target.digest, 100),
    )
    target.template = one_line(target.template, 300)
    goal = f"v{target.version}" + (f" (commit {target.commit[:12]})" if target.commit else "")
    running = f"v{live_version}" + (f" (commit {live_commit[:12]})" if live_commit else "")
    out(f"rollback {pipeline} in {where}: from {running}")
    out(f"  to the user spec of {goal}, from the {'local ledger' if target.source == 'ledger' else 'cluster history'}")
    if request.expect and not expected_live(request.expect, live_version, live_commit):
        seen = request.expect[:12] if _SHA.match(request.expect) else one_line(request.expect, 80)
        line = _refuse_or_force(
            f"the live pipeline is {running}, not {seen} as --from says: it changed since you looked",
            request.force,
        )
        out(f"  {line}")
    note = guard(target.commit, live_commit, root, request.force)
    if note:
        out(f"  {note}")
    spec = spec_to_apply(target, live_version)
    baseline = live.user_spec if live.user_spec is not None else live.effective_spec or {}
    changes = diff_specs(baseline, spec)
    image = _image(spec)
    for change in changes:
        out("  " + change.describe())
    if target.digest:
        out(f"  image pinned to the recorded digest: {image}")
    if request.dry_run:
        out("  dry run: nothing applied, no hold placed")
        out(f"  to apply it only while {running} runs: {_command(request, live_version)}")
        return Outcome(pipeline, live_version, live_version, target, image, False, changes)
    stamp: Dict[str, str] = {}
    if not changes:
        out(f"  v{live_version} already runs this spec: nothing applied")
        to_version = live_version
        applied = False
    else:
        to_version = _apply(common_dir, backend, request, spec, image, live_version, goal, out)
        applied = True
        out(f"  applied: {pipeline} is at v{to_version}, running {image}")
        digest = target.digest if target.digest and target.digest in image else ""
        stamp = after_update(
            backend,
            pipeline,
            project,
            stamp_values(target.commit, target.template, digest),
            verify=bool(getattr(config, "verify", True)),
            timeout=float(getattr(config, "verify_timeout", 300.0)),
            log=lambda line: out(f"  {line}"),
        ).result()
    hold = _hold(common_dir, request, session, target, live_version, to_version, applied, goal)
    out(
        f"  held: the queue will not update {pipeline} in env {environment.name} until"
        f" `{hold.release_command()}` (or an explicit `pachhook run --commit REV`)"
    )
    return Outcome(pipeline, live_version, to_version, target, image, applied, changes, stamp)


def _command(request: Request, live_version: str) -> str:
    words = ["pachhook", "rollback", request.name, "--to", request.to, "--from", f"v{live_version}"]
    if not request.environment.implicit:
        words += ["--env", request.environment.name]
    if request.branch and request.pipeline != request.name:
        words += ["--branch", request.branch]
    if request.project:
        words += ["--project", request.project]
    if request.reprocess:
        words.append("--reprocess")
    return " ".join(words)


def _apply(
    common_dir: Path,
    backend: Any,
    request: Request,
    spec: Dict[str, Any],
    image: str,
    live_version: str,
    goal: str,
    out: Output,
) -> str:
    """Apply `spec` unless the pipeline moved since it was read; the version it is at after."""
    pipeline, project = request.pipeline, request.project
    path = Path(common_dir).joinpath(*SPEC_FOLDER, f"rollback-{int(time.time())}-{pipeline}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    try:
        # Pachyderm has no compare-and-swap: read once more right before the apply, so a
        # delivery made while the rollback looked for its spec is not undone unseen.
        now = backend.inspect(pipeline, project)
        if now is not None and one_line(now.version, 40) != live_version:
            moved = one_line(now.version, 40)
            _refuse_or_force(f"{pipeline} moved from v{live_version} to v{moved} while the rollback ran", request.force)
        backend.update(str(path), text, request.reprocess)
        after = backend.inspect(pipeline, project)
    except BackendError as error:
        raise RollbackError(f"applying the spec of {goal} failed: {error}") from None
    if after is None:
        raise RollbackError(f"pipeline {pipeline} not found after the rollback was applied")
    if after.image != image:
        shown = one_line(after.image, 200) or "(no image)"
        raise RollbackError(f"pipeline {pipeline} v{one_line(after.version, 40)} runs {shown}, not {image}")
    return one_line(after.version, 40)


def _hold(
    common_dir: Path,
    request: Request,
    session: Any,
    target: Target,
    live_version: str,
    to_version: str,
    applied: bool,
    goal: str,
) -> Hold:
    """Record the rollback and hold the pipeline where it now is; the hold."""
    environment, pipeline = request.environment, request.pipeline
    project = request.project or environment.project
    now = time.time()
    message = f"rollback of {pipeline} in env {environment.name} from v{live_version} to the spec of {goal}" + (
        f", applied as v{to_version}" if applied else ", already running"
    )
    place = {"project": project, "environment": environment.name, "context": session.context}
    holds = Holds(Path(common_dir) / SPEC_FOLDER[0])
    holds.record(
        Event(
            ROLLBACK,
            pipeline,
            now,
            message,
            from_version=live_version,
            to_version=to_version,
            commit=target.commit,
            digest=target.digest,
            source=target.source,
            **place,
        )
    )
    reason = f"rollback to {goal}"
    hold = Hold(
        pipeline,
        now,
        reason,
        version=to_version,
        commit=target.commit,
        name=request.name,
        branch=request.branch,
        **place,
    )
    held = f"{pipeline} held at v{to_version} in env {environment.name} ({reason})"
    holds.hold(hold, Event(HOLD, pipeline, now, held, to_version=to_version, **place))
    return hold


def _history(backend: Any, pipeline: str, project: str) -> List[Dict[str, Any]]:
    read = getattr(backend, "read", None)
    if read is None:
        return []  # the API backend: the local ledger only
    args = ["list", "pipeline", pipeline, "--history", "all", "--raw"]
    if project:
        args += ["--project", project]
    try:
        text = read(args)
    except BackendError as error:
        raise RollbackError(f"cannot read the history of {pipeline}: {error}") from None
    if not text:
        return []
    values: List[Dict[str, Any]] = []
    decoder = json.JSONDecoder()
    index = 0
    while index < len(text):
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            break
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError:
            raise RollbackError(f"pachctl list pipeline {pipeline} --history printed no JSON") from None
        if isinstance(value, dict):
            values.append(value)
    return values


def _image(spec: Dict[str, Any]) -> str:
    transform = spec.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    return image if isinstance(image, str) else ""

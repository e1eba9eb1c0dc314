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
again since cannot change what runs. Going back overrides the rule that a delivery only
moves a pipeline forward along its branch: the rollback says so and records it. The
pipeline is then held (see `holds`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from pachhook.core.sanitize import one_line
from pachhook.deliver.backends.pachctl import BackendError
from pachhook.deliver.holds import HOLD, ROLLBACK, Event, Hold, Holds
from pachhook.deliver.preview import FieldChange, diff_specs
from pachhook.deliver.steps.update import COMMIT_ANNOTATION, DIGEST_ANNOTATION, SPEC_FOLDER
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


@dataclass
class Outcome:
    pipeline: str
    from_version: str
    to_version: str
    target: Target
    image: str
    applied: bool  # False: the live pipeline already ran the target spec
    changes: List[FieldChange]


def parse_target(text: str) -> Dict[str, str]:
    """`--to` as {"version": N} (vN, or N) or {"commit": text}."""
    found = _VERSION.match(text.strip())
    if found and (text.startswith("v") or len(text) < 4):
        return {"version": found.group(1)}
    return {"commit": text.strip()}


def from_ledger(jobs: List[Job], pipeline: str, want: Dict[str, str], full_commit: str = "") -> Optional[Target]:
    """The newest delivery of `pipeline` matching the target whose applied spec file is still there."""
    candidates = []
    for job in jobs:
        if job.pipeline != pipeline:
            continue
        try:
            update = job.step("update").result or {}
            push = job.step("push").result or {}
        except KeyError:
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
        return Target(spec, version, job.commit, digest or annotations.get(DIGEST_ANNOTATION, ""), "ledger")
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
        return Target(spec, version, commit, str(_annotations(spec).get(DIGEST_ANNOTATION, "")), "cluster")
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


def rollback(
    common_dir: Path,
    backend: Any,
    pipeline: str,
    to: str,
    jobs: List[Job],
    out: Output,
    project: str = "",
    full_commit: str = "",
    reprocess: bool = False,
    dry_run: bool = False,
    is_ancestor: Optional[Callable[[str, str], bool]] = None,
) -> Outcome:
    """Find the target, re-apply it, hold the pipeline; RollbackError (one line) when it cannot."""
    want = parse_target(to)
    if full_commit:
        want = {"commit": full_commit}
    try:
        live = backend.inspect(pipeline, project)
    except BackendError as error:
        raise RollbackError(f"cannot read pipeline {pipeline} from the cluster: {error}") from None
    if live is None:
        raise RollbackError(f"pipeline {pipeline} does not exist on the cluster: nothing to roll back")
    target = from_ledger(jobs, pipeline, want, full_commit)
    if target is None:
        target = from_history(_history(backend, pipeline, project), want, full_commit)
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
    where = f"v{target.version}" + (f" (commit {target.commit[:12]})" if target.commit else "")
    out(f"rollback {pipeline}: from v{live_version}" + (f" (commit {live_commit[:12]})" if live_commit else ""))
    out(f"  to the user spec of {where}, from the {'local ledger' if target.source == 'ledger' else 'cluster history'}")
    if _SHA.match(live_commit) and _SHA.match(target.commit) and live_commit != target.commit:
        # only full SHAs reach git: an annotation is outside text and could look like an option
        back = is_ancestor(target.commit, live_commit) if is_ancestor is not None else False
        if back:
            out("  going back along the branch: the forward-only order is overridden for this rollback")
    spec = spec_to_apply(target, live_version)
    baseline = live.user_spec if live.user_spec is not None else live.effective_spec or {}
    changes = diff_specs(baseline, spec)
    image = _image(spec)
    for change in changes:
        out("  " + change.describe())
    if target.digest:
        out(f"  image pinned to the recorded digest: {image}")
    if dry_run:
        out("  dry run: nothing applied, no hold placed")
        return Outcome(pipeline, live_version, live_version, target, image, False, changes)
    if not changes:
        out(f"  v{live_version} already runs this spec: nothing applied")
        to_version = live_version
        applied = False
    else:
        path = Path(common_dir).joinpath(*SPEC_FOLDER, f"rollback-{int(time.time())}-{pipeline}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(spec, indent=2) + "\n"
        path.write_text(text, encoding="utf-8")
        try:
            backend.update(str(path), text, reprocess)
            after = backend.inspect(pipeline, project)
        except BackendError as error:
            raise RollbackError(f"applying the spec of {where} failed: {error}") from None
        if after is None:
            raise RollbackError(f"pipeline {pipeline} not found after the rollback was applied")
        if after.image != image:
            shown = one_line(after.image, 200) or "(no image)"
            raise RollbackError(f"pipeline {pipeline} v{one_line(after.version, 40)} runs {shown}, not {image}")
        to_version = one_line(after.version, 40)
        applied = True
        out(f"  applied: {pipeline} is at v{to_version}, running {image}")
    now = time.time()
    reason = f"rollback to {where}"
    message = f"rollback of {pipeline} from v{live_version} to the spec of {where}" + (
        f", applied as v{to_version}" if applied else ", already running"
    )
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
            project=project,
        )
    )
    holds.hold(
        Hold(pipeline, now, reason, version=to_version, commit=target.commit, project=project),
        Event(HOLD, pipeline, now, f"{pipeline} held at v{to_version} ({reason})", to_version=to_version),
    )
    out(
        f"  held: the queue will not update {pipeline} until `pachhook release {pipeline}`"
        " (or an explicit `pachhook run --commit REV`)"
    )
    return Outcome(pipeline, live_version, to_version, target, image, applied, changes)


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

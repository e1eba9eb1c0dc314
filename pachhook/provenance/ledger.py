"""Provenance: which commit, image digest and pipeline version belong together.

Everything is read from the jobs the queue recorded: the build step's image reference,
the push step's digest and the update step's pipeline version. A question may start from
any of them: a commit (full SHA or a prefix), an image (`IMAGE`, `IMAGE:TAG`,
`IMAGE@sha256:...` or a bare `sha256:...` digest), a pipeline (`NAME` or `NAME@VERSION`)
or a template path.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional

from pachhook.queue.jobs import Job
from pachhook.queue.states import STEP_NAMES

_HEX = re.compile(r"[0-9a-f]{4,40}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{6,64}\Z")


@dataclass
class Delivery:
    """One job's links, as far as its steps got."""

    job: int
    state: str
    commit: str
    branch: str
    pipeline: str
    template: str
    image: str  # the image repository built ("" for a template naming a fixed image)
    image_ref: str  # IMAGE:TAG as built and pushed
    digest: str  # sha256:... of the pushed manifest
    repo_digest: str  # IMAGE@sha256:...
    pipeline_version: str
    applied_image: str  # transform.image the pipeline runs after the update
    spec_path: str
    queued_at: float
    delivered_at: Optional[float]  # when the update step finished

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["queued_at"] = _iso(self.queued_at)
        data["delivered_at"] = _iso(self.delivered_at) if self.delivered_at else None
        return data


def deliveries(jobs: Iterable[Job]) -> List[Delivery]:
    """A Delivery per job, newest first."""
    found = []
    for job in jobs:
        results: Dict[str, Dict[str, str]] = {}
        finished: Dict[str, Optional[float]] = {}
        for step in job.steps:
            results[step.name] = dict(step.result or {})
            finished[step.name] = step.finished_at
        build, push, update = (results.get(name, {}) for name in STEP_NAMES)
        found.append(
            Delivery(
                job=job.id,
                state=job.state,
                commit=job.commit,
                branch=job.branch,
                pipeline=job.pipeline,
                template=job.template,
                image=job.image,
                image_ref=push.get("image_ref") or build.get("image_ref", ""),
                digest=push.get("digest", ""),
                repo_digest=push.get("repo_digest", ""),
                pipeline_version=update.get("pipeline_version", ""),
                applied_image=update.get("image", ""),
                spec_path=update.get("spec_path", ""),
                queued_at=job.created_at,
                delivered_at=finished.get("update") if update.get("pipeline_version") else None,
            )
        )
    found.sort(key=lambda item: (item.queued_at, item.job), reverse=True)
    return found


def kind_of(query: str) -> str:
    """What a query names: "digest", "image", "pipeline-version" or "name" (commit, pipeline, template)."""
    if _DIGEST.match(query) or "@sha256:" in query:
        return "digest"
    if "@" in query:
        return "pipeline-version"
    last = query.rsplit("/", 1)[-1]
    if "/" in query and not query.endswith((".json", ".yaml", ".yml")):
        return "image"
    if ":" in last:
        return "image"
    return "name"


def find(items: Iterable[Delivery], query: str, commit: Optional[str] = None) -> List[Delivery]:
    """The deliveries a query names; `commit` is the query resolved by git, when it resolves."""
    query = query.strip()
    kind = kind_of(query)
    matches = []
    for item in items:
        if _matches(item, query, kind, commit):
            matches.append(item)
    return matches


def _matches(item: Delivery, query: str, kind: str, commit: Optional[str]) -> bool:
    if kind == "digest":
        image, _, digest = query.rpartition("@")
        if not item.digest.startswith(digest):
            return False
        return not image or _repository(image) in (item.image, _repository(item.image_ref))
    if kind == "pipeline-version":
        name, _, version = query.rpartition("@")
        return item.pipeline == name and item.pipeline_version == version.lstrip("v")
    if kind == "image":
        if ":" in query.rsplit("/", 1)[-1]:
            return query in (item.image_ref, item.applied_image.split("@", 1)[0])
        return query in (item.image, _repository(item.image_ref))
    lowered = query.lower()
    if commit and item.commit == commit:
        return True
    if _HEX.match(lowered) and item.commit.startswith(lowered):
        return True
    return query in (item.pipeline, item.template)


def _repository(reference: str) -> str:
    """`host:5000/team/edges:tag@sha256:..` -> `host:5000/team/edges`."""
    reference = reference.split("@", 1)[0]
    slash = reference.rfind("/")
    colon = reference.find(":", slash + 1)
    return reference[:colon] if colon != -1 else reference


def _iso(stamp: Optional[float]) -> str:
    if not stamp:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def format_text(items: List[Delivery]) -> str:
    """A short block per delivery; fields a step has not recorded yet are left out."""
    blocks = []
    for item in items:
        lines = [f"commit    {item.commit}" + (f" ({item.branch})" if item.branch else "")]
        version = f" version {item.pipeline_version}" if item.pipeline_version else ""
        lines.append(f"pipeline  {item.pipeline}{version}")
        lines.append(f"template  {item.template}")
        if item.image_ref:
            lines.append(f"image     {item.image_ref}")
        if item.digest:
            lines.append(f"digest    {item.digest}")
        if item.applied_image and item.applied_image != item.image_ref:
            lines.append(f"runs      {item.applied_image}")
        when = item.delivered_at or item.queued_at
        lines.append(f"{'delivered' if item.delivered_at else 'queued   '} {_iso(when)} (job {item.job}, {item.state})")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

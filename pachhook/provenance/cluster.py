"""Provenance read from the cluster: output commit -> job -> pipeline version -> git commit.

Pachyderm 2.x gives every primitive needed and this module stitches them together
(docs/provenance.md walks through the same calls by hand):

- an output commit and the job that made it share one ID, the commit set's global ID
  (pfs.proto CommitInfo, pps.proto JobInfo; docs "Global Identifier");
- `inspect job PIPELINE@ID --raw` names the pipeline version the job ran
  (`pipelineVersion`), and `list pipeline NAME --history all --raw` that version's spec,
  whose annotations pachhook wrote (`pachhook.io/commit`, `/template`, `/image-digest`);
- `list datum PIPELINE@ID --raw` reports, per datum, the image Kubernetes ran (`imageId`,
  Pachyderm 2.3+), which is compared with the digest the version recorded;
- `inspect commit --raw` lists the commit's direct provenance: the input commits, each
  walked the same way up the DAG.

The questions go through a view of the cluster (deliver/backends/clusterview.py): pachctl
commands, or the gRPC calls of the API backend, in the environment's private session.
Everything shown comes from outside: strings are stripped of control characters and
bounded before they reach a terminal.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from pachhook.core import gitrepo
from pachhook.deliver.backends.rawoutput import ClusterError, clean
from pachhook.deliver.stamp import METADATA_COMMIT
from pachhook.deliver.steps.build import remote_url
from pachhook.queue.affected import input_repos

GLOBAL_ID = re.compile(r"[0-9a-f]{32}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

COMMIT_ANNOTATION = "pachhook.io/commit"
TEMPLATE_ANNOTATION = "pachhook.io/template"
DIGEST_ANNOTATION = "pachhook.io/image-digest"


def _get(data: Any, *names: str) -> Any:
    """The first of `names` present in a protojson object (camelCase from 2.7, proto names before)."""
    if not isinstance(data, dict):
        return None
    for name in names:
        if name in data:
            return data[name]
    return None


def _map(value: Any) -> Dict[str, str]:
    return {clean(k, 120): clean(v) for k, v in value.items()} if isinstance(value, dict) else {}


def digest_in(text: str) -> str:
    """`docker-pullable://repo@sha256:…` or `repo:tag@sha256:…` -> `sha256:…` ("" if none)."""
    match = _DIGEST.search(text or "")
    return match.group(0) if match else ""


@dataclass
class GitCommit:
    """A git commit as this clone knows it."""

    sha: str
    subject: str = ""
    author: str = ""
    date: str = ""
    remote: str = ""
    in_clone: bool = False


@dataclass
class ImageCheck:
    """The image a pipeline version names, the digest it recorded, and what Kubernetes ran."""

    image: str
    recorded: str  # sha256:… from the digest annotation, the pinned reference or the ledger
    ran: List[str] = field(default_factory=list)  # distinct digests of the job's datums' imageId
    verdict: str = ""  # "match", "mismatch", "not recorded", "not reported"


@dataclass
class Node:
    """One commit of the provenance tree; a job's output commit, or an input (data) commit."""

    repo: str
    commit: str
    project: str
    origin: str  # USER, AUTO (a job's output), …
    kind: str  # "job" or "data"
    job_state: str = ""
    job_reason: str = ""
    pipeline_version: str = ""
    spec_commit: str = ""
    annotations: Dict[str, str] = field(default_factory=dict)  # pachhook.io/* of the version
    git: Optional[GitCommit] = None
    image: Optional[ImageCheck] = None
    commit_metadata: Dict[str, str] = field(default_factory=dict)
    pipeline_metadata: Dict[str, str] = field(default_factory=dict)
    ledger: List[Dict[str, Any]] = field(default_factory=list)
    inputs: List["Node"] = field(default_factory=list)
    note: str = ""  # "depth limit", "shown above", a problem

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def walk(self) -> Iterator["Node"]:
        yield self
        for child in self.inputs:
            yield from child.walk()


class GitSide:
    """What the local clone (if any) says about git commits, and its ledger."""

    def __init__(self, root: Any = None, deliveries: Optional[List[Any]] = None) -> None:
        self.root = root
        self.deliveries = deliveries or []
        self._cache: Dict[str, GitCommit] = {}
        self._remote: Optional[str] = None

    def commit(self, sha: str) -> GitCommit:
        if sha in self._cache:
            return self._cache[sha]
        found = GitCommit(sha=clean(sha, 64))
        if self.root is not None and re.fullmatch(r"[0-9a-f]{7,64}", sha):
            try:
                raw = gitrepo.git(
                    ["show", "-s", "--format=%H%x00%s%x00%an <%ae>%x00%aI", f"{sha}^{{commit}}", "--"], self.root
                )
            except gitrepo.GitError:
                raw = b""
            parts = raw.decode("utf-8", errors="replace").strip().split("\0")
            if len(parts) == 4:
                found = GitCommit(
                    sha=parts[0],
                    subject=clean(parts[1]),
                    author=clean(parts[2]),
                    date=parts[3],
                    remote=self.remote(),
                    in_clone=True,
                )
        self._cache[sha] = found
        return found

    def remote(self) -> str:
        if self._remote is None:
            self._remote = clean(remote_url(self.root, "")) if self.root is not None else ""
        return self._remote

    def ledger_for(self, pipeline: str, commit: str) -> List[Dict[str, Any]]:
        return [
            {
                "job": item.job,
                "state": item.state,
                "digest": item.digest,
                "image_ref": item.image_ref,
                "pipeline_version": item.pipeline_version,
            }
            for item in self.deliveries
            if item.pipeline == pipeline and commit and item.commit == commit
        ]


class Tracer:
    """Build provenance trees from a view of the cluster (clusterview.py) and a GitSide (the clone)."""

    def __init__(self, view: Any, git: GitSide, project: str = "") -> None:
        self.reader = view
        self.git = git
        self.project = project
        self._seen: Set[str] = set()
        self._history: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}

    def from_commit(self, repo: str, ref: str, depth: Optional[int], project: str = "") -> Node:
        """The tree rooted at REPO@REF (an output commit, a job's ID, or a branch) of
        `project` (the view's when "")."""
        info = self.reader.commit(repo, ref, project)
        if info is None:
            where = f"{clean(project, 120)}/" if project else ""
            raise ClusterError(f"commit {where}{clean(repo, 120)}@{clean(ref, 120)} not found")
        return self._node(info, depth)

    def from_global_id(self, global_id: str, depth: Optional[int]) -> List[Node]:
        """The trees of every job in a commit set, downstream-most first. A commit set spans
        projects (`list job ID` is InspectJobSet, whatever the project): each job is read in
        its pipeline's own project."""
        jobs = self.reader.jobs_in_set(global_id)
        if not jobs:
            raise ClusterError(f"no job has the global ID {clean(global_id, 64)}")
        named: List[Tuple[str, str]] = []
        for job in jobs:
            pipeline = _get(_get(job, "job"), "pipeline") or {}
            named.append((str(_get(_get(pipeline, "project"), "name") or ""), str(_get(pipeline, "name") or "")))
        upstream: Set[str] = set()
        for job in jobs:
            details = _get(job, "details") or {}
            upstream.update(repo for repo in input_repos(_get(details, "input")) if repo)
        ordered = sorted(named, key=lambda item: (item[1] in upstream, item[1], item[0]))
        return [self.from_commit(name, global_id, depth, project) for project, name in ordered]

    def _node(self, info: Dict[str, Any], depth: Optional[int]) -> Node:
        commit = _get(info, "commit") or {}
        repo = _get(commit, "repo") or {}
        name = clean(_get(repo, "name"), 120)
        commit_id = clean(_get(commit, "id"), 64)
        # The commit's own project (2.5+ names it), asked for by name from here on: its job,
        # its version and its inputs may be another project's than the view's.
        named = clean(_get(_get(repo, "project"), "name") or "", 120)
        project = named or clean(self.project or "default", 120)
        origin = clean(_get(_get(info, "origin"), "kind") or "", 20)
        key = f"{project}/{name}@{commit_id}"
        node = Node(repo=name, commit=commit_id, project=project, origin=origin, kind="data")
        node.commit_metadata = _map(_get(info, "metadata"))
        if key in self._seen:
            node.note = "shown above"
            return node
        self._seen.add(key)
        if origin != "USER":
            job = self.reader.job(name, commit_id, named)
            if job is not None:
                node.kind = "job"
                self._fill_job(node, job, named)
        error = _get(info, "error")
        if error and not node.job_reason:
            node.job_reason = clean(error)
        provenance = [
            item
            for item in (_get(info, "directProvenance", "direct_provenance") or [])
            if isinstance(item, dict) and _get(_get(item, "repo"), "type") not in ("spec", "meta")
        ]
        if not provenance:
            return node
        if depth is not None and depth <= 0:
            node.note = f"{len(provenance)} input commit(s) not shown (depth limit)"
            return node
        for item in provenance:
            upstream = _get(item, "repo") or {}
            upstream_name = str(_get(upstream, "name") or "")
            upstream_id = str(_get(item, "id") or "")
            # an input may be another project's repo (a pfs input names its project)
            upstream_project = str(_get(_get(upstream, "project"), "name") or named)
            found = self.reader.commit(upstream_name, upstream_id, upstream_project)
            if found is None:
                node.inputs.append(
                    Node(
                        repo=clean(upstream_name, 120),
                        commit=clean(upstream_id, 64),
                        project=clean(upstream_project, 120) or project,
                        origin="",
                        kind="data",
                        note="not found in the cluster (deleted?)",
                    )
                )
                continue
            node.inputs.append(self._node(found, None if depth is None else depth - 1))
        return node

    def _fill_job(self, node: Node, job: Dict[str, Any], project: str = "") -> None:
        """The job's facts, its version's (read in `project`, the view's when "") and its datums'."""
        node.job_state = clean(_get(job, "state") or "", 40)
        node.job_reason = clean(_get(job, "reason") or "")
        node.pipeline_version = clean(_get(job, "pipelineVersion", "pipeline_version") or "", 20)
        version = self._version(node.repo, node.pipeline_version, project)
        details = _get(version, "details") or _get(job, "details") or {}
        transform = _get(details, "transform") or {}
        image = clean(_get(transform, "image") or "")
        annotations = _map(_get(_get(details, "metadata"), "annotations"))
        node.annotations = {k: v for k, v in annotations.items() if k.startswith("pachhook.io/")}
        node.pipeline_metadata = _map(_get(version, "metadata"))
        node.spec_commit = clean(_get(_get(version, "specCommit", "spec_commit"), "id") or "", 64)
        sha = node.annotations.get(COMMIT_ANNOTATION) or node.pipeline_metadata.get(METADATA_COMMIT) or ""
        if not sha:
            sha = node.commit_metadata.get(METADATA_COMMIT, "")
        if sha:
            node.git = self.git.commit(sha)
            node.ledger = self.git.ledger_for(node.repo, node.git.sha)
        recorded = node.annotations.get(DIGEST_ANNOTATION) or digest_in(image)
        if not recorded:
            recorded = next((entry["digest"] for entry in node.ledger if entry.get("digest")), "")
        ran: List[str] = []
        for datum in self.reader.datums(node.repo, node.commit, project):
            digest = digest_in(str(_get(datum, "imageId", "image_id") or ""))
            if digest and digest not in ran:
                ran.append(digest)
        if not ran:
            verdict = "not reported"
        elif not recorded:
            verdict = "not recorded"
        elif ran == [recorded]:
            verdict = "match"
        else:
            verdict = "mismatch"
        node.image = ImageCheck(image=image, recorded=recorded, ran=ran, verdict=verdict)

    def _version(self, pipeline: str, version: str, project: str = "") -> Dict[str, Any]:
        """Version `version` of `project`'s pipeline (same-named pipelines of two projects are two)."""
        if (project, pipeline) not in self._history:
            self._history[(project, pipeline)] = self.reader.history(pipeline, project)
        for info in self._history[(project, pipeline)]:
            if str(_get(info, "version")) == version:
                return info
        return {}

    def versions_of_commit(self, sha: str) -> List[Dict[str, Any]]:
        """`COMMIT --cluster`: every pipeline version made from the git commit, with its jobs."""
        found: List[Dict[str, Any]] = []
        for info in self.reader.history():
            details = _get(info, "details") or {}
            annotations = _map(_get(_get(details, "metadata"), "annotations"))
            metadata = _map(_get(info, "metadata"))
            if sha not in (annotations.get(COMMIT_ANNOTATION), metadata.get(METADATA_COMMIT)):
                continue
            pipeline = _get(info, "pipeline") or {}
            name = clean(_get(pipeline, "name"), 120)
            version = clean(_get(info, "version"), 20)
            jobs: List[Dict[str, str]] = []
            for job in self.reader.jobs_of(name, str(_get(_get(pipeline, "project"), "name") or "")):
                if str(_get(job, "pipelineVersion", "pipeline_version")) != version:
                    continue
                output = _get(job, "outputCommit", "output_commit") or {}
                output_name = clean(_get(_get(output, "repo"), "name"), 120)
                jobs.append(
                    {
                        "job": clean(_get(_get(job, "job"), "id"), 64),
                        "state": clean(_get(job, "state") or "", 40),
                        "reason": clean(_get(job, "reason") or ""),
                        "output_commit": f"{output_name}@{clean(_get(output, 'id'), 64)}",
                        "created": clean(_get(job, "created") or "", 40),
                    }
                )
            found.append(
                {
                    "pipeline": name,
                    "project": clean(_get(_get(pipeline, "project"), "name") or "default", 120),
                    "version": version,
                    "spec_commit": clean(_get(_get(info, "specCommit", "spec_commit"), "id") or "", 64),
                    "image": clean(_get(_get(details, "transform"), "image") or ""),
                    "template": annotations.get(TEMPLATE_ANNOTATION, ""),
                    "jobs": jobs,
                }
            )
        found.sort(key=lambda item: (str(item["pipeline"]), int(item["version"]) if item["version"].isdigit() else 0))
        return found


def _short(text: str, size: int = 12) -> str:
    return text[:size] if re.fullmatch(r"[0-9a-f]{16,}", text) else text


def format_tree(roots: List[Node]) -> str:
    """A compact tree: one header line per commit, its facts indented under it."""
    lines: List[str] = []
    for index, root in enumerate(roots):
        if index:
            lines.append("")
        _format_node(root, "", "", lines)
    return "\n".join(lines)


def _format_node(node: Node, first: str, rest: str, lines: List[str]) -> None:
    header = f"{node.repo}@{node.commit}"
    if node.kind == "job":
        state = node.job_state.replace("JOB_", "").lower() or "?"
        header += f"  job {state}  pipeline {node.repo} v{node.pipeline_version or '?'}"
    else:
        header += "  data" + (f" ({node.origin.lower()} commit)" if node.origin else "")
    if node.project not in ("", "default"):
        header += f"  project {node.project}"
    lines.append(first + header)
    bar = rest + ("|  " if node.inputs else "   ")
    if node.job_reason:
        lines.append(f"{bar}reason    {node.job_reason}")
    if node.kind == "job":
        if node.git is not None:
            git = node.git
            if git.in_clone:
                lines.append(f"{bar}git       {_short(git.sha)} {git.subject!r}")
                lines.append(f"{bar}          {git.author}, {git.date}")
                if git.remote:
                    lines.append(f"{bar}remote    {git.remote}")
            else:
                lines.append(f"{bar}git       {git.sha} (not in this clone)")
        else:
            lines.append(f"{bar}git       unknown (the version has no {COMMIT_ANNOTATION} annotation)")
        template = node.annotations.get(TEMPLATE_ANNOTATION)
        if template:
            lines.append(f"{bar}template  {template}")
        if node.image is not None:
            check = node.image
            lines.append(f"{bar}image     {check.image or '(none)'}")
            lines.append(f"{bar}digest    {_digest_line(check)}")
        stamped = {k: v for k, v in node.commit_metadata.items() if k.startswith("pachhook.io/")}
        if stamped:
            lines.append(f"{bar}metadata  " + " ".join(f"{k}={_short(v)}" for k, v in sorted(stamped.items())))
        for entry in node.ledger:
            lines.append(f"{bar}ledger    job {entry['job']} ({entry['state']})")
    if node.note:
        lines.append(f"{bar}({node.note})")
    for index, child in enumerate(node.inputs):
        last = index == len(node.inputs) - 1
        _format_node(child, rest + ("`- " if last else "|- "), rest + ("   " if last else "|  "), lines)


def _digest_line(check: ImageCheck) -> str:
    recorded = check.recorded or "(not recorded)"
    if check.verdict == "match":
        return f"{recorded} (Kubernetes ran the same)"
    if check.verdict == "mismatch":
        return f"{recorded} MISMATCH: Kubernetes ran {', '.join(check.ran)}"
    if check.verdict == "not recorded":
        return f"(not recorded); Kubernetes ran {', '.join(check.ran)}"
    return f"{recorded} (the cluster reports no image ID: Pachyderm before 2.3, or no datum ran)"


def format_versions(sha: str, git: Optional[GitCommit], versions: List[Dict[str, Any]]) -> str:
    """`COMMIT --cluster` as text: the versions, then their jobs indented."""
    lines = []
    if git is not None and git.in_clone:
        lines.append(f"commit {git.sha} {git.subject!r} ({git.author}, {git.date})")
    else:
        lines.append(f"commit {sha}")
    for version in versions:
        where = f" project {version['project']}" if version["project"] != "default" else ""
        if version.get("environment"):
            where = f" env {version['environment']}{where}"
        lines.append(f"|- pipeline {version['pipeline']} v{version['version']}{where}  image {version['image']}")
        for job in version["jobs"]:
            state = job["state"].replace("JOB_", "").lower()
            reason = f"  ({job['reason']})" if job["reason"] else ""
            lines.append(f"|    job {job['job']} {state}  output {job['output_commit']}{reason}")
        if not version["jobs"]:
            lines.append("|    no job ran this version")
    return "\n".join(lines)

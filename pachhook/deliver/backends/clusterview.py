"""The cluster's commits, jobs, datums, pipeline history and metadata, through either backend.

Provenance (provenance/cluster.py) and the stamp and verify after an update
(deliver/stamp.py) ask the cluster the same few questions. A view answers them in one
shape whichever backend the environment uses: protojson objects (JSON names in camelCase,
64-bit integers as strings, enums by name), as `pachctl ... --raw` prints them and as
pachyderm-sdk's messages convert with betterproto's `to_dict()`.

`PachctlView` (here) runs pachctl 2.x read commands; `ApiView` (backends/api.py, the one
module that imports pachyderm-sdk) calls the gRPC services. Every method raises
ClusterError (one line) when the cluster cannot answer, and returns None or [] when what
was asked for does not exist.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pachhook.deliver.backends.pachctl import BackendError, parse_version
from pachhook.deliver.backends.rawoutput import ClusterError, messages, part

Version = Tuple[int, int, int]


@dataclass
class MetadataEdit:
    """Keys to add and keys to edit on one pipeline (`ref` "") or one commit (`ref` its ID)."""

    kind: str  # "pipeline" or "commit"
    name: str  # the pipeline, or the commit's repo
    ref: str = ""
    add: Dict[str, str] = field(default_factory=dict)
    edit: Dict[str, str] = field(default_factory=dict)


# (executable, context, address or PACH_CONFIG) -> (asked at, version): a worker delivering
# many jobs to one cluster asks it once every few minutes, not once per job.
_SERVER_VERSIONS: Dict[Tuple[str, str, str], Tuple[float, Optional[Version]]] = {}
SERVER_VERSION_SECONDS = 600.0


class PachctlView:
    """The questions asked with pachctl 2.x `--raw` commands, through the backend's session."""

    name = "pachctl"

    def __init__(self, backend: Any, project: str = "") -> None:
        self.backend = backend
        self.project = project

    def _run(self, args: Sequence[str], missing_ok: bool = True) -> Optional[str]:
        try:
            out = self.backend.read(list(args), missing_ok)
        except BackendError as error:
            raise ClusterError(str(error)) from None
        return None if out is None else str(out)

    def _read(self, args: Sequence[str], project: str = "") -> List[Dict[str, Any]]:
        """`pachctl ARGS --raw` in `project` (the view's when ""; with neither, pachctl's
        default: the context's project). Every command asked here has --project
        (src/server/pfs/cmds/cmds.go, pps/cmds/cmds.go)."""
        project = project or self.project
        argv = [*args, "--raw"] + (["--project", project] if project else [])
        out = self._run(argv)
        return [] if out is None else messages(out)

    def _one(self, args: Sequence[str], project: str = "") -> Optional[Dict[str, Any]]:
        found = self._read(args, project)
        return found[0] if found else None

    def version(self) -> Version:
        """What both ends support: the lower of pachctl's version and pachd's (pachd's
        unknown: pachctl's). BackendError when pachctl cannot say its own."""
        client = self.backend.version()
        server = self.server_version()
        return min(client, server) if server is not None else client

    def server_version(self) -> Optional[Version]:
        """pachd's version from `pachctl version` (the row named pachd), None when it does not say."""
        env = getattr(self.backend, "env", None) or os.environ
        executable = str(getattr(self.backend, "executable", ""))
        session = getattr(self.backend, "session", None)
        if session is not None:
            # Each delivery copies its context into a new private file (session.py): the
            # context's name and address say which cluster it is, the file's path does not.
            key = (executable, session.context, "address=" + session.address)
        else:
            key = (executable, env.get("PACH_CONTEXT", ""), env.get("PACH_CONFIG", ""))
        cached = _SERVER_VERSIONS.get(key)
        if cached is not None and time.monotonic() - cached[0] < SERVER_VERSION_SECONDS:
            return cached[1]
        found: Optional[Version] = None
        try:
            out = self._run(["version"]) or ""
        except ClusterError:
            out = ""
        for line in out.splitlines():
            words = line.split()
            if len(words) > 1 and words[0] == "pachd":
                try:
                    found = parse_version(words[1])
                except ValueError:
                    found = None
        _SERVER_VERSIONS[key] = (time.monotonic(), found)
        return found

    def pipeline(self, name: str) -> Optional[Dict[str, Any]]:
        return self._one(["inspect", "pipeline", name])

    def commit(self, repo: str, ref: str, project: str = "") -> Optional[Dict[str, Any]]:
        """REPO@REF of `project` (the view's when ""): a commit may be another project's input."""
        return self._one(["inspect", "commit", f"{repo}@{ref}"], project)

    def job(self, pipeline: str, job_id: str, project: str = "") -> Optional[Dict[str, Any]]:
        return self._one(["inspect", "job", f"{pipeline}@{job_id}"], project)

    def jobs_in_set(self, global_id: str) -> List[Dict[str, Any]]:
        return self._read(["list", "job", global_id])

    def jobs_of(self, pipeline: str, project: str = "") -> List[Dict[str, Any]]:
        """The jobs of every version of `pipeline`: without `--history all` pachctl lists only
        the current version's (docs: "Return all jobs from the most recent version")."""
        return self._read(["list", "job", "-p", pipeline, "--history", "all"], project)

    def datums(self, pipeline: str, job_id: str, project: str = "") -> List[Dict[str, Any]]:
        return self._read(["list", "datum", f"{pipeline}@{job_id}"], project)

    def history(self, pipeline: str = "", project: str = "") -> List[Dict[str, Any]]:
        """Every version of `pipeline` (of every pipeline when ""), newest first."""
        return self._read(["list", "pipeline", *([pipeline] if pipeline else []), "--history", "all"], project)

    def output_commits(self, global_id: str, repos: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """The output commits of `repos` (of the view's project) in commit set `global_id`, by
        repo, from one `pachctl list commit ID --raw`. That is InspectCommitSet: every commit
        of the set in every project (a commit set spans projects, and --project does not
        filter it), the spec and meta commits too, so only the user-type commits of the repos
        asked for, in this project, are kept."""
        wanted = set(repos)
        found: Dict[str, Dict[str, Any]] = {}
        for info in self._read(["list", "commit", global_id]):
            commit = part(info, "commit")
            repo = part(commit, "repo")
            if (
                repo.get("name") in wanted
                and repo.get("type", "user") == "user"
                and commit.get("id") == global_id
                and in_project(repo, self.project)
            ):
                found[str(repo["name"])] = info
        return found

    def edit_metadata(self, kind: str, name: str, ref: str, add: Dict[str, str], edit: Dict[str, str]) -> None:
        self.edit_metadata_all([MetadataEdit(kind, name, ref, add, edit)])

    def edit_metadata_all(self, edits: Sequence[MetadataEdit]) -> None:
        """Every key of every target in one `pachctl edit metadata` (2.10+; pipelines 2.11+).

        pachctl reads its arguments in sets of four, KIND PICKER OP KEY=VALUE, one pair per
        set, and sends the whole line as one EditMetadata request: all keys or none
        (src/server/metadata/cmds/cmds.go, parseEditMetadataCmdline).
        """
        sets: List[List[str]] = []
        for target in edits:
            picker = f"{self.project}/{target.name}" if self.project else target.name
            if target.ref:
                picker += f"@{target.ref}"
            sets += [
                [target.kind, picker, operation, f"{kv_token(key)}={kv_token(value)}"]
                for operation, values in (("add", target.add), ("edit", target.edit))
                for key, value in values.items()
            ]
        if sets:
            # A target that is not there fails the request (nothing of it is written): an error
            # here, as the API view raises it, never a silent "not found".
            self._run(["edit", "metadata", *(arg for edit_set in sets for arg in edit_set)], missing_ok=False)


def in_project(owner: Dict[str, Any], project: str) -> bool:
    """Whether a protojson Repo or Pipeline belongs to `project` (one naming none is the
    `default` project's, pfs.Repo.EnsureProject); any project does when `project` is ""."""
    return not project or (part(owner, "project").get("name") or "default") == project


_KV_BARE = re.compile(r"[^;=\"'\s]+")


def kv_token(text: str) -> str:
    """`text` as pachctl's key=value parser reads it back (src/internal/kvparse/kvgrammar).

    A bare word may hold anything but `;`, `=`, quotes and white space; anything else is
    double-quoted, where only `\\` and `\"` need escaping. An empty value stays empty.
    """
    if text == "" or _KV_BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def view_for(backend: Any, project: str = "") -> Any:
    """The view of the cluster `backend` talks to (its own for the API backend)."""
    if getattr(backend, "name", "") == "api":
        return backend.view(project)
    return PachctlView(backend, project)

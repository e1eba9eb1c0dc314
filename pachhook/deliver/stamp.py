"""After an update: write provenance into Pachyderm itself, and verify the job the update started.

Stamping (docs/provenance.md "Stamped into Pachyderm"): the spec annotations travel with
every update; on top of them pachhook writes the same keys as
- pipeline metadata, when client and cluster are 2.11+ (`pachctl edit metadata pipeline`,
  metadata.proto, pachyderm#10184);
- commit metadata on the output commit of the job the update started, 2.10+
  (`pachctl edit metadata commit PIPELINE@ID`, pachyderm#9845), so `pachctl inspect
  commit --raw` shows the git commit on the data itself.
The step's result says which were written. Both backends do it (backends/clusterview.py):
pachctl with the commands above, the API backend with EditMetadata, InspectCommit and
InspectJobSet. Pipelines updated together are stamped with one `edit metadata` request and
their jobs read with one `list job ID` per look (after_updates). Which metadata is written
follows what both ends support: the lower of pachctl's and pachd's versions, or pachd's
(GetVersion) through the API.

Verifying: an update gives the pipeline a new spec commit whose ID is the commit set of the
jobs it starts (api_server.go L2593, propagateJobs; reference P13), so after the update
`PIPELINE@spec_commit.id` is the job to wait for. It is polled, bounded by
`verify_timeout`; its state and, when it failed, its reason are recorded. A failed job does
not fail the delivery (the pipeline was updated; a retry would apply the same spec again):
`pachhook status` shows it as `failed in cluster`, and the next commit's hook line names it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pachhook.deliver.backends.clusterview import MetadataEdit, in_project, view_for
from pachhook.deliver.backends.rawoutput import ClusterError, clean, part
from pachhook.deliver.earlyread import Early

# Keys pachhook writes into Pachyderm metadata (commit 2.10+, pipeline 2.11+).
METADATA_COMMIT = "pachhook.io/commit"
METADATA_TEMPLATE = "pachhook.io/template"
METADATA_DIGEST = "pachhook.io/image-digest"

# pps.proto JobState: the states a job does not leave.
FINISHED_STATES = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE")
FAILED_STATES = ("JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE")
COMMIT_METADATA_SINCE = (2, 10, 0)
PIPELINE_METADATA_SINCE = (2, 11, 0)
POLL_SECONDS = (0.2, 0.5, 1.0, 2.0)  # quick first looks (a job can end at once), then every 2 s


@dataclass
class AfterUpdate:
    """What was written and seen after an update; stored as strings in the step's result."""

    job: str = ""  # PIPELINE@ID of the job the update started
    job_state: str = ""
    job_reason: str = ""
    stamped: List[str] = field(default_factory=lambda: ["annotations"])
    verify: str = ""  # "finished", "timed out after Ns", "off", "not supported: …", "no job"
    problems: List[str] = field(default_factory=list)

    def result(self) -> Dict[str, str]:
        data = {"stamped": ",".join(self.stamped), "verify": self.verify}
        if self.job:
            data["cluster_job"] = self.job
        if self.job_state:
            data["job_state"] = self.job_state
        if self.job_reason:
            data["job_reason"] = self.job_reason
        if self.problems:
            data["stamp_problem"] = "; ".join(self.problems)
        return data


def stamp_values(commit: str, template: str, digest: str) -> Dict[str, str]:
    values = {METADATA_COMMIT: commit, METADATA_TEMPLATE: template}
    if digest:
        values[METADATA_DIGEST] = digest
    return values


@dataclass
class Updated:
    """One pipeline just updated: what to stamp on it and whose log says so.

    `applied` is the version as the update step read it back after the apply (a
    PipelineState); when it names its spec commit the pipeline is not read again.
    """

    pipeline: str
    values: Dict[str, str]
    applied: Any = None
    log: Callable[[str], None] = lambda line: None


def _edit(kind: str, name: str, ref: str, current: Any, values: Dict[str, str]) -> MetadataEdit:
    """Add the keys not there and edit those that are: other keys a team keeps stay untouched,
    and a retried update stamps again without an "already exists" error."""
    current = current if isinstance(current, dict) else {}
    added = {k: v for k, v in values.items() if k not in current}
    edited = {k: v for k, v in values.items() if k in current and current[k] != v}
    return MetadataEdit(kind, name, ref, added, edited)


def after_update(
    backend: Any,
    pipeline: str,
    project: str,
    values: Dict[str, str],
    verify: bool = True,
    timeout: float = 300.0,
    log: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    applied: Any = None,
) -> AfterUpdate:
    """Stamp the new version and its job's output commit, then wait (bounded) for that job."""
    return after_updates(backend, project, [Updated(pipeline, values, applied, log)], verify, timeout, sleep)[0]


def after_updates(
    backend: Any,
    project: str,
    updated: Sequence[Updated],
    verify: bool = True,
    timeout: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    supported: Optional[Tuple[int, int, int]] = None,
) -> List[AfterUpdate]:
    """Stamp and verify pipelines updated together (one transaction, or one update).

    Pipelines updated in one transaction share its commit set (driver.runTransaction:
    the transaction's ID is the ID of every spec commit, job and output commit it makes),
    so with pachctl their output commits are one `list commit ID`, their jobs one `list
    job ID` per look, and every key of every pipeline and commit goes in one `edit
    metadata` request (all or nothing): a fixed number of calls, not 4-5 per pipeline.

    `supported` is what view.version() said before (read while the images built:
    deliver/earlyread.py), None to ask it here. The stamp and the first look at the jobs do
    not depend on each other (a job runs whether or not its output commit carries metadata),
    so the stamp is written in a thread of its own while the jobs are read; its lines are
    logged once it is written, after the jobs' "waiting" lines.
    """
    outcomes = [AfterUpdate() for _ in updated]
    if getattr(backend, "name", "") not in ("pachctl", "api"):
        for outcome in outcomes:
            outcome.verify = "not supported with this backend (annotations only)"
        return outcomes
    # The project the pipelines were updated in: the environment's, else the session's (the
    # context's). Named, so that jobs and output commits of a commit set, which spans
    # projects, are told apart from a same-named pipeline's of another project.
    session = getattr(backend, "session", None)
    view = view_for(backend, project or str(getattr(session, "project", "") or ""))
    try:
        if supported is None:
            supported = view.version()
    except Exception as error:  # BackendError, ClusterError: the update itself went through
        for outcome in outcomes:
            outcome.verify = f"not done: {clean(error)}"
        return outcomes
    if supported < (2, 0, 0):
        for outcome in outcomes:
            outcome.verify = "not supported before Pachyderm 2.0 (no global IDs)"
        return outcomes
    live: List[Tuple[Updated, AfterUpdate, str, Any]] = []  # (update, outcome, job ID, pipeline metadata)
    for one, outcome in zip(updated, outcomes):
        found = _job_of(view, one, outcome)
        if found is not None:
            outcome.job = f"{one.pipeline}@{found[0]}"
            live.append((one, outcome, found[0], found[1]))
    if not verify:
        _stamp(view, supported, live)
        _log_stamps(live)
        for _, outcome, _, _ in live:
            outcome.verify = "off"
        return outcomes
    # The stamp's thread and this one each write only their own fields of an outcome (the
    # stamp: stamped, problems; the wait: job_state, job_reason, verify), and the view holds
    # no state a call changes (a pachctl call is a process of its own; an API call an RPC on
    # a channel gRPC lets threads share). The session's configuration file is not written
    # by these calls: pachctl recorded the deployment ID at the session's first call.
    stamping = Early(lambda: _stamp(view, supported, live), "pachhook-stamp")
    try:
        _wait(view, [(one, outcome, job_id) for one, outcome, job_id, _ in live], timeout, sleep)
    finally:
        stamping.result()
    _log_stamps(live)
    return outcomes


def _job_of(view: Any, one: Updated, outcome: AfterUpdate) -> Optional[Tuple[str, Any]]:
    """The ID of the job the update started (its spec commit's) and the version's metadata;
    None, with the outcome saying why, when there is none."""
    read_back = str(getattr(one.applied, "spec_commit", None) or "")
    if read_back:
        job_id, metadata = clean(read_back, 64), getattr(one.applied, "metadata", None)
    else:
        try:
            info = view.pipeline(one.pipeline)
        except ClusterError as error:
            outcome.verify = f"not done: {error}"
            return None
        spec_commit = info.get("specCommit") or info.get("spec_commit") if info else None
        job_id = clean(spec_commit.get("id") or "", 64) if isinstance(spec_commit, dict) else ""
        metadata = (info or {}).get("metadata")
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        outcome.verify = "not done: the cluster names no spec commit for the new version"
        return None
    return job_id, metadata


def _stamp(view: Any, supported: Tuple[int, int, int], live: Sequence[Tuple[Updated, AfterUpdate, str, Any]]) -> None:
    """Pipeline metadata (2.11+) and output commit metadata (2.10+) of every live update, in one request.

    The output commits are written without being read first: `edit` sets a key whether or
    not it is there (pachd's metadata server, editMetadata: EditKey stores the value; only
    AddKey refuses a key that exists). Only when that request fails (one request, so
    nothing of it was written) are the output commits read, to stamp those that exist and
    name those that do not."""
    if not _write_stamps(view, supported, live, read_commits=False):
        _write_stamps(view, supported, live, read_commits=True)


def _log_stamps(live: Sequence[Tuple[Updated, AfterUpdate, str, Any]]) -> None:
    """Each pipeline's log says what was stamped (in the caller's thread: a job's log may be a
    queue connection of that thread)."""
    for one, outcome, _, _ in live:
        for problem in outcome.problems:
            one.log(f"provenance not stamped: {problem}")
        one.log(f"provenance stamped as {', '.join(outcome.stamped)}")


def _write_stamps(
    view: Any,
    supported: Tuple[int, int, int],
    live: Sequence[Tuple[Updated, AfterUpdate, str, Any]],
    read_commits: bool,
) -> bool:
    """One `edit metadata` request with every key; False when it failed unread and is to be
    tried again reading the output commits, else True with each outcome saying what it got."""
    edits: List[MetadataEdit] = []
    stamps: Dict[int, List[str]] = {}
    if supported >= PIPELINE_METADATA_SINCE:
        for index, (one, _, _, metadata) in enumerate(live):
            edits.append(_edit("pipeline", one.pipeline, "", metadata, one.values))
            stamps.setdefault(index, []).append("pipeline")
    if supported >= COMMIT_METADATA_SINCE:
        for job_id in dict.fromkeys(job_id for _, _, job_id, _ in live):
            members = [(index, item) for index, item in enumerate(live) if item[2] == job_id]
            commits: Dict[str, Dict[str, Any]] = {}
            if read_commits:
                try:
                    commits = view.output_commits(job_id, [item[0].pipeline for _, item in members])
                except ClusterError as error:
                    for _, item in members:
                        item[1].problems.append(f"commit metadata: {error}")
                    continue
            for index, (one, outcome, _, _) in members:
                if not read_commits:
                    edits.append(MetadataEdit("commit", one.pipeline, job_id, edit=dict(one.values)))
                elif one.pipeline in commits:
                    current = commits[one.pipeline].get("metadata")
                    edits.append(_edit("commit", one.pipeline, job_id, current, one.values))
                else:
                    outcome.problems.append(f"commit metadata: no output commit {one.pipeline}@{job_id}")
                    continue
                stamps.setdefault(index, []).append("commit")
    try:
        view.edit_metadata_all(edits)
    except ClusterError as error:
        if not read_commits and any(edit.kind == "commit" for edit in edits):
            return False
        for index, kinds in stamps.items():
            live[index][1].problems.append(f"{' and '.join(kinds)} metadata: {error}")
    else:
        for index, kinds in stamps.items():
            live[index][1].stamped += [f"{kind}-metadata" for kind in kinds]
    return True


def _wait(
    view: Any,
    pending: List[Tuple[Updated, AfterUpdate, str]],
    timeout: float,
    sleep: Callable[[float], None],
) -> None:
    """Poll the jobs until each has finished or `timeout` has passed: one read per commit set and look."""
    for one, _, job_id in pending:
        one.log(f"waiting up to {timeout:g}s for job {one.pipeline}@{job_id}")
    deadline = time.monotonic() + timeout
    attempt = 0
    while pending:
        for job_id in dict.fromkeys(job_id for _, _, job_id in pending):
            members = [item for item in pending if item[2] == job_id]
            try:
                jobs = _jobs_by_pipeline(view.jobs_in_set(job_id), view.project)
            except ClusterError as error:
                for _, outcome, _ in members:
                    outcome.verify = f"not done: {error}"
                pending = [item for item in pending if item[2] != job_id]
                continue
            for item in members:
                if _job_seen(item, jobs.get(item[0].pipeline)):
                    pending.remove(item)
        if not pending:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            for one, outcome, job_id in pending:
                outcome.verify = f"timed out after {timeout:g}s"
                one.log(
                    f"job {one.pipeline}@{job_id} still {outcome.job_state or 'unknown'} after {timeout:g}s;"
                    " not waiting longer"
                )
            return
        sleep(min(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)], left))
        attempt += 1


def _jobs_by_pipeline(jobs: Sequence[Dict[str, Any]], project: str) -> Dict[str, Dict[str, Any]]:
    """The jobs of a commit set that belong to `project`, by pipeline name: `list job ID`
    (InspectJobSet) lists every project's jobs of the set."""
    found: Dict[str, Dict[str, Any]] = {}
    for info in jobs:
        pipeline = part(part(info, "job"), "pipeline")
        if pipeline.get("name") and in_project(pipeline, project):
            found[str(pipeline["name"])] = info
    return found


def _job_seen(item: Tuple[Updated, AfterUpdate, str], job: Optional[Dict[str, Any]]) -> bool:
    """Record what the job's look says; True when nothing more is to be waited for."""
    one, outcome, job_id = item
    if job is None:
        outcome.verify = "no job (the update started none)"
        return True
    outcome.job_state = clean(job.get("state") or "", 40)
    outcome.job_reason = clean(job.get("reason") or "")
    if outcome.job_state not in FINISHED_STATES:
        return False
    outcome.verify = "finished"
    reason = f": {outcome.job_reason}" if outcome.job_reason else ""
    one.log(f"job {one.pipeline}@{job_id} {outcome.job_state}{reason}")
    return True


def failed_in_cluster(result: Dict[str, Any]) -> Optional[str]:
    """For an update step's result: `JOB (STATE: reason)` when its cluster job failed, else None."""
    state = str(result.get("job_state") or "")
    if state not in FAILED_STATES:
        return None
    reason = str(result.get("job_reason") or "")
    shown = state.replace("JOB_", "").lower()
    return f"job {result.get('cluster_job', '?')} {shown}" + (f": {reason}" if reason else "")

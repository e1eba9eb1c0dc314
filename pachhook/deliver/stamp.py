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
InspectJob. Which metadata is written follows what both ends support: the lower of
pachctl's and pachd's versions, or pachd's (GetVersion) through the API.

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
from typing import Any, Callable, Dict, List, Optional

from pachhook.deliver.backends.clusterview import view_for
from pachhook.deliver.backends.rawoutput import ClusterError, clean

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


def _edit(view: Any, kind: str, name: str, ref: str, current: Any, values: Dict[str, str]) -> None:
    """Add the keys not there and edit those that are: other keys a team keeps stay untouched,
    and a retried update stamps again without an "already exists" error."""
    current = current if isinstance(current, dict) else {}
    added = {k: v for k, v in values.items() if k not in current}
    edited = {k: v for k, v in values.items() if k in current and current[k] != v}
    view.edit_metadata(kind, name, ref, added, edited)


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
    """Stamp the new version and its job's output commit, then wait (bounded) for that job.

    `applied` is the version as the update step read it back after the apply (a
    PipelineState); when it names its spec commit the pipeline is not read again here.
    """
    outcome = AfterUpdate()
    if getattr(backend, "name", "") not in ("pachctl", "api"):
        outcome.verify = "not supported with this backend (annotations only)"
        return outcome
    view = view_for(backend, project)
    try:
        supported = view.version()
    except Exception as error:  # BackendError, ClusterError: the update itself went through
        outcome.verify = f"not done: {clean(error)}"
        return outcome
    if supported < (2, 0, 0):
        outcome.verify = "not supported before Pachyderm 2.0 (no global IDs)"
        return outcome
    read_back = str(getattr(applied, "spec_commit", None) or "")
    if read_back:
        job_id, metadata = clean(read_back, 64), getattr(applied, "metadata", None)
    else:
        try:
            info = view.pipeline(pipeline)
        except ClusterError as error:
            outcome.verify = f"not done: {error}"
            return outcome
        spec_commit = info.get("specCommit") or info.get("spec_commit") if info else None
        job_id = clean(spec_commit.get("id") or "", 64) if isinstance(spec_commit, dict) else ""
        metadata = (info or {}).get("metadata")
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        outcome.verify = "not done: the cluster names no spec commit for the new version"
        return outcome
    outcome.job = f"{pipeline}@{job_id}"

    if supported >= PIPELINE_METADATA_SINCE:
        try:
            _edit(view, "pipeline", pipeline, "", metadata, values)
            outcome.stamped.append("pipeline-metadata")
        except ClusterError as error:
            outcome.problems.append(f"pipeline metadata: {error}")
    if supported >= COMMIT_METADATA_SINCE:
        try:
            commit = view.commit(pipeline, job_id)
            if commit is None:
                outcome.problems.append(f"commit metadata: no output commit {pipeline}@{job_id}")
            else:
                _edit(view, "commit", pipeline, job_id, commit.get("metadata"), values)
                outcome.stamped.append("commit-metadata")
        except ClusterError as error:
            outcome.problems.append(f"commit metadata: {error}")
    for problem in outcome.problems:
        log(f"provenance not stamped: {problem}")
    log(f"provenance stamped as {', '.join(outcome.stamped)}")

    if not verify:
        outcome.verify = "off"
        return outcome
    _wait(view, outcome, pipeline, job_id, timeout, log, sleep)
    return outcome


def _wait(
    view: Any,
    outcome: AfterUpdate,
    pipeline: str,
    job_id: str,
    timeout: float,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> None:
    log(f"waiting up to {timeout:g}s for job {pipeline}@{job_id}")
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            job = view.job(pipeline, job_id)
        except ClusterError as error:
            outcome.verify = f"not done: {error}"
            return
        if job is None:
            outcome.verify = "no job (the update started none)"
            return
        outcome.job_state = clean(job.get("state") or "", 40)
        outcome.job_reason = clean(job.get("reason") or "")
        if outcome.job_state in FINISHED_STATES:
            outcome.verify = "finished"
            reason = f": {outcome.job_reason}" if outcome.job_reason else ""
            log(f"job {pipeline}@{job_id} {outcome.job_state}{reason}")
            return
        left = deadline - time.monotonic()
        if left <= 0:
            outcome.verify = f"timed out after {timeout:g}s"
            log(
                f"job {pipeline}@{job_id} still {outcome.job_state or 'unknown'} after {timeout:g}s; not waiting longer"
            )
            return
        sleep(min(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)], left))
        attempt += 1


def failed_in_cluster(result: Dict[str, Any]) -> Optional[str]:
    """For an update step's result: `JOB (STATE: reason)` when its cluster job failed, else None."""
    state = str(result.get("job_state") or "")
    if state not in FAILED_STATES:
        return None
    reason = str(result.get("job_reason") or "")
    shown = state.replace("JOB_", "").lower()
    return f"job {result.get('cluster_job', '?')} {shown}" + (f": {reason}" if reason else "")

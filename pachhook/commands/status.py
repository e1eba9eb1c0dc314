"""`pachhook status [--format text|json] [--all]`: jobs, newest first, with their steps."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import List, Optional, Sequence

from pachhook.commands._common import open_queue, parse_args
from pachhook.deliver.holds import Holds, status_lines
from pachhook.provenance.stamp import failed_in_cluster
from pachhook.queue.jobs import Job, StepRecord
from pachhook.queue.launch import worker_pid, worker_running

DEFAULT_LIMIT = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook status",
        description=(
            "List queued, running, failed and done jobs, newest first, with the state and time"
            " of each step (build, push, update)."
        ),
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"every job, superseded and cancelled ones too (default: the {DEFAULT_LIMIT} newest others)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args

    queue = open_queue("pachhook status")
    if queue is None:
        return 2
    with queue:
        jobs = queue.list_jobs(all=args.all, limit=None if args.all else DEFAULT_LIMIT)
        pid = worker_pid(queue.folder)
        running = pid is not None or worker_running(queue.folder)
        newest = max((job.created_at for job in jobs), default=0.0)
        problems = queue.problems.recent(since=newest, limit=3)
        if args.format == "json":
            records = []
            for job in jobs:
                record = asdict(job)
                record["inputs"] = queue.inputs_of(job.id)
                record["failed_in_cluster"] = _failed_in_cluster(job)
                records.append(record)
            print(
                json.dumps(
                    {
                        "worker_running": running,
                        "worker_pid": pid,
                        "jobs": records,
                        "problems": [p.as_dict() for p in problems],
                        **_holds_json(queue.folder),
                    },
                    indent=2,
                )
            )
            return 0
    print(format_jobs(jobs))
    print(f"worker: running (pid {pid})" if pid else f"worker: {'running' if running else 'not running'}")
    for problem in problems:
        print(f"problem at {_clock(problem.at)} ({problem.commit[:12] or 'no commit'}): {problem.message}")
    for line in status_lines(Holds(queue.folder)):  # rollbacks and holds: events of their own
        print(line)
    return 0


def _holds_json(folder: object) -> dict:
    holds = Holds(folder)
    return {"holds": [asdict(hold) for hold in holds.all()], "events": [e.to_dict() for e in holds.events(limit=20)]}


def format_jobs(jobs: List[Job]) -> str:
    if not jobs:
        return "no jobs"
    header = ["JOB", "STATE", "COMMIT", "BRANCH", "PIPELINE", "BUILD", "PUSH", "UPDATE", "UPDATED"]
    rows = [header]
    notes: List[List[str]] = []
    for job in jobs:
        rows.append(
            [
                str(job.id),
                "failed in cluster" if _failed_in_cluster(job) else job.state,
                job.commit[:12],
                job.branch or "-",
                job.pipeline,
                *(_step_cell(step) for step in job.steps),
                _clock(job.updated_at),
            ]
        )
        extra = []
        failed = _failed_in_cluster(job)
        if failed:
            extra.append(f"    {failed}")
        if job.superseded_by:
            extra.append(f"    superseded by job {job.superseded_by}")
        extra += [f"    {step.name} failed: {step.error}" for step in job.steps if step.error]
        notes.append(extra)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(rows[0])).rstrip()]
    for row, extra in zip(rows[1:], notes):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        lines += extra
    return "\n".join(lines)


def _failed_in_cluster(job: Job) -> Optional[str]:
    """The cluster job the update started, when verification saw it fail (provenance/stamp.py)."""
    update = next((step for step in job.steps if step.name == "update"), None)
    return failed_in_cluster(update.result or {}) if update is not None and job.state == "done" else None


def _step_cell(step: StepRecord) -> str:
    if step.started_at and step.finished_at:
        return f"{step.state} {step.finished_at - step.started_at:.1f}s"
    if step.started_at:
        return f"{step.state} {_clock(step.started_at)}"
    return step.state


def _clock(at: float) -> str:
    if not at:
        return "-"
    fmt = "%H:%M:%S" if time.time() - at < 20 * 3600 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(at))

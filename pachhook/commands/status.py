"""`pachhook status [--format text|json] [--all] [--watch [SECONDS]]`: jobs, newest first, with their steps.

Exit status: 0, or 1 when the newest job of any pipeline failed (so a script or CI step
can tell), 2 bad usage. With `--format json` it is 0 and `failed_pipelines` names them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any, Callable, List, Optional, Sequence

from pachhook.commands._common import new_parser, open_queue, parse_args
from pachhook.core.output import color_enabled, paint
from pachhook.deliver.holds import Holds, status_lines
from pachhook.deliver.stamp import failed_in_cluster
from pachhook.queue.attention import mark_seen, needing_attention, newest_per_pipeline
from pachhook.queue.jobs import Job, StepRecord
from pachhook.queue.launch import worker_pid, worker_running

DEFAULT_LIMIT = 20
STATE_STYLE = {"failed": "bold red", "done": "green", "running": "yellow", "queued": "cyan"}
QUIET_STATES = ("superseded", "cancelled")
# A step found in place is not a step done: the words say which.
OUTCOME_WORDS = {("build", "reused"): "reused", ("push", "reused"): "reused", ("update", "reused"): "unchanged"}


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook status",
        description=(
            "List queued, running, failed and done jobs, newest first, with the state and time"
            " of each step (build, push, update): `reused` (an image found in place), `unchanged`"
            " (the pipeline already ran this spec) and `superseded` (a newer commit replaced the job)"
            " are named as such. Failed rows are red on a terminal."
        ),
        epilog="Exit status: 0, 1 when the newest job of any pipeline failed (with --format json: 0, and"
        " failed_pipelines names them), 2 bad usage.",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"every job, superseded and cancelled ones too (default: the {DEFAULT_LIMIT} newest others)",
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_interval,
        metavar="SECONDS",
        help="show the table again every SECONDS (default 2) until Ctrl-C",
    )
    return parser


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0.1 to 3600, not {text!r}")
    return seconds


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    queue = open_queue("pachhook status")
    if queue is None:
        return 2
    with queue:
        if args.watch is None or args.format == "json":
            return _show(queue, args, print)
        clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
        status = 0
        try:
            while True:
                lines: List[str] = []
                status = _show(queue, args, lines.append)
                stamp = time.strftime("%H:%M:%S")
                print(clear + f"pachhook status (every {args.watch:g} s, Ctrl-C stops; {stamp})")
                print("\n".join(lines), flush=True)
                time.sleep(args.watch)
        except KeyboardInterrupt:
            print()
            return status


def _show(queue: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    jobs = queue.list_jobs(all=args.all, limit=None if args.all else DEFAULT_LIMIT)
    pid = worker_pid(queue.folder)
    running = pid is not None or worker_running(queue.folder)
    expiry = queue.leases.next_expiry()
    # `pachhook run` (or CI's `run --commit`) works without the background worker's lock:
    # a running job with a live lease is being worked on all the same.
    leased = expiry is not None and expiry > time.time()
    newest = max((job.created_at for job in jobs), default=0.0)
    problems = queue.problems.recent(since=newest, limit=3)
    failed_now = [job for job in newest_per_pipeline(queue.list_jobs()) if job.state == "failed"]
    status = 1 if failed_now else 0
    if args.format == "json":
        records = []
        for job in jobs:
            record = asdict(job)
            record["inputs"] = queue.inputs_of(job.id)
            record["failed_in_cluster"] = _failed_in_cluster(job)
            records.append(record)
        out(
            json.dumps(
                {
                    "worker_running": running,
                    "job_leased": leased,  # a job held by a live lease: some worker or `pachhook run` works on it
                    "worker_pid": pid,
                    "jobs": records,
                    "problems": [p.as_dict() for p in problems],
                    "failed_pipelines": sorted(job.pipeline for job in failed_now),
                    **_holds_json(queue.folder),
                },
                indent=2,
            )
        )
        return 0  # a document to read: `failed_pipelines` says it, the exit status says the query worked
    colour = color_enabled(sys.stdout)
    out(format_jobs(jobs, colour=colour))
    if pid:
        out(f"worker: running (pid {pid})")
    elif running:
        out("worker: running")
    elif leased:
        out("worker: running (a `pachhook run` holds a job)")
    else:
        out("worker: not running")
    for problem in problems:
        out(f"problem at {_clock(problem.at)} ({problem.commit[:12] or 'no commit'}): {problem.message}")
    for line in status_lines(Holds(queue.folder)):  # rollbacks and holds: events of their own
        out(line)
    if failed_now:
        names = ", ".join(sorted(job.pipeline for job in failed_now))
        out(_paint(f"failed: the newest delivery of {names}; fix the cause, then `pachhook retry JOB`", "red", colour))
    mark_seen(queue.folder_str, needing_attention(queue, unseen_only=False))
    return status


def _holds_json(folder: object) -> dict:
    holds = Holds(folder)
    return {"holds": [asdict(hold) for hold in holds.all()], "events": [e.to_dict() for e in holds.events(limit=20)]}


def _failed_in_cluster(job: Job) -> Optional[str]:
    """The cluster job the update started, when verification saw it fail (deliver/stamp.py)."""
    update = next((step for step in job.steps if step.name == "update"), None)
    return failed_in_cluster(update.result or {}) if update is not None and job.state == "done" else None


def _paint(text: str, style: str, enabled: bool) -> str:
    return paint(text, style, enabled)


def format_jobs(jobs: List[Job], colour: bool = False, now: Optional[float] = None) -> str:
    if not jobs:
        return "no jobs"
    now = time.time() if now is None else now
    header = ["JOB", "STATE", "COMMIT", "BRANCH", "ENV", "PIPELINE", "BUILD", "PUSH", "UPDATE", "AGE"]
    rows = [header]
    notes: List[List[str]] = []
    for job in jobs:
        rows.append(
            [
                str(job.id),
                "failed in cluster"
                if _failed_in_cluster(job)
                else "unchanged"
                if job.state == "done" and job.reason.startswith("unchanged")
                else job.state,
                job.commit[:12],
                job.branch or "-",
                job.environment or "-",
                _pipeline_cell(job),
                *(_step_cell(step, now) for step in job.steps),
                _ago(job.updated_at, now),
            ]
        )
        extra = []
        failed = _failed_in_cluster(job)
        if failed:
            extra.append(f"    {failed}")
        if job.superseded_by:
            extra.append(f"    superseded by job {job.superseded_by}")
        if job.reason:
            extra.append(f"    {job.reason}")
        extra += [f"    {step.name} failed: {step.error}" for step in job.steps if step.error]
        notes.append(extra)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(rows[0])).rstrip()]
    for row, extra, job in zip(rows[1:], notes, jobs):
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        style = "dim" if job.state in QUIET_STATES else STATE_STYLE.get(job.state, "")
        lines.append(_paint(line, style, colour) if style else line)
        lines += [_paint(note, "red", colour) if " failed: " in note else note for note in extra]
    return "\n".join(lines)


def _pipeline_cell(job: Job) -> str:
    """The pipeline as applied (suffix, project) once the update step says so."""
    update = next((step.result for step in job.steps if step.name == "update"), {}) or {}
    name = update.get("pipeline") or job.pipeline
    project = update.get("project") or ""
    return f"{project}/{name}" if project and project != "default" else name


def _step_cell(step: StepRecord, now: float) -> str:
    word = OUTCOME_WORDS.get((step.name, step.result.get("outcome", "")), step.state)
    if step.started_at and step.finished_at:
        return f"{word} {step.finished_at - step.started_at:.1f}s"
    if step.started_at:
        return f"{word} {_duration(now - step.started_at)}"  # running: for how long so far
    return word


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d"


def _ago(at: float, now: float) -> str:
    return f"{_duration(now - at)} ago" if at else "-"


def _clock(at: float) -> str:
    if not at:
        return "-"
    fmt = "%H:%M:%S" if time.time() - at < 20 * 3600 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(at))

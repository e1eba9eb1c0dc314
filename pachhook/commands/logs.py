"""`pachhook logs JOB [--follow]`: print the log a job's steps wrote.

With --follow, new lines are printed as the worker writes them until the job ends, and the
exit status is the job's outcome (0 done or superseded, 1 failed or cancelled), as
`docker logs -f` / `tail -f` follow a stream; Ctrl-C stops following (130, from cli.guard).
"""

from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

from pachhook.commands._common import job_parser, on_queue, parse_args
from pachhook.core.sanitize import clean
from pachhook.queue.states import CANCELLED, DONE, FAILED, SUPERSEDED
from pachhook.queue.store import Queue

POLL_SECONDS = 0.25  # how often --follow looks for new lines: a step's line shows within this
# The job states that end a job, and the exit status of --follow for each.
FINAL_STATUS = {DONE: 0, SUPERSEDED: 0, FAILED: 1, CANCELLED: 1}


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("pachhook logs", "Print the log of a job, oldest line first.")
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines until the job ends, then exit with its outcome"
        " (0 done or superseded, 1 failed or cancelled); Ctrl-C stops following",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.follow:
        return on_queue("pachhook logs", lambda queue: _follow(queue, args.job))
    return on_queue("pachhook logs", lambda queue: _print_log(queue, args.job))


def _show(at: float, line: str) -> None:
    # Lines hold outside text (build output, registry answers) cleaned when written; cleaned
    # again here, so a log written by an older pachhook never reaches the terminal raw.
    print(time.strftime("%H:%M:%S ", time.localtime(at)) + clean(line), flush=True)


def _print_log(queue: Queue, job_id: int) -> int:
    job = queue.get(job_id)
    entries = list(queue.logs.entries(job.id))
    if not entries:
        print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}, {job.state}) has no log yet")
    for _, at, line in entries:
        _show(at, line)
    return 0


def _follow(queue: Queue, job_id: int) -> int:
    job = queue.get(job_id)
    if job.state not in FINAL_STATUS:
        print(f"following job {job.id} ({job.pipeline}@{job.commit[:12]}, {job.state}); Ctrl-C stops", flush=True)
    last = 0
    while True:
        # The state first, then the lines: every line written before the job ended is shown
        # before the loop ends on that state.
        state = queue.state_of(job_id)
        for row_id, at, line in queue.logs.entries(job_id, after=last):
            _show(at, line)
            last = row_id
        if state in FINAL_STATUS:
            job = queue.get(job_id)
            why = job.reason or next((f"{step.name}: {step.error}" for step in job.steps if step.error), "")
            print(f"job {job.id} {state}" + (f": {clean(why)}" if why else ""), flush=True)
            return FINAL_STATUS[state]
        time.sleep(POLL_SECONDS)

"""`pachhook logs JOB`: print the log a job's steps wrote."""

from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

from pachhook.commands._common import job_parser, on_queue, parse_args
from pachhook.queue.store import Queue


def build_parser() -> argparse.ArgumentParser:
    return job_parser("pachhook logs", "Print the log of a job, oldest line first.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    return on_queue("pachhook logs", lambda queue: _print_log(queue, args.job))


def _print_log(queue: Queue, job_id: int) -> int:
    job = queue.get(job_id)
    entries = list(queue.logs.entries(job.id))
    if not entries:
        print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}, {job.state}) has no log yet")
    for at, line in entries:
        print(time.strftime("%H:%M:%S ", time.localtime(at)) + line)
    return 0

"""`pachhook logs JOB`: print the log a job's steps wrote."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from pachhook.commands._common import guard, open_queue, parse_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pachhook logs", description="Print the log of a job, oldest line first.")
    parser.add_argument("job", type=int, metavar="JOB", help="job id, as `pachhook status` shows it")
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    from pachhook.queue.store import QueueError

    queue = open_queue("pachhook logs")
    if queue is None:
        return 2
    with queue:
        try:
            job = queue.get(args.job)
        except QueueError as error:
            print(f"pachhook logs: {error}", file=sys.stderr)
            return 1
        entries = list(queue.read_log_entries(job.id))
    if not entries:
        print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}, {job.state}) has no log yet")
    for at, line in entries:
        print(time.strftime("%H:%M:%S ", time.localtime(at)) + line)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guard("pachhook logs", _main, argv)

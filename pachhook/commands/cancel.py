"""`pachhook cancel JOB`: Cancel a queued job, or a running one (its worker stops before its next step)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pachhook.commands._common import guard, open_queue, parse_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook cancel",
        description="Cancel a queued job, or a running one (its worker stops before its next step).",
    )
    parser.add_argument("job", type=int, metavar="JOB", help="job id, as `pachhook status` shows it")
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    from pachhook.queue.store import QueueError

    queue = open_queue("pachhook cancel")
    if queue is None:
        return 2
    with queue:
        try:
            job = queue.cancel(args.job)
        except QueueError as error:
            print(f"pachhook cancel: {error}", file=sys.stderr)
            return 1
    print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}) cancelled")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guard("pachhook cancel", _main, argv)

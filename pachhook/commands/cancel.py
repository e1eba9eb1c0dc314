"""`pachhook cancel JOB`: Cancel a queued job, or a running one (its worker stops before its next step)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook cancel",
        description="Cancel a queued job, or a running one (its worker stops before its next step).",
    )
    parser.add_argument("job", type=int, metavar="JOB", help="job id, as `pachhook status` shows it")
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        return 2 if stop.code else 0
    from pachhook import gitrepo
    from pachhook.queue import QueueError, open_queue

    try:
        queue = open_queue()
    except gitrepo.GitError as error:
        print(f"pachhook cancel: {error}", file=sys.stderr)
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
    try:
        return _main(argv)
    except BrokenPipeError:  # output piped into a pager or `head` that stopped reading
        return 1
    except Exception as error:  # a bug, or a queue database that cannot be read: one line
        print(f"pachhook cancel: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return 3

"""`pachhook release PIPELINE`: lift the hold a rollback placed, so the queue delivers the pipeline again.

The newest job of the pipeline that the hold stopped is queued again. Exit status: 0
released, 1 the pipeline was not held, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pachhook.commands._common import open_queue, parse_args
from pachhook.deliver.holds import HELD_PREFIX, Holds
from pachhook.queue.states import FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook release",
        description=(
            "Lift the hold `pachhook rollback` placed on a pipeline: the queue delivers it again,"
            " starting with the newest job the hold stopped."
        ),
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="the held pipeline")
    parser.add_argument("--no-retry", action="store_true", help="lift the hold only; queue no job again")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    queue = open_queue("pachhook release")
    if queue is None:
        return 2
    with queue:
        hold = Holds(queue.folder).release(args.pipeline, f"{args.pipeline} released by `pachhook release`")
        if hold is None:
            print(f"pachhook release: {args.pipeline} is not held", file=sys.stderr)
            return 1
        print(f"released {args.pipeline} (held at v{hold.version} since the {hold.reason})")
        if args.no_retry:
            return 0
        stopped = [
            job
            for job in queue.list_jobs(all=True)
            if job.pipeline == args.pipeline
            and job.state == FAILED
            and job.step("update").error.startswith(HELD_PREFIX)
        ]
        if stopped:
            newest = max(stopped, key=lambda job: (job.created_at, job.id))
            queue.retry(newest.id)
            print(f"job {newest.id} (commit {newest.commit[:12]}) queued again; `pachhook run` delivers it")
    return 0

"""`pachhook cancel JOB`: Cancel a queued job, or a running one (its worker stops before its next step)."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from pachhook.commands._common import job_parser, on_queue, parse_args
from pachhook.queue.store import Queue


def build_parser() -> argparse.ArgumentParser:
    return job_parser(
        "pachhook cancel", "Cancel a queued job, or a running one (its worker stops before its next step)."
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    return on_queue("pachhook cancel", lambda queue: _cancel(queue, args.job))


def _cancel(queue: Queue, job_id: int) -> int:
    job = queue.cancel(job_id)
    print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}) cancelled")
    return 0

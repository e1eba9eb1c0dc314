"""`pachhook retry JOB`: Queue a failed, cancelled or superseded job again; steps already done stay done."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pachhook.commands._common import job_parser, on_queue, parse_args
from pachhook.core import gitrepo
from pachhook.core.config import ConfigError, load_config
from pachhook.queue.launch import start_background
from pachhook.queue.store import Queue


def build_parser() -> argparse.ArgumentParser:
    return job_parser(
        "pachhook retry", "Queue a failed, cancelled or superseded job again; steps already done stay done."
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    status = on_queue("pachhook retry", lambda queue: _retry(queue, args.job))
    if status == 0:
        _start_worker()
    return status


def _retry(queue: Queue, job_id: int) -> int:
    job, *others = queue.retry_together(job_id)
    print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}) queued")
    if others:
        # a commit's updates for one environment are applied together or not at all
        listed = ", ".join(f"{other.id} ({other.pipeline})" for other in others)
        print(f"with the failed jobs of the same commit, applied together with it: {listed}")
    return 0


def _start_worker() -> None:
    """Start a background worker, as after a commit, unless the worker mode is manual."""
    try:
        root = gitrepo.repo_root()
        config = load_config(root)
    except (gitrepo.GitError, ConfigError) as error:
        first = error.problems[0] if isinstance(error, ConfigError) else str(error)
        print(f"pachhook retry: no worker started: {first}", file=sys.stderr)
        return
    if config.worker == "background" and start_background(root, gitrepo.git_common_dir(root)):
        print("pachhook retry: started a background worker")

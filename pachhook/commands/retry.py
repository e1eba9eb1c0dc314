"""`pachhook retry JOB`: Queue a failed, cancelled or superseded job again; steps already done stay done."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook retry",
        description="Queue a failed, cancelled or superseded job again; steps already done stay done.",
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
        print(f"pachhook retry: {error}", file=sys.stderr)
        return 2
    with queue:
        try:
            job = queue.retry(args.job)
        except QueueError as error:
            print(f"pachhook retry: {error}", file=sys.stderr)
            return 1
    print(f"job {job.id} ({job.pipeline}@{job.commit[:12]}) queued")
    _start_worker()
    return 0


def _start_worker() -> None:
    """Start a background worker, as after a commit, unless the worker mode is manual."""
    from pachhook import gitrepo
    from pachhook.config import ConfigError, load_config
    from pachhook.worker import start_background

    try:
        root = gitrepo.repo_root()
        config = load_config(root)
    except (gitrepo.GitError, ConfigError) as error:
        first = error.problems[0] if isinstance(error, ConfigError) else str(error)
        print(f"pachhook retry: no worker started: {first}", file=sys.stderr)
        return
    if config.worker == "background" and start_background(root, gitrepo.git_common_dir(root)):
        print("pachhook retry: started a background worker")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # output piped into a pager or `head` that stopped reading
        return 1
    except Exception as error:  # a bug, or a queue database that cannot be read: one line
        print(f"pachhook retry: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return 3

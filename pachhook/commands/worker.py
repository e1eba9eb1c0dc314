"""`pachhook worker`: the background worker `pachhook queue` starts (detached).

It takes the repository's worker lock (or leaves at once when another worker holds it),
runs queued jobs, and exits when none is left. Its output goes to
`<git common dir>/pachhook/worker.log`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from pachhook.commands._common import add_lease_option, new_parser, parse_args
from pachhook.core import gitrepo
from pachhook.deliver.runner import run_worker, work_tree_gone


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook worker",
        description=(
            "Drain the queue until it is empty, holding the repository's worker lock so that"
            " only one background worker runs. Started detached by `pachhook queue`; run"
            " `pachhook run` instead to drain in the foreground."
        ),
    )
    parser.add_argument(
        "--repo", metavar="DIR", default=".", help="a work tree of the repository (default: the current directory)"
    )
    parser.add_argument(
        "--git-dir",
        metavar="DIR",
        help="the repository's git common directory (where the queue is); with it, jobs fail with the"
        " cause when the work tree is gone instead of waiting",
    )
    add_lease_option(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args

    def progress(line: str) -> None:
        print(time.strftime("%Y-%m-%dT%H:%M:%S ") + line, flush=True)

    try:
        root = gitrepo.repo_root(Path(args.repo))
    except gitrepo.GitError as error:
        missing = work_tree_gone(args.repo)
        if missing and args.git_dir and os.path.isdir(gitrepo.state_folder(args.git_dir)):
            # the queue outlives the work tree: its jobs fail, saying why, for a retry elsewhere
            progress(f"{missing}: failing its queued jobs")
            return run_worker(Path(args.repo).absolute(), args.lease, progress, common_dir=args.git_dir)
        print(f"pachhook worker: {missing or error}", file=sys.stderr)
        return 2
    return run_worker(root, lease_seconds=args.lease, progress=progress)

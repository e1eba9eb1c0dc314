"""`pachhook run`: drain the queue in the foreground, printing each step as it goes.

Exit status: 0 every job run is done (or there was nothing to run), 1 a job failed,
2 bad usage or not in a git repository.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import List, Optional, Sequence

from pachhook.commands._common import add_lease_option, new_parser, parse_args
from pachhook.core import gitrepo
from pachhook.deliver import cireport, ttyprogress
from pachhook.deliver.commit import deliver_commit
from pachhook.deliver.runner import drain


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook run",
        description=(
            "Run queued jobs in the foreground (build, push, update, resuming each job at its"
            " first step not done) until no job is left that may run now."
        ),
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run at most one commit's jobs (those delivered together to one environment)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only each job's outcome, not every step")
    parser.add_argument(
        "--commit",
        metavar="REV",
        help="run build, push and update for every pipeline of this commit now,"
        " without the queue (for CI; see docs/ci.md)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --commit: print the plan (images, rendered specs, pachctl commands) and change nothing",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="with --commit: json prints one summary document on stdout (progress goes to stderr)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --commit: apply even when the live pipeline runs a commit that is not an ancestor"
        " of this one (a force push, another branch); the record says it was forced",
    )
    add_lease_option(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.force and args.commit is None:
        print("pachhook run: --force goes with --commit REV (one commit, delivered on purpose)", file=sys.stderr)
        return 2
    if args.commit is not None or args.dry_run:
        return run_commit(args)
    if args.format != "text":
        print("pachhook run: --format goes with --commit REV", file=sys.stderr)
        return 2
    return run_queue(args)


def run_commit(args: argparse.Namespace) -> int:
    """Deliver one commit; on GitHub Actions also a job summary and annotations, with --format json a summary."""
    progress = sys.stderr if args.format == "json" else sys.stdout
    report = cireport.RunReport()
    started = time.monotonic()
    shown = _QuietFilter() if args.quiet else None
    live = ttyprogress.for_stream(progress, quiet=args.quiet)

    def out(line: str) -> None:
        if shown is None or shown.keep(line):
            if live is not None:
                live.line(line)
            else:
                print(line, file=progress, flush=True)

    try:
        with gitrepo.config_snapshot():  # one delivery reads git's configuration once
            status = deliver_commit(
                args.commit or "HEAD", dry_run=args.dry_run, out=out, report=report, force=args.force, live=live
            )
    finally:
        if live is not None:
            live.close()
    report.status, report.seconds = status, round(time.monotonic() - started, 3)
    if cireport.on_github_actions():
        for line in cireport.workflow_commands(report):
            print(line, flush=True)  # GitHub reads workflow commands from stdout
        problem = cireport.write_step_summary(report)
        if problem:
            print(f"pachhook run: {problem}", file=sys.stderr)
    if args.format == "json":
        print(cireport.as_json(report), flush=True)
    return status


class _QuietFilter:
    """--quiet for `run --commit`: each pipeline's step lines are left out; failures, the
    summary table and pachhook's own lines stay."""

    def __init__(self) -> None:
        self.pipelines: List[str] = []

    def keep(self, line: str) -> bool:
        marker = "delivering "
        if marker in line and ": " in line and not self.pipelines:
            self.pipelines = [name.strip() for name in line.rsplit(": ", 1)[1].split(",")]
            return True
        if any(line.startswith(f"{name}: ") for name in self.pipelines):
            return ": failed" in line or ": not run:" in line
        return True


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM ends the run as Ctrl-C does: the job in hand is released for the next worker
    # at once (drain hands it back on the way out) instead of holding its lease until expiry.
    raise KeyboardInterrupt


def run_queue(args: argparse.Namespace) -> int:
    try:
        root = gitrepo.repo_root()
    except gitrepo.GitError as error:
        print(f"pachhook run: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    live = ttyprogress.for_stream(sys.stdout, quiet=args.quiet)

    def progress(line: str) -> None:
        if not args.quiet or line.endswith((": done", ": failed", ": cancelled", ": running")):
            if live is not None:
                live.line(line)
            else:
                print(line, flush=True)

    try:
        summary = drain(root, lease_seconds=args.lease, progress=progress, once=args.once, live=live)
    finally:
        if live is not None:
            live.close()
    total = len(summary.done) + len(summary.failed) + len(summary.other)
    if total == 0:
        print("pachhook run: no job to run")
    else:
        print(
            f"pachhook run: {len(summary.done)} done, {len(summary.failed)} failed"
            + (f", {len(summary.other)} stopped" if summary.other else "")
        )
    return 1 if summary.failed else 0

"""`pachhook rollback PIPELINE --to COMMIT|vN [--env NAME]`: re-apply a spec that ran before, then hold the pipeline.

Exit status: 0 rolled back (or already running the target) and held, 1 the rollback could
not be done (no recorded spec, cluster refusing, the order guard refusing), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pachhook.commands._common import add_pipeline_place_options, new_parser, open_queue, parse_args, pipeline_place
from pachhook.core import gitrepo
from pachhook.deliver.reapply import Request, RollbackError, parse_target, rollback

PROG = "pachhook rollback"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog=PROG,
        description=(
            "Re-apply the user spec recorded for an earlier commit or pipeline version (from the"
            " local ledger, else the cluster's history), image pinned to its recorded digest,"
            " without building anything, in one environment; then hold the pipeline there so that"
            " the queue does not roll it forward again until `pachhook release PIPELINE`, or until"
            " a commit of it is delivered explicitly (`pachhook run` given that commit)."
        ),
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="the pipeline to roll back, as its template names it")
    parser.add_argument(
        "--to",
        metavar="COMMIT|vN",
        required=True,
        help="the git commit (SHA, prefix, branch or tag) or the pipeline version (v3) to go back to",
    )
    add_pipeline_place_options(parser)
    parser.add_argument(
        "--from",
        dest="expect",
        metavar="COMMIT|vN",
        default="",
        help="the version or commit you saw live (as --dry-run shows it): refuse if another one runs now",
    )
    parser.add_argument("--reprocess", action="store_true", help="pass --reprocess with the update")
    parser.add_argument(
        "--force",
        action="store_true",
        help="roll back even over a live commit this clone has never seen, one off the target's line,"
        " one other than --from names, or a pipeline that moved while the rollback ran",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be applied; apply and hold nothing")
    return parser


def resolved(text: str) -> str:
    """A COMMIT argument as this clone's git resolves it (a branch, a tag, `main~1`), "" for a
    version (vN) or a commit this clone does not have (matched as a prefix of what was recorded)."""
    if not text or "commit" not in parse_target(text):
        return ""
    try:
        return gitrepo.rev_parse(text)
    except gitrepo.GitError:
        return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    place = pipeline_place(PROG, args)
    if place is None:
        return 2
    info, config, environment, branch, pipeline = place
    full_commit = resolved(args.to)
    expect = resolved(args.expect) or args.expect
    request = Request(
        name=args.pipeline,
        pipeline=pipeline,
        environment=environment,
        to=args.to,
        branch=branch,
        project=args.project,
        full_commit=full_commit,
        expect=expect,
        reprocess=args.reprocess,
        dry_run=args.dry_run,
        force=args.force,
    )
    queue = open_queue(PROG)
    if queue is None:
        return 2
    with queue:
        jobs = queue.list_jobs(all=True)
        try:
            rollback(info.root, info.common_dir, config, request, jobs, out=lambda line: print(line, flush=True))
        except RollbackError as error:
            print(f"{PROG}: {error}", file=sys.stderr)
            return 1
    return 0

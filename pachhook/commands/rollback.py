"""`pachhook rollback PIPELINE --to COMMIT|vN`: re-apply a spec that ran before, then hold the pipeline.

Exit status: 0 rolled back (or already running the target) and held, 1 the rollback could
not be done (no recorded spec, cluster refusing), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pachhook.commands._common import open_queue, parse_args, repository_config
from pachhook.core import gitrepo
from pachhook.deliver.reapply import RollbackError, parse_target, rollback
from pachhook.deliver.steps.update import make_backend


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook rollback",
        description=(
            "Re-apply the user spec recorded for an earlier commit or pipeline version (from the"
            " local ledger, else the cluster's history), image pinned to its recorded digest,"
            " without building anything; then hold the pipeline so that the queue does not roll"
            " it forward again until `pachhook release PIPELINE`, or until a commit of it is"
            " delivered explicitly (`pachhook run` given that commit)."
        ),
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="the pipeline to roll back")
    parser.add_argument(
        "--to",
        metavar="COMMIT|vN",
        required=True,
        help="the git commit (SHA, prefix, branch or tag) or the pipeline version (v3) to go back to",
    )
    parser.add_argument("--project", metavar="NAME", default="", help="the pipeline's Pachyderm project")
    parser.add_argument("--reprocess", action="store_true", help="pass --reprocess with the update")
    parser.add_argument("--dry-run", action="store_true", help="show what would be applied; apply and hold nothing")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    found = repository_config("pachhook rollback")
    if found is None:
        return 2
    info, config = found
    full_commit = ""
    if "commit" in parse_target(args.to):
        try:
            full_commit = gitrepo.rev_parse(args.to)
        except gitrepo.GitError:
            full_commit = ""  # not in this clone: matched as a prefix of what was recorded

    def is_ancestor(older: str, newer: str) -> bool:
        # exit 0: an ancestor; 1: not one; anything else (a commit this clone lacks): not known to be
        return gitrepo.run(["merge-base", "--is-ancestor", older, newer], info.root, timeout=60).returncode == 0

    queue = open_queue("pachhook rollback")
    if queue is None:
        return 2
    with queue:
        jobs = queue.list_jobs(all=True)
        try:
            rollback(
                info.common_dir,
                make_backend(config),
                args.pipeline,
                args.to,
                jobs,
                out=lambda line: print(line, flush=True),
                project=args.project,
                full_commit=full_commit,
                reprocess=args.reprocess,
                dry_run=args.dry_run,
                is_ancestor=is_ancestor,
            )
        except RollbackError as error:
            print(f"pachhook rollback: {error}", file=sys.stderr)
            return 1
    return 0

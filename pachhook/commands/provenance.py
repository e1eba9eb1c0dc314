"""`pachhook provenance QUERY [--format text|json]`: commit <-> image digest <-> pipeline version.

Exit status: 0 something matched, 1 nothing recorded matches, 2 bad usage or not in a
git repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from pachhook.commands._common import guard, open_queue, parse_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook provenance",
        description=(
            "Answer from the recorded jobs which commit, image digest, pipeline version and"
            " template belong together, starting from any one of them."
        ),
    )
    parser.add_argument(
        "query",
        metavar="QUERY",
        help="a commit (SHA, prefix or ref), IMAGE, IMAGE:TAG, IMAGE@sha256:..., sha256:...,"
        " PIPELINE, PIPELINE@VERSION, or a template path",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guard("pachhook provenance", _main, argv)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    from pachhook.core import gitrepo
    from pachhook.provenance.ledger import deliveries, find, format_text, kind_of

    queue = open_queue("pachhook provenance")
    if queue is None:
        return 2
    commit = None
    if kind_of(args.query) == "name" and not args.query.startswith("-"):
        # A branch, tag or HEAD~2 names a commit too; ask git only for these plain names.
        try:
            commit = gitrepo.rev_parse(args.query)
        except gitrepo.GitError:
            commit = None
    with queue:
        matches = find(deliveries(queue.list_jobs()), args.query, commit)
    if args.format == "json":
        print(json.dumps({"query": args.query, "matches": [item.to_dict() for item in matches]}, indent=2))
    elif matches:
        print(format_text(matches))
    if not matches:
        print(f"pachhook provenance: nothing recorded matches {args.query!r}", file=sys.stderr)
        return 1
    return 0

"""`pachhook plan [REV]`: what delivering a commit would change on the cluster, field by field.

Exit status: 0 the plan is printed (also when no cluster answers: it says so and prints the
rendered specs), 1 the templates do not render, 2 bad usage (not a repository, unknown
revision, bad configuration).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from pachhook.commands._common import parse_args, repository_config
from pachhook.core import gitrepo
from pachhook.deliver.commit import branch_of
from pachhook.deliver.preview import PlanError, format_plan, make_plan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook plan",
        description=(
            "For each pipeline of the commit's templates, compare the spec pachhook would apply"
            " with the user spec of the live pipeline, field by field, and say what the update"
            " would do (a new version, the old version's running jobs killed, reprocessing or"
            " not) and, where the cluster answers, how many datums the new spec has. Nothing is"
            " built, pushed or applied."
        ),
    )
    parser.add_argument("rev", nargs="?", default="HEAD", metavar="REV", help="the commit to plan (default: HEAD)")
    parser.add_argument(
        "--branch",
        metavar="NAME",
        default=None,
        help="the branch delivered from (default: the branch REV names, or the checked-out one)",
    )
    parser.add_argument("--no-datums", action="store_true", help="do not ask the cluster for datum counts")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args

    try:
        commit = gitrepo.rev_parse(args.rev)
    except gitrepo.GitError as error:
        print(f"pachhook plan: {error}", file=sys.stderr)
        return 2
    found = repository_config("pachhook plan")
    if found is None:
        return 2
    info, config = found
    branch = args.branch
    if branch is None:
        branch = branch_of(args.rev, commit, info.commit, info.branch, info.root)
    try:
        plan = make_plan(info.root, commit, branch, config, datums=not args.no_datums)
    except PlanError as error:
        for problem in error.problems:
            print(f"pachhook plan: {problem}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    if not plan.pipelines:
        print(f"pachhook plan: commit {commit[:12]} has no pipeline templates; nothing to do")
        return 0
    for line in format_plan(plan):
        print(line)
    return 0

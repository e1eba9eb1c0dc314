"""`pachhook plan [--env NAME] [REV]`: what delivering a commit would change on the cluster, field by field.

Exit status: 0 the plan is printed (also when no cluster answers, or the branch delivers to no
environment: it says so and prints the rendered specs), 1 the templates do not render, 2 bad
usage (not a repository, unknown revision or environment, bad configuration).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from pachhook.commands._common import add_environment_options, chosen_environment, commit_config, new_parser, parse_args
from pachhook.deliver.preview import PlanError, format_plan, make_plan


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook plan",
        description=(
            "For each pipeline of the commit's templates, compare the spec pachhook would apply"
            " in the environment with the user spec of the live pipeline there, field by field,"
            " and say what the update would do (a new version, the old version's running jobs"
            " killed, reprocessing or not) and, where the cluster answers, how many datums the"
            " new spec has. Nothing is built, pushed or applied."
        ),
    )
    parser.add_argument("rev", nargs="?", default="HEAD", metavar="REV", help="the commit to plan (default: HEAD)")
    add_environment_options(parser, "the branch delivered from (default: the branch REV names, or the checked-out one)")
    parser.add_argument("--no-datums", action="store_true", help="do not ask the cluster for datum counts")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    found = commit_config("pachhook plan", args.rev, args.branch)
    if found is None:
        return 2
    info, commit, branch, config = found
    environment = None
    if args.env is not None:
        environment = chosen_environment("pachhook plan", config, args.env, branch, info.root)
        if environment is None:
            return 2
    try:
        plan = make_plan(info.root, commit, branch, config, datums=not args.no_datums, environment=environment)
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

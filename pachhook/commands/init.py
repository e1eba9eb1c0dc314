"""`pachhook init`: set pachhook up in an existing repository, and say what was done.

Exit status: 0 set up (or already set up), 1 init could not finish, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from pachhook.commands._common import guard, parse_args


def build_parser() -> argparse.ArgumentParser:
    from pachhook import __version__
    from pachhook.core.output import add_output_options
    from pachhook.setup.scaffold import DEFAULT_HOOK_REPO

    parser = argparse.ArgumentParser(
        prog="pachhook init",
        description=(
            "Set up pachhook in the current git repository: find the pipeline templates and"
            " their Dockerfiles, write configuration only for what the conventions do not"
            " cover, write or extend .pre-commit-config.yaml with pachhook's three hooks"
            " (pinned to --rev) and install the pre-commit, pre-push and post-commit hooks."
            " Running it again changes nothing."
        ),
        epilog="An existing .pre-commit-config.yaml is extended by appending pachhook's entry;"
        " an existing pachhook configuration is never edited (init says what it may need)."
        " Exit status: 0 set up, 1 could not finish, 2 bad usage.",
    )
    parser.add_argument(
        "--repo",
        metavar="URL",
        default=DEFAULT_HOOK_REPO,
        help=f"the hook repository pre-commit installs pachhook from (default: {DEFAULT_HOOK_REPO})",
    )
    parser.add_argument(
        "--rev",
        metavar="REV",
        default=f"v{__version__}",
        help=f"the tag or commit of that repository to pin (default: this version's tag, v{__version__})",
    )
    parser.add_argument("--no-install", action="store_true", help="write the files but do not run `pre-commit install`")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    add_output_options(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    return guard("pachhook init", _main, args)


def _main(args: argparse.Namespace) -> int:
    from pachhook.core.output import Printer
    from pachhook.setup.scaffold import InitError, run_init

    printer = Printer(quiet=args.quiet, verbose=args.verbose)
    if not args.repo.strip() or not args.rev.strip():
        printer.error("pachhook init: --repo and --rev must not be empty")
        return 2
    try:
        result = run_init(repo=args.repo, rev=args.rev, install=not args.no_install, dry_run=args.dry_run)
    except InitError as error:
        for problem in error.problems:
            printer.error(f"pachhook init: {problem}")
        return 1
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    printer.heading(f"pachhook init in {result.root}")
    for item in result.templates:
        image = f", builds {item.image} from {item.dockerfile or '(no Dockerfile found)'}" if item.image else ""
        printer.info(f"  found {item.template}: pipeline {', '.join(item.pipelines) or '?'}{image}")
    labels = {"write": "wrote", "extend": "extended", "install": "installed", "keep": "unchanged", "note": "note"}
    for action in result.actions:
        label = labels[action.what] if action.done or action.what in ("keep", "note") else f"would {action.what}"
        where = f"{action.path}: " if action.path else ""
        if action.what == "keep":
            printer.detail(f"  {label:<9} {where}{action.message}")
        else:
            printer.result(f"  {printer.paint(f'{label:<9}', 'bold')} {where}{action.message}")
    if args.dry_run:
        printer.result("dry run: nothing was changed")
    elif result.changed:
        printer.result(
            "done: commit .pre-commit-config.yaml (and .pachhook.toml if written) so that"
            " teammates get the same hooks; `pachhook doctor` checks the rest"
        )
    else:
        printer.result("already set up: nothing changed")
    return 0

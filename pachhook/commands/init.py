"""`pachhook init`: set pachhook up in an existing repository, and say what was done.

Exit status: 0 set up (or already set up), 1 init could not finish, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from pachhook.commands._common import new_parser, parse_args
from pachhook.core.output import Printer, add_output_options
from pachhook.setup.scaffold import LOCAL_REPO, HookSource, InitError, run_init


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook init",
        description=(
            "Set up pachhook in the current git repository: find the pipeline templates and"
            " their Dockerfiles, write configuration only for what the conventions do not"
            " cover, write or extend .pre-commit-config.yaml with pachhook's three hooks"
            " and install the pre-commit, pre-push and post-commit hooks. The hooks are"
            " `repo: local` hooks running the installed `pachhook` (offline, no hook"
            " repository needed); --repo and --rev pin a hook repository instead."
            " Running it again changes nothing."
        ),
        epilog="An existing .pre-commit-config.yaml is extended by appending pachhook's entry;"
        " an entry init wrote before is rewritten when --repo/--rev ask for another source or"
        " its `files` pattern misses a template. An existing pachhook configuration is never"
        " edited (init says what it may need)."
        " Exit status: 0 set up, 1 could not finish, 2 bad usage.",
    )
    parser.add_argument(
        "--repo",
        metavar="URL",
        help="the hook repository pre-commit installs pachhook from, with --rev"
        " (default: `local`, the pachhook installed where git runs)",
    )
    parser.add_argument(
        "--rev",
        metavar="REV",
        help="the tag or commit of --repo to pin (a released tag such as v1.0.0, or a commit SHA)",
    )
    parser.add_argument("--no-install", action="store_true", help="write the files but do not run `pre-commit install`")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    add_output_options(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    printer = Printer(quiet=args.quiet, verbose=args.verbose)
    source = None
    if args.repo is not None or args.rev is not None:
        repo = (args.repo or "").strip()
        rev = (args.rev or "").strip()
        if args.repo is not None and not repo or args.rev is not None and not rev:
            printer.error("pachhook init: --repo and --rev must not be empty")
            return 2
        if repo == LOCAL_REPO and rev:
            printer.error("pachhook init: local hooks have no revision: give --rev only with a hook repository URL")
            return 2
        if repo != LOCAL_REPO and not (repo and rev):
            printer.error(
                "pachhook init: give --repo URL and --rev REV together (the hook repository and the tag"
                " or commit to pin), or neither for local hooks"
            )
            return 2
        source = HookSource(repo, rev)
    try:
        result = run_init(source=source, install=not args.no_install, dry_run=args.dry_run)
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
    labels = {
        "write": "wrote",
        "extend": "extended",
        "rewrite": "rewrote",
        "install": "installed",
        "keep": "unchanged",
        "note": "note",
    }
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

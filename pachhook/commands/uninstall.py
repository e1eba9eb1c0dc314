"""`pachhook uninstall [--force]`: remove the git hooks `pachhook install` installed, and only those.

The work is `pachhook.setup.hookinstall.uninstall`'s; this module parses the options and
prints what was done.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from pachhook.commands._common import hook_places, new_parser, parse_args, print_outcome
from pachhook.setup.hookinstall import uninstall


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook uninstall",
        description="Remove the git hooks that `pachhook install` installed; other hooks are left alone.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="also remove a recorded plain hook that no longer carries pachhook's marker line",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    places = hook_places("pachhook uninstall")
    if places is None:
        return 2
    root, hooks, common = places
    return print_outcome("pachhook uninstall", uninstall(root, hooks, common, args.force))

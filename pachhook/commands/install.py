"""`pachhook install [--force] [--plain]`: install pachhook's git hooks in this repository.

The work is `pachhook.setup.hookinstall`'s (see there, and docs/hooks.md); this module
parses the options and prints what was done.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from pachhook.commands._common import hook_places, new_parser, parse_args, print_outcome
from pachhook.setup.hookinstall import PRE_COMMIT_CONFIG, install_plain, install_with_pre_commit


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook install",
        description=(
            "Install the pre-commit, post-commit, pre-push, post-merge and post-rewrite git hooks: through"
            " `pre-commit install` when .pre-commit-config.yaml exists, else pachhook's plain"
            " hook scripts. A hook pachhook did not write is left alone unless --force."
        ),
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace hooks pachhook did not write (they are kept aside and restored by uninstall)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="install the plain hook scripts even where .pre-commit-config.yaml exists"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    places = hook_places("pachhook install")
    if places is None:
        return 2
    root, hooks, common = places
    if (root / PRE_COMMIT_CONFIG).is_file() and not args.plain:
        return print_outcome("pachhook install", install_with_pre_commit(root, common, args.force))
    return print_outcome("pachhook install", install_plain(hooks, common, args.force))

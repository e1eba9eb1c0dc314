"""`pachhook render TEMPLATE [--commit REV]`: print a template as the update step would apply it.

The template and the configuration are read from the commit (default HEAD), not from the
work tree, as the update step reads them; the template is filled with that commit's values
(`commit`, `short_commit`, `branch`, and `tag` in the configured form), given pachhook's
annotations and validated. The image digest is only known once
the image is pushed, so it is not part of this output.

Exit status: 0 printed, 1 the template does not render into a valid spec, 2 bad usage
(not a repository, unknown revision, bad configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from pachhook.commands._common import commit_config, new_parser, parse_args
from pachhook.deliver.steps.update import RenderError, render_template, render_values


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook render",
        description=(
            "Print the pipeline spec a template becomes for a commit: placeholders filled,"
            " pachhook's annotations added, validated. A template holding several pipelines"
            " prints a JSON list."
        ),
    )
    parser.add_argument("template", metavar="TEMPLATE", help="template path (as in the work tree)")
    parser.add_argument(
        "--commit",
        metavar="REV",
        default="HEAD",
        help="the commit to render for (default: HEAD); the template is read from it",
    )
    parser.add_argument(
        "--branch",
        metavar="NAME",
        default=None,
        help="value of {{ branch }} (default: the branch REV names, or the checked-out one"
        " for its tip; empty for a bare commit)",
    )
    parser.add_argument("--no-annotations", action="store_true", help="leave out the pachhook.io/* annotations")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    found = commit_config("pachhook render", args.commit, args.branch)
    if found is None:
        return 2
    info, commit, branch, config = found
    template = repo_relative(args.template, info.root)
    if template is None:
        print(f"pachhook render: {args.template} is outside the repository {info.root}", file=sys.stderr)
        return 2
    values = render_values(commit, branch, config.tag)
    try:
        specs = render_template(
            info.root, commit, template, values, annotate=not args.no_annotations, jsonnet_args=config.jsonnet_args
        )
    except RenderError as error:
        for line in error.problems:
            print(line, file=sys.stderr)
        return 1
    output = specs[0].spec if len(specs) == 1 else [spec.spec for spec in specs]
    print(json.dumps(output, indent=2))
    return 0


def repo_relative(path: str, root: Path) -> Optional[str]:
    """`path` (relative to the current folder, or absolute) as a path inside the repository."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(Path(os.path.realpath(root)))
    except ValueError:
        try:
            relative = Path(os.path.realpath(absolute)).relative_to(Path(os.path.realpath(root)))
        except ValueError:
            return None
    return relative.as_posix()

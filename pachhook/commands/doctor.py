"""`pachhook doctor`: one line per check of this repository's set-up, ok or what to do.

Exit status: 0 every check passed (warnings allowed), 1 a check failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from pachhook.commands._common import new_parser, parse_args
from pachhook.core.output import Printer, add_output_options
from pachhook.setup.checkup import FAIL, OK, run_checks


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook doctor",
        description=(
            "Check, one line each: the three hook types are installed, the configuration and"
            " the templates are valid, the Docker engine answers, each image's registry has"
            " credentials (or needs none), pachctl is found with an active context (or the API"
            " backend connects), no pachctl transaction is left open in your configuration, the queue is"
            " healthy and the worker's state. A failing line"
            " says what to do."
        ),
        epilog="Exit status: 0 all checks ok (warnings allowed), 1 a check failed, 2 bad usage."
        " Credentials are reported as present or absent, never shown.",
    )
    add_output_options(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    printer = Printer(quiet=args.quiet, verbose=args.verbose)

    def show(check) -> None:
        if args.format == "text":
            timing = f" ({check.seconds:.2f} s)" if printer.verbose else ""
            printer.status(check.status, check.name, check.message + timing)
            if check.fix and check.status != OK:
                printer.result(f"      -> {check.fix}")

    checks = run_checks(on_check=show)
    failed = [check for check in checks if check.status == FAIL]
    if args.format == "json":
        print(json.dumps({"ok": not failed, "checks": [check.to_dict() for check in checks]}, indent=2))
    else:
        printer.info("")
        if failed:
            printer.result(printer.paint(f"{len(failed)} of {len(checks)} checks failed", "red"))
        else:
            printer.result(printer.paint(f"all {len(checks)} checks passed", "green"))
    return 1 if failed else 0

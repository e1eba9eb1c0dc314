"""`pachhook demo`: deliver the examples in a throwaway repository, on local defaults.

Exit status: 0 every job delivered (with the steps this machine cannot run shown as dry
runs), 1 a job failed or the timeout passed, 2 bad usage or the demo could not start.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from pachhook.commands._common import new_parser, parse_args
from pachhook.commands.status import format_jobs
from pachhook.core.output import Printer, add_output_options
from pachhook.queue.jobs import Job, StepRecord
from pachhook.setup.walkthrough import DemoError, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook demo",
        description=(
            "Copy the examples into a new git repository, install pachhook's hooks there,"
            " commit, and let the worker build, push and update; then print the jobs, the"
            " provenance and the rendered specs. Needs nothing prepared: without a Docker"
            " engine, a registry or pachctl, the step that needs it runs as a dry run and the"
            " demo says which and why. No cluster is touched unless --context names one: the"
            " first line says which pachctl context the demo uses. A registry is started on a"
            " free loopback port when the docker-registry program is installed."
        ),
        epilog="Everything the demo writes stays in its folder (printed at the start), apart from"
        " the images it builds in the Docker engine; the processes it starts are stopped"
        " before it returns. Exit status: 0 delivered,"
        " 1 a job failed or --timeout passed, 2 the demo could not start.",
    )
    parser.add_argument(
        "--dir", metavar="DIR", default=None, help="folder for the demo (new or empty; default: a new temporary folder)"
    )
    parser.add_argument(
        "--registry", metavar="HOST:PORT", default=None, help="push to this running registry instead of starting one"
    )
    parser.add_argument(
        "--context",
        metavar="NAME",
        default=None,
        help="deliver to this context of your pachctl configuration (its pipelines edges and montage are"
        " updated; needs --registry). Default: a throwaway context of the demo's own, no cluster touched",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=180.0,
        help="give up on the delivery after this long (default: 180)",
    )
    add_output_options(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.timeout <= 0:
        print("pachhook demo: --timeout must be a positive number of seconds", file=sys.stderr)
        return 2
    printer = Printer(quiet=args.quiet, verbose=args.verbose)
    text = args.format == "text"

    def say(kind: str, line: str) -> None:
        if not text:
            return
        if kind == "heading":
            printer.heading(line)
        elif kind == "detail":
            printer.detail("   " + line)
        elif kind == "progress":
            printer.info("   .. " + line)
        elif kind == "first":
            printer.result(line)  # which context: shown even with --quiet
        elif kind == "info":
            printer.info(line)
        else:
            _status_line(printer, kind, line)

    try:
        report = run_demo(args.dir, args.registry, args.timeout, say, args.context)
    except DemoError as error:
        print(f"pachhook demo: {error}", file=sys.stderr)
        return 2
    if not text:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    _print_results(printer, report)
    return 0 if report.ok else 1


def _status_line(printer, kind: str, line: str) -> None:
    word = {"ok": "ok", "skip": "skip", "fail": "fail"}.get(kind, "info")
    if word == "ok" and printer.quiet:
        return
    printer.result(
        f"   {printer.paint(f'{word:<5}', {'ok': 'green', 'skip': 'yellow', 'fail': 'red'}.get(word, 'cyan'))} {line}"
    )


def _print_results(printer, report) -> None:
    jobs = [
        Job(
            **{
                **{k: v for k, v in job.items() if k in Job.__dataclass_fields__ and k != "steps"},
                "steps": [StepRecord(**step) for step in job["steps"]],
            }
        )
        for job in report.jobs
    ]
    printer.heading("5. status (`pachhook status`)")
    printer.result(_indent(format_jobs(jobs)))
    if report.provenance:
        printer.heading(
            "6. provenance (`pachhook provenance HEAD`)"
            + (": images named, not built (dry run)" if "build" in report.skipped_steps() else "")
        )
        for item in report.provenance:
            parts = [f"{item.get('pipeline')}"]
            if item.get("pipeline_version"):
                parts.append(f"version {item['pipeline_version']}")
            parts.append(f"<- commit {str(item.get('commit', ''))[:12]}")
            if item.get("image_ref"):
                parts.append(f"image {item['image_ref']}")
            if item.get("digest"):
                parts.append(f"digest {item['digest']}")
            printer.result("   " + " ".join(parts))
    if report.rendered and not printer.quiet:
        printer.heading("7. rendered specs")
        for pipeline, spec in report.rendered.items():
            printer.info(f"   {pipeline}:")
            printer.info(_indent(spec.rstrip("\n"), "     "))
    if report.commands:
        printer.heading(
            "8. pachctl commands run"
            if "update" not in report.skipped_steps()
            else "8. what update would run (not run, see `skipped`; the specs are written there)"
        )
        for pipeline, command in report.commands.items():
            printer.result(f"   {pipeline}: {command}")
    if report.skipped:
        printer.heading("skipped")
        for item in report.skipped:
            printer.result(f"   {item.step}: {item.reason}")
    verdict = (
        ("delivered" if not report.skipped else "done, with the skipped steps run as dry runs")
        if report.ok
        else ("timed out" if report.timed_out else "a job failed: see `pachhook status` and `pachhook logs JOB`")
    )
    printer.result(printer.paint(f"demo {verdict}", "green" if report.ok else "red"))
    printer.result(f"the demo repository stays in {report.directory}/repo (remove {report.directory} when done)")
    # The last line says what to do next: look around the demo, then set up a repository of one's own.
    printer.result(
        f"next: `cd {report.directory}/repo` and try `pachhook status`, `pachhook logs 1`, `pachhook provenance HEAD`;"
        " then, in your own pipeline repository, `pachhook init` (docs/getting-started.md, section 3)"
    )


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())

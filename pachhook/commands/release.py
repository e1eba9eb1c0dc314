"""`pachhook release PIPELINE [--env NAME]`: lift the hold a rollback placed, so the queue delivers the pipeline again.

The newest job of the pipeline that the hold stopped is queued again. Exit status: 0
released, 1 the pipeline was not held there, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pachhook.commands._common import add_pipeline_place_options, new_parser, open_queue, parse_args, pipeline_place
from pachhook.deliver.holds import HELD_PREFIX, Holds, PipelineKey
from pachhook.queue.states import FAILED

PROG = "pachhook release"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog=PROG,
        description=(
            "Lift the hold `pachhook rollback` placed on a pipeline in an environment: the queue"
            " delivers it there again, starting with the newest job the hold stopped."
        ),
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="the held pipeline, as its template names it")
    add_pipeline_place_options(parser)
    parser.add_argument("--no-retry", action="store_true", help="lift the hold only; queue no job again")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    place = pipeline_place(PROG, args)
    if place is None:
        return 2
    info, config, environment, branch, pipeline = place
    queue = open_queue(PROG)
    if queue is None:
        return 2
    with queue:
        holds = Holds(queue.folder)
        project = args.project or environment.project
        if not project:  # the project the hold names, when it is the only one
            projects = sorted({hold.project for hold in holds.in_projects(environment.name, pipeline)})
            if len(projects) > 1:
                shown = ", ".join(name or "default" for name in projects)
                print(f"{PROG}: {pipeline} is held in projects {shown}: name one with --project", file=sys.stderr)
                return 2
            project = projects[0] if projects else ""
        key = PipelineKey(environment.name, project, pipeline)
        hold = holds.release(key, f"{pipeline} in env {environment.name} released by `pachhook release`")
        if hold is None:
            elsewhere = [other.where() for other in holds.all() if other.name == args.pipeline]
            print(
                f"{PROG}: {pipeline} is not held in env {environment.name}"
                + (f" (held: {'; '.join(elsewhere)})" if elsewhere else ""),
                file=sys.stderr,
            )
            return 1
        print(f"released {hold.where()} (held at v{hold.version} since the {hold.reason})")
        if args.no_retry:
            return 0
        stopped = [
            job
            for job in queue.list_jobs(all=True)
            if job.pipeline == args.pipeline
            and job.state == FAILED
            and job.step("update").error.startswith(HELD_PREFIX)
            and (job.environment or environment.name) == environment.name
            and job.pipeline + environment.suffix_for(job.branch) == pipeline
        ]
        if stopped:
            newest = max(stopped, key=lambda job: (job.created_at, job.id))
            queue.retry(newest.id)
            print(f"job {newest.id} (commit {newest.commit[:12]}) queued again; `pachhook run` delivers it")
    return 0

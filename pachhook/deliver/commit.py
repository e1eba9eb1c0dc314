"""Deliver one commit without the queue: `pachhook run --commit REV [--dry-run]`, for CI.

Every pipeline of every template in the commit (not only the ones it changed: a CI job
must be able to redeploy a commit on its own) goes through build -> push -> update. The
images build concurrently (`build_concurrency` at a time), each distinct image once; the
updates are applied together, in the DAG's order, once every image is pushed. The steps are the ones
the worker runs, so they are just as idempotent: running a commit twice rebuilds nothing
and updates nothing the second time. Nothing is written to the queue.

With `dry_run`, each step says what it would do (the image to build or reuse, the spec
and the command that would apply it) and nothing is built, pushed, applied or written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pachhook.core import gitrepo
from pachhook.core.config import Config, ConfigError, load_config_at
from pachhook.core.environments import ask_default_branch_ahead, environment_for
from pachhook.deliver.cireport import RunReport
from pachhook.deliver.holds import Holds, PipelineKey
from pachhook.deliver.runner import (
    BEFORE_UPDATE,
    Member,
    StepHooks,
    StepsRun,
    read_ahead_for,
    run_steps,
    update_together,
)
from pachhook.deliver.sharedimages import SharedImages, deliver_concurrently
from pachhook.deliver.steps.base import StepContext
from pachhook.deliver.steps.build import ask_git_ahead
from pachhook.queue.affected import commit_templates, foreign_file, parse_template
from pachhook.queue.jobs import Job, StepRecord
from pachhook.queue.states import STEP_NAMES
from pachhook.spec.ordering import CycleError, dependency_order

Output = Callable[[str], None]

# Branch names CI systems give a detached checkout (GitHub Actions, GitLab CI).
CI_BRANCH_VARIABLES = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME")


@dataclass
class Planned:
    pipeline: str
    template: str
    image: str  # repository to build, "" for a fixed image
    inputs: List[str] = field(default_factory=list)


@dataclass
class Outcome:
    pipeline: str
    timings: Dict[str, float] = field(default_factory=dict)  # step -> seconds
    outcomes: Dict[str, str] = field(default_factory=dict)  # step -> done/reused/skipped/failed
    error: str = ""
    template: str = ""
    results: Dict[str, Dict[str, str]] = field(default_factory=dict)  # step -> its recorded data


class DeliverError(Exception):
    """The commit cannot be planned (unknown revision, broken template); one line each."""

    def __init__(self, problems: Sequence[str], usage: bool = False) -> None:
        super().__init__(problems[0] if problems else "cannot deliver")
        self.problems = list(problems)
        self.usage = usage


def plan(root: Path, commit: str, config: Config) -> List[Planned]:
    """The pipelines of every template in `commit`, in dependency order."""
    entries = gitrepo.ls_tree(commit, root)
    templates = commit_templates(entries, config.templates)
    # read as `commit:path`, so the update step's render finds each one read (gitrepo.settle)
    sources = gitrepo.show_files(commit, templates, root)
    planned: List[Planned] = []
    problems: List[str] = []
    seen: Dict[str, str] = {}
    for path in templates:
        parsed = parse_template(sources.get(path), path, config.jsonnet_args)
        if foreign_file(path, parsed, config):
            continue  # named like a template, holds none: another tool's file
        if parsed.get("error"):
            problems.append(f"{path}: {parsed['error']}")
            continue
        for spec in parsed["specs"]:
            if spec["pipeline"] in seen:
                problems.append(f"{path}: pipeline {spec['pipeline']!r} is defined in {seen[spec['pipeline']]} too")
                continue
            seen[spec["pipeline"]] = path
            planned.append(Planned(spec["pipeline"], path, spec["image"], list(spec["inputs"])))
    if problems:
        raise DeliverError(problems)
    try:
        return dependency_order(planned, lambda item: item.pipeline, lambda item: item.inputs)
    except CycleError as error:
        raise DeliverError([str(error)]) from None


def branch_of(rev: str, commit: str, head_commit: str, head_branch: str, root: Path) -> str:
    """The branch a commit is delivered from.

    The branch REV names; else the checked-out branch when REV is its tip (HEAD, or its
    SHA); else what CI says of a detached checkout; else none.
    """
    if rev != "HEAD" and gitrepo.rev_exists(f"refs/heads/{rev}", root):
        return rev
    if commit == head_commit and head_branch:
        return head_branch
    for name in CI_BRANCH_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return ""


def deliver_commit(
    rev: str,
    dry_run: bool = False,
    out: Output = print,
    cwd: Optional[Path] = None,
    err: Optional[Output] = None,
    report: Optional[RunReport] = None,
    force: bool = False,
    live: Optional[Any] = None,
) -> int:
    """Run build, push and update for every pipeline of `rev`; returns an exit status.

    Progress goes to `out` (and, with `live`, a terminal's live display: ttyprogress.py);
    problems that stop the run before any step go to `err`; what happened is also recorded
    in `report` (for CI summaries, deliver.cireport).
    """
    if err is None:

        def err(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    try:
        asked = gitrepo.head_info_soon(cwd)
        try:
            commit = gitrepo.rev_parse(rev, cwd) if rev != "HEAD" else ""  # while git answers the other
        except gitrepo.GitError:
            gitrepo.read_quietly(asked)  # its git reaped; the revision's error is the one to tell
            raise
        info = asked()
        commit = commit or info.commit
    except gitrepo.GitError as error:
        err(f"pachhook run: {error}")
        return 2
    branch = branch_of(rev, commit, info.commit, info.branch, info.root)
    # git answers these while the configuration is read and the commit planned
    ask_default_branch_ahead(info.root_str, info.common_dir_str)
    ask_git_ahead(info.root, branch)
    try:
        # the commit's configuration, never the work tree's
        config = load_config_at(info.root, commit)
        environment = environment_for(config, branch, info.root)
    except ConfigError as error:
        for line in error.problems:
            err(f"pachhook run: {line}")
        return 2
    if report is not None:
        report.commit, report.branch, report.dry_run = commit, branch, dry_run
        report.environment = environment.name if environment is not None else ""
    if environment is None:
        out(f"pachhook run: branch {branch or '(none)'} delivers to no environment; nothing to do")
        return 0
    try:
        pipelines = plan(info.root, commit, config)
    except DeliverError as error:
        for line in error.problems:
            err(f"pachhook run: {line}")
        if report is not None:
            report.add_problems(error.problems)
        return 1
    if not pipelines:
        out(f"pachhook run: commit {commit[:12]} has no pipeline templates; nothing to do")
        return 0
    mode = "dry run: " if dry_run else ""
    out(
        f"{mode}delivering {commit[:12]}"
        + (f" ({branch})" if branch else "")
        + f" to {environment.describe()}"
        + (" (forced)" if force else "")
        + f": {', '.join(item.pipeline for item in pipelines)}"
    )
    if dry_run:
        _show_plan(info.root, commit, branch, config, out)
    jobs = {item.pipeline: _job_of(item, commit, branch, environment.name) for item in pipelines}
    # The live read for the order check starts now, while the images build (earlyread.py).
    ahead = read_ahead_for(info.root, Path(info.common_dir), list(jobs.values()), dry_run)
    try:
        delivered = deliver_concurrently(
            pipelines,
            lambda item, say, shared: _build_and_push(
                info.root, info.common_dir, jobs[item.pipeline], dry_run, say, shared, force, live
            ),
            1 if dry_run else config.build_concurrency,
            out,
        )
        outcomes = [outcome for outcome, _ in delivered]
        members = [(outcome, member) for outcome, member in delivered if member is not None]
        # Nothing is recorded around the update either: the base StepHooks.
        failed = [(outcome.pipeline, "failed") for outcome in outcomes if outcome.error]
        update_together([member for _, member in members], failed, show_time=True, ahead=ahead)
    finally:
        if ahead is not None:
            ahead.close()
    for outcome, member in members:
        outcome.timings, outcome.outcomes, outcome.error = member.run.timings, member.run.outcomes, member.run.error
        outcome.results = member.ctx.results
    if not dry_run:
        for outcome in outcomes:
            if not outcome.error:
                _release_hold(Path(info.common_dir), environment.name, outcome, commit, out)
    if report is not None:
        for done in outcomes:
            report.add_pipeline(done.pipeline, done.template, done.results, done.outcomes, done.timings, done.error)
    return _summarise(outcomes, out)


def _release_hold(common_dir: Path, environment: str, outcome: Outcome, commit: str, out: Output) -> None:
    """An explicit delivery of a held pipeline (after a rollback) ends the hold: the user chose to go on."""
    update = outcome.results.get("update") or {}
    # the update step names the pipeline as the environment has it on the cluster
    key = PipelineKey(environment, update.get("project", ""), update.get("pipeline") or outcome.pipeline)
    holds = Holds(gitrepo.state_folder(common_dir))
    hold = holds.release(key, f"{key.pipeline} released by `run --commit {commit[:12]}`")
    if hold is not None:
        out(f"{outcome.pipeline}: hold released (it was held at v{hold.version} since the {hold.reason})")


def _show_plan(root: Path, commit: str, branch: str, config, out: Output) -> None:
    """A dry run starts with the plan: each pipeline's spec against the live one."""
    from pachhook.deliver.preview import PlanError, format_plan, make_plan  # here: plan imports this module

    try:
        lines = format_plan(make_plan(root, commit, branch, config))
    except PlanError:
        return  # the templates do not render: each pipeline's update step says why
    for line in lines:
        out(line)
    out("")


def _job_of(item: Planned, commit: str, branch: str, environment: str) -> Job:
    """A planned pipeline as a job the steps run (recorded nowhere: id 0)."""
    return Job(
        id=0,
        commit=commit,
        branch=branch,
        pipeline=item.pipeline,
        template=item.template,
        image=item.image,
        steps=[StepRecord(name) for name in STEP_NAMES],
        environment=environment,
    )


def _build_and_push(
    root: Path,
    common_dir: Path,
    job: Job,
    dry_run: bool,
    out: Output,
    shared: Optional[SharedImages] = None,
    force: bool = False,
    live: Optional[Any] = None,
) -> Tuple[Outcome, Optional[Member]]:
    """Build and push one pipeline's image; what its update needs, None on failure."""
    outcome = Outcome(job.pipeline, template=job.template)

    def log(line: str) -> None:
        out(f"{job.pipeline}: {line}")

    ctx = StepContext(
        repo_root=root, git_dir=common_dir, job=job, log=log, dry_run=dry_run, force=force, shared=shared, live=live
    )
    # Nothing is recorded around the steps: the base StepHooks. The update comes later, together.
    hooks = StepHooks()
    run: StepsRun = run_steps(ctx, hooks, show_time=True, only=BEFORE_UPDATE)
    outcome.timings, outcome.outcomes, outcome.error = run.timings, run.outcomes, run.error
    outcome.results = ctx.results
    return outcome, (None if run.error else Member(ctx, hooks, run))


def _summarise(outcomes: List[Outcome], out: Output) -> int:
    width = max([len("pipeline")] + [len(item.pipeline) for item in outcomes])
    out("")
    out(f"{'pipeline':<{width}}  " + "  ".join(f"{name:>8}" for name in STEP_NAMES) + f"  {'total':>8}")
    for item in outcomes:
        cells = []
        for name in STEP_NAMES:
            if name in item.timings:
                mark = "!" if item.outcomes.get(name) == "failed" else ""
                cells.append(f"{item.timings[name]:>7.1f}s{mark}" if mark else f"{item.timings[name]:>7.1f}s")
            else:
                cells.append(f"{'-':>8}")
        out(f"{item.pipeline:<{width}}  " + "  ".join(cells) + f"  {sum(item.timings.values()):>7.1f}s")
    failed = [item for item in outcomes if item.error]
    if failed:
        out(
            f"pachhook run: {len(failed)} of {len(outcomes)} pipelines failed: "
            + "; ".join(f"{item.pipeline}: {item.error}" for item in failed)
        )
        return 1
    return 0

"""`pachhook queue [--commit REV]`: the post-commit hook, recording one job per affected pipeline.

It runs inside `git commit`, which it cannot undo: every outcome, bad configuration
included, is one line and exit status 0. It must also be quick (see docs/performance.md):
argparse is only imported when there are arguments to parse, YAML only when a template
blob has not been parsed before, and the worker is started detached.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    import argparse
    from typing import Any, List, Optional, Sequence


# How long `git commit` may wait on another process's queue transaction (they last
# milliseconds; only a stuck process holds one longer) before the hook gives up and says so.
HOOK_BUSY_TIMEOUT = 10.0


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from pachhook.commands._common import new_parser

    parser = new_parser(
        prog="pachhook queue",
        description=(
            "Record a build/push/update job for each pipeline whose template, Dockerfile or"
            " build context differs from what was last delivered (or is being delivered),"
            " then start a background worker unless the worker mode is manual."
            " Always exits 0: it runs as the post-commit hook, which cannot undo a commit."
        ),
    )
    parser.add_argument(
        "--commit", metavar="REV", default="HEAD", help="the commit to queue (default: HEAD, the commit just made)"
    )
    parser.add_argument(
        "--no-worker", action="store_true", help="do not start a background worker, whatever the configuration says"
    )
    parser.add_argument(
        "--hook",
        choices=HOOKS,
        help="the git hook running it (post-merge, post-rewrite also supersede what they replaced);"
        " git's own hook arguments may follow",
    )
    parser.add_argument("hook_args", nargs="*", help=argparse.SUPPRESS)
    return parser


# Every way a branch moves: a commit, a merge (merge, pull, fast-forward), a rewrite
# (amend, rebase). githooks(5): post-merge gets the squash flag, post-rewrite the command
# and, on stdin, one "OLD NEW" line per rewritten commit.
HOOKS = ("post-commit", "post-merge", "post-rewrite")


def _say(line: str) -> None:
    print(f"pachhook: {line}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rev, start_worker, hook = "HEAD", True, ""
    if args:
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit as stop:
            return 0 if not stop.code else 2
        rev, start_worker, hook = parsed.commit, not parsed.no_worker, parsed.hook or ""
    if not hook and os.environ.get("PRE_COMMIT_REWRITE_COMMAND"):
        hook = "post-rewrite"  # the pre-commit framework's post-rewrite stage (it keeps stdin)
    rewritten: Optional[List[str]] = None
    if hook == "post-rewrite":
        rewritten = _rewritten_commits()
    try:
        queue_commit(rev, start_worker, keep_open=_is_hook_process(), rewritten=rewritten)
    except Exception as error:  # never a traceback inside `git commit`
        from pachhook.core.sanitize import one_line

        # the text may quote a file, a branch or a database message: outside text
        _say(f"queue failed: {type(error).__name__}: {one_line(error, 500)}")
    if _is_hook_process():
        _exit_now()
    return 0


def _rewritten_commits() -> List[str]:
    """The OLD commits of post-rewrite's stdin lines ("OLD NEW [EXTRA]"); [] when none came."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return []
        text = sys.stdin.read()
    except (OSError, ValueError):
        return []
    return [line.split()[0] for line in text.splitlines() if len(line.split()) >= 2]


def _is_hook_process() -> bool:
    """Whether this process is `pachhook queue` itself (not a caller importing main)."""
    from pachhook.core import processend

    return sys.argv[1:2] == ["queue"] and processend.SLOW_EXIT_VARIABLE not in os.environ


def _exit_now() -> None:
    """End the process without closing the queue's database.

    The last connection to close a WAL database checkpoints it, an fsync that costs
    10-15 ms on these disks: a quarter of the hook's budget. Ending without closing is
    what SQLite sees after any crash; the next connection finds the WAL intact and
    automatic checkpoints fold it in later.
    """
    from pachhook.core import processend

    processend.end_process(0)


def queue_commit(
    rev: str = "HEAD",
    start_worker: bool = True,
    cwd: Any = None,
    keep_open: bool = False,
    rewritten: Optional[List[str]] = None,
) -> int:
    """Record the jobs of `rev`; with keep_open the database is left for the process exit.

    `rewritten` (post-rewrite): commits an amend or rebase replaced, whose never-started
    jobs are superseded first; [] means "not told": the branch's queued commits that are
    no longer ancestors of `rev` are.
    """
    from pachhook.core import gitrepo

    with gitrepo.config_snapshot():  # git's configuration read once, some of it ahead
        try:
            asked = gitrepo.head_info_soon(cwd, rev)
            from pachhook.queue.store import Queue  # imported (~10 ms) while git answers

            info = asked()
            if rev != "HEAD" and not info.branch:
                # `--commit REV` of the checked-out branch's history is that branch's
                branch = gitrepo.current_branch(cwd)
                if branch and gitrepo.run(["merge-base", "--is-ancestor", info.commit, "HEAD"], cwd).returncode == 0:
                    info.branch = branch
        except gitrepo.GitError as error:
            _say(f"nothing queued: {error}")
            return 0
        from pachhook.core.config import read_files_ahead
        from pachhook.core.environments import ask_default_branch_ahead
        from pachhook.queue.database import DatabaseError, Error

        queue = None
        try:
            # git reads the configuration (and may look up the default branch) while the queue opens
            configuration_read = read_files_ahead(info.root_str, info.commit)
            ask_default_branch_ahead(info.root_str, info.common_dir_str)
            try:
                queue = Queue(info.common_dir_str, timeout=HOOK_BUSY_TIMEOUT)
            finally:
                configuration_read()  # its git reaped, however the queue's opening went
            try:
                _queue_into(queue, info, start_worker, rewritten)
            except DatabaseError as error:
                # damage past the header shows only now: set the file aside and record afresh
                if not queue.recover_if_corrupt(error):
                    raise
                _queue_into(queue, info, start_worker, rewritten)
        except (Error, OSError) as error:
            # A full disk, a read-only git dir, a lock held past the timeout: the commit stands,
            # say why nothing was recorded, where, and how to record it later.
            _say(
                f"nothing queued for {info.commit[:12]}: cannot write the queue in"
                f" {gitrepo.state_folder(info.common_dir_str)}: {_cause(error, info.common_dir_str)};"
                f" the commit stands: once fixed, run `pachhook queue --commit {info.commit[:12]}`"
            )
        finally:
            if queue is not None and not keep_open:
                queue.close()
        return 0


def _cause(error: BaseException, common_dir: str) -> str:
    """SQLite's words, plus what the file system says when SQLite's are vague."""
    import tempfile

    from pachhook.core import gitrepo

    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError):
        return text
    try:
        with tempfile.TemporaryFile(dir=gitrepo.state_folder(common_dir)) as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as probe_error:
        return f"{text} ({probe_error.strerror or probe_error})"
    return text


def _queue_into(queue: Any, info: Any, start_worker: bool, rewritten: Optional[List[str]] = None) -> None:
    from pachhook.core.config import ConfigError, load_config_at
    from pachhook.core.environments import environment_for
    from pachhook.queue.affected import find_affected

    short = info.commit[:12]
    try:
        # the commit's configuration, not the work tree's (issue 10: deliver from the commit)
        config = load_config_at(info.root_str, info.commit, cache_dir=queue.folder_str)
    except ConfigError as error:
        for problem in error.problems:
            _say(f"nothing queued for {short}: {problem}")
            queue.problems.record(problem, info.commit)
        return
    try:
        environment = environment_for(config, info.branch, info.root_str)
    except ConfigError as error:
        for problem in error.problems:
            _say(f"nothing queued for {short}: {problem}")
            queue.problems.record(problem, info.commit)
        return
    from pachhook.queue.attention import any_unseen, describe, failed_newest, mark_seen, needing_attention

    if environment is None:
        where = f"branch {info.branch}" if info.branch else "a detached HEAD"
        _say(f"nothing queued for {short}: {where} delivers to no environment")
        return
    if rewritten is not None and info.branch:
        _supersede_rewritten(queue, info, rewritten)
    affected = find_affected(info.root_str, info.commit, info.tree, config, queue, environment.name)
    for problem in affected.problems:
        queue.problems.record(problem, info.commit)
    # Failed or stuck deliveries the user has not been told about, before this commit's
    # jobs (which may re-queue a failed pipeline) change what is newest.
    failed_before = failed_newest(queue)
    attention = needing_attention(queue) if any_unseen(queue) else []
    outcome = queue.enqueue_commit(info.commit, info.branch, affected.jobs, environment.name)
    # The worker starts before anything is printed: a reader that has gone away (`git
    # commit | head -1`) must not cost the delivery.
    if outcome.created and start_worker and config.worker == "background":
        from pachhook.queue.launch import start_background

        start_background(info.root_str, info.common_dir_str)
    for problem in affected.problems:
        _say(f"{short}: {problem}")
    _report(short, affected.templates, outcome, failed_before, environment.describe())
    created = {pipeline for _, pipeline in outcome.created}
    for job in attention:
        if job.pipeline not in created:
            _say(describe(job))
    _name_cluster_failures(queue)
    mark_seen(queue.folder_str, attention)


def _name_cluster_failures(queue: Any) -> None:
    """Name the newest delivery of each pipeline whose job then failed in the cluster: the
    worker found out after the commit that queued it, and this line is where the user looks."""
    for pipeline, commit, cluster_job, state, reason in queue.cluster_failures():
        shown = state.replace("JOB_", "").lower() + (f": {reason}" if reason else "")
        _say(f"note: {pipeline} from {commit[:12]} failed in cluster: job {cluster_job} {shown}")


def _supersede_rewritten(queue: Any, info: Any, rewritten: List[str]) -> None:
    from pachhook.core import gitrepo

    short = info.commit[:12]
    if not rewritten:
        rewritten = [
            commit
            for commit in queue.unstarted_commits(info.branch)
            if commit != info.commit
            and gitrepo.run(["merge-base", "--is-ancestor", commit, info.commit], info.root_str).returncode != 0
        ]
    ids = queue.supersede_unstarted(
        [commit for commit in rewritten if commit != info.commit],
        f"superseded: rewritten (amend or rebase); {info.branch} is at {short} now",
    )
    if ids:
        _say(f"superseded {len(ids)} job{'s' if len(ids) != 1 else ''} of rewritten commits")


def _report(short: str, templates: int, outcome: Any, requeued: Any = None, where: str = "") -> None:
    names: List[str] = [pipeline for _, pipeline in outcome.created]
    again = [
        f"{name} (again: its last delivery, job {requeued[name]}, failed)" for name in names if name in (requeued or {})
    ]
    if names:
        shown = [name for name in names if name not in (requeued or {})] + again
        line = f"queued {short} for {', '.join(shown)}" + (f" to {where}" if where else "")
        if outcome.superseded:
            count = len(outcome.superseded)
            line += f" (superseding {count} older job{'s' if count != 1 else ''})"
        _say(line + "; `pachhook status` shows progress")
    elif outcome.existing:
        _say(f"{short} already queued for {', '.join(pipeline for _, pipeline in outcome.existing)}")
    elif templates == 0:
        _say(f"nothing queued for {short}: no pipeline templates in this commit")
    else:
        _say(f"nothing queued for {short}: it changes no pipeline's template, Dockerfile or build context")

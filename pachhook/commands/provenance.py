"""`pachhook provenance QUERY [--cluster] [--env NAME] [--depth N] [--project P] [--format text|json]`.

From the cluster: `REPO@COMMIT` or `PIPELINE@JOB` (a job's ID is its output commit's ID),
a bare 32-digit global ID, or `COMMIT --cluster` (the pipeline versions a git commit made,
in every configured environment, or in the one `--env` names).
From the local ledger: a commit, an image, a digest, `PIPELINE@VERSION` or a template.

The cluster is read through a private session (deliver/backends/session.py) of the
environment's context and project, with the environment's backend (pachctl or the API);
without `--env`, REPO@COMMIT, PIPELINE@JOB and global IDs read the active context.

Exit status: 0 an answer, 1 nothing matches (or the cluster could not answer), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, List, Optional, Sequence, Union

from pachhook.commands._common import chosen_environment, new_parser, open_queue, parse_args
from pachhook.core import gitrepo
from pachhook.core.config import ConfigError, load_config
from pachhook.core.environments import Environment, all_environments
from pachhook.deliver.backends.clusterview import view_for
from pachhook.deliver.backends.pachctl import BackendError
from pachhook.deliver.backends.session import open_session
from pachhook.deliver.holds import Holds
from pachhook.deliver.steps.update import make_backend
from pachhook.provenance.cluster import (
    GLOBAL_ID,
    ClusterError,
    GitSide,
    Tracer,
    format_tree,
    format_versions,
)
from pachhook.provenance.ledger import deliveries, find, format_text, kind_of
from pachhook.queue.database import queue_path
from pachhook.queue.retention import ledger_jobs
from pachhook.queue.store import Queue

_VERSION = re.compile(r"v?\d+\Z")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook provenance",
        description=(
            "Which git commit, image digest, pipeline version and template made a result: read from"
            " the cluster (output commits, jobs, datums, pipeline history) and from this clone's ledger."
        ),
    )
    parser.add_argument(
        "query",
        metavar="QUERY",
        help="REPO@COMMIT or PIPELINE@JOB (cluster), a global ID (cluster), a git commit (with --cluster:"
        " its pipeline versions in the cluster), IMAGE, IMAGE:TAG, IMAGE@sha256:..., sha256:..., PIPELINE,"
        " PIPELINE@VERSION, or a template path",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="for a git commit: the pipeline versions, jobs and output commits it made",
    )
    parser.add_argument(
        "--depth", type=_depth, default=None, help="input levels to follow up the DAG (default: all; 0: none)"
    )
    parser.add_argument(
        "--env",
        default="",
        metavar="NAME",
        help="read the cluster of this environment (its context, project and backend); default: the active"
        " pachctl context, and for COMMIT --cluster every environment",
    )
    parser.add_argument(
        "--project", default="", help="Pachyderm project (default: the environment's, else the pachctl context's)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    return parser


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of levels (0 or more), not {text!r}")
    return value


def cluster_query(query: str) -> Optional[tuple]:
    """(repo, ref, project) for REPO@COMMIT / PIPELINE@JOB / [PROJECT/]REPO@BRANCH, ("", id, "") for a
    bare global ID, None for what the ledger answers (PIPELINE@VERSION, IMAGE@sha256:…, …)."""
    if GLOBAL_ID.match(query):
        return ("", query, "")
    if "@" not in query or "@sha256:" in query or query.startswith("sha256:"):
        return None
    name, _, ref = query.rpartition("@")
    if not name or not ref or (_VERSION.match(ref) and not GLOBAL_ID.match(ref)):
        return None
    project, _, repo = name.rpartition("/")
    if ":" in name or "/" in repo or not repo:
        return None
    return (repo, ref, project)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    picked = cluster_query(args.query)
    if picked is not None or args.cluster:
        return _from_cluster(args, picked)
    if args.depth is not None:
        print("pachhook provenance: --depth applies to REPO@COMMIT, PIPELINE@JOB and global IDs", file=sys.stderr)
        return 2
    return _from_ledger(args)


def _rollback_events(folder: Any, query: str, commit: Optional[str]) -> List[Any]:
    """Rollback, hold and release events of the pipeline or commit asked about, newest first."""
    name = query.split("@", 1)[0]
    return [
        event
        for event in Holds(folder).events()
        if event.pipeline == name
        or (event.commit and event.commit in (commit, query))
        or (len(query) >= 7 and event.commit.startswith(query))
    ]


def _local_side() -> Any:
    """The clone around the working directory (root, config, ledger), or nothing outside one.

    A fresh clone has no queue database: nothing is created for a question.
    """
    try:
        root = gitrepo.repo_root()
        common = gitrepo.git_common_dir()
    except gitrepo.GitError:
        return GitSide(), None
    try:
        config = load_config(root)
    except ConfigError as error:
        for line in error.problems:
            print(f"pachhook provenance: warning: {line}", file=sys.stderr)
        config = None
    found: List[Any] = []
    if queue_path(common).exists():
        with Queue(common) as queue:
            found = deliveries(_newest_first(queue.list_jobs(all=True) + ledger_jobs(queue.database)))
    return GitSide(root, found), config


def _from_cluster(args: argparse.Namespace, picked: Optional[tuple]) -> int:
    git_side, config = _local_side()
    chosen = _environments(args, config, git_side.root)
    if isinstance(chosen, int):
        return chosen
    if args.cluster:
        return _versions_of_commit(args, git_side, config, chosen)
    assert picked is not None
    repo, ref, named_project = picked
    try:
        with _Reading(config, chosen[0], args.project or named_project) as reading:
            tracer = Tracer(reading.view, git_side, reading.project)
            roots = tracer.from_global_id(ref, args.depth) if not repo else [tracer.from_commit(repo, ref, args.depth)]
    except (ClusterError, BackendError) as error:
        print(f"pachhook provenance: {error}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"query": args.query, "roots": [root.to_dict() for root in roots]}, indent=2))
    else:
        print(format_tree(roots))
    return 0


def _environments(args: argparse.Namespace, config: Any, root: Any) -> Union[List[Optional[Environment]], int]:
    """The environments to read: the one --env names; else every one for COMMIT --cluster,
    else none (None: the active context with the configuration's backend)."""
    if not args.env:
        if args.cluster and config is not None and getattr(config, "environments", None):
            return list(all_environments(config))
        return [None]
    if config is None:
        print(f"pachhook provenance: --env {args.env}: no pachhook configuration here", file=sys.stderr)
        return 2
    found = chosen_environment("pachhook provenance", config, args.env, "", root)
    return 2 if found is None else [found]


class _Reading:
    """A private session of the environment's context (the active one without an environment)
    and a view of its cluster through the environment's backend; closed on exit."""

    def __init__(self, config: Any, environment: Optional[Environment], project: str) -> None:
        context = environment.context if environment is not None else ""
        env_project = environment.project if environment is not None else ""
        self.session = open_session(context, project or env_project)
        self.project = project or env_project or self.session.project
        # Without a configuration (outside a clone): pachctl from PATH, make_backend's default.
        self.view = view_for(make_backend(config, environment, self.session), self.project)

    def __enter__(self) -> "_Reading":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.session.close()


def _versions_of_commit(
    args: argparse.Namespace, git_side: GitSide, config: Any, environments: List[Optional[Environment]]
) -> int:
    sha = args.query
    if git_side.root is not None:
        try:
            sha = gitrepo.rev_parse(args.query, git_side.root)
        except gitrepo.GitError:
            sha = args.query
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        print(f"pachhook provenance: {args.query!r} is not a commit of this clone nor a full SHA", file=sys.stderr)
        return 2
    versions: List[dict] = []
    problems: List[str] = []
    for environment in environments:
        name = environment.name if environment is not None else ""
        try:
            with _Reading(config, environment, args.project) as reading:
                found = Tracer(reading.view, git_side, reading.project).versions_of_commit(sha)
        except (ClusterError, BackendError) as error:
            problems.append(f"env {name}: {error}" if name else str(error))
            continue
        for version in found:
            version["environment"] = name
        versions += found
    git = git_side.commit(sha)
    for problem in problems:
        print(f"pachhook provenance: {problem}", file=sys.stderr)
    if args.format == "json":
        data = {"query": args.query, "commit": sha, "git": git.__dict__, "versions": versions, "problems": problems}
        print(json.dumps(data, indent=2))
    elif versions:
        print(format_versions(sha, git, versions))
    if not versions:
        if len(problems) < len(environments):
            print(f"pachhook provenance: no pipeline version in the cluster comes from {sha}", file=sys.stderr)
        return 1
    return 0


def _from_ledger(args: argparse.Namespace) -> int:
    queue = open_queue("pachhook provenance")
    if queue is None:
        return 2
    commit = None
    if kind_of(args.query) == "name" and not args.query.startswith("-"):
        # A branch, tag or HEAD~2 names a commit too; ask git only for these plain names.
        try:
            commit = gitrepo.rev_parse(args.query)
        except gitrepo.GitError:
            commit = None
    with queue:
        matches = find(deliveries(_newest_first(queue.list_jobs() + ledger_jobs(queue.database))), args.query, commit)
        events = _rollback_events(queue.folder, args.query, commit)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "query": args.query,
                    "matches": [item.to_dict() for item in matches],
                    "events": [event.to_dict() for event in events],
                },
                indent=2,
            )
        )
    elif matches:
        print(format_text(matches))
    if events and args.format != "json":  # rollbacks, holds and releases: events of their own
        print("events:")
        for event in events:
            print(f"  {event.kind} {event.to_dict()['at']}: {event.message}")
    if not matches and not events:
        print(f"pachhook provenance: nothing recorded matches {args.query!r}", file=sys.stderr)
        return 1
    return 0


def _newest_first(jobs: List[Any]) -> List[Any]:
    """The queue's jobs and the ledger's (past the retention) as one list, newest first."""
    return sorted(jobs, key=lambda job: job.id, reverse=True)

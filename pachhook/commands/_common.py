"""What the subcommands' entry points share: argument parsing that returns an exit status,
and opening the repository's queue (to act on one job).

The guard that turns a closed pipe, Ctrl-C or a bug into an exit status is `pachhook.cli.guard`,
around every command."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds the post-commit hook does not spend
    import argparse
    from pathlib import Path
    from typing import Callable, Optional, Sequence, Tuple, Union

    from pachhook.core.config import Config
    from pachhook.core.gitrepo import HeadInfo
    from pachhook.queue.store import Queue
    from pachhook.setup.hookinstall import Outcome


def parse_args(parser: "argparse.ArgumentParser", argv: "Optional[Sequence[str]]") -> "Union[argparse.Namespace, int]":
    """The parsed arguments, or the exit status when argparse has already answered (--help, bad usage)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as stop:
        return 2 if stop.code else 0


def positive_seconds(text: str) -> float:
    """argparse type of a lease length: a positive number of seconds."""
    import argparse

    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return seconds


def add_lease_option(parser: "argparse.ArgumentParser") -> None:
    """--lease, as `run` and `worker` take it."""
    parser.add_argument(
        "--lease",
        metavar="SECONDS",
        type=positive_seconds,
        default=60.0,
        help="lease length; the lease is renewed while a step runs (default: 60)",
    )


def job_parser(prog: str, description: str) -> "argparse.ArgumentParser":
    """The parser of a command acting on one job (cancel, retry, logs): the job id, nothing else."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("job", type=int, metavar="JOB", help="job id, as `pachhook status` shows it")
    return parser


def hook_places(prog: str) -> "Optional[Tuple[Path, Path, Path]]":
    """The repository's work tree root, hooks folder and git common dir, or None after saying why not."""
    from pachhook.core import gitrepo

    try:
        root = gitrepo.repo_root()
        return root, gitrepo.hooks_dir(root), gitrepo.git_common_dir(root)
    except gitrepo.GitError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None


def repository_config(prog: str) -> "Optional[Tuple[HeadInfo, Config]]":
    """HEAD's repository and its configuration, or None after one line per problem."""
    from pachhook.core import gitrepo
    from pachhook.core.config import ConfigError, load_config

    try:
        info = gitrepo.head_info()
    except gitrepo.GitError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None
    try:
        return info, load_config(info.root)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{prog}: {problem}", file=sys.stderr)
        return None


def open_queue(prog: str) -> "Optional[Queue]":
    """The queue of the repository around the working directory, or None after saying why not."""
    from pachhook.core import gitrepo
    from pachhook.queue.database import QueueFileError
    from pachhook.queue.store import open_queue as open_repository_queue

    try:
        return open_repository_queue()
    except (gitrepo.GitError, QueueFileError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None


def on_queue(prog: str, action: "Callable[[Queue], int]") -> int:
    """`action(queue)` on the repository's queue, the exit status it returns.

    2 when there is no queue to open (not a repository), 1 when the queue refuses the action
    (no such job, a job in the wrong state), each after one line saying why.
    """
    from pachhook.queue.store import QueueError

    queue = open_queue(prog)
    if queue is None:
        return 2
    with queue:
        try:
            return action(queue)
        except QueueError as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 1


def print_outcome(prog: str, outcome: "Outcome") -> int:
    """Print what a setup action did (its lines to stdout, its problems to stderr); its exit status."""
    for line in outcome.said:
        print(f"{prog}: {line}")
    for line in outcome.problems:
        print(f"{prog}: {line}", file=sys.stderr)
    return outcome.status

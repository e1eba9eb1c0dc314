"""What the subcommands' entry points share: argument parsing that returns an exit status,
opening the repository's queue (to act on one job), and the prologue of the commands that
act on a commit or a pipeline in an environment (plan, render, rollback, release): the
commit and its configuration, `--env` and `--branch`, the pipeline's name on the cluster.

The guard that turns a closed pipe, Ctrl-C or a bug into an exit status is `pachhook.cli.guard`,
around every command."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds the post-commit hook does not spend
    import argparse
    from pathlib import Path
    from typing import Any, Callable, Optional, Sequence, Tuple, Union

    from pachhook.core.config import Config
    from pachhook.core.environments import Environment
    from pachhook.core.gitrepo import HeadInfo
    from pachhook.queue.store import Queue
    from pachhook.setup.hookinstall import Outcome


def new_parser(**settings: "Any") -> "argparse.ArgumentParser":
    """A command's ArgumentParser, its help as wide as the terminal.

    argparse's own formatter measures the terminal with shutil (which imports zlib, bz2 and
    lzma: ~5 ms) each time a parser is made, although only help output needs the width;
    the hooks make one on every commit. This one asks the terminal itself."""
    import argparse

    class Formatter(argparse.HelpFormatter):
        def __init__(
            self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: "Optional[int]" = None
        ) -> None:
            super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)

    return argparse.ArgumentParser(formatter_class=Formatter, **settings)


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it: $COLUMNS, else standard
    output's terminal, else 80."""
    import os

    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


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

    parser = new_parser(prog=prog, description=description)
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


def commit_config(prog: str, rev: str, branch: "Optional[str]" = None) -> "Optional[Tuple[HeadInfo, str, str, Config]]":
    """The repository, the commit REV names, the branch it is delivered from (`branch`, else
    the one REV names, else the checked-out one for its tip) and that commit's configuration
    (as `run --commit` reads it); None after one line per problem."""
    from pachhook.core import gitrepo
    from pachhook.core.config import ConfigError, load_config_at
    from pachhook.deliver.commit import branch_of

    try:
        commit = gitrepo.rev_parse(rev)
        info = gitrepo.head_info()
    except gitrepo.GitError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None
    if branch is None:
        branch = branch_of(rev, commit, info.commit, info.branch, info.root)
    try:
        return info, commit, branch, load_config_at(info.root, commit)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{prog}: {problem}", file=sys.stderr)
        return None


def add_environment_options(parser: "argparse.ArgumentParser", branch_help: str) -> None:
    """--env NAME and --branch NAME, as plan, rollback and release take them."""
    parser.add_argument(
        "--env",
        metavar="NAME",
        default=None,
        help="the environment ([environments.NAME]) to act on: its pachctl context, project and"
        " pipeline_suffix (default: the environment the branch delivers to)",
    )
    parser.add_argument("--branch", metavar="NAME", default=None, help=branch_help)


def add_pipeline_place_options(parser: "argparse.ArgumentParser") -> None:
    """--env, --branch and --project, as rollback and release take them (see `pipeline_place`)."""
    add_environment_options(
        parser,
        "whose copy of the pipeline, when the environment's pipeline_suffix names branches"
        " (default: the checked-out branch)",
    )
    parser.add_argument(
        "--project",
        metavar="NAME",
        default="",
        help="the pipeline's Pachyderm project (default: the environment's, else the context's)",
    )


def chosen_environment(
    prog: str, config: "Config", name: "Optional[str]", branch: str, root: "Path"
) -> "Optional[Environment]":
    """The environment `--env` names, else the one `branch` delivers to; None after saying why not."""
    from pachhook.core.config import ConfigError
    from pachhook.core.environments import all_environments, environment_for

    known = all_environments(config, root)
    names = ", ".join(env.name for env in known)
    if name is not None:
        found = next((env for env in known if env.name == name), None)
        if found is None:
            print(f"{prog}: no environment named {name!r} (environments: {names})", file=sys.stderr)
        return found
    try:
        found = environment_for(config, branch, root)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{prog}: {problem}", file=sys.stderr)
        return None
    if found is None:
        where = f"branch {branch}" if branch else "a detached HEAD"
        print(
            f"{prog}: {where} delivers to no environment: name one with --env (environments: {names})",
            file=sys.stderr,
        )
    return found


def pipeline_place(prog: str, args: "argparse.Namespace") -> "Optional[Tuple[HeadInfo, Config, Environment, str, str]]":
    """For a command on one pipeline in one environment (rollback, release): the repository,
    HEAD's configuration, the environment (`--env`, else the branch's), the branch (`--branch`,
    else the checked-out one) and the pipeline's name on the cluster; None after saying why not."""
    found = repository_config(prog)
    if found is None:
        return None
    info, config = found
    branch = info.branch if args.branch is None else args.branch
    environment = chosen_environment(prog, config, args.env, branch, info.root)
    if environment is None:
        return None
    if args.project and environment.project and args.project != environment.project:
        print(
            f"{prog}: environment {environment.name} delivers to project {environment.project}, not {args.project}",
            file=sys.stderr,
        )
        return None
    pipeline = pipeline_on_cluster(prog, args.pipeline, environment, branch)
    if pipeline is None:
        return None
    return info, config, environment, branch, pipeline


def pipeline_on_cluster(prog: str, name: str, environment: "Environment", branch: str) -> "Optional[str]":
    """The cluster's name of the template pipeline `name` in `environment` (its
    pipeline_suffix applied for `branch`); None after saying why it cannot be known."""
    if "branch_slug" in environment.pipeline_suffix and not environment.matches(branch):
        print(
            f"{prog}: environment {environment.name} names its pipelines after their branch"
            f" (pipeline_suffix = {environment.pipeline_suffix!r}): say whose copy of {name} with"
            " --branch NAME",
            file=sys.stderr,
        )
        return None
    return name + environment.suffix_for(branch)


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

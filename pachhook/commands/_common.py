"""What every subcommand's entry point shares: argument parsing that returns an exit status,
a guard that turns a closed pipe or a bug into one line, and opening the repository's queue."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds the post-commit hook does not spend
    import argparse
    from typing import Callable, Optional, Sequence, Union

    from pachhook.queue.store import Queue


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


def guard(prog: str, body: "Callable[..., int]", *args: object) -> int:
    """Run body(*args): a reader that stopped reading ends it quietly, and a bug (or a queue
    database that cannot be read) is one line with exit status 3, never a traceback."""
    try:
        return body(*args)
    except BrokenPipeError:  # output piped into a pager or `head` that stopped reading
        from pachhook.core.output import quiet_broken_pipe

        return quiet_broken_pipe()
    except Exception as error:
        text = " ".join(str(error).split())
        print(f"{prog}: internal error: {type(error).__name__}: {text} (please report it)", file=sys.stderr)
        return 3


def open_queue(prog: str) -> "Optional[Queue]":
    """The queue of the repository around the working directory, or None after saying why not."""
    from pachhook.core import gitrepo
    from pachhook.queue.store import open_queue as open_repository_queue

    try:
        return open_repository_queue()
    except gitrepo.GitError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None

"""The delivery steps (build, push, update) behind one interface the worker calls.

Each step is idempotent: finding its result already in place, it records it and moves on.
A step signals failure by raising StepError with a one-line cause.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from pachhook.queue.jobs import Job
from pachhook.queue.states import STEP_NAMES

if TYPE_CHECKING:
    from pachhook.deliver.sharedimages import SharedImages


class StepError(Exception):
    """A step failed; str(error) is the one-line cause shown to the user."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class StepContext:
    repo_root: Path  # the work tree the job was queued from
    git_dir: Path  # git common dir (shared by worktrees)
    job: Job
    log: Callable[[str], None]  # appends a line to the job's log
    results: Dict[str, Dict[str, str]] = field(default_factory=dict)  # earlier steps' results by name
    dry_run: bool = False
    force: bool = False  # `run --force`: apply even where the cluster's order says no
    # Whether the job has been cancelled meanwhile (None: it cannot be, as in `run --commit`)
    is_cancelled: Optional[Callable[[], bool]] = None
    # The build and push results of the commit's images, when several pipelines are delivered
    # together: an image they share is built and pushed once (deliver/sharedimages.py)
    shared: Optional["SharedImages"] = None
    # The terminal's live display (deliver/ttyprogress.TerminalProgress) when standard output
    # is a terminal: build steps and push layers shown in place; None writes the log alone
    live: Optional[Any] = None


@dataclass
class StepResult:
    # "done" | "reused" (found in place) | "skipped" (nothing to do); the update step may also
    # end a job "superseded" (the cluster runs a newer commit), "unchanged" (the live spec
    # is this one) or "cancelled" (cancelled before its apply: nothing applied)
    outcome: str = "done"
    data: Dict[str, str] = field(default_factory=dict)
    message: str = ""


def run_step(name: str, ctx: StepContext) -> StepResult:
    """Run one step of ctx.job.

    The step's module is imported by name when it runs: each imports StepContext from this
    package, so this package cannot import them at its top.
    """
    if name not in STEP_NAMES:
        raise StepError(f"unknown step {name!r}", retryable=False)
    module = importlib.import_module(f"pachhook.deliver.steps.{name}")
    return module.run(ctx)

"""The names the queue gives job states, step states and steps: their one home.

Kept apart from `pachhook.queue.jobs` (the records) because that module imports
dataclasses (~25 ms), which the post-commit hook, going through `pachhook.queue.store`,
must not pay for. Both modules take the names from here.
"""

from __future__ import annotations

# The steps of every job, in the order they run.
STEP_NAMES = ("build", "push", "update")

# Job states. A job is "queued" until a worker leases it, "running" while leased,
# then "done", "failed" (retryable), "cancelled" or "superseded" (a newer commit of
# the same branch replaced it before it started).
QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED = (
    "queued",
    "running",
    "done",
    "failed",
    "cancelled",
    "superseded",
)
# Step states.
PENDING, STEP_RUNNING, STEP_DONE, STEP_FAILED, STEP_SKIPPED = (
    "pending",
    "running",
    "done",
    "failed",
    "skipped",
)

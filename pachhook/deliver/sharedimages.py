"""One commit's images: built and pushed concurrently (`deliver_concurrently`, bounded by
`build_concurrency`), and an image several pipelines share built and pushed once.

Pipelines that name the same image repository get the same tag (the commit), so they share
IMAGE:TAG: the first pipeline to reach the build (or push) of it does the work, and the
others, even in other threads, wait for it and record its result as `reused`, naming the
pipeline that did it. Two pipelines whose builds of one IMAGE:TAG come from different
inputs (another context folder or Dockerfile) cannot share one tag: the second fails,
saying so, instead of silently taking the first one's image.

The scope is one delivery of one commit (`run --commit`, a worker's group of jobs): a result
is never carried to a later delivery, where the engine or the registry may have changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from pachhook.deliver.clibuild import stop_builds
from pachhook.deliver.steps.base import StepError, StepResult

_PAST = {"build": "built", "push": "pushed"}


@dataclass
class _Slot:
    owner: str  # the pipeline doing the work
    key: str  # what the work is made from (the build's context key)
    finished: threading.Event = field(default_factory=threading.Event)
    result: Optional[StepResult] = None
    error: Optional[StepError] = None


class SharedImages:
    """The build and push results of one commit's images, by step and IMAGE:TAG."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: Dict[Tuple[str, str], _Slot] = {}

    def once(self, step: str, image_ref: str, key: str, pipeline: str, work: Callable[[], StepResult]) -> StepResult:
        """`work()`'s result for the first pipeline to ask; for the others, that result as `reused`.

        A failure of the first is a failure of each pipeline sharing the image (one line
        naming the pipeline that ran it); a different key is a conflict (not retryable).
        """
        with self._lock:
            slot = self._slots.get((step, image_ref))
            mine = slot is None
            if slot is None:
                slot = self._slots[(step, image_ref)] = _Slot(owner=pipeline, key=key)
        if mine:
            try:
                slot.result = work()
            except StepError as error:
                slot.error = error
                raise
            except BaseException as error:
                slot.error = StepError(f"{step} of {image_ref} stopped: {type(error).__name__}")
                raise
            finally:
                slot.finished.set()
            return slot.result
        if slot.key != key:
            raise StepError(
                f"{step} of {image_ref}: pipelines {slot.owner} and {pipeline} name the same image but build it"
                f" from different inputs (context keys {slot.key[:12]} and {key[:12]}: another context folder,"
                " Dockerfile, build args or platform); one tag cannot hold both: give each its own image"
                " repository, or the same [tool.pachhook.images] settings",
                retryable=False,
            )
        slot.finished.wait()
        if slot.error is not None or slot.result is None:
            cause = str(slot.error) if slot.error is not None else "no result"
            raise StepError(
                f"{step} of {image_ref} failed for {slot.owner}, which shares the image: {cause}",
                retryable=getattr(slot.error, "retryable", True),
            )
        done = slot.result
        data = dict(done.data, shared_with=slot.owner)
        return StepResult(
            outcome="reused",
            data=data,
            message=f"{image_ref} {_PAST.get(step, step)} once for {slot.owner}, which shares the image"
            + (f" ({done.outcome})" if done.outcome != "done" else ""),
        )


Item = TypeVar("Item")
Delivered = TypeVar("Delivered")


def deliver_concurrently(
    items: Sequence[Item],
    deliver_one: Callable[[Item, Callable[[str], None], SharedImages], Delivered],
    limit: int,
    out: Callable[[str], None],
    image_of: Callable[[Item], str] = lambda item: str(getattr(item, "image", "")),
) -> List[Delivered]:
    """`deliver_one(item, say, shared)` for every item (a pipeline's build and push), `limit` at
    a time; the results in the items' order.

    Builds do not wait for each other: the order of the DAG matters to the updates only, and
    those are applied together once every image is in place. A failure is its pipeline's
    own; the others build on, so every failure of the commit is reported at once. `say`
    prints one whole line at a time, whichever thread it comes from. Items sharing an image
    (`image_of`) start after every distinct image has started, so no thread waits for a
    build that has not begun.
    """
    shared = SharedImages()
    printing = threading.Lock()

    def say(line: str) -> None:
        with printing:
            out(line)

    if limit <= 1 or len(items) <= 1:
        return [deliver_one(item, say, shared) for item in items]
    first_of: Dict[str, int] = {}
    for index, item in enumerate(items):
        first_of.setdefault(image_of(item) or f"\0{index}", index)
    starting_order = sorted(range(len(items)), key=lambda i: (first_of.get(image_of(items[i]) or f"\0{i}") != i, i))
    # imported here: concurrent.futures brings logging (~6 ms), which one image never needs
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix="pachhook-build")
    try:
        futures = {index: pool.submit(deliver_one, items[index], say, shared) for index in starting_order}
        return [futures[index].result() for index in range(len(items))]
    except BaseException:
        # Ctrl-C (or SIGTERM, raised as KeyboardInterrupt): builds not started never start, and
        # the running ones end their docker CLI instead of finishing unseen.
        pool.shutdown(wait=False, cancel_futures=True)
        stop_builds()
        raise
    finally:
        pool.shutdown(wait=True)

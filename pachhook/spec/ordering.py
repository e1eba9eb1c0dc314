"""The one order in which a commit's pipelines are delivered.

Rule: each pipeline comes after the pipelines of the same commit whose output repos it
reads (its pfs inputs); among the pipelines free to go, the one listed first goes first.
Callers list pipelines as the commit holds them: templates by sorted path, then in their
order inside a template. So for [c reads a, a, b] the order is a, c, b, whether the
commit is delivered by `pachhook run --commit` or through the queue.

A cycle (a reads b, b reads a) cannot run in Pachyderm; it is refused with CycleError
rather than delivered in some order.

On the post-commit path: imports nothing. A commit holds tens of pipelines, so picking
the first free one by a scan is as quick as a heap and spares the hook heapq's import.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Callable, Dict, Iterable, List, Sequence, Set, TypeVar

    Item = TypeVar("Item")


class CycleError(Exception):
    """Pipelines read each other's output; str() is one line naming the cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)  # each member reads the next; the last reads the first
        reads = ", ".join(f"{name} reads {self.cycle[(i + 1) % len(self.cycle)]}" for i, name in enumerate(self.cycle))
        super().__init__(f"dependency cycle ({reads}): Pachyderm cannot run pipelines that read each other's output")


def dependency_order(
    items: Sequence[Item], name_of: Callable[[Item], str], inputs_of: Callable[[Item], Iterable[str]]
) -> List[Item]:
    """items in delivery order (see the module's rule); CycleError for a cycle among them.

    Inputs that name no pipeline of items (a plain data repo, a pipeline the commit does
    not hold) and a pipeline reading its own name impose nothing.
    """
    names = {name_of(item): index for index, item in enumerate(items)}
    waiting: Dict[int, Set[str]] = {}
    readers: Dict[str, List[int]] = {}
    for index, item in enumerate(items):
        own = name_of(item)
        upstream = {repo for repo in inputs_of(item) if repo in names and repo != own}
        waiting[index] = upstream
        for repo in upstream:
            readers.setdefault(repo, []).append(index)
    ready = {index for index, upstream in waiting.items() if not upstream}
    ordered: List[Item] = []
    while ready:
        index = min(ready)  # the first listed of those free to go
        ready.discard(index)
        ordered.append(items[index])
        for reader in readers.get(name_of(items[index]), ()):
            waiting[reader].discard(name_of(items[index]))
            if not waiting[reader]:
                ready.add(reader)
    if len(ordered) < len(items):
        raise CycleError(_a_cycle(items, name_of, waiting, names))
    return ordered


def _a_cycle(
    items: Sequence[Item], name_of: Callable[[Item], str], waiting: Dict[int, Set[str]], names: Dict[str, int]
) -> List[str]:
    """One cycle among the pipelines left waiting: follow the first unplaced input of each
    (every one left has one) until a pipeline repeats."""
    index = min(i for i, upstream in waiting.items() if upstream)
    path: List[str] = []
    seen: Dict[str, int] = {}
    while True:
        name = name_of(items[index])
        if name in seen:
            return path[seen[name] :]
        seen[name] = len(path)
        path.append(name)
        index = names[min(waiting[index])]

"""One delivery order for a commit, whether it is run with `run --commit` or through the queue."""

from __future__ import annotations

import re

import pytest
from gitutil import make_repo, template

from pachhook.queue.store import NewJob, Queue, QueueError
from pachhook.spec.ordering import CycleError, dependency_order

FIXED = "busybox:1.36"  # a fixed image: nothing to build, so a dry run needs no engine


def order(pairs):
    return [name for name, _ in dependency_order(pairs, lambda p: p[0], lambda p: p[1])]


def test_readers_wait_and_otherwise_the_listed_order_stands():
    assert order([("c", ["a"]), ("a", []), ("b", [])]) == ["a", "c", "b"]
    assert order([("x", ["y"]), ("z", []), ("y", [])]) == ["z", "y", "x"]
    # Inputs outside the list, and a pipeline reading its own name, impose nothing.
    assert order([("b", ["images", "b"]), ("a", ["b"])]) == ["b", "a"]


def test_a_cycle_is_one_line_naming_it():
    with pytest.raises(CycleError) as caught:
        order([("free", []), ("a", ["b"]), ("b", ["c"]), ("c", ["a"]), ("d", ["a"])])
    assert caught.value.cycle == ["a", "b", "c"]
    assert str(caught.value) == (
        "dependency cycle (a reads b, b reads c, c reads a):"
        " Pachyderm cannot run pipelines that read each other's output"
    )


def test_the_queue_refuses_a_cycle_and_records_nothing(tmp_path):
    with Queue(tmp_path) as queue:
        with pytest.raises(QueueError, match=r"^dependency cycle \(a reads b, b reads a\)"):
            queue.enqueue_commit("a" * 40, "", [NewJob("a", "t", inputs=("b",)), NewJob("b", "t", inputs=("a",))])
        assert queue.list_jobs(all=True) == []


def three_pipelines(tmp_path, names=("c", "a", "b"), reads=None):
    """Templates t1.., one pipeline each, listed in this order (sorted template paths)."""
    reads = reads or {"c": ["a"]}
    repo = make_repo(tmp_path, pipelines=())
    for number, name in enumerate(names, 1):
        repo.write(f"t{number}/pipeline.json", template(name, image=FIXED, inputs=reads.get(name, ["images"])))
    repo.commit("pipelines")
    return repo


def delivered_by_run(repo) -> list:
    out = repo.pachhook("run", "--commit", "HEAD", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    return re.search(r"delivering \w+ \(main\)[^:]*: (.*)", out.stdout).group(1).split(", ")


def queued(repo) -> list:
    out = repo.pachhook("queue", "--no-worker")
    assert out.returncode == 0, out.stdout + out.stderr
    return (
        re.search(r"queued \w+ for (.*?)(?: to env |[(;]|$)", out.stdout + out.stderr, re.M)
        .group(1)
        .strip()
        .split(", ")
    )


def test_run_commit_and_the_queue_deliver_one_order(tmp_path):
    repo = three_pipelines(tmp_path)
    assert delivered_by_run(repo) == ["a", "c", "b"]
    assert queued(repo) == ["a", "c", "b"]
    with Queue(repo.common_dir) as queue:
        leased = [queue.leases.take(f"w{n}", 60) for n in range(3)]
    # c waits for a (running); b may go meanwhile.
    assert [job.pipeline if job else None for job in leased] == ["a", "b", None]
    assert [job.pipeline for job in reversed(queue_jobs(repo))] == ["a", "c", "b"]


def queue_jobs(repo):
    with Queue(repo.common_dir) as queue:
        return queue.list_jobs(all=True)


def test_changed_pipelines_keep_their_place_in_the_whole_commits_order(tmp_path):
    # [x reads y, z, y]: the commit's order is z, y, x. When only x and z change, the
    # queue must deliver z before x, as `run --commit` would, although y is not queued.
    repo = three_pipelines(tmp_path, names=("x", "z", "y"), reads={"x": ["y"]})
    assert queued(repo) == ["z", "y", "x"]
    repo.write("t1/pipeline.json", template("x", image="busybox:1.37", inputs=["y"]))
    repo.write("t2/pipeline.json", template("z", image="busybox:1.37"))
    repo.commit("x and z change")
    assert delivered_by_run(repo) == ["z", "y", "x"]
    assert queued(repo) == ["z", "x"]


def test_a_cycle_stops_both_ways_with_one_line(tmp_path):
    repo = three_pipelines(tmp_path, reads={"c": ["a"], "a": ["c"]})
    out = repo.pachhook("run", "--commit", "HEAD", "--dry-run")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "pachhook run: dependency cycle (c reads a, a reads c):"
        " Pachyderm cannot run pipelines that read each other's output"
    )
    out = repo.pachhook("queue", "--no-worker")
    assert out.returncode == 0  # a post-commit hook cannot fail the commit
    assert "nothing queued: dependency cycle (c reads a, a reads c)" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert queue_jobs(repo) == []

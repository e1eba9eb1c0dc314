"""A job whose work tree is gone (removed, or the repository moved) fails with that cause.

The background worker is started for the work tree of the commit that queued it. Removed
right after the commit, that folder used to make git say the commit did not exist: the job
ended "superseded" for a reason that was not true, or stayed queued with the error only in
worker.log. Real repositories, the real launcher and worker; the cluster is the pachctl double.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from gitutil import PACHCTL_DOUBLE, Repo, live_jobs, make_repo, run, template

from pachhook.queue.launch import start_background, worker_running


def wait_for_worker(folder: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    time.sleep(0.5)
    while worker_running(folder) and time.time() < deadline:
        time.sleep(0.2)
    assert not worker_running(folder), "the worker did not finish"


def repository_with_a_work_tree(tmp_path: Path) -> "tuple[Repo, Repo]":
    """The main work tree on a side branch; a second work tree on main, which delivers."""
    main = make_repo(tmp_path, config=f'worker = "manual"\npachctl = "{PACHCTL_DOUBLE}"\n', pipelines=())
    main.write("fixed/pipeline.json", template("fixed", image="busybox:1.36"))
    main.commit("fixed image")
    main.git("checkout", "-q", "-b", "side")
    double = tmp_path / "pachctl-double"
    double.mkdir()
    main.env["PACHCTL_DOUBLE_DIR"] = str(double)
    main.git("worktree", "add", "-q", str(tmp_path / "wt"), "main")
    return main, Repo(tmp_path / "wt", main.env)


def test_a_job_whose_work_tree_was_removed_fails_with_that_cause_and_retries_elsewhere(tmp_path: Path):
    main, tree = repository_with_a_work_tree(tmp_path)
    tree.write("fixed/run.sh", "echo 2\n")
    tree.write("fixed/pipeline.json", template("fixed", image="busybox:1.37"))
    commit = tree.commit("new image")
    assert "queued" in tree.pachhook("queue", check=True).stdout
    # removed right after the commit, before the worker the hook starts reads it
    main.git("worktree", "remove", "--force", str(tree.path))
    assert start_background(tree.path, main.common_dir)
    wait_for_worker(main.common_dir / "pachhook")

    (job,) = [job for job in live_jobs(main) if job["commit"] == commit]
    assert job["state"] == "failed"
    failed = [step for step in job["steps"] if step["state"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["error"] == (
        f"the work tree {tree.path} is gone (moved or deleted) since the job was queued; nothing was delivered:"
        f" run `pachhook retry {job['id']}` in a work tree of the repository"
    )
    log = (main.common_dir / "pachhook" / "worker.log").read_text()
    assert "Traceback" not in log
    # the user sees it where they look: status, in the main work tree, exits non-zero naming it
    status = main.pachhook("status")
    assert status.returncode == 1 and "failed" in status.stdout
    # nothing is lost: retried from the work tree that remains, the job delivers
    assert main.pachhook("retry", str(job["id"])).returncode == 0
    ran = main.pachhook("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (job,) = [job for job in live_jobs(main) if job["commit"] == commit]
    assert job["state"] == "done"


def test_a_worker_for_a_moved_repository_says_so_in_one_line_and_the_jobs_wait_there(tmp_path: Path):
    main, _ = repository_with_a_work_tree(tmp_path)
    main.git("checkout", "-q", "--detach")
    main.git("worktree", "remove", "--force", str(tmp_path / "wt"))
    main.git("checkout", "-q", "main")
    main.write("fixed/run.sh", "echo 2\n")
    main.commit("change")
    main.pachhook("queue", check=True)
    common = main.common_dir
    moved = tmp_path / "moved"
    shutil.move(str(main.path), moved)  # the repository, its queue with it
    # the worker the hook started before the move reads the old paths
    proc = run(
        [str(Path(main.env["PATH"].split(":")[0]) / "pachhook"), "worker", "--repo", str(main.path),
         "--git-dir", str(common)],
        tmp_path,
        main.env,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == (
        f"pachhook worker: the work tree {main.path} is gone (moved or deleted) since the job was queued\n"
    )
    # the queue moved with the repository: its job waits there, and is delivered from there
    there = Repo(moved, main.env)
    assert [job["state"] for job in live_jobs(there)][-1] == "queued"
    ran = there.pachhook("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert [job["state"] for job in live_jobs(there)][-1] == "done"

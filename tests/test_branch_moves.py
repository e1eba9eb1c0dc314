"""Every way a branch moves is queued once, and the cluster decides the order.

Real repositories, clones and hooks (`pachhook install`); the cluster is the pachctl TEST
DOUBLE shared by every clone, as one Pachyderm cluster is shared by a team.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from gitutil import PACHCTL_DOUBLE, VENV_BIN, Repo, git_env, live_jobs, run, template


def pipeline_record(state: Path, name: str = "fixed") -> dict:
    return json.loads((state / "pipelines" / f"{name}.json").read_text())


def live_commit(state: Path, name: str = "fixed") -> str:
    return pipeline_record(state, name)["spec"]["metadata"]["annotations"]["pachhook.io/commit"]


def team(tmp_path: Path, hooks: bool = True) -> tuple:
    """An upstream repository with one fixed-image pipeline, and the cluster's state folder."""
    state = tmp_path / "cluster"
    state.mkdir()
    env = git_env(tmp_path / "home")
    env["PACHCTL_DOUBLE_DIR"] = str(state)
    env["PACH_CONFIG"] = str(tmp_path / "pachyderm-config.json")
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, env)
    seed = clone(tmp_path, origin, "seed", env, hooks=False)
    seed.write(".pachhook.toml", f'worker = "manual"\npachctl = "{PACHCTL_DOUBLE}"\n')
    seed.write("fixed/pipeline.json", template("fixed", image="busybox:1.36"))
    seed.commit("fixed pipeline")
    seed.git("push", "-q", "origin", "main")
    return origin, state, env


def clone(tmp_path: Path, origin: Path, name: str, env: dict, hooks: bool = True) -> Repo:
    run(["git", "clone", "-q", str(origin), str(tmp_path / name)], tmp_path, env)
    repo = Repo(tmp_path / name, dict(env))
    if hooks:
        assert repo.pachhook("install").returncode == 0
    return repo


def describe(repo: Repo, text: str) -> str:
    spec = json.loads(template("fixed", image="busybox:1.36"))
    spec["description"] = text
    repo.write("fixed/pipeline.json", json.dumps(spec, indent=2) + "\n")
    return repo.commit(text)


def by_commit(repo: Repo) -> dict:
    return {job["commit"]: job for job in live_jobs(repo)}


def test_a_merge_and_a_pull_are_queued(tmp_path: Path):
    origin, state, env = team(tmp_path)
    alice = clone(tmp_path, origin, "alice", env)
    alice.git("checkout", "-q", "-b", "feature")
    feature = describe(alice, "feature work")
    assert live_jobs(alice) == []  # a feature branch delivers nowhere without environments
    alice.git("checkout", "-q", "main")
    merged = run(["git", "merge", "--no-ff", "-q", "-m", "merge feature", "feature"], alice.path, alice.env)
    head = alice.git("rev-parse", "HEAD")
    assert f"queued {head[:12]} for fixed" in merged.stdout + merged.stderr
    alice.git("push", "-q", "origin", "main")
    bob = clone(tmp_path, origin, "bob", env)
    bob.git("reset", "-q", "--hard", "HEAD~1")
    pulled = run(["git", "pull", "-q", "--ff-only"], bob.path, bob.env)
    assert f"queued {head[:12]} for fixed" in pulled.stdout + pulled.stderr
    assert [job["commit"] for job in live_jobs(bob)] == [head]
    assert feature != head


def test_an_amend_supersedes_the_old_commits_job_and_queues_the_new_head_once(tmp_path: Path):
    origin, state, env = team(tmp_path)
    alice = clone(tmp_path, origin, "alice", env)
    first = describe(alice, "typo")
    alice.git("commit", "-q", "--amend", "-m", "fixed the message")
    amended = alice.git("rev-parse", "HEAD")
    jobs = by_commit(alice)
    assert jobs[first]["state"] == "superseded"
    assert jobs[first]["reason"] == f"superseded: rewritten (amend or rebase); main is at {amended[:12]} now"
    assert jobs[amended]["state"] == "queued"
    assert [job["commit"] for job in live_jobs(alice) if job["state"] == "queued"] == [amended]
    done = alice.pachhook("run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert live_commit(state) == amended


def test_a_job_whose_commit_left_its_branch_or_was_collected_is_never_delivered(tmp_path: Path):
    origin, state, env = team(tmp_path)
    alice = clone(tmp_path, origin, "alice", env)
    dropped = describe(alice, "soon dropped")
    alice.git("reset", "-q", "--hard", "HEAD~1")  # no hook runs: the job stays queued
    alice.git("reflog", "expire", "--expire=now", "--all")
    alice.git("gc", "-q", "--prune=now")
    out = alice.pachhook("run")
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = live_jobs(alice)
    assert job["state"] == "superseded"
    assert "no longer exists in this repository" in job["reason"]
    assert not (state / "pipelines" / "fixed.json").exists()
    assert dropped


def test_two_clones_and_ci_racing_end_on_the_newest_commit(tmp_path: Path):
    """The scenario of the issue: every deliverer races; the cluster ends on the newest commit.

    Repeated interleavings differ from run to run (threads and a shared cluster); each one
    must end on the newest commit.
    """
    origin, state, env = team(tmp_path)
    alice = clone(tmp_path, origin, "alice", env)
    bob = clone(tmp_path, origin, "bob", env)
    ci = clone(tmp_path, origin, "ci", env, hooks=False)
    older = describe(alice, "alice's change")
    alice.git("push", "-q", "origin", "main")
    bob.git("pull", "-q", "--ff-only")
    newest = describe(bob, "bob's change on top")
    bob.git("push", "-q", "origin", "main")
    ci.git("fetch", "-q")
    ci.env["GITHUB_REF_NAME"] = "main"  # what a CI system says of its detached checkout
    # Every apply waits a little, so the deliverers overlap between their reads and applies.
    for repo in (alice, bob, ci):
        repo.env["PACHCTL_DOUBLE_APPLY_DELAY"] = "0.3"
    outputs: dict = {}

    def deliver(name: str, repo: Repo, *args: str) -> None:
        outputs[name] = repo.pachhook("run", *args)

    threads = [
        threading.Thread(target=deliver, args=("alice", alice)),
        threading.Thread(target=deliver, args=("bob", bob)),
        threading.Thread(target=deliver, args=("ci", ci, "--commit", older)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(proc.returncode == 0 for proc in outputs.values()), {k: v.stdout + v.stderr for k, v in outputs.items()}
    assert live_commit(state) == newest
    # A job of an older commit either found the newer one live (or put it back after
    # overtaking it) and ended superseded, or applied before the newer one reached the
    # cluster at all; the newest commit is never followed by an older one for good.
    history = pipeline_record(state)["history"]
    commits = [entry["spec"]["metadata"]["annotations"]["pachhook.io/commit"] for entry in history]
    first_newest = commits.index(newest) + 1
    assert commits[-1] == newest
    for repo in (alice, bob):
        for job in live_jobs(repo):
            if job["commit"] == newest:
                continue
            if job["state"] == "done":
                assert int(job["steps"][2]["result"]["pipeline_version"]) < first_newest, (job, commits)
            else:
                assert job["state"] == "superseded", job
    # Later deliveries of the older commit (a retry, CI again) never go back.
    again = ci.pachhook("run", "--commit", older)
    assert again.returncode == 0 and "superseded" in again.stdout
    (alice_job,) = [job for job in live_jobs(alice) if job["commit"] == older]
    if alice_job["state"] == "done":
        # Applied before the newest commit reached the cluster: there is nothing to retry,
        # and delivering that commit again from alice's clone ends superseded.
        refused = alice.pachhook("retry", str(alice_job["id"]))
        assert refused.returncode != 0 and "only failed, cancelled or superseded" in refused.stderr
        again = alice.pachhook("run", "--commit", older)
        assert again.returncode == 0 and "superseded" in again.stdout, again.stdout + again.stderr
    else:
        assert alice.pachhook("retry", str(alice_job["id"])).returncode == 0
        assert alice.pachhook("run").returncode == 0
        assert by_commit(alice)[older]["state"] == "superseded"
    assert live_commit(state) == newest


def test_a_cancel_during_the_apply_is_recorded_and_shown(tmp_path: Path):
    origin, state, env = team(tmp_path)
    alice = clone(tmp_path, origin, "alice", env)
    describe(alice, "change")
    alice.env["PACHCTL_DOUBLE_APPLY_DELAY"] = "3"
    worker = subprocess.Popen(
        [str(VENV_BIN / "pachhook"), "run"],
        cwd=alice.path,
        env=alice.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list((state / "received").glob("*.json")):
            time.sleep(0.05)
        (job,) = live_jobs(alice)
        assert alice.pachhook("cancel", str(job["id"])).returncode == 0
    finally:
        worker.communicate(timeout=60)
    (job,) = live_jobs(alice)
    assert job["state"] == "cancelled" and job["reason"] == "cancelled too late: applied"
    status = alice.pachhook("status").stdout
    assert "cancelled too late: applied" in status
    assert pipeline_record(state)["version"] == 1

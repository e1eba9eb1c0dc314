"""The queue applies a commit's pipelines for one environment in one Pachyderm transaction.

Real git repositories and the real `pachhook` command; the pachctl TEST DOUBLE
(tests/doubles/pachctl) stands in for the cluster: a transaction's requests are applied
at `finish transaction`, all of them or none, as pachd does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import services as test_services
from gitutil import PACHCTL_DOUBLE, Repo, live_jobs, make_repo, template

from pachhook.queue.store import NewJob, Queue

FIXED = "busybox:1.36"  # nothing to build or push: the update is the only step that acts
SHA_A, SHA_B = "a" * 40, "b" * 40


def dag_repo(tmp_path: Path) -> Repo:
    """counts reads edges; alone reads neither. All fixed images; pachctl is the double."""
    repo = make_repo(tmp_path, config=f'worker = "manual"\npachctl = "{PACHCTL_DOUBLE}"\n', pipelines=())
    repo.write("a_counts/pipeline.json", template("counts", image=FIXED, inputs=["edges"]))
    repo.write("edges/pipeline.json", template("edges", image=FIXED))
    repo.write("zz_alone/pipeline.json", template("alone", image=FIXED, inputs=["logs"]))
    repo.commit("three pipelines")
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    repo.env["PACHCTL_DOUBLE_DIR"] = str(cluster)
    repo.env["PACH_CONFIG"] = str(tmp_path / "pachyderm-config.json")
    return repo


def cluster_of(repo: Repo) -> Path:
    return Path(repo.env["PACHCTL_DOUBLE_DIR"])


def calls(repo: Repo) -> list:
    path = cluster_of(repo) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def live_pipelines(repo: Repo) -> dict:
    """name -> the record the double keeps of it (only pipelines the cluster has)."""
    return {path.stem: json.loads(path.read_text()) for path in (cluster_of(repo) / "pipelines").glob("*.json")}


def job_log(repo: Repo, job_id: int) -> str:
    return repo.pachhook("logs", str(job_id), check=True).stdout


def by_pipeline(repo: Repo) -> dict:
    return {job["pipeline"]: job for job in live_jobs(repo)}


# -- leasing a commit's jobs together ---------------------------------------------------------


def test_a_commits_jobs_for_one_environment_are_leased_together(tmp_path: Path):
    with Queue(tmp_path / "common") as queue:
        first = queue.enqueue_commit(SHA_A, "main", [NewJob("edges", "t"), NewJob("counts", "t", inputs=("edges",))])
        queue.enqueue_commit(SHA_B, "dev", [NewJob("other", "t")], environment="dev")
        group = queue.leases.take_group("w1", 60)
        assert [job.id for job in group] == sorted(job_id for job_id, _ in first.created)
        assert {job.state for job in group} == {"running"}
        # The other commit goes to another worker, on its own.
        assert [job.pipeline for job in queue.leases.take_group("w2", 60)] == ["other"]
        assert queue.leases.take_group("w3", 60) == [] and not queue.leases.ready()


def test_a_group_waits_while_one_of_its_pipelines_is_delivered_by_an_older_commit(tmp_path: Path):
    """Leasing the rest alone would update it outside its commit's transaction later."""
    with Queue(tmp_path / "common") as queue:
        queue.enqueue_commit(SHA_A, "feature", [NewJob("counts", "t")])
        queue.enqueue_commit(SHA_B, "main", [NewJob("edges", "t"), NewJob("counts", "t", inputs=("edges",))])
        (older,) = queue.leases.take_group("w1", 60)
        assert older.commit == SHA_A
        # edges of SHA_B could run, counts could not: the group waits whole.
        assert queue.leases.take_group("w2", 60) == [] and not queue.leases.ready()
        for step in ("build", "push", "update"):
            queue.start_step(older.id, step, "w1")
            queue.finish_step(older.id, step, {}, worker_id="w1")
        assert [job.pipeline for job in queue.leases.take_group("w2", 60)] == ["edges", "counts"]


def test_groups_waiting_for_each_other_let_the_oldest_job_go_alone(tmp_path: Path):
    """A commit queued again later for another pipeline interleaves with a newer commit's jobs:
    each group then waits for the other, and the queue must not stall."""
    with Queue(tmp_path / "common") as queue:
        queue.enqueue_commit(SHA_A, "", [NewJob("q", "t")])  # 1
        queue.enqueue_commit(SHA_B, "", [NewJob("p", "t"), NewJob("q", "t")])  # 2, 3
        queue.enqueue_commit(SHA_A, "", [NewJob("p", "t")])  # 4: A's p waits for B's; B's q for A's
        (alone,) = queue.leases.take_group("w1", 60)
        assert (alone.id, alone.commit, alone.pipeline) == (1, SHA_A, "q")
        assert queue.leases.take_group("w2", 60) == []  # while it runs, the others wait
        for step in ("build", "push", "update"):
            queue.start_step(alone.id, step, "w1")
            queue.finish_step(alone.id, step, {}, worker_id="w1")
        assert [job.id for job in queue.leases.take_group("w2", 60)] == [2, 3]


# -- the worker's transaction -----------------------------------------------------------------


def test_the_worker_applies_a_commits_pipelines_in_one_transaction(tmp_path: Path):
    repo = dag_repo(tmp_path)
    repo.pachhook("queue", check=True)
    out = repo.pachhook("run")
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = by_pipeline(repo)
    assert {name: job["state"] for name, job in jobs.items()} == {"edges": "done", "counts": "done", "alone": "done"}
    # One transaction: pachd gives its requests one commit set, so every pipeline has the same spec commit.
    assert [call for call in calls(repo) if call[1:2] == ["transaction"]][0] == ["start", "transaction"]
    pipelines = live_pipelines(repo)
    assert sorted(pipelines) == ["alone", "counts", "edges"]
    assert len({record["spec_commit"] for record in pipelines.values()}) == 1
    # Applied upstream first, and every job's log names the transaction it went in.
    updates = [call for call in calls(repo) if call[:2] == ["update", "pipeline"]]
    names = [json.loads(Path(call[3]).read_text())["pipeline"]["name"] for call in updates]
    assert names.index("edges") < names.index("counts")
    for job in jobs.values():
        assert "transaction " in job_log(repo, job["id"])
        assert job_log(repo, job["id"]).count("update: done") == 1
    # The three live versions are read with one `list pipeline` before the transaction (and
    # pachd's version asked), while the images build; they are read back with one after it.
    # Then they share its commit set: every key of the pipelines and their output commits is
    # written in one `edit metadata` (no commit read first), and their jobs are read with one
    # `list job ID`, the two at once (in either order).
    (commit_set,) = {record["spec_commit"] for record in pipelines.values()}
    finish = [call[:2] for call in calls(repo)].index(["finish", "transaction"])
    before, after = calls(repo)[:finish], calls(repo)[finish + 1 :]
    assert [call for call in before if call[1:2] == ["pipeline"] and call[0] != "update"] == [
        ["list", "pipeline", "--raw"]
    ]
    assert [call for call in before if call == ["version"]] == [["version"]]
    assert [call[:3] for call in after[:1]] == [["list", "pipeline", "--raw"]]
    assert sorted(call[:3] for call in after[1:]) == [
        ["edit", "metadata", "pipeline"],
        ["list", "job", commit_set],
    ]
    for name in pipelines:
        shown = subprocess.run(
            [PACHCTL_DOUBLE, "inspect", "commit", f"{name}@{commit_set}", "--raw"],
            env=repo.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=True,
        )
        assert json.loads(shown.stdout)["metadata"]["pachhook.io/commit"] == repo.git("rev-parse", "HEAD")
        assert by_pipeline(repo)[name]["state"] == "done"


def test_a_refused_transaction_applies_nothing_and_a_retry_requeues_the_commit_together(tmp_path: Path):
    repo = dag_repo(tmp_path)
    repo.pachhook("queue", check=True)
    (cluster_of(repo) / "pachctl_double_refuse").write_text("counts:pipeline counts: invalid spec\n")
    out = repo.pachhook("run")
    assert out.returncode == 1
    assert live_pipelines(repo) == {}  # nothing applied: not even the pipelines pachd accepted
    jobs = by_pipeline(repo)
    for job in jobs.values():
        assert job["state"] == "failed"
        # pachd refuses counts' update when it joins the transaction: nothing is finished
        assert job["steps"][2]["error"] == (
            "counts: pachctl update pipeline failed: error running request 2 of 2: pipeline counts: invalid spec"
        )
    # A retry of one brings back the whole commit: its pipelines go together or not at all.
    (cluster_of(repo) / "pachctl_double_refuse").unlink()
    retried = repo.pachhook("retry", str(jobs["alone"]["id"]))
    assert retried.returncode == 0, retried.stderr
    others = ", ".join(f"{jobs[name]['id']} ({name})" for name in ("edges", "counts"))
    assert (
        retried.stdout.splitlines()[-1]
        == f"with the failed jobs of the same commit, applied together with it: {others}"
    )
    out = repo.pachhook("run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert {job["state"] for job in by_pipeline(repo).values()} == {"done"}
    assert len({record["spec_commit"] for record in live_pipelines(repo).values()}) == 1


def test_a_cancelled_job_is_left_out_and_the_rest_of_its_commit_goes_together(tmp_path: Path):
    """Together or not at all guards against failures; a cancel is the user's choice for one pipeline."""
    repo = dag_repo(tmp_path)
    repo.pachhook("queue", check=True)
    jobs = by_pipeline(repo)
    repo.pachhook("cancel", str(jobs["counts"]["id"]), check=True)
    out = repo.pachhook("run")
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = by_pipeline(repo)
    assert {name: job["state"] for name, job in jobs.items()} == {
        "edges": "done",
        "counts": "cancelled",
        "alone": "done",
    }
    pipelines = live_pipelines(repo)
    assert sorted(pipelines) == ["alone", "edges"]
    assert len({record["spec_commit"] for record in pipelines.values()}) == 1


def test_a_held_pipeline_holds_back_its_commits_other_updates(tmp_path: Path):
    """A rollback's hold fails that job's update; the rest of the commit is not applied without it."""
    import time

    from pachhook.deliver.holds import Event, Hold, Holds

    repo = dag_repo(tmp_path)
    repo.pachhook("queue", check=True)
    now = time.time()
    Holds(repo.common_dir / "pachhook").hold(
        Hold("edges", now, "rollback to v3", version="3"), Event("hold", "edges", now, "edges held at v3")
    )
    out = repo.pachhook("run")
    assert out.returncode == 1
    assert live_pipelines(repo) == {}
    jobs = by_pipeline(repo)
    assert jobs["edges"]["state"] == "failed"
    for name in ("counts", "alone"):
        assert jobs[name]["state"] == "failed"
        assert jobs[name]["steps"][2]["error"].startswith("not applied: edges held (a commit's pipelines")


@pytest.mark.integration
def test_a_failed_build_holds_back_the_other_updates(tmp_path: Path, docker_env):
    services = docker_env
    repo = dag_repo(tmp_path)
    image = f"{services.registry}/test-queue-transaction/edges"
    repo.write("edges/pipeline.json", template("edges", image=image + ":{{{{ tag }}}}"))
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "RUN exit 3"))
    repo.commit("edges is built, and its build fails")
    repo.env["DOCKER_HOST"] = services.docker_host
    repo.pachhook("queue", check=True)
    out = repo.pachhook("run")
    assert out.returncode == 1
    assert live_pipelines(repo) == {}
    jobs = by_pipeline(repo)
    assert jobs["edges"]["steps"][0]["state"] == "failed"
    for name in ("counts", "alone"):
        assert [step["state"] for step in jobs[name]["steps"]] == ["skipped", "skipped", "failed"]
        assert jobs[name]["steps"][2]["error"].startswith("not applied: edges failed")
    assert "update: failed: not applied: edges failed" in job_log(repo, jobs["alone"]["id"])

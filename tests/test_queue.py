"""The delivery queue: the SQLite store, `pachhook queue` in real repositories, the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitutil import PACHCTL_DOUBLE, VENV_BIN, Repo, commit_at_once, git_env, live_jobs, make_repo, run, template

from pachhook.queue import store as queue_module
from pachhook.queue.store import NewJob, Queue, QueueError

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    with Queue(tmp_path / "common") as opened:
        yield opened


# -- the store ------------------------------------------------------------------------


def test_database_lives_in_the_common_dir_in_wal_mode(tmp_path: Path, queue: Queue):
    assert queue.path == tmp_path / "common" / "pachhook" / "queue.db"
    import sqlite3

    with sqlite3.connect(str(queue.path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_enqueued_job_has_three_pending_steps(queue: Queue):
    job = queue.enqueue(SHA_A, "main", "edges", "edges/pipeline.json", "reg/edges", inputs=["images"])
    assert (job.commit, job.branch, job.pipeline, job.template, job.image, job.state) == (
        SHA_A,
        "main",
        "edges",
        "edges/pipeline.json",
        "reg/edges",
        "queued",
    )
    assert [(s.name, s.state, s.attempts) for s in job.steps] == [
        ("build", "pending", 0),
        ("push", "pending", 0),
        ("update", "pending", 0),
    ]
    assert queue.inputs_of(job.id) == ["images"]
    assert queue.get(job.id) == job
    assert queue.jobs_for_commit(SHA_A[:8]) == [job]


def test_a_commit_and_pipeline_is_recorded_once(queue: Queue):
    first = queue.enqueue(SHA_A, "main", "edges", "t")
    again = queue.enqueue_commit(SHA_A, "main", [NewJob("edges", "t")])
    assert again.created == [] and again.existing == [(first.id, "edges")]
    assert len(queue.list_jobs(all=True)) == 1


def test_newer_commit_supersedes_queued_jobs_of_its_branch_and_pipeline_only(queue: Queue):
    old_edges = queue.enqueue(SHA_A, "main", "edges", "t")
    old_montage = queue.enqueue(SHA_A, "main", "montage", "t")
    other_branch = queue.enqueue(SHA_C, "dev", "edges", "t")
    outcome = queue.enqueue_commit(SHA_B, "main", [NewJob("edges", "t")])
    ((new_id, _),) = outcome.created
    assert outcome.superseded == [old_edges.id]
    kept = queue.get(old_edges.id)
    assert kept.state == "superseded" and kept.superseded_by == new_id
    assert queue.get(old_montage.id).state == "queued"
    assert queue.get(other_branch.id).state == "queued"
    assert old_edges.id not in [job.id for job in queue.list_jobs()]
    assert old_edges.id in [job.id for job in queue.list_jobs(all=True)]


def test_a_started_job_is_not_superseded(queue: Queue):
    started = queue.enqueue(SHA_A, "main", "edges", "t")
    assert queue.leases.take("w1", 60).id == started.id
    queue.enqueue(SHA_B, "main", "edges", "t")
    assert queue.get(started.id).state == "running"


def test_list_is_newest_first(queue: Queue):
    ids = [queue.enqueue(sha, "", "p", "t").id for sha in (SHA_A, SHA_B, SHA_C)]
    assert [job.id for job in queue.list_jobs()] == list(reversed(ids))


def test_jobs_of_a_commit_run_after_the_pipelines_they_read(queue: Queue):
    # montage reads edges' output repo, edges reads images: edges must run first,
    # whatever order the caller lists them in.
    outcome = queue.enqueue_commit(
        SHA_A,
        "main",
        [
            NewJob("montage", "m", inputs=("edges", "images")),
            NewJob("edges", "e", inputs=("images",)),
        ],
    )
    ids = dict((name, job_id) for job_id, name in outcome.created)
    first = queue.leases.take("w1", 60)
    assert first.pipeline == "edges"
    assert queue.leases.take("w2", 60) is None  # montage waits while edges runs
    for step in ("build", "push", "update"):
        queue.start_step(first.id, step, "w1")
        queue.finish_step(first.id, step, {}, worker_id="w1")
    assert queue.get(ids["edges"]).state == "done"
    assert queue.leases.take("w2", 60).id == ids["montage"]


def test_an_expired_lease_is_taken_over_then_and_not_before(queue: Queue):
    job = queue.enqueue(SHA_A, "main", "edges", "t")
    leased = queue.leases.take("dead-worker", 1.0)
    queue.start_step(leased.id, "build", "dead-worker")
    queue.finish_step(leased.id, "build", {"image_id": "sha256:1"}, worker_id="dead-worker")
    queue.start_step(leased.id, "push", "dead-worker")
    # The worker dies here: nobody renews its lease.
    assert queue.leases.take("second-worker", 60) is None
    time.sleep(1.1)
    taken = queue.leases.take("second-worker", 60)
    assert taken.id == job.id
    assert taken.step("build").state == "done" and taken.step("build").result == {"image_id": "sha256:1"}
    assert taken.step("push").attempts == 1
    with pytest.raises(queue_module.LeaseLost):
        queue.finish_step(job.id, "push", {}, worker_id="dead-worker")
    assert queue.start_step(job.id, "push", "second-worker").attempts == 2


def test_failed_job_retried_keeps_its_done_steps(queue: Queue):
    job = queue.enqueue(SHA_A, "main", "edges", "t")
    queue.leases.take("w", 60)
    queue.start_step(job.id, "build", "w")
    queue.finish_step(job.id, "build", {"image_id": "x"}, worker_id="w")
    queue.start_step(job.id, "push", "w")
    failed = queue.fail_step(job.id, "push", "registry refused\n  the push", "w")
    assert failed.state == "failed"
    assert failed.step("push").error == "registry refused the push"
    with pytest.raises(QueueError, match="only failed, cancelled or superseded"):
        queue.retry(queue.enqueue(SHA_B, "x", "other", "t").id)
    retried = queue.retry(job.id)
    assert retried.state == "queued"
    assert [s.state for s in retried.steps] == ["done", "pending", "pending"]


def test_cancel_a_queued_job_but_not_a_done_one(queue: Queue):
    job = queue.enqueue(SHA_A, "main", "edges", "t")
    assert queue.cancel(job.id).state == "cancelled"
    assert queue.leases.take("w", 60) is None
    with pytest.raises(QueueError, match="nothing to cancel"):
        queue.cancel(job.id)
    with pytest.raises(QueueError, match="no job 999"):
        queue.cancel(999)


def test_logs_and_last_delivered_commit(queue: Queue):
    job = queue.enqueue(SHA_A, "main", "edges", "t")
    queue.logs.append(job.id, "build: started\n")
    queue.logs.append(job.id, "build: done")
    assert queue.logs.lines(job.id) == ["build: started", "build: done"]
    assert queue.last_delivered_commit("edges") is None
    queue.leases.take("w", 60)
    for step in ("build", "push", "update"):
        queue.start_step(job.id, step, "w")
        queue.finish_step(job.id, step, {}, skipped=step != "update", worker_id="w")
    assert queue.get(job.id).state == "done"
    assert queue.last_delivered_commit("edges") == SHA_A


_ENQUEUE_MANY = """
import sys
from pachhook.queue.store import Queue
q = Queue(sys.argv[1])
for i in range(int(sys.argv[3])):
    q.enqueue(f"{sys.argv[2]}{i:04d}".ljust(40, "0"), "", "p", "t")
"""


def test_processes_enqueueing_at_once_lose_nothing(tmp_path: Path):
    Queue(tmp_path).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", _ENQUEUE_MANY, str(tmp_path), prefix, "40"])
        for prefix in ("a", "b", "c", "d")
    ]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
    with Queue(tmp_path) as queue:
        assert len(queue.list_jobs(all=True)) == 160


# -- `pachhook queue` in a real repository -----------------------------------------------


def statuses(repo: Repo) -> list:
    return [(job["pipeline"], job["commit"], job["state"]) for job in live_jobs(repo)]


def test_commit_is_queued_for_every_pipeline_at_first(tmp_path: Path):
    repo = make_repo(tmp_path)
    head = repo.git("rev-parse", "HEAD")
    proc = repo.pachhook("queue")
    assert proc.returncode == 0
    assert (
        proc.stdout
        == f"pachhook: queued {head[:12]} for edges, montage to env default (the active pachctl context); `pachhook status` shows progress\n"
    )
    jobs = live_jobs(repo)
    assert sorted((j["pipeline"], j["commit"], j["branch"], j["template"], j["image"], j["state"]) for j in jobs) == [
        ("edges", head, "main", "edges/pipeline.json", "registry.invalid/team/edges", "queued"),
        ("montage", head, "main", "montage/pipeline.json", "registry.invalid/team/montage", "queued"),
    ]
    assert all(
        json.loads(repo.pachhook("status", "--format", "json").stdout)["worker_running"] is False for _ in range(1)
    )


def test_a_commit_touching_no_pipeline_records_nothing(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.pachhook("queue", check=True)
    repo.write("README.md", "more\n")
    head = repo.commit("docs only")
    proc = repo.pachhook("queue")
    assert proc.stdout == (
        f"pachhook: nothing queued for {head[:12]}: it changes no pipeline's template, Dockerfile or build context\n"
    )
    assert len(live_jobs(repo)) == 2


def test_only_the_pipeline_whose_context_changed_is_queued(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.pachhook("queue", check=True)
    repo.write("edges/run.sh", "echo changed\n")
    head = repo.commit("edges code")
    assert "queued" in repo.pachhook("queue").stdout
    new = [j for j in live_jobs(repo) if j["commit"] == head]
    assert [j["pipeline"] for j in new] == ["edges"]
    # The older edges job had not started: the newer commit supersedes it.
    assert [j["state"] for j in live_jobs(repo) if j["pipeline"] == "edges"] == ["queued", "superseded"]


def test_a_configured_dockerfile_outside_the_template_folder_counts(tmp_path: Path):
    config = (
        'worker = "manual"\n[images."registry.invalid/team/edges"]\n'
        'dockerfile = "docker/edges.Dockerfile"\ncontext = "."\n'
    )
    repo = make_repo(tmp_path, config=config, pipelines=("edges",))
    repo.write("docker/edges.Dockerfile", "FROM scratch\n")
    repo.commit("dockerfile")
    repo.pachhook("queue", check=True)
    repo.write("docker/edges.Dockerfile", "FROM scratch\nLABEL a=b\n")
    head = repo.commit("dockerfile changed")
    assert f"queued {head[:12]} for edges" in repo.pachhook("queue").stdout


def test_a_yaml_template_is_parsed_once_per_version(tmp_path: Path):
    repo = make_repo(tmp_path, pipelines=())
    repo.write(
        "x/pipeline.yaml",
        "pipeline:\n  name: x\ntransform:\n  image: busybox:1.36\ninput:\n  pfs: {repo: images, glob: /*}\n",
    )
    repo.commit("yaml")
    first = run([sys.executable, "-X", "importtime", "-m", "pachhook", "queue"], repo.path, repo.env)
    assert "queued" in first.stdout and "| yaml" in first.stderr
    repo.write("README.md", "again\n")
    repo.commit("other")
    second = run([sys.executable, "-X", "importtime", "-m", "pachhook", "queue"], repo.path, repo.env)
    assert "nothing queued" in second.stdout
    assert "| yaml" not in second.stderr


def test_bad_configuration_is_one_line_per_problem_and_exit_0(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\ntag = "long"\ncolour = 1\n')
    head = repo.git("rev-parse", "HEAD")
    proc = repo.pachhook("queue")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        f'pachhook: nothing queued for {head[:12]}: .pachhook.toml:2: tag: must be "full" or "short", not a string (\'long\')',
        f"pachhook: nothing queued for {head[:12]}: .pachhook.toml:3: colour: unknown key (known keys:"
        " backend, branches, build_concurrency, environments, images, jsonnet_args, keep_jobs, notify, pachctl, pachyderm_version, pin_digest, plan_on_push, reprocess,"
        " schema_from_cluster, tag, templates, verify, verify_timeout, worker)",
    ]
    status = repo.pachhook("status")
    assert "no jobs" in status.stdout and ".pachhook.toml:2: tag" in status.stdout
    recorded = json.loads(repo.pachhook("status", "--format", "json").stdout)["problems"]
    assert [p["commit"] for p in recorded] == [head, head]
    assert recorded[-1]["message"].startswith(".pachhook.toml:2: tag: must be")


def test_outside_a_repository_queue_still_exits_0(tmp_path: Path):
    env = git_env(tmp_path / "home")
    proc = run([str(VENV_BIN / "pachhook"), "queue"], tmp_path, env)
    assert proc.returncode == 0
    assert proc.stdout.startswith("pachhook: nothing queued: not a git repository")
    assert len(proc.stdout.splitlines()) == 1 and proc.stderr == ""


def test_branches_setting_filters_what_is_deployed(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\nbranches = ["release/*"]\n')
    proc = repo.pachhook("queue")
    assert proc.stdout.endswith("branch main delivers to no environment\n")
    repo.git("checkout", "-q", "-b", "release/1")
    repo.write("edges/run.sh", "echo release\n")
    repo.commit("release")
    assert "queued" in repo.pachhook("queue").stdout
    assert {j["branch"] for j in live_jobs(repo)} == {"release/1"}


def test_queue_a_named_commit(tmp_path: Path):
    repo = make_repo(tmp_path)
    first = repo.git("rev-parse", "HEAD")
    repo.write("edges/run.sh", "x\n")
    repo.commit("second")
    proc = repo.pachhook("queue", "--commit", "HEAD~1")
    assert f"queued {first[:12]}" in proc.stdout
    assert repo.pachhook("queue", "--commit", "no-such-rev").stdout == (
        "pachhook: nothing queued: unknown revision 'no-such-rev'\n"
    )


def install_plain_hooks(repo: Repo) -> None:
    proc = repo.pachhook("install")
    assert proc.returncode == 0, proc.stderr


def test_rebase_replaying_20_commits_leaves_one_live_job_per_pipeline(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\nbranches = ["*"]\n')
    install_plain_hooks(repo)
    repo.git("checkout", "-q", "-b", "feature")
    for number in range(20):
        repo.write("edges/run.sh", f"echo edges {number}\n")
        repo.write("montage/run.sh", f"echo montage {number}\n")
        repo.commit(f"feature {number}")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "main moved on\n")
    repo.commit("main")
    repo.git("checkout", "-q", "feature")
    repo.git("rebase", "-q", "main")
    rebased = repo.git("rev-list", "main..feature").split()
    assert len(rebased) == 20
    feature = [j for j in live_jobs(repo) if j["branch"] == "feature"]
    live = [j for j in feature if j["state"] in ("queued", "running")]
    assert sorted(j["pipeline"] for j in live) == ["edges", "montage"]
    assert {j["commit"] for j in live} == {rebased[0]}  # the tip of the rebased branch
    # The replayed commits were all recorded, then superseded (kept, not deleted).
    replayed = {j["commit"] for j in feature if j["state"] == "superseded"}
    assert set(rebased[1:]) <= replayed


def test_two_worktrees_committing_at_once_lose_nothing(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\nbranches = ["*"]\n')
    install_plain_hooks(repo)
    repo.git("worktree", "add", "-q", "-b", "left", str(tmp_path / "left"))
    repo.git("worktree", "add", "-q", "-b", "right", str(tmp_path / "right"))
    trees = {"left": Repo(tmp_path / "left", repo.env), "right": Repo(tmp_path / "right", repo.env)}
    made = commit_at_once(trees, {"left": "edges", "right": "montage"}, 10)
    jobs = live_jobs(repo)
    for name, pipeline in (("left", "edges"), ("right", "montage")):
        recorded = [j["commit"] for j in jobs if j["branch"] == name and j["pipeline"] == pipeline]
        assert sorted(recorded) == sorted(made[name])
        states = [j["state"] for j in jobs if j["branch"] == name and j["pipeline"] == pipeline]
        assert states.count("queued") == 1 and states.count("superseded") == 9


def test_post_commit_hook_never_fails_the_commit(tmp_path: Path):
    repo = make_repo(tmp_path)
    install_plain_hooks(repo)
    repo.write(".pachhook.toml", "worker = 7\n")
    # --no-verify skips the pre-commit hook (which refuses the bad file); post-commit still runs.
    proc = run(["git", "commit", "--no-verify", "-qam", "bad config"], repo.path, repo.env)
    assert proc.returncode == 0
    assert ".pachhook.toml:1: worker: must be" in proc.stderr  # git shows hook output on stderr
    assert repo.git("log", "-1", "--format=%s") == "bad config"


# -- the worker -------------------------------------------------------------------------


def fixed_image_repo(tmp_path: Path, worker: str = "manual") -> Repo:
    """A pipeline with a fixed image: nothing to build or push, the update goes to the pachctl double."""
    config = f'worker = "{worker}"\npachctl = "{PACHCTL_DOUBLE}"\n'
    repo = make_repo(tmp_path, config=config, pipelines=())
    repo.write("fixed/pipeline.json", template("fixed", image="busybox:1.36"))
    repo.commit("fixed image")
    double = tmp_path / "pachctl-double"
    double.mkdir()
    repo.env["PACHCTL_DOUBLE_DIR"] = str(double)
    return repo


def test_run_drains_in_the_foreground_and_retry_resumes_at_the_failed_step(tmp_path: Path):
    repo = fixed_image_repo(tmp_path)
    repo.pachhook("queue", check=True)
    repo.env["PACHCTL_DOUBLE_FAIL"] = "update:cluster unreachable"
    failed = repo.pachhook("run")
    assert failed.returncode == 1
    assert "update: failed:" in failed.stdout and "cluster unreachable" in failed.stdout
    (job,) = live_jobs(repo)
    assert job["state"] == "failed"
    assert [(s["name"], s["state"]) for s in job["steps"]] == [
        ("build", "skipped"),
        ("push", "skipped"),
        ("update", "failed"),
    ]
    assert "\n" not in job["steps"][2]["error"] and "cluster unreachable" in job["steps"][2]["error"]
    del repo.env["PACHCTL_DOUBLE_FAIL"]
    assert repo.pachhook("retry", str(job["id"])).stdout == f"job {job['id']} (fixed@{job['commit'][:12]}) queued\n"
    done = repo.pachhook("run")
    assert done.returncode == 0 and done.stdout.endswith("pachhook run: 1 done, 0 failed\n")
    (job,) = live_jobs(repo)
    assert job["state"] == "done"
    assert [s["attempts"] for s in job["steps"]] == [1, 1, 2]
    assert job["steps"][2]["result"]["pipeline_version"] == "1"
    logs = repo.pachhook("logs", str(job["id"])).stdout
    assert "update: failed" in logs and "update: done" in logs


def test_background_worker_drains_the_queue_and_exits(tmp_path: Path):
    repo = fixed_image_repo(tmp_path, worker="background")
    proc = repo.pachhook("queue")
    assert "queued" in proc.stdout
    deadline = time.time() + 60
    while time.time() < deadline:
        jobs = live_jobs(repo)
        status = json.loads(repo.pachhook("status", "--format", "json").stdout)
        if jobs[0]["state"] == "done" and not status["worker_running"]:
            break
        time.sleep(0.2)
    assert jobs[0]["state"] == "done"
    assert status["worker_running"] is False  # the worker exited once the queue was empty
    log = (repo.common_dir / "pachhook" / "worker.log").read_text()
    assert "finished: queue empty" in log and "update: done" in log


def test_a_running_worker_is_not_started_twice(tmp_path: Path):
    from pachhook.queue.launch import WorkerLock, start_background, worker_running

    repo = make_repo(tmp_path)
    folder = repo.common_dir / "pachhook"
    folder.mkdir()
    held = WorkerLock(folder)
    assert held.acquire()
    try:
        assert worker_running(folder)
        assert start_background(repo.path, repo.common_dir) is False
    finally:
        held.release()
    assert not worker_running(folder)


def test_cancel_and_status_text(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.pachhook("queue", check=True)
    jobs = live_jobs(repo)
    proc = repo.pachhook("cancel", str(jobs[0]["id"]))
    assert proc.stdout.endswith("cancelled\n")
    again = repo.pachhook("cancel", str(jobs[0]["id"]))
    assert (
        again.returncode == 1
        and again.stderr == f"pachhook cancel: job {jobs[0]['id']} is cancelled: nothing to cancel\n"
    )
    text = repo.pachhook("status").stdout.splitlines()
    assert text[0].split() == ["JOB", "STATE", "COMMIT", "BRANCH", "ENV", "PIPELINE", "BUILD", "PUSH", "UPDATE", "AGE"]
    assert len(text) == 3 and text[1].split()[:6] == [
        str(jobs[1]["id"]),
        "queued",
        jobs[1]["commit"][:12],
        "main",
        "default",
        jobs[1]["pipeline"],
    ]
    assert text[2] == "worker: not running"
    assert repo.pachhook("logs", "12345").stderr == "pachhook logs: no job 12345\n"


# -- what the hook imports --------------------------------------------------------------

HEAVY = (
    "yaml",
    "jsonschema",
    "docker",
    "git",
    "subprocess",
    "typing",
    "dataclasses",
    "argparse",
    "tomllib",
    "tomli",
    "json",
    "pathlib",
    "hashlib",
)


def modules_after_site(repo: Repo) -> set:
    """Names of the modules `pachhook queue` imports itself (after Python's start-up)."""
    proc = run([sys.executable, "-X", "importtime", "-m", "pachhook", "queue"], repo.path, repo.env)
    names = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return set(names[names.index("site") + 1 :])


def imported_after_site(repo: Repo) -> set:
    """Top-level names of the modules `pachhook queue` imports itself (after Python's start-up)."""
    return {name.split(".")[0] for name in modules_after_site(repo)}


def test_the_hook_path_stays_off_heavy_imports(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\ntag = "short"\n')
    repo.pachhook("queue", check=True)  # parses the templates and the configuration once
    repo.write("edges/run.sh", "echo new\n")
    repo.commit("edges")  # queues a job: the enqueue path is measured too
    modules = imported_after_site(repo)
    assert "pachhook" in modules
    assert sorted(modules & set(HEAVY)) == []


# Modules that `site` (with the editable-install finder) imports anyway, so only a run
# without it shows the hook importing them: `re` and `enum` (~8 ms, the glob matcher and the
# naming conventions do without), `datetime` (~5 ms, the `sqlite3` package's adapters; the
# queue uses SQLite's C module), `fnmatch` (branch globs; a plain branch name is compared).
HEAVY_UNDER_SITE = ("re", "enum", "datetime", "fnmatch")


def test_the_hook_path_stays_off_heavy_imports_without_the_editable_finder(tmp_path: Path):
    """As pip installs pachhook for pre-commit: no editable-install finder, which imports
    pathlib, re and contextlib itself in `site` and so hides them from the test above."""
    repo = make_repo(tmp_path, config='worker = "manual"\n')
    repo.pachhook("queue", check=True)
    repo.write("edges/run.sh", "echo new\n")
    repo.commit("edges")
    env = dict(repo.env, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = run([sys.executable, "-S", "-X", "importtime", "-m", "pachhook", "queue"], repo.path, env)
    names = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    own = {name.split(".")[0] for name in names[names.index("pachhook") :]}
    assert sorted(own & set(HEAVY + HEAVY_UNDER_SITE)) == []


def test_a_template_parsed_on_the_hook_path_brings_no_heavy_import_but_json(tmp_path: Path):
    # a changed template's blob is read (`cat-file --batch`) and parsed (the loader) the
    # first time it is seen: still no subprocess, typing or pathlib, as a regular install runs it
    repo = make_repo(tmp_path, config='worker = "manual"\n')
    repo.pachhook("queue", check=True)
    repo.write("edges/pipeline.json", template("edges") + "\n")
    repo.commit("edges template")
    env = dict(repo.env, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = run([sys.executable, "-S", "-X", "importtime", "-m", "pachhook", "queue"], repo.path, env)
    names = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "pachhook.spec.loader" in names  # the template was parsed here
    own = {name.split(".")[0] for name in names[names.index("pachhook") :]}
    assert sorted(own & (set(HEAVY) - {"json"})) == []


def test_starting_the_background_worker_imports_none_of_the_worker(tmp_path: Path):
    # The hook starts a worker process; the worker's modules (steps, docker) load there.
    repo = fixed_image_repo(tmp_path, worker="background")
    repo.pachhook("queue", "--no-worker", check=True)  # parses the template and the configuration once
    repo.pachhook("cancel", str(live_jobs(repo)[0]["id"]), check=True)  # so the commit is queued again
    names = modules_after_site(repo)
    assert "pachhook.queue.launch" in names  # a job was queued and the worker started
    assert sorted(name for name in names if name.startswith("pachhook.deliver")) == []
    assert sorted({name.split(".")[0] for name in names} & set(HEAVY)) == []
    deadline = time.time() + 60
    while time.time() < deadline and json.loads(repo.pachhook("status", "--format", "json").stdout)["worker_running"]:
        time.sleep(0.2)


def test_git_commit_does_not_wait_for_the_background_worker(tmp_path: Path):
    import signal

    repo = fixed_image_repo(tmp_path, worker="background")
    install_plain_hooks(repo)
    repo.env["PACHCTL_DOUBLE_HANG"] = "update"  # the worker's update step sleeps for an hour
    repo.write("fixed/pipeline.json", template("fixed", image="busybox:1.37"))
    run(["git", "add", "."], repo.path, repo.env)
    started = time.time()
    proc = run(["git", "commit", "--no-verify", "-qm", "slow delivery"], repo.path, repo.env, timeout=60)
    took = time.time() - started
    assert "pachhook: queued" in proc.stderr
    status = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        status = json.loads(repo.pachhook("status", "--format", "json").stdout)
        if status["jobs"][0]["steps"][2]["state"] == "running":
            break
        time.sleep(0.2)
    try:
        assert status["jobs"][0]["steps"][2]["state"] == "running"  # the worker is busy...
        assert took < 20  # ...and the commit came back long before it will be done
        assert repo.pachhook("status").stdout.splitlines()[-1] == f"worker: running (pid {status['worker_pid']})"
    finally:
        # The worker leads its own session: end it and the hanging double it started.
        if status.get("worker_pid"):
            os.killpg(status["worker_pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline and json.loads(repo.pachhook("status", "--format", "json").stdout)["worker_running"]:
        time.sleep(0.2)
    assert json.loads(repo.pachhook("status", "--format", "json").stdout)["worker_running"] is False


# -- cost proportional to the change (issue 16) -----------------------------------------


def test_queue_reads_the_diff_and_the_pipelines_paths_not_the_whole_tree(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.pachhook("queue", check=True)  # the first run lists the commit's tree once
    for number in range(30):
        repo.write(f"data/{number:03}.txt", f"{number}\n")
    repo.write("fresh/pipeline.json", template("fresh"))
    repo.write("fresh/Dockerfile", "FROM scratch\n")
    head = repo.commit("a new pipeline among other files")
    trace = tmp_path / "trace"
    proc = run([str(VENV_BIN / "pachhook"), "queue"], repo.path, dict(repo.env, GIT_TRACE=str(trace)))
    assert (
        proc.stdout
        == f"pachhook: queued {head[:12]} for fresh to env default (the active pachctl context); `pachhook status` shows progress\n"
    )
    commands = [line.split("trace: built-in: ", 1)[1] for line in trace.read_text().splitlines() if "built-in:" in line]
    assert any(command.startswith("git diff-tree -r -z --no-renames --raw") for command in commands), commands
    listings = [command for command in commands if command.startswith("git ls-tree")]
    # ls-tree limited to the templates and their Dockerfiles and folders: asked ahead for the
    # last queued commit's templates, and once more for this commit's, which add one
    assert len(listings) == 2 and all(" -- " in listing and "data/" not in listing for listing in listings), listings
    assert "fresh/pipeline.json" not in listings[0] and "fresh/pipeline.json" in listings[1], listings
    # the same templates as the last queued commit: the listing asked ahead is the one used
    repo.write("fresh/run.sh", "echo fresh\n")
    repo.commit("fresh code")
    trace.unlink()
    run([str(VENV_BIN / "pachhook"), "queue"], repo.path, dict(repo.env, GIT_TRACE=str(trace)))
    commands = [line.split("trace: built-in: ", 1)[1] for line in trace.read_text().splitlines() if "built-in:" in line]
    listings = [command for command in commands if command.startswith("git ls-tree")]
    assert len(listings) == 1 and "fresh/pipeline.json" in listings[0], listings


def test_a_removed_template_is_forgotten_and_a_gone_base_commit_means_one_full_listing(tmp_path: Path):
    repo = make_repo(tmp_path, pipelines=("edges", "montage", "extra"))
    repo.pachhook("queue", check=True)
    repo.git("rm", "-q", "-r", "extra")
    head = repo.commit("extra goes")
    assert repo.pachhook("queue").stdout == (
        f"pachhook: nothing queued for {head[:12]}: it changes no pipeline's template, Dockerfile or build context\n"
    )
    # The base commit the queue remembers disappears (history rewritten, then gc).
    repo.git("commit", "-q", "--amend", "-m", "extra gone")
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    repo.write("extra/pipeline.json", template("extra"))
    head = repo.commit("extra is back")
    assert repo.pachhook("queue").stdout == (
        f"pachhook: queued {head[:12]} for extra to env default (the active pachctl context) (superseding 1 older job); `pachhook status` shows progress\n"
    )


def test_leasing_does_not_walk_a_pipeline_s_history(queue: Queue):
    # Issue 16: the older-job check went through jobs_pipeline and read every past job of
    # the pipeline (125 ms a lease at 100k jobs); through jobs_state it reads the live ones.
    from pachhook.queue.leases import LEASABLE

    plan = queue.database.connection.execute("EXPLAIN QUERY PLAN SELECT j.id " + LEASABLE, {"now": 0}).fetchall()
    assert any("o USING INDEX jobs_state" in row[3] for row in plan), plan
    assert not any("jobs_pipeline" in row[3] for row in plan), plan


def test_keep_jobs_is_a_positive_whole_number(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\nkeep_jobs = 0\n')
    head = repo.git("rev-parse", "HEAD")
    assert repo.pachhook("queue").stdout == (
        f"pachhook: nothing queued for {head[:12]}: .pachhook.toml:2: keep_jobs: must be a whole number of jobs,"
        " 1 or more, not an integer (0)\n"
    )


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stopped_run_releases_its_job_for_the_next_worker_at_once(tmp_path: Path, signum: str):
    import signal

    repo = fixed_image_repo(tmp_path)
    repo.pachhook("queue", check=True)
    repo.env["PACHCTL_DOUBLE_HANG"] = "update"  # the update step sleeps for an hour
    process = subprocess.Popen(
        [str(VENV_BIN / "pachhook"), "run", "--lease", "600"],
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and live_jobs(repo)[0]["steps"][2]["state"] != "running":
        time.sleep(0.2)
    process.send_signal(getattr(signal, signum))
    try:
        process.communicate(timeout=30)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the hanging double, if still there
        except ProcessLookupError:
            pass
    job = live_jobs(repo)[0]
    assert job["state"] == "queued", job  # not "running" until a 600 s lease runs out
    repo.env.pop("PACHCTL_DOUBLE_HANG")
    again = repo.pachhook("run")
    assert "no job to run" not in again.stdout and ": done" in again.stdout, again.stdout

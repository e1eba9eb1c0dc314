"""`pachhook provenance` over a real queue database in a real repository.

The jobs' step results are recorded through the queue's own API, the way the worker
records them; tests/test_end_to_end.py gets them from a real build, push and update.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_update import DIGEST, calls, git, make_repo
from test_update import IMAGE as UPDATE_IMAGE
from test_update import context as update_context

from pachhook.commands.provenance import cluster_query
from pachhook.deliver import stamp
from pachhook.deliver.backends import clusterview
from pachhook.deliver.backends.pachctl import BackendError, PachctlBackend
from pachhook.deliver.backends.rawoutput import messages
from pachhook.deliver.steps.base import run_step
from pachhook.provenance.ledger import kind_of
from pachhook.queue.store import Queue

IMAGE = "127.0.0.1:5000/team/edges"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def deliver(
    queue: Queue,
    commit: str,
    version: str,
    digest: str,
    pipeline: str = "edges",
    image: str = IMAGE,
    finish: bool = True,
) -> int:
    job = queue.enqueue(commit, "main", pipeline, "edges/pipeline.json", image)
    queue.leases.take("w", 60)
    ref = f"{image}:{commit}"
    results = {
        "build": {"image_id": "sha256:" + "9" * 64, "image_ref": ref, "context_key": "k", "reused": "false"},
        "push": {"digest": digest, "image_ref": ref, "repo_digest": f"{image}@{digest}"},
        "update": {"pipeline_version": version, "image": ref, "spec_path": f"/x/{job.id}.json"},
    }
    for name in ("build", "push", "update"):
        if name == "update" and not finish:
            break
        queue.start_step(job.id, name, "w")
        queue.finish_step(job.id, name, results[name], worker_id="w")
    return job.id


@pytest.fixture
def recorded(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    with Queue(repo / ".git") as queue:
        deliver(queue, first, "1", D1)
        deliver(queue, second, "2", D2)
    return repo, first, second


def provenance(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "provenance", *args], cwd=repo, capture_output=True, text=True, timeout=60
    )


def as_json(repo: Path, query: str) -> list:
    out = provenance(repo, query, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["query"] == query
    return data["matches"]


def test_from_a_commit_to_digest_and_pipeline_version(recorded):
    repo, first, _ = recorded
    out = provenance(repo, first)
    assert out.returncode == 0, out.stderr
    assert f"commit    {first} (main)" in out.stdout
    assert "pipeline  edges version 1" in out.stdout
    assert f"digest    {D1}" in out.stdout
    assert f"image     {IMAGE}:{first}" in out.stdout
    assert "template  edges/pipeline.json" in out.stdout
    assert D2 not in out.stdout
    [match] = as_json(repo, first[:8])
    assert (match["digest"], match["pipeline_version"]) == (D1, "1")
    assert match["delivered_at"].endswith("Z")


def test_a_git_ref_names_its_commit(recorded):
    repo, first, second = recorded
    assert [m["commit"] for m in as_json(repo, "HEAD")] == [second]
    assert [m["commit"] for m in as_json(repo, "HEAD~1")] == [first]


def test_from_an_image_digest_or_tag_to_commit(recorded):
    repo, first, second = recorded
    assert [m["commit"] for m in as_json(repo, D2)] == [second]
    assert [m["commit"] for m in as_json(repo, f"{IMAGE}@{D1}")] == [first]
    assert [m["commit"] for m in as_json(repo, D1[:19])] == [first]
    assert [m["commit"] for m in as_json(repo, f"{IMAGE}:{first}")] == [first]
    assert [m["commit"] for m in as_json(repo, IMAGE)] == [second, first]


def test_from_a_pipeline_version_to_commit(recorded):
    repo, first, second = recorded
    assert [m["commit"] for m in as_json(repo, "edges@1")] == [first]
    assert [m["digest"] for m in as_json(repo, "edges@v2")] == [D2]
    assert [m["pipeline_version"] for m in as_json(repo, "edges")] == ["2", "1"]
    assert len(as_json(repo, "edges/pipeline.json")) == 2


def test_a_job_still_running_shows_what_it_has(tmp_path):
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    with Queue(repo / ".git") as queue:
        deliver(queue, sha, "", D1, finish=False)
    [match] = as_json(repo, sha)
    assert match["digest"] == D1 and match["pipeline_version"] == "" and match["delivered_at"] is None
    assert "queued" in provenance(repo, sha).stdout


def test_nothing_recorded_is_exit_1_with_one_line(recorded):
    repo, _, _ = recorded
    out = provenance(repo, "other-pipeline@3")
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == "pachhook provenance: nothing recorded matches 'other-pipeline@3'"
    out = provenance(repo, "sha256:" + "f" * 64, "--format", "json")
    assert out.returncode == 1 and json.loads(out.stdout)["matches"] == []


def test_outside_a_repository_is_a_usage_error(tmp_path):
    out = provenance(tmp_path, "HEAD")
    assert out.returncode == 2
    assert out.stderr.startswith("pachhook provenance: ") and "Traceback" not in out.stderr


def test_query_kinds():
    assert kind_of("sha256:abcdef") == "digest"
    assert kind_of("reg:5000/a/b@sha256:abcdef") == "digest"
    assert kind_of("edges@3") == "pipeline-version"
    assert kind_of("reg:5000/a/b") == "image"
    assert kind_of("busybox:1.36") == "image"
    assert kind_of("a1b2c3d") == "name"
    assert kind_of("edges/pipeline.json") == "name"


# -- from the cluster (the pachctl TEST DOUBLE keeps commits, jobs, datums, history) ----------

DOUBLES = Path(__file__).parent / "doubles"
PINNED = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    state = tmp_path / "pachctl-state"
    state.mkdir()
    monkeypatch.setenv("PACHCTL_DOUBLE_DIR", str(state))
    monkeypatch.setenv("PATH", os.pathsep.join([str(DOUBLES), os.environ["PATH"]]))
    for name in ("PACHCTL_DOUBLE_JOB", "PACHCTL_DOUBLE_IMAGE_ID", "PACHCTL_DOUBLE_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return state


def pachctl(*args: str) -> str:
    out = subprocess.run([str(DOUBLES / "pachctl"), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def apply(tmp_path: Path, name: str, source: str, commit: str, digest: str = PINNED, **extra: str) -> str:
    """Update a pipeline in the double as the update step does; the job ID it started."""
    annotations = {"pachhook.io/commit": commit, "pachhook.io/template": f"{name}/pipeline.json"}
    if digest:
        annotations["pachhook.io/image-digest"] = digest
    annotations.update(extra)
    spec = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": source, "glob": "/*"}},
        "transform": {"image": f"{IMAGE}@{digest}" if digest else "busybox:1.36", "cmd": ["true"]},
        "metadata": {"annotations": annotations},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    pachctl("update", "pipeline", "-f", str(path))
    return json.JSONDecoder().raw_decode(pachctl("list", "job", "-p", name, "--raw"))[0]["job"]["id"]


def test_from_an_output_commit_up_the_dag(cluster, tmp_path, recorded):
    repo, first, second = recorded
    pachctl("create", "repo", "images")
    pachctl("put", "file", "images@master:/a", "-f", str(repo / "edges" / "pipeline.json"))
    prep_job = apply(tmp_path, "prep", "images", first, digest="")
    job = apply(tmp_path, "edges", "prep", second)
    out = provenance(repo, f"edges@{job}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"edges@{job}  job success  pipeline edges v1"
    assert f"|  git       {second[:12]} 'second'" in lines
    assert f"|  digest    {PINNED} (Kubernetes ran the same)" in lines
    assert f"`- prep@{prep_job}  job success  pipeline prep v1" in lines
    assert any(line.startswith("   `- images@") and line.endswith("data (user commit)") for line in lines)
    # The queue of this clone recorded `second` as edges' version 2 with digest D2: shown as the ledger's.
    assert "|  ledger    job 2 (done)" in lines
    # A bare global ID: every job of the commit set; edges (downstream) first.
    both = provenance(repo, job, "--depth", "0").stdout
    assert both.startswith(f"edges@{job}")
    data = json.loads(provenance(repo, f"prep@{prep_job}", "--format", "json").stdout)
    [root] = data["roots"]
    # busybox:1.36 is not pinned nor served by a loopback registry: no digest either side.
    assert root["git"]["sha"] == first and root["image"]["verdict"] == "not reported"


def test_a_repushed_tag_is_flagged(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_IMAGE_ID", OTHER)
    job = apply(tmp_path, "edges", "images", "c" * 40)
    out = provenance(tmp_path, f"edges@{job}")
    assert out.returncode == 0, out.stderr
    assert f"digest    {PINNED} MISMATCH: Kubernetes ran {OTHER}" in out.stdout
    assert f"git       {'c' * 40} (not in this clone)" in out.stdout
    [root] = json.loads(provenance(tmp_path, f"edges@{job}", "--format", "json").stdout)["roots"]
    assert root["image"] == {"image": f"{IMAGE}@{PINNED}", "recorded": PINNED, "ran": [OTHER], "verdict": "mismatch"}


def test_before_2_3_the_cluster_reports_no_image(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_VERSION", "2.2.7")
    job = apply(tmp_path, "edges", "images", "c" * 40)
    out = provenance(tmp_path, f"edges@{job}")
    assert "the cluster reports no image ID: Pachyderm before 2.3" in out.stdout


def test_a_failed_job_shows_its_reason_without_control_sequences(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_JOB", "JOB_FAILURE:datum failed \x1b[31mred\x1b[0m\nsecond line")
    job = apply(tmp_path, "edges", "images", "c" * 40, **{"pachhook.io/note": "x"})
    out = provenance(tmp_path, f"edges@{job}")
    assert f"edges@{job}  job failure  pipeline edges v1" in out.stdout
    assert "|  reason    datum failed red second line" not in out.stdout  # no inputs: no bar
    assert "   reason    datum failed red second line" in out.stdout
    assert "\x1b" not in out.stdout


def test_from_the_git_side(cluster, tmp_path, recorded):
    repo, first, second = recorded
    job1 = apply(tmp_path, "edges", "images", first)
    job2 = apply(tmp_path, "edges", "images", second)
    out = provenance(repo, "HEAD", "--cluster")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(f"commit {second} 'second' (Test <t@example.com>, ")
    assert f"|- pipeline edges v2  image {IMAGE}@{PINNED}" in out.stdout
    assert f"|    job {job2} success  output edges@{job2}" in out.stdout
    assert job1 not in out.stdout
    data = json.loads(provenance(repo, "HEAD~1", "--cluster", "--format", "json").stdout)
    assert [(v["pipeline"], v["version"], [j["job"] for j in v["jobs"]]) for v in data["versions"]] == [
        ("edges", "1", [job1])
    ]
    out = provenance(repo, "HEAD~1", "--cluster", "--project", "nowhere")
    assert out.returncode == 1


def test_cluster_questions_fail_in_one_line(cluster, tmp_path):
    out = provenance(tmp_path, "edges@" + "0" * 32)
    assert out.returncode == 1
    assert out.stderr.strip() == f"pachhook provenance: commit edges@{'0' * 32} not found"
    out = provenance(tmp_path, "0" * 32)
    assert out.returncode == 1 and out.stderr.strip() == f"pachhook provenance: no job has the global ID {'0' * 32}"
    out = provenance(tmp_path, "edges@master", "--depth", "-1")
    assert out.returncode == 2 and "--depth: must be a whole number" in out.stderr
    out = provenance(tmp_path, "edges@2", "--depth", "1")
    assert out.returncode == 2
    (cluster / "pachctl_double_fail").write_text(
        "inspect-commit:rpc error: code = Unavailable desc = connection refused"
    )
    out = provenance(tmp_path, "edges@master")
    assert out.returncode == 1
    assert out.stderr.strip().endswith("connection refused") and "Traceback" not in out.stderr


def test_older_versions_and_their_jobs_as_pachctl_2x_shows_them(cluster, tmp_path):
    """`inspect pipeline NAME^N` (ancestry.Parse; api_server.go InspectPipelineInTransaction)
    and `list job -p NAME`, which without --history lists the current version's jobs only."""
    first = apply(tmp_path, "edges", "images", "a" * 40)
    second = apply(tmp_path, "edges", "images", "b" * 40)
    backend = PachctlBackend()
    assert backend.inspect("edges").version == "2"
    assert backend.inspect("edges^").version == "1" == backend.inspect("edges~1").version
    assert backend.inspect("edges^1").annotations["pachhook.io/commit"] == "a" * 40
    for name, message in (
        ("edges^2", 'pipeline "default/edges" has only 2 versions, not enough to find ancestor 2'),
        ("edges^^^", 'pipeline "default/edges" has only 2 versions, not enough to find ancestor 3'),
        ("edges.1", "cannot inspect future pipelines"),
        ("edges^~", 'invalid ancestry syntax "edges^~", cannot mix ^ and ~ characters'),
    ):
        with pytest.raises(BackendError) as caught:
            backend.inspect(name)
        assert str(caught.value).endswith(message)
    current = [
        job["job"]["id"] for job in json.JSONDecoder().raw_decode(pachctl("list", "job", "-p", "edges", "--raw"))[:1]
    ]
    assert current == [second] and first not in pachctl("list", "job", "-p", "edges", "--raw")
    every = pachctl("list", "job", "-p", "edges", "--history", "all", "--raw")
    assert first in every and second in every
    assert first in pachctl("list", "job", first, "--raw")  # a global ID: its jobs whatever their version


def test_query_routing():
    assert cluster_query("edges@" + "a" * 32) == ("edges", "a" * 32, "")
    assert cluster_query("vision/edges@master") == ("edges", "master", "vision")
    assert cluster_query("a" * 32) == ("", "a" * 32, "")
    assert cluster_query("edges@3") is None and cluster_query("edges@v3") is None
    assert cluster_query(f"{IMAGE}@{D1}") is None and cluster_query(D1) is None
    assert cluster_query("edges") is None


# -- stamped and verified after an update ------------------------------------------------------


def updated(repo: Path, config: str = "", job_id: int = 7) -> dict:
    if config:  # delivery reads the configuration from the commit, so it is committed
        (repo / ".pachhook.toml").write_text(config)
        git(repo, "add", ".pachhook.toml")
        git(repo, "commit", "-qm", "configuration")
    result = run_step("update", update_context(repo, job_id=job_id))
    assert result.outcome == "done", result
    return result.data


def raw(*args: str) -> dict:
    return json.JSONDecoder().raw_decode(pachctl(*args, "--raw"))[0]


def assert_stamped_and_verified(data: dict, sha: str, raw_read) -> None:
    """The update step's result and the cluster (read with pachctl --raw) after a stamped,
    verified update of edges from `sha` (shared by the API backend's test)."""
    job_id = raw_read("inspect", "pipeline", "edges")["specCommit"]["id"]
    assert data["cluster_job"] == f"edges@{job_id}"
    assert (data["job_state"], data["verify"]) == ("JOB_SUCCESS", "finished")
    assert data["stamped"] == "annotations,pipeline-metadata,commit-metadata"
    stamped = {"pachhook.io/commit": sha, "pachhook.io/template": "edges/pipeline.json"}
    stamped["pachhook.io/image-digest"] = DIGEST
    assert raw_read("inspect", "commit", f"edges@{job_id}")["metadata"] == stamped
    assert raw_read("inspect", "pipeline", "edges")["metadata"] == stamped
    # The job is the one the update started: its ID is the new version's spec commit ID.
    assert raw_read("inspect", "job", f"edges@{job_id}")["pipelineVersion"] == data["pipeline_version"]


def test_an_update_is_stamped_and_its_job_verified(cluster, tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert_stamped_and_verified(updated(repo), git(repo, "rev-parse", "HEAD"), raw)


def test_the_stamp_uses_the_read_back_of_the_update(cluster, tmp_path, monkeypatch):
    """One read of the pipeline before the apply, one after it, which also names the job to stamp."""
    monkeypatch.setattr(clusterview, "_SERVER_VERSIONS", {})
    repo = make_repo(tmp_path / "repo")
    data = updated(repo)
    asked = [call[:3] for call in calls(cluster) if call[:2] == ["inspect", "pipeline"]]
    assert asked == [["inspect", "pipeline", "edges"], ["inspect", "pipeline", "edges"]]
    assert data["cluster_job"] == f"edges@{raw('inspect', 'pipeline', 'edges')['specCommit']['id']}"
    assert data["stamped"] == "annotations,pipeline-metadata,commit-metadata"
    # The cluster's version is asked once per cluster, not once per delivery (each has a
    # private configuration file of its own).
    (repo / "edges" / "pipeline.json").write_text(
        json.dumps({**json.loads((repo / "edges" / "pipeline.json").read_text()), "description": "v2"})
    )
    git(repo, "commit", "-q", "-am", "v2")
    updated(repo, job_id=8)
    assert [call for call in calls(cluster) if call == ["version"]] == [["version"]]


def test_output_commits_are_stamped_without_being_read_even_when_stamped_before(cluster, tmp_path, monkeypatch):
    """`edit` sets a key whether or not the commit has it (pachd's editMetadata: EditKey
    stores the value, only AddKey refuses a key that is there), so no read comes first, and
    stamping the same output commit again (a retried stamp) rewrites its keys."""
    monkeypatch.setattr(clusterview, "_SERVER_VERSIONS", {})
    repo = make_repo(tmp_path / "repo")
    data = updated(repo)
    assert data["stamped"] == "annotations,pipeline-metadata,commit-metadata"
    assert not [call for call in calls(cluster) if call[1:2] == ["commit"]]  # neither list nor inspect
    backend = PachctlBackend()
    values = {"pachhook.io/commit": "c" * 40, "pachhook.io/template": "edges/pipeline.json"}
    again = stamp.after_update(backend, "edges", "", values, verify=False, applied=backend.inspect("edges"))
    assert (again.stamped, again.problems) == (["annotations", "pipeline-metadata", "commit-metadata"], [])
    assert not [call for call in calls(cluster) if call[1:2] == ["commit"]]
    job_id = data["cluster_job"].split("@")[1]
    assert raw("inspect", "commit", f"edges@{job_id}")["metadata"] == {**values, "pachhook.io/image-digest": DIGEST}


def test_a_missing_output_commit_is_found_by_reading_the_commits_after_the_write_failed(cluster, tmp_path):
    """One request is written whole or not at all: when it fails, the output commits are
    read, the pipeline is stamped alone, and the job's log names the commit that is not there."""
    repo = make_repo(tmp_path / "repo")
    updated(repo)
    backend = PachctlBackend()
    applied = backend.inspect("edges")
    pfs = json.loads((cluster / "pfs.json").read_text())
    del pfs["repos"]["default/edges"]["commits"][applied.spec_commit]  # keyed PROJECT/REPO
    (cluster / "pfs.json").write_text(json.dumps(pfs))
    before, logged = len(calls(cluster)), []
    values = {"pachhook.io/commit": "c" * 40, "pachhook.io/template": "edges/pipeline.json"}
    outcome = stamp.after_update(backend, "edges", "", values, verify=False, log=logged.append, applied=applied)
    assert [call[:3] for call in calls(cluster)[before:] if call != ["version"]] == [
        ["edit", "metadata", "pipeline"],
        ["list", "commit", applied.spec_commit],
        ["edit", "metadata", "pipeline"],
    ]
    assert outcome.stamped == ["annotations", "pipeline-metadata"]
    assert outcome.problems == [f"commit metadata: no output commit edges@{applied.spec_commit}"]
    assert f"provenance not stamped: commit metadata: no output commit edges@{applied.spec_commit}" in logged
    assert raw("inspect", "pipeline", "edges")["metadata"]["pachhook.io/commit"] == "c" * 40


@pytest.mark.parametrize(
    "client, server, stamped",
    [
        ("2.11.6", "2.11.6", "annotations,pipeline-metadata,commit-metadata"),
        ("2.10.2", "2.10.2", "annotations,commit-metadata"),
        ("2.11.6", "2.10.2", "annotations,commit-metadata"),
        ("2.9.4", "2.9.4", "annotations"),
    ],
)
def test_metadata_is_written_where_both_client_and_cluster_have_it(
    cluster, tmp_path, monkeypatch, client, server, stamped
):
    monkeypatch.setenv("PACHCTL_DOUBLE_VERSION", client)
    monkeypatch.setenv("PACHCTL_DOUBLE_SERVER_VERSION", server)
    monkeypatch.setattr(clusterview, "_SERVER_VERSIONS", {})
    data = updated(make_repo(tmp_path / "repo"))
    assert data["stamped"] == stamped
    assert data["job_state"] == "JOB_SUCCESS"
    # Every key of the pipeline and of its output commit in one `edit metadata` (sets of four)
    edits = [call[2:] for call in calls(cluster) if call[:2] == ["edit", "metadata"]]
    kinds = [kind.split("-")[0] for kind in stamped.split(",")[1:]]
    assert len(edits) == (1 if kinds else 0)
    targets = [edit[index] for edit in edits for index in range(0, len(edit), 4)]
    assert list(dict.fromkeys(targets)) == kinds


def test_a_job_failing_in_the_cluster_is_recorded_and_shown(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_JOB", "JOB_FAILURE:datum 0 failed: exit code 2")
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    data = updated(repo)
    assert (data["job_state"], data["job_reason"]) == ("JOB_FAILURE", "datum 0 failed: exit code 2")

    # As the worker records it, then as `pachhook status` and the next commit's hook show it.
    with Queue(repo / ".git") as queue:
        job = queue.enqueue(sha, "main", "edges", "edges/pipeline.json", IMAGE)
        queue.leases.take("w", 60)
        for name in ("build", "push", "update"):
            queue.start_step(job.id, name, "w")
            queue.finish_step(job.id, name, data if name == "update" else {}, worker_id="w")
    status = subprocess.run(
        [sys.executable, "-m", "pachhook", "status"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert f"{job.id}    failed in cluster  {sha[:12]}" in status.stdout
    assert f"    job {data['cluster_job']} failure: datum 0 failed: exit code 2" in status.stdout
    [record] = json.loads(
        subprocess.run(
            [sys.executable, "-m", "pachhook", "status", "--format", "json"], cwd=repo, capture_output=True, text=True
        ).stdout
    )["jobs"]
    assert record["state"] == "done" and record["failed_in_cluster"].endswith("exit code 2")

    git(repo, "commit", "-q", "--allow-empty", "-m", "next")
    hook = subprocess.run(
        [sys.executable, "-m", "pachhook", "queue", "--no-worker"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert (
        f"pachhook: note: edges from {sha[:12]} failed in cluster: job {data['cluster_job']} failure:"
        " datum 0 failed: exit code 2"
    ) in hook.stdout.splitlines()


def test_verification_is_bounded_and_can_be_turned_off(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_JOB", "JOB_RUNNING")
    repo = make_repo(tmp_path / "repo")
    started = time.monotonic()
    data = updated(repo, "verify_timeout = 1\n")
    assert time.monotonic() - started < 30
    assert (data["job_state"], data["verify"]) == ("JOB_RUNNING", "timed out after 1s")
    (repo / "edges" / "pipeline.json").write_text(
        json.dumps({**json.loads((repo / "edges" / "pipeline.json").read_text()), "description": "v2"})
    )
    git(repo, "commit", "-q", "-am", "v2")
    data = updated(repo, "verify = false\n", job_id=8)
    assert data["verify"] == "off" and "job_state" not in data
    # Turned off, the job is not asked about at all (the first update asked until the deadline).
    # (`list job ID`: the jobs of the update's commit set, one call per look)
    asked = [call for call in calls(cluster) if call[:2] == ["list", "job"]]
    assert asked and all(call[2] != data["cluster_job"].split("@")[1] for call in asked)


# -- bounded history (issue 16) ---------------------------------------------------------


def test_jobs_past_the_retention_move_to_the_ledger_and_provenance_still_reads_them(tmp_path):
    from pachhook.queue.retention import ledger_jobs, prune

    repo = make_repo(tmp_path / "repo")
    digests = {version: "sha256:" + f"{version:x}" * 64 for version in range(1, 9)}
    commits = {version: f"{version:x}" * 40 for version in digests}
    with Queue(repo / ".git") as queue:
        cancelled = queue.enqueue("f" * 40, "", "edges", "edges/pipeline.json", IMAGE)
        queue.cancel(cancelled.id)  # never started: nothing to keep in the ledger
        for version, digest in digests.items():
            deliver(queue, commits[version], str(version), digest)
        moved = prune(queue.database, keep=3, held_versions={"edges": "2"})
        kept = [job.steps[2].result["pipeline_version"] for job in queue.list_jobs(all=True)]
        ledgered = [job.steps[2].result["pipeline_version"] for job in ledger_jobs(queue.database)]
    assert moved == 5  # versions 1, 3, 4, 5 and the cancelled job
    assert kept == ["8", "7", "6", "2"]  # the newest three, and the held version's job
    assert ledgered == ["5", "4", "3", "1"]
    [match] = as_json(repo, "edges@1")
    assert (match["commit"], match["digest"], match["state"]) == (commits[1], digests[1], "done")
    assert [m["pipeline_version"] for m in as_json(repo, "edges")] == ["8", "7", "6", "5", "4", "3", "2", "1"]
    out = provenance(repo, "edges@v3")
    assert out.returncode == 0 and f"digest    {digests[3]}" in out.stdout


def test_the_newest_delivered_job_stays_whatever_the_retention(tmp_path):
    from pachhook.queue.retention import prune

    repo = make_repo(tmp_path / "repo")
    with Queue(repo / ".git") as queue:
        live = deliver(queue, "1" * 40, "1", D1)
        for n in range(3):
            failed = queue.enqueue(f"{n + 2}" * 40, "", "edges", "edges/pipeline.json", IMAGE)
            queue.leases.take("w", 60)
            queue.start_step(failed.id, "build", "w")
            queue.fail_step(failed.id, "build", "boom", worker_id="w")
        prune(queue.database, keep=1)
        assert [job.id for job in queue.list_jobs(all=True)][-1] == live


# -- an environment delivering to a project other than `default` -------------------------------
#
# In Pachyderm 2.5+ every repo, commit, job and pipeline belongs to a project; the same name
# may live in several. A delivery to project `vision` stamps, reads and verifies `vision/edges`
# and never touches `default/edges`.

VISION = '[environments.vision]\nbranches = ["main"]\nproject = "vision"\n'


def a_default_edges(tmp_path: Path) -> str:
    """Project `vision`, and a pipeline `edges` of the `default` project, stamped by its own
    team: its job ID."""
    pachctl("create", "project", "vision")
    job = apply(tmp_path, "edges", "images", "d" * 40)
    pachctl("edit", "metadata", "pipeline", "edges", "add", "team=default-team")
    pachctl("edit", "metadata", "commit", f"edges@{job}", "add", "team=default-team")
    return job


def test_a_delivery_to_a_project_stamps_and_verifies_its_own_pipeline(cluster, tmp_path):
    default_job = a_default_edges(tmp_path)
    before = (raw("inspect", "pipeline", "edges"), raw("inspect", "commit", f"edges@{default_job}"))
    repo = make_repo(tmp_path / "repo")
    data = updated(repo, VISION)
    sha = git(repo, "rev-parse", "HEAD")
    assert data["project"] == "vision"

    def in_vision(*args: str) -> dict:
        return raw(*args, "--project", "vision")

    assert_stamped_and_verified(data, sha, in_vision)
    job_id = data["cluster_job"].split("@")[1]
    assert job_id != default_job
    # the same commit written PROJECT/REPO@ID, as pachctl and `edit metadata` pickers take it
    assert raw("inspect", "commit", f"vision/edges@{job_id}")["commit"]["repo"]["project"] == {"name": "vision"}
    # `default/edges`, its version, its metadata and its output commit's: untouched
    assert (raw("inspect", "pipeline", "edges"), raw("inspect", "commit", f"edges@{default_job}")) == before
    assert raw("inspect", "pipeline", "edges")["metadata"] == {"team": "default-team"}
    # every metadata edit named the project in its picker (`edit metadata` has no --project)
    edits = [call[2:] for call in calls(cluster) if call[:2] == ["edit", "metadata"]]
    pickers = [edit[index + 1] for edit in edits[-1:] for index in range(0, len(edit), 4)]
    assert pickers and all(picker.startswith("vision/edges") for picker in pickers)


def test_provenance_of_a_project_in_both_directions(cluster, tmp_path):
    default_job = a_default_edges(tmp_path)
    repo = make_repo(tmp_path / "repo")
    data = updated(repo, VISION)
    sha = git(repo, "rev-parse", "HEAD")
    job_id = data["cluster_job"].split("@")[1]

    # data -> code: the environment's project, or PROJECT/ written in the query
    for args in ((f"edges@{job_id}", "--env", "vision"), (f"vision/edges@{job_id}",)):
        out = provenance(repo, *args)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == f"edges@{job_id}  job success  pipeline edges v1  project vision", lines
        assert f"   git       {sha[:12]} 'configuration'" in lines
        assert "team=" not in out.stdout
    # the default project's edges is not this job's
    out = provenance(repo, f"edges@{job_id}")
    assert out.returncode == 1 and out.stderr.strip() == f"pachhook provenance: commit edges@{job_id} not found"
    out = provenance(repo, f"edges@{default_job}", "--env", "vision")
    assert out.returncode == 1
    # a bare global ID names its jobs whatever their project
    out = provenance(repo, job_id)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"edges@{job_id}  job success  pipeline edges v1  project vision")

    # code -> data: the git commit's versions, only in the environment's project
    out = provenance(repo, "HEAD", "--cluster")
    assert out.returncode == 0, out.stderr
    assert f"|- pipeline edges v1 env vision project vision  image {UPDATE_IMAGE}:{sha}" in out.stdout
    assert f"|    job {job_id} success  output edges@{job_id}" in out.stdout
    assert default_job not in out.stdout
    [version] = json.loads(provenance(repo, "HEAD", "--cluster", "--format", "json").stdout)["versions"]
    assert (version["project"], version["environment"], [j["job"] for j in version["jobs"]]) == (
        "vision",
        "vision",
        [job_id],
    )


def test_a_commit_set_spanning_projects_stamps_and_verifies_only_the_projects_job(cluster, tmp_path, monkeypatch):
    """`default/edges` reads `vision/edges` (a pfs input names its project), so an update of
    vision/edges starts a job in both, with one global ID: `list job ID` and `list commit ID`
    list both projects' (InspectJobSet, InspectCommitSet). Only vision's is stamped and verified."""
    pachctl("create", "project", "vision")
    repo = make_repo(tmp_path / "repo")
    updated(repo, VISION)
    spec = {
        "pipeline": {"name": "edges"},
        "input": {"pfs": {"project": "vision", "repo": "edges", "glob": "/"}},
        "transform": {"image": "busybox:1.36", "cmd": ["true"]},
    }
    (tmp_path / "downstream.json").write_text(json.dumps(spec))
    pachctl("update", "pipeline", "-f", str(tmp_path / "downstream.json"))
    (repo / "edges" / "pipeline.json").write_text(
        json.dumps({**json.loads((repo / "edges" / "pipeline.json").read_text()), "description": "v2"})
    )
    git(repo, "commit", "-q", "-am", "v2")
    monkeypatch.setenv("PACHCTL_DOUBLE_JOB", "JOB_FAILURE:the default project's job")
    monkeypatch.setenv("PACHCTL_DOUBLE_JOB_ONLY", "default/edges")
    data = updated(repo, job_id=8)
    job_id = data["cluster_job"].split("@")[1]
    assert (data["verify"], data["job_state"]) == ("finished", "JOB_SUCCESS")
    assert raw("inspect", "job", f"edges@{job_id}")["state"] == "JOB_FAILURE"
    listed = messages(pachctl("list", "job", job_id, "--raw"))
    assert sorted(job["job"]["pipeline"]["project"]["name"] for job in listed) == ["default", "vision"]
    stamped = raw("inspect", "commit", f"vision/edges@{job_id}")["metadata"]
    assert stamped["pachhook.io/commit"] == git(repo, "rev-parse", "HEAD")
    assert "metadata" not in raw("inspect", "commit", f"default/edges@{job_id}")
    assert (data["verify"], data["job_state"]) == ("finished", "JOB_SUCCESS")

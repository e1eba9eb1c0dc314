"""`pachhook provenance` over a real queue database in a real repository.

The jobs' step results are recorded through the queue's own API, the way the worker
records them; tests/test_end_to_end.py gets them from a real build, push and update.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_update import git, make_repo

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
    queue.lease_next("w", 60)
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

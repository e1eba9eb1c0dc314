"""End to end, as a user lives it: commit, and a background worker builds, pushes and updates.

Real git with pachhook's plain hooks installed by `pachhook install`, the real Docker
engine and registry of tests/services, the detached worker the post-commit hook starts,
and the pachctl TEST DOUBLE (tests/doubles/pachctl) on PATH in place of a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import services as test_services
from test_update import calls, git, received

DOUBLES = Path(__file__).parent / "doubles"
WAIT_SECONDS = 240


def pachhook(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", *args], cwd=repo, capture_output=True, text=True, timeout=120
    )


def status(repo: Path) -> dict:
    out = pachhook(repo, "status", "--format", "json", "--all")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def jobs_of(repo: Path, commit: str) -> list:
    return [job for job in status(repo)["jobs"] if job["commit"] == commit]


def wait_until_delivered(repo: Path, commit: str) -> dict:
    """Poll `pachhook status` (bounded) until the commit's job is done; fail with the worker log."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        jobs = jobs_of(repo, commit)
        if jobs and jobs[0]["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    log = repo / ".git" / "pachhook" / "worker.log"
    detail = log.read_text() if log.exists() else "(no worker log)"
    assert jobs, f"no job for {commit}\n{detail}"
    assert jobs[0]["state"] == "done", f"job {jobs[0]['state']}: {jobs[0]['steps']}\n{detail}"
    return jobs[0]


def step(job: dict, name: str) -> dict:
    return next(item for item in job["steps"] if item["name"] == name)


def registry_get(registry: str, path: str, accept: str = "") -> tuple:
    request = urllib.request.Request(f"http://{registry}{path}")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers, json.load(answer)


def image_in_registry(registry: str, repository: str, tag: str) -> tuple:
    """(digest, labels) of IMAGE:TAG as the registry serves it."""
    headers, manifest = registry_get(
        registry, f"/v2/{repository}/manifests/{tag}", "application/vnd.docker.distribution.manifest.v2+json"
    )
    _, config = registry_get(registry, f"/v2/{repository}/blobs/{manifest['config']['digest']}")
    return headers["Docker-Content-Digest"], config["config"].get("Labels") or {}


@pytest.mark.integration
def test_commit_to_running_pipeline(tmp_path, docker_env, monkeypatch):
    services = docker_env
    repository = f"test-e2e/{uuid.uuid4().hex[:10]}/edges"
    image = f"{services.registry}/{repository}"
    state = tmp_path / "pachctl-state"
    state.mkdir()
    monkeypatch.setenv("PACHCTL_DOUBLE_DIR", str(state))
    # The hooks call `pachhook` by name: this interpreter's scripts first, then the double.
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), str(DOUBLES), os.environ["PATH"]]))

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    installed = pachhook(repo, "install")
    assert installed.returncode == 0, installed.stderr
    (repo / "edges").mkdir()
    template = {
        "pipeline": {"name": "edges"},
        "description": "edge detection",
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": {"image": image + ":{{ tag }}", "cmd": ["sh", "/edges.sh"]},
    }
    (repo / "edges" / "pipeline.json").write_text(json.dumps(template, indent=2))
    (repo / "edges" / "Dockerfile").write_text(test_services.base_dockerfile(services, "COPY edges.sh /edges.sh"))
    # Content of its own: the engine is shared by the suite, and an identical build context
    # built by another test would be reused (labels and all) instead of built for this commit.
    (repo / "edges" / "edges.sh").write_text(f"echo edges {uuid.uuid4().hex}\n")
    git(repo, "add", "-A")

    # 1. The commit returns at once; the worker delivers in the background.
    started = time.monotonic()
    git(repo, "commit", "-q", "-m", "edges pipeline")
    commit_seconds = time.monotonic() - started
    first = git(repo, "rev-parse", "HEAD")
    assert jobs_of(repo, first), "the post-commit hook queued no job"
    job = wait_until_delivered(repo, first)
    delivered_seconds = time.monotonic() - started
    assert commit_seconds < 5
    assert commit_seconds < delivered_seconds
    assert (repo / ".git" / "pachhook" / "worker.log").exists()

    # The registry holds the image tagged with the SHA and labelled with it.
    digest, labels = image_in_registry(services.registry, repository, first)
    assert labels["org.opencontainers.image.revision"] == first
    assert step(job, "push")["result"]["digest"] == digest
    # The pachctl double received a spec whose image is that tag.
    [spec] = received(state)
    assert spec["transform"]["image"] == f"{image}:{first}"
    assert spec["metadata"]["annotations"]["pachhook.io/commit"] == first
    assert step(job, "update")["result"]["pipeline_version"] == "1"
    # Provenance names the digest and the pipeline version.
    answer = pachhook(repo, "provenance", first)
    assert answer.returncode == 0, answer.stderr
    assert digest in answer.stdout
    assert "pipeline  edges version 1" in answer.stdout

    # 2. A commit changing only the template updates the pipeline without a docker build.
    template["description"] = "edge detection, tuned"
    (repo / "edges" / "pipeline.json").write_text(json.dumps(template, indent=2))
    git(repo, "commit", "-q", "-am", "describe edges")
    second = git(repo, "rev-parse", "HEAD")
    job = wait_until_delivered(repo, second)
    build = step(job, "build")["result"]
    assert build["reused"] == "true", build
    assert build["image_id"] == step(jobs_of(repo, first)[0], "build")["result"]["image_id"]
    assert step(job, "update")["result"]["pipeline_version"] == "2"
    latest = received(state)[-1]
    assert latest["description"] == "edge detection, tuned"
    assert latest["transform"]["image"] == f"{image}:{second}"
    assert "edges version 2" in pachhook(repo, "provenance", "edges@2").stdout

    # 3. A commit touching neither queues nothing.
    (repo / "README.md").write_text("notes\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "notes")
    third = git(repo, "rev-parse", "HEAD")
    assert jobs_of(repo, third) == []
    updates = [call for call in calls(state) if call[:2] == ["update", "pipeline"]]
    assert len(updates) == 2

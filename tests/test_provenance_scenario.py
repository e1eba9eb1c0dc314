"""Scenario: two commits delivered from one clone; provenance answered from a fresh clone.

Real git with pachhook's hooks, the real Docker engine and registry of tests/services, the
detached worker, and the pachctl TEST DOUBLE (tests/doubles/pachctl) in place of the
cluster: it keeps commits, jobs with their pipeline version, and datums whose image ID is
the digest the registry serves for the tag (what Kubernetes would report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import services as test_services
from test_end_to_end import pachhook, step, wait_until_delivered
from test_update import git

DOUBLES = Path(__file__).parent / "doubles"


def pachctl(*args: str) -> str:
    out = subprocess.run(
        [str(DOUBLES / "pachctl"), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def newest_job(pipeline: str) -> dict:
    return json.JSONDecoder().raw_decode(pachctl("list", "job", "-p", pipeline, "--raw"))[0]


@pytest.mark.integration
def test_which_commit_made_this_output_from_a_fresh_clone(tmp_path, docker_env, monkeypatch):
    services = docker_env
    repository = f"test-prov/{uuid.uuid4().hex[:10]}/edges"
    image = f"{services.registry}/{repository}"
    state = tmp_path / "pachctl-state"
    state.mkdir()
    monkeypatch.setenv("PACHCTL_DOUBLE_DIR", str(state))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), str(DOUBLES), os.environ["PATH"]]))
    pachctl("create", "repo", "images")
    (tmp_path / "a.png").write_text("pixels")
    pachctl("put", "file", "images@master:/a.png", "-f", str(tmp_path / "a.png"))

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ada@example.com")
    git(repo, "config", "user.name", "Ada")
    git(repo, "remote", "add", "origin", "https://ada:s3cret@git.example.com/team/vision.git")
    assert pachhook(repo, "install").returncode == 0
    # prep runs a fixed image (nothing to build); edges reads prep and is built from its folder.
    (repo / "prep").mkdir()
    prep = {
        "pipeline": {"name": "prep"},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": {"image": "busybox:1.36", "cmd": ["cp", "-r", "/pfs/images", "/pfs/out"]},
    }
    (repo / "prep" / "pipeline.json").write_text(json.dumps(prep, indent=2))
    (repo / "edges").mkdir()
    edges = {
        "pipeline": {"name": "edges"},
        "input": {"pfs": {"repo": "prep", "glob": "/*"}},
        "transform": {"image": image + ":{{ tag }}", "cmd": ["sh", "/edges.sh"]},
    }
    (repo / "edges" / "pipeline.json").write_text(json.dumps(edges, indent=2))
    (repo / "edges" / "Dockerfile").write_text(test_services.base_dockerfile(services, "COPY edges.sh /edges.sh"))
    (repo / "edges" / "edges.sh").write_text(f"echo edges {uuid.uuid4().hex}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "prep and edges")
    first = git(repo, "rev-parse", "HEAD")
    wait_until_delivered(repo, first)

    (repo / "edges" / "edges.sh").write_text(f"echo sharper edges {uuid.uuid4().hex}\n")
    git(repo, "commit", "-q", "-am", "Sharper edges")
    second = git(repo, "rev-parse", "HEAD")
    delivered = wait_until_delivered(repo, second)
    digest = step(delivered, "push")["result"]["digest"]
    output = newest_job("edges")["outputCommit"]["id"]
    prep_output = newest_job("prep")["outputCommit"]["id"]

    # Stamped into the cluster by the update step: the output commit of the job it started
    # carries the git commit itself (commit metadata, 2.10+), readable with plain pachctl.
    stamped = json.JSONDecoder().raw_decode(pachctl("inspect", "commit", f"edges@{output}", "--raw"))[0]["metadata"]
    assert stamped == {
        "pachhook.io/commit": second,
        "pachhook.io/template": "edges/pipeline.json",
        "pachhook.io/image-digest": digest,
    }
    assert step(delivered, "update")["result"]["cluster_job"] == f"edges@{output}"
    assert step(delivered, "update")["result"]["job_state"] == "JOB_SUCCESS"

    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(repo), str(fresh))
    assert not (fresh / ".git" / "pachhook").exists()

    out = pachhook(fresh, "provenance", f"edges@{output}", "--depth", "0")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"edges@{output}  job success  pipeline edges v2" in text
    assert f"git       {second[:12]} 'Sharper edges'" in text
    assert "Ada <ada@example.com>" in text
    assert f"digest    {digest} (Kubernetes ran the same)" in text
    assert "template  edges/pipeline.json" in text
    assert f"metadata  pachhook.io/commit={second[:12]}" in text
    assert "depth limit" in text and "prep@" not in text
    assert not (fresh / ".git" / "pachhook" / "queue.db").exists(), "a question created a queue database"

    data = json.loads(pachhook(fresh, "provenance", f"edges@{output}", "--format", "json").stdout)
    [root] = data["roots"]
    assert root["git"]["sha"] == second and root["image"]["verdict"] == "match"
    [upstream] = root["inputs"]
    assert (upstream["repo"], upstream["commit"], upstream["pipeline_version"]) == ("prep", prep_output, "1")
    assert upstream["git"]["sha"] == first and upstream["git"]["subject"] == "prep and edges"
    assert [node["repo"] for node in upstream["inputs"]] == ["images"]

    full = pachhook(fresh, "provenance", f"edges@{output}", "--depth", "1").stdout
    assert f"prep@{prep_output}  job success  pipeline prep v1" in full
    assert f"git       {first[:12]} 'prep and edges'" in full
    assert "images@" not in full

    # From the delivering clone: its ledger joins in, and the remote has no credentials.
    local = pachhook(repo, "provenance", f"edges@{output}", "--depth", "0").stdout
    assert "remote    https://git.example.com/team/vision.git" in local
    assert "s3cret" not in local
    assert f"ledger    job {delivered['id']} (done)" in local

    # The git side: what the second commit made in the cluster.
    answer = pachhook(fresh, "provenance", second, "--cluster")
    assert answer.returncode == 0, answer.stderr
    assert "|- pipeline edges v2" in answer.stdout
    assert f"output edges@{output}" in answer.stdout

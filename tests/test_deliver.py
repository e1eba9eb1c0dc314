"""`pachhook run --commit` (CI mode): a real repository, the real Docker engine and registry,
and the pachctl TEST DOUBLE (tests/doubles/pachctl) in place of a Pachyderm cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import services as test_services
from test_update import calls, double, git, received  # noqa: F401 (double is a fixture)


def registry_tags(registry: str, repository: str) -> list:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as answer:
            return json.load(answer).get("tags") or []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


def pipeline(name: str, image: str, repo: str) -> str:
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": repo, "glob": "/*"}},
            "transform": {"image": image, "cmd": ["sh", "-c", "true"]},
        },
        indent=2,
    )


@pytest.fixture
def two_pipelines(tmp_path, docker_env):
    """`counts` (fixed image) reads the output of `edges` (built here); `alone` reads neither."""
    services = docker_env
    repository = f"test-deliver/{uuid.uuid4().hex[:10]}/edges"
    image = f"{services.registry}/{repository}"
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    for folder in ("a_counts", "edges", "zz_alone"):
        (repo / folder).mkdir()
    # Listed first alphabetically, so the order of the run is the dependency's doing.
    (repo / "a_counts" / "pipeline.json").write_text(pipeline("counts", "busybox:1.36", "edges"))
    (repo / "zz_alone" / "pipeline.json").write_text(pipeline("alone", "busybox:1.36", "logs"))
    (repo / "edges" / "pipeline.json").write_text(pipeline("edges", image + ":{{ tag }}", "images"))
    (repo / "edges" / "Dockerfile").write_text(test_services.base_dockerfile(services, "COPY run.sh /run.sh"))
    (repo / "edges" / "run.sh").write_text(f"echo {repository}\n")  # a context no other test builds
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "three pipelines")
    return repo, image, repository, services


def run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "run", *args], cwd=repo, capture_output=True, text=True, timeout=300
    )


@pytest.mark.integration
def test_delivers_every_pipeline_in_dependency_order(two_pipelines, double):
    repo, image, repository, services = two_pipelines
    sha = git(repo, "rev-parse", "HEAD")
    out = run(repo, "--commit", sha)
    assert out.returncode == 0, out.stdout + out.stderr
    updates = [call for call in calls(double) if call[:2] == ["update", "pipeline"]]
    names = [json.loads(Path(call[3]).read_text())["pipeline"]["name"] for call in updates]
    assert names.index("edges") < names.index("counts")
    assert sorted(names) == ["alone", "counts", "edges"]
    assert sha in registry_tags(services.registry, repository)
    edges = [spec for spec in received(double) if spec["pipeline"]["name"] == "edges"][0]
    assert edges["transform"]["image"] == f"{image}:{sha}"
    assert (
        f"delivering {sha[:12]} (main) to env default (the active pachctl context): edges, counts, alone" in out.stdout
    )
    assert "edges: update: done: edges v1" in out.stdout
    # One commit, one DAG update: the three specs went into one transaction, so one spec
    # commit (one global ID) holds them all (transaction docs; api_server.go).
    assert ["start", "transaction"] in calls(double)
    spec_commits = {
        json.loads((double / "pipelines" / f"{name}.json").read_text())["spec_commit"]
        for name in ("edges", "counts", "alone")
    }
    assert len(spec_commits) == 1
    # The timing table: a header and one row per pipeline.
    table = out.stdout.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["pipeline", "build", "push", "update", "total"]
    assert [row.split()[0] for row in table[1:]] == ["edges", "counts", "alone"]
    assert (repo / ".git" / "pachhook" / "specs" / f"{sha[:12]}-edges.json").is_file()
    assert not (repo / ".git" / "pachhook" / "queue.db").exists()

    again = run(repo, "--commit", "HEAD")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(received(double)) == 3  # nothing applied twice
    assert "edges: build: reused" in again.stdout
    assert "edges: update: reused" in again.stdout


@pytest.mark.integration
def test_dry_run_changes_nothing(two_pipelines, double):
    repo, image, repository, services = two_pipelines
    sha = git(repo, "rev-parse", "HEAD")
    out = run(repo, "--commit", sha, "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"would build {image}:{sha}" in out.stdout
    assert f'"image": "{image}:{sha}"' in out.stdout
    assert "pachctl update pipeline -f" in out.stdout
    assert registry_tags(services.registry, repository) == []
    # the plan reads the live pipeline (inspect, list datum); nothing is applied
    assert not any(call[:2] == ["update", "pipeline"] for call in calls(double))
    assert "plan for " in out.stdout
    assert not (repo / ".git" / "pachhook").exists()
    client = test_services.docker_client(services)
    try:
        assert client.images.list(name=image) == []
    finally:
        client.close()


@pytest.mark.integration
def test_a_failed_pipeline_stops_the_whole_commits_update(two_pipelines, double):
    """One commit, one DAG update: a failed build applies none of the commit's pipelines."""
    repo, image, repository, services = two_pipelines
    (repo / "edges" / "Dockerfile").write_text(test_services.base_dockerfile(services, "RUN exit 3"))
    git(repo, "commit", "-q", "-am", "broken build")
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 1
    assert "edges: build: failed:" in out.stdout
    # builds do not wait for each other: only the updates, held back together
    assert "counts: update: failed: not applied: edges failed" in out.stdout
    assert "alone: update: failed: not applied: edges failed" in out.stdout
    assert received(double) == []
    assert out.stdout.rstrip().splitlines()[-1].startswith("pachhook run: 3 of 3 pipelines failed: edges: build:")


def test_unknown_revision_is_a_usage_error(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    out = run(repo, "--commit", "nope")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip() == "pachhook run: unknown revision 'nope'"


def test_branch_not_deployed_does_nothing(tmp_path, double):
    from test_update import make_repo

    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'branches = ["release/*"]\n'})
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 0
    assert "branch main delivers to no environment; nothing to do" in out.stdout
    assert calls(double) == []

"""Provenance, stamping and verification through the API backend, and per-environment reading.

The API backend talks real gRPC to the pachd TEST DOUBLE (tests/doubles/pps_server.py),
whose cluster is the pachctl TEST DOUBLE's: what the API writes, `pachctl ... --raw` with
the same state directory reads back, so the two backends are checked against one model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pachyderm_sdk", reason="the API backend needs pachyderm-sdk: pip install 'pachhook[api]'")
pytest.importorskip("grpc", reason="the pachd test double needs grpcio")

from doubles import pps_server  # noqa: E402
from test_provenance import assert_stamped_and_verified  # noqa: E402
from test_update import DIGEST, DOUBLES, calls, context, git, make_repo  # noqa: E402

from pachhook.deliver.backends.api import ApiBackend  # noqa: E402
from pachhook.deliver.backends.pachctl import BackendError  # noqa: E402
from pachhook.deliver.steps.base import run_step  # noqa: E402
from pachhook.deliver.steps.update import render_template, render_values  # noqa: E402

TOKEN = "api-provenance-session-token"
PINNED = "sha256:" + "5" * 64
OTHER = "sha256:" + "6" * 64


@pytest.fixture
def pachd(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("PACHCTL_DOUBLE_") or name == "PACH_CONTEXT":
            monkeypatch.delenv(name)
    state = tmp_path / "api-cluster"
    state.mkdir()
    server, port, double = pps_server.start(pps_server.PpsDouble(state=state))
    config = tmp_path / "pach-config.json"
    config.write_text(
        json.dumps(
            {
                "user_id": "u",
                "v2": {
                    "active_context": "prod",
                    "contexts": {
                        "prod": {"pachd_address": f"grpc://127.0.0.1:{port}", "session_token": TOKEN},
                        "dev": {"pachd_address": "grpc://dev.example.com:30650"},
                    },
                },
            }
        )
    )
    monkeypatch.setenv("PACH_CONFIG", str(config))
    yield double
    double.released.set()
    server.stop(grace=None)


def pachctl(state: Path, *args: str) -> str:
    """The pachctl double reading the same cluster state (or another cluster's)."""
    out = subprocess.run(
        [str(DOUBLES / "pachctl"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, PACHCTL_DOUBLE_DIR=str(state), PACH_CONTEXT="dev"),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def raw(state: Path, *args: str) -> dict:
    return json.JSONDecoder().raw_decode(pachctl(state, *args, "--raw"))[0]


def provenance(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "provenance", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, **env),
    )


def api_repo(path: Path, config: str = "") -> Path:
    return make_repo(path, extra={".pachhook.toml": 'backend = "api"\n' + config})


# -- stamping and verifying through the API ----------------------------------------------------


def test_an_update_through_the_api_is_stamped_and_its_job_verified(tmp_path, pachd):
    repo = api_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    logs: list = []
    result = run_step("update", context(repo, logs=logs))
    assert result.outcome == "done", result
    # What pachctl, reading the same cluster, shows: the job the update started, stamped.
    assert_stamped_and_verified(result.data, sha, lambda *args: raw(pachd.state, *args))
    # the job is looked at through its commit set; pipeline and commit keys in one request,
    # the output commit not read first (EditKey sets a key whether or not it is there)
    assert {"GetVersion", "EditMetadata", "InspectJobSet"} <= set(pachd.calls)
    assert pachd.calls.count("EditMetadata") == 1 and "InspectCommit" not in pachd.calls
    assert TOKEN not in "\n".join(logs) + json.dumps(result.data)


@pytest.mark.parametrize(
    "server, stamped, edited",
    [("2.10.2", "annotations,commit-metadata", True), ("2.9.4", "annotations", False)],
)
def test_through_the_api_metadata_is_written_where_pachd_has_it(tmp_path, monkeypatch, server, stamped, edited):
    monkeypatch.delenv("PACHCTL_DOUBLE_JOB", raising=False)
    state = tmp_path / "old-cluster"
    state.mkdir()
    srv, port, double = pps_server.start(pps_server.PpsDouble(state=state, version=server))
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"v2": {"active_context": "x", "contexts": {"x": {"pachd_address": f"grpc://127.0.0.1:{port}"}}}})
    )
    monkeypatch.setenv("PACH_CONFIG", str(config))
    try:
        data = run_step("update", context(api_repo(tmp_path / "repo"))).data
    finally:
        srv.stop(grace=None)
    assert data["stamped"] == stamped
    assert data["job_state"] == "JOB_SUCCESS" and "stamp_problem" not in data
    assert ("EditMetadata" in double.calls) is edited


def test_a_job_failing_in_the_cluster_is_seen_through_the_api(tmp_path, pachd):
    (pachd.state / "pachctl_double_job").write_text("JOB_FAILURE:datum 0 failed: exit code 2")
    data = run_step("update", context(api_repo(tmp_path / "repo"))).data
    assert (data["job_state"], data["job_reason"], data["verify"]) == (
        "JOB_FAILURE",
        "datum 0 failed: exit code 2",
        "finished",
    )


def test_verify_per_environment_falls_back_to_the_top_level_keys(tmp_path, pachd):
    (pachd.state / "pachctl_double_job").write_text("JOB_RUNNING")
    repo = api_repo(
        tmp_path / "repo",
        'verify_timeout = 600\n[environments.prod]\nbranches = ["main"]\ncontext = "prod"\nverify_timeout = 1\n',
    )
    data = run_step("update", context(repo)).data
    assert (data["job_state"], data["verify"]) == ("JOB_RUNNING", "timed out after 1s")

    (repo / ".pachhook.toml").write_text(
        'backend = "api"\nverify_timeout = 1\n[environments.prod]\nbranches = ["main"]\ncontext = "prod"\nverify = false\n'
    )
    (repo / "edges" / "pipeline.json").write_text(
        json.dumps({**json.loads((repo / "edges" / "pipeline.json").read_text()), "description": "v2"})
    )
    git(repo, "commit", "-qam", "v2, verify off in prod")
    data = run_step("update", context(repo, job_id=8)).data
    assert data["verify"] == "off" and "job_state" not in data


def test_environment_verify_keys_are_checked(tmp_path):
    from pachhook.core.config import ConfigError, load_config

    repo = api_repo(
        tmp_path / "repo",
        '[environments.prod]\nbranches = ["main"]\nverify = "yes"\nverify_timeout = -3\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(repo)
    assert caught.value.problems == [
        ".pachhook.toml:4: environments.prod.verify: must be true or false",
        ".pachhook.toml:5: environments.prod.verify_timeout: must be a positive number of seconds, not -3",
    ]


# -- reading the cluster through the API ---------------------------------------------------------


def test_inspect_pipeline_ancestry_through_the_api(tmp_path, pachd):
    repo = api_repo(tmp_path / "repo")
    run_step("update", context(repo))
    (repo / "edges" / "pipeline.json").write_text(
        json.dumps({**json.loads((repo / "edges" / "pipeline.json").read_text()), "description": "v2"})
    )
    git(repo, "commit", "-qam", "v2")
    run_step("update", context(repo, job_id=8))
    backend = ApiBackend()
    assert backend.inspect("edges").version == "2"
    assert backend.inspect("edges^1").version == "1" == backend.inspect("edges~1").version
    with pytest.raises(
        BackendError, match='pipeline "default/edges" has only 2 versions, not enough to find ancestor 2'
    ):
        backend.inspect("edges^2")
    with pytest.raises(BackendError, match="cannot inspect future pipelines"):
        backend.inspect("edges.1")


def test_a_newer_commit_applied_during_the_api_update_is_put_back(tmp_path, pachd):
    """The race update.py's _restore_if_overtaken closes, through the API: it reads the
    version below its own with InspectPipeline NAME^1, which the double answers as pachd."""
    repo = api_repo(tmp_path / "repo")
    older = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "newer")
    newer = git(repo, "rev-parse", "HEAD")
    [rendered] = render_template(repo, newer, "edges/pipeline.json", render_values(newer, "main"), digest=DIGEST)
    # Another deliverer applies `newer` after this job's order check, just before its apply.
    pachd.applied_first = rendered.to_json()
    result = run_step("update", context(repo, commit=older, job_id=2))
    assert result.outcome == "superseded", result
    live = ApiBackend().inspect("edges")
    assert live.annotations["pachhook.io/commit"] == newer
    # v1 `newer` (the other deliverer), v2 `older` (this apply), v3 `newer` put back by this job.
    assert live.version == "3"
    sent = [json.loads(r.spec_json)["metadata"]["annotations"]["pachhook.io/commit"] for r in pachd.received]
    assert sent == [older, newer]


def apply(state: Path, name: str, source: str, commit: str, digest: str = PINNED) -> str:
    """A pipeline version made from `commit`, applied in the double's cluster; its job's ID."""
    spec = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": source, "glob": "/*"}},
        "transform": {"image": f"registry.example.com/team/{name}@{digest}", "cmd": ["true"]},
        "metadata": {
            "annotations": {
                "pachhook.io/commit": commit,
                "pachhook.io/template": f"{name}/pipeline.json",
                "pachhook.io/image-digest": digest,
            }
        },
    }
    path = state / f"{name}-spec.json"
    path.write_text(json.dumps(spec))
    pachctl(state, "update", "pipeline", "-f", str(path))
    return raw(state, "inspect", "pipeline", name)["specCommit"]["id"]


def test_provenance_up_the_dag_through_the_api(tmp_path, pachd):
    repo = api_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    pachd.create_repo("images")
    pachd.put_file("images")
    prep = apply(pachd.state, "prep", "images", first)
    (pachd.state / "pachctl_double_image_id").write_text(OTHER)  # the tag was pushed again
    job = apply(pachd.state, "edges", "prep", second)
    out = provenance(repo, f"edges@{job}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"edges@{job}  job success  pipeline edges v1"
    assert f"|  git       {second[:12]} 'second'" in lines
    assert f"|  digest    {PINNED} MISMATCH: Kubernetes ran {OTHER}" in lines
    assert f"`- prep@{prep}  job success  pipeline prep v1" in lines
    assert {"InspectCommit", "InspectJob", "ListDatum", "ListPipeline"} <= set(pachd.calls)
    # A global ID: every job of the commit set (InspectJobSet), downstream first.
    assert provenance(repo, job, "--depth", "0").stdout.startswith(f"edges@{job}")
    # The git side: the versions made from a commit, their jobs (ListJob with every version's).
    apply(pachd.state, "edges", "prep", first)  # a later version from the first commit
    data = json.loads(provenance(repo, second, "--cluster", "--format", "json").stdout)
    [version] = data["versions"]
    assert (version["pipeline"], version["version"], [item["job"] for item in version["jobs"]]) == ("edges", "1", [job])
    assert TOKEN not in out.stdout + out.stderr


def test_cluster_per_environment(tmp_path, pachd, monkeypatch):
    """prod is read through the API (context prod), dev through pachctl (context dev), each in a
    private session; --env picks one, COMMIT --cluster without it reads both."""
    dev_state = tmp_path / "dev-cluster"
    dev_state.mkdir()
    monkeypatch.setenv("PACHCTL_DOUBLE_DIR", str(dev_state))
    monkeypatch.setenv("PATH", os.pathsep.join([str(DOUBLES), os.environ["PATH"]]))
    config = (
        '[environments.prod]\nbranches = ["main"]\ncontext = "prod"\nbackend = "api"\n'
        '[environments.dev]\nbranches = ["dev/*"]\ncontext = "dev"\nbackend = "pachctl"\n'
    )
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": config})
    sha = git(repo, "rev-parse", "HEAD")
    prod_job = apply(pachd.state, "edges", "images", sha)
    dev_job = apply(dev_state, "edges", "images", sha)
    before = len(calls(dev_state))

    out = provenance(repo, sha, "--cluster", "--env", "prod")
    assert out.returncode == 0, out.stderr
    assert f"|- pipeline edges v1 env prod  image registry.example.com/team/edges@{PINNED}" in out.stdout
    assert prod_job in out.stdout and dev_job not in out.stdout
    assert len(calls(dev_state)) == before  # the dev cluster was not asked

    out = provenance(repo, sha, "--cluster", "--env", "dev")
    assert out.returncode == 0, out.stderr
    assert dev_job in out.stdout and prod_job not in out.stdout
    envs = [json.loads(line) for line in (dev_state / "envs.jsonl").read_text().splitlines()][before:]
    assert envs and all(used["PACH_CONTEXT"] == "dev" for used in envs)
    assert all(used["PACH_CONFIG"] != os.environ["PACH_CONFIG"] for used in envs)  # a private copy

    out = provenance(repo, sha, "--cluster")
    assert out.returncode == 0, out.stderr
    assert prod_job in out.stdout and dev_job in out.stdout
    assert "env prod" in out.stdout and "env dev" in out.stdout

    # A tree from one environment's cluster.
    out = provenance(repo, f"edges@{dev_job}", "--env", "dev")
    assert out.returncode == 0 and out.stdout.startswith(f"edges@{dev_job}  job success"), out.stderr

    out = provenance(repo, sha, "--cluster", "--env", "staging")
    assert out.returncode == 2
    assert out.stderr.strip() == "pachhook provenance: no environment named 'staging' (environments: prod, dev)"

    # One environment's cluster down: its line, the other's answer, exit 0.
    pachd.fail = "ListPipeline"
    out = provenance(repo, sha, "--cluster")
    assert out.returncode == 0 and dev_job in out.stdout
    [problem] = out.stderr.strip().splitlines()
    assert (
        problem.startswith("pachhook provenance: env prod: ListPipeline at 127.0.0.1:") and "cannot connect" in problem
    )


def test_a_project_through_the_api_in_both_directions(tmp_path, pachd):
    """An environment delivering to project `vision` through the API, beside a `default/edges`:
    the update is stamped and verified in vision (InspectCommit, EditMetadata and ListJob name
    the project), and provenance reads vision's pipeline both ways, never default's."""
    pachctl(pachd.state, "create", "project", "vision")
    default_job = apply(pachd.state, "edges", "images", "d" * 40)
    default_before = raw(pachd.state, "inspect", "commit", f"edges@{default_job}")
    repo = api_repo(tmp_path / "repo", '[environments.vision]\nbranches = ["main"]\nproject = "vision"\n')
    sha = git(repo, "rev-parse", "HEAD")
    data = run_step("update", context(repo)).data
    assert data["project"] == "vision"
    assert_stamped_and_verified(data, sha, lambda *args: raw(pachd.state, *args, "--project", "vision"))
    assert raw(pachd.state, "inspect", "commit", f"edges@{default_job}") == default_before
    assert "metadata" not in raw(pachd.state, "inspect", "pipeline", "edges")
    job_id = data["cluster_job"].split("@")[1]

    out = provenance(repo, f"edges@{job_id}", "--env", "vision")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"edges@{job_id}  job success  pipeline edges v1  project vision"
    assert f"   git       {sha[:12]} 'edges pipeline'" in out.stdout.splitlines()
    assert provenance(repo, f"edges@{job_id}").returncode == 1  # not default's

    out = provenance(repo, "HEAD", "--cluster", "--format", "json")
    assert out.returncode == 0, out.stderr
    [version] = json.loads(out.stdout)["versions"]
    assert (version["project"], version["version"], [item["job"] for item in version["jobs"]]) == (
        "vision",
        "1",
        [job_id],
    )

"""Environments, the private Pachyderm session, the cluster's order and transactions.

Real git repositories; the cluster is the pachctl TEST DOUBLE (tests/doubles/pachctl), which
reads PACH_CONFIG/PACH_CONTEXT, routes updates into an active transaction and applies a
transaction all or nothing, as pachctl 2.x does.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_update import DIGEST, IMAGE, TEMPLATE, context, double, git, make_repo, received  # noqa: F401

from pachhook.core.config import ConfigError, load_config, load_config_at
from pachhook.core.environments import branch_slug, default_branch, environment_for
from pachhook.deliver.backends.pachctl import Apply, BackendError, PachctlBackend
from pachhook.deliver.backends.session import open_session
from pachhook.deliver.steps.base import StepError, run_step

DOUBLE = Path(__file__).parent / "doubles" / "pachctl"

ENVIRONMENTS = """\
[environments.prod]
branches = ["main"]
context = "prod"

[environments.dev]
branches = ["feature/*", "experiment/*"]
context = "dev"
project = "dev"
pipeline_suffix = "-{{ branch_slug }}"
reprocess = true
"""

USER_CONFIG = {
    "user_id": "u1",
    "v2": {
        "active_context": "prod",
        "contexts": {
            "prod": {"pachd_address": "grpc://prod.example:30650", "session_token": "s3cr3t-token"},
            "dev": {"pachd_address": "grpc://dev.example:30650", "project": "dev"},
        },
    },
}


def write_user_config(data: dict = USER_CONFIG) -> Path:
    path = Path(os.environ["PACH_CONFIG"])
    path.write_text(json.dumps(data, indent=2))
    return path


def pipeline_record(state: Path, name: str, project: str = "default") -> dict:
    folder = state / "pipelines" if project == "default" else state / "pipelines" / project
    return json.loads((folder / f"{name}.json").read_text())


def envs(state: Path) -> list:
    return [json.loads(line) for line in (state / "envs.jsonl").read_text().splitlines()]


# -- configuration -------------------------------------------------------------------


def test_environment_tables_are_read(tmp_path: Path):
    (tmp_path / ".pachhook.toml").write_text(ENVIRONMENTS)
    config = load_config(tmp_path)
    prod, dev = config.environments["prod"], config.environments["dev"]
    assert (prod.branches, prod.context, prod.project, prod.reprocess) == (["main"], "prod", "", None)
    assert (dev.context, dev.project, dev.reprocess) == ("dev", "dev", True)
    assert environment_for(config, "main") is prod
    assert environment_for(config, "feature/Try Sobel") is dev
    assert dev.suffix_for("feature/Try Sobel") == "-feature-try-sobel"
    assert environment_for(config, "release/1") is None
    assert prod.describe() == "env prod (context prod)"
    assert dev.describe() == "env dev (context dev, project dev)"


def test_bad_environment_settings_are_one_line_each(tmp_path: Path):
    (tmp_path / ".pachhook.toml").write_text(
        'branches = ["main"]\n'
        "[environments.a]\n"
        'branches = ["main"]\n'
        'colour = "red"\n'
        'project = "no spaces"\n'
        "[environments.b]\n"
        'branches = ["main"]\n'
        'pipeline_suffix = "-{{ branch }}"\n'
        "[environments.c]\n"
        'context = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    problems = caught.value.problems
    assert all("\n" not in line for line in problems)
    text = "\n".join(problems)
    assert "environments.a.colour: unknown key" in text
    assert "environments.a.project: a Pachyderm project name" in text
    assert "environments.b.pipeline_suffix: may hold letters" in text
    assert "environments.c: needs `branches`" in text
    assert "branch glob 'main' is in environments a and b" in text
    assert "branches: with [environments] configured" in text


def test_a_branch_matching_two_environments_is_a_configuration_error(tmp_path: Path):
    (tmp_path / ".pachhook.toml").write_text(
        '[environments.a]\nbranches = ["feature/*"]\n[environments.b]\nbranches = ["*/sobel"]\n'
    )
    config = load_config(tmp_path)
    with pytest.raises(ConfigError, match="branch feature/sobel matches environments a and b"):
        environment_for(config, "feature/sobel")


def test_without_environments_only_the_default_branch_delivers(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    config = load_config(repo)
    assert environment_for(config, "main", repo).name == "default"
    assert environment_for(config, "experiment/try-sobel", repo) is None
    assert environment_for(config, "", repo) is None


def test_default_branch_origin_head_then_init_default_then_main_or_master(tmp_path: Path):
    upstream = make_repo(tmp_path / "upstream")
    git(upstream, "branch", "-m", "main", "trunk")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
    assert default_branch(clone) == "trunk"  # origin/HEAD
    lone = make_repo(tmp_path / "lone")
    git(lone, "config", "init.defaultBranch", "develop")
    assert default_branch(lone) == "develop"
    git(lone, "config", "--unset", "init.defaultBranch")
    git(lone, "branch", "-m", "main", "master")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(tmp_path / "none"), GIT_CONFIG_NOSYSTEM="1")
    old = os.environ.copy()
    os.environ.update(env)
    try:
        assert default_branch(lone) == "master"
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_branch_slug():
    assert branch_slug("experiment/Try_Sobel!!") == "experiment-try-sobel"
    assert branch_slug("////") == "branch"
    assert len(branch_slug("x" * 100)) == 40


def test_configuration_is_read_from_the_commit(tmp_path: Path):
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'tag = "short"\n'})
    sha = git(repo, "rev-parse", "HEAD")
    (repo / ".pachhook.toml").write_text('tag = "full"\n[images."x"]\nbuild_args = { VARIANT = "uncommitted" }\n')
    assert load_config_at(repo, sha).tag == "short"
    assert load_config_at(repo, sha).images == {}
    assert load_config(repo).tag == "full"


# -- the private session -------------------------------------------------------------


def test_session_holds_only_the_chosen_context_without_a_transaction(tmp_path: Path, monkeypatch):
    data = json.loads(json.dumps(USER_CONFIG))
    data["v2"]["contexts"]["prod"]["active_transaction"] = "user-txn"
    user_file = write_user_config(data)
    before = user_file.read_bytes()
    with open_session() as session:
        private = json.loads(session.config_file.read_text())
        assert private["v2"]["active_context"] == "prod"
        assert list(private["v2"]["contexts"]) == ["prod"]
        assert "active_transaction" not in private["v2"]["contexts"]["prod"]
        assert session.env["PACH_CONFIG"] == str(session.config_file)
        assert session.env["PACH_CONTEXT"] == "prod"
        assert oct(session.config_file.stat().st_mode & 0o777) == "0o600"
    assert not session.config_file.exists()
    monkeypatch.setenv("PACH_CONTEXT", "dev")
    with open_session() as session:
        assert (session.context, session.project) == ("dev", "dev")
    assert user_file.read_bytes() == before


def test_a_missing_context_is_one_line_naming_the_known_ones(tmp_path: Path, monkeypatch):
    write_user_config()
    with pytest.raises(BackendError) as caught:
        open_session("staging")
    message = str(caught.value)
    assert "\n" not in message
    assert "'staging' (from the environment's `context`) is not in" in message
    assert "(contexts there: dev, prod)" in message
    monkeypatch.setenv("PACH_CONTEXT", "nope")
    with pytest.raises(BackendError, match="from PACH_CONTEXT"):
        open_session()


def test_the_double_joins_an_active_transaction_like_pachctl(tmp_path: Path, double):
    """The hazard: with the user's configuration, an update only joins their transaction."""
    write_user_config()
    env = dict(os.environ)
    started = subprocess.run([str(DOUBLE), "start", "transaction"], env=env, capture_output=True, text=True)
    assert started.stdout.startswith('started new transaction: "')
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"pipeline": {"name": "edges"}, "transform": {"image": "x:1"}}))
    backend = PachctlBackend(env=env)
    with pytest.raises(BackendError, match="added the update to transaction .* instead of applying it"):
        backend.update(str(spec), spec.read_text(), False)
    assert not (double / "pipelines" / "edges.json").exists()


def test_a_delivery_never_joins_nor_writes_the_users_configuration(tmp_path: Path, double):
    user_file = write_user_config()
    subprocess.run([str(DOUBLE), "start", "transaction"], env=dict(os.environ), check=True, capture_output=True)
    before = user_file.read_bytes()
    user_txn = json.loads(before)["v2"]["contexts"]["prod"]["active_transaction"]
    repo = make_repo(tmp_path / "repo")
    result = run_step("update", context(repo))
    assert result.outcome == "done"
    assert pipeline_record(double, "edges")["version"] == 1
    assert json.loads((double / "transactions" / f"{user_txn}.json").read_text())["requests"] == []
    assert user_file.read_bytes() == before
    used = [entry for entry in envs(double) if entry["PACH_CONFIG"] != str(user_file)]
    assert used and all(entry["PACH_CONTEXT"] == "prod" for entry in used)
    # the session token stays out of what pachhook records
    assert "s3cr3t-token" not in json.dumps(result.data)


def test_an_environment_delivers_to_its_context_and_project_with_its_suffix(tmp_path: Path, double):
    write_user_config()
    subprocess.run([str(DOUBLE), "create", "project", "dev"], check=True, timeout=60, stdin=subprocess.DEVNULL)
    template = dict(
        TEMPLATE,
        input={"cross": [{"pfs": {"repo": "images", "glob": "/*"}}, {"pfs": {"repo": "montage", "glob": "/"}}]},
    )
    repo = make_repo(tmp_path / "repo", template=template, extra={".pachhook.toml": ENVIRONMENTS})
    (repo / "montage").mkdir()
    (repo / "montage" / "pipeline.json").write_text(
        json.dumps({"pipeline": {"name": "montage"}, "transform": {"image": "busybox:1"}})
    )
    git(repo, "checkout", "-q", "-b", "feature/Try-Sobel")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "montage")
    ctx = context(repo)
    ctx.job.branch = "feature/Try-Sobel"
    result = run_step("update", ctx)
    assert result.outcome == "done"
    assert (result.data["environment"], result.data["pipeline"], result.data["project"]) == (
        "dev",
        "edges-feature-try-sobel",
        "dev",
    )
    record = pipeline_record(double, "edges-feature-try-sobel", "dev")
    spec = record["spec"]
    assert spec["pipeline"] == {"name": "edges-feature-try-sobel", "project": {"name": "dev"}}
    # the DAG's own pipeline is renamed, the data repo is not; the mount name stays
    assert spec["input"]["cross"] == [
        {"pfs": {"repo": "images", "glob": "/*"}},
        {"pfs": {"repo": "montage-feature-try-sobel", "glob": "/", "name": "montage"}},
    ]
    assert spec["metadata"]["annotations"]["pachhook.io/environment"] == "dev"
    assert spec["metadata"]["annotations"]["pachhook.io/context"] == "dev"
    assert record["reprocess"] is True
    assert envs(double)[-1]["PACH_CONTEXT"] == "dev"
    assert not (double / "pipelines" / "edges.json").exists()


def test_a_project_the_cluster_does_not_have_fails_in_one_line_and_applies_nothing(tmp_path: Path, double):
    """pachd creates a pipeline's output repo in its project, which must exist
    (ErrProjectNotFound); pachhook says so in one line and applies nothing."""
    write_user_config()
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": ENVIRONMENTS})
    git(repo, "checkout", "-q", "-b", "feature/x")
    ctx = context(repo)
    ctx.job.branch = "feature/x"
    with pytest.raises(StepError) as caught:
        run_step("update", ctx)
    assert str(caught.value).splitlines() == ['pachctl update pipeline failed: project "dev" not found']
    assert not (double / "pipelines" / "dev").exists() and not (double / "pipelines" / "edges.json").exists()


def test_a_cluster_with_another_deployment_id_is_refused(tmp_path: Path, double, monkeypatch):
    write_user_config()
    repo = make_repo(
        tmp_path / "repo",
        extra={
            ".pachhook.toml": ENVIRONMENTS.replace(
                'context = "prod"\n', 'context = "prod"\ndeployment_id = "prod-cluster-7"\n', 1
            )
        },
    )
    monkeypatch.setenv("PACHCTL_DOUBLE_DEPLOYMENT_ID", "someone-elses-cluster")
    with pytest.raises(StepError, match="deployment ID is someone-elses-cluster, not prod-cluster-7"):
        run_step("update", context(repo))
    assert not (double / "pipelines" / "edges.json").exists()
    monkeypatch.setenv("PACHCTL_DOUBLE_DEPLOYMENT_ID", "prod-cluster-7")
    assert run_step("update", context(repo)).outcome == "done"


# -- the cluster decides the order -----------------------------------------------------


def second_commit(repo: Path, description: str = "v2") -> str:
    (repo / "edges" / "pipeline.json").write_text(json.dumps(dict(TEMPLATE, description=description)))
    git(repo, "commit", "-q", "-am", description)
    return git(repo, "rev-parse", "HEAD")


def test_an_older_commit_never_replaces_a_newer_one(tmp_path: Path, double):
    repo = make_repo(tmp_path / "repo")
    old = git(repo, "rev-parse", "HEAD")
    new = second_commit(repo)
    assert run_step("update", context(repo, new)).outcome == "done"
    logs: list = []
    late = run_step("update", context(repo, old, logs=logs, job_id=8))
    assert late.outcome == "superseded"
    assert late.message == f"the live pipeline runs {new[:12]}, a newer commit"
    assert late.data["live_commit"] == new
    assert pipeline_record(double, "edges")["version"] == 1
    assert pipeline_record(double, "edges")["spec"]["metadata"]["annotations"]["pachhook.io/commit"] == new


def test_a_live_commit_unknown_or_on_another_line_is_refused_unless_forced(tmp_path: Path, double):
    repo = make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD")
    other = second_commit(repo, "on another line")
    assert run_step("update", context(repo, other)).outcome == "done"
    git(repo, "reset", "-q", "--hard", base)
    mine = second_commit(repo, "mine")
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo, mine, job_id=8))
    assert str(caught.value) == (
        f"edges in env default (context default, project default): refused: the live pipeline runs commit"
        f" {other[:12]}, which is not an ancestor of {mine[:12]} (a force push, or another branch delivered"
        " there); `pachhook run --force` overrides"
    )
    assert caught.value.retryable is False
    # unknown to this clone (no remote to fetch from)
    record_path = double / "pipelines" / "edges.json"
    record = json.loads(record_path.read_text())
    record["spec"]["metadata"]["annotations"]["pachhook.io/commit"] = "f" * 40
    record_path.write_text(json.dumps(record))
    with pytest.raises(StepError, match=f"runs commit {'f' * 12}, unknown to this clone"):
        run_step("update", context(repo, mine, job_id=9))
    ctx = context(repo, mine, job_id=10)
    ctx.force = True
    forced = run_step("update", ctx)
    assert forced.outcome == "done"
    assert forced.data["forced"].startswith("forced: the live pipeline runs commit ffffffffffff")


def test_an_unknown_live_commit_is_fetched_once_from_the_branch_remote(tmp_path: Path, double):
    upstream = make_repo(tmp_path / "upstream")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
    git(clone, "config", "user.email", "t@example.com")
    git(clone, "config", "user.name", "Test")
    mine = git(clone, "rev-parse", "HEAD")
    theirs = second_commit(upstream, "pushed by a teammate")
    assert run_step("update", context(upstream, theirs)).outcome == "done"
    logs: list = []
    result = run_step("update", context(clone, mine, logs=logs, job_id=8))
    assert result.outcome == "superseded"
    assert any(f"live commit {theirs[:12]} is not in this clone: fetched main from origin" in line for line in logs)


def test_an_identical_spec_is_not_applied_again(tmp_path: Path, double):
    fixed = dict(TEMPLATE, transform={"image": "busybox:1.36", "cmd": ["true"]}, description="fixed")
    repo = make_repo(tmp_path / "repo", template=fixed)
    assert run_step("update", context(repo, with_image=False)).outcome == "done"
    (repo / "README.md").write_text("docs\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "docs")
    result = run_step("update", context(repo, with_image=False, job_id=8))
    assert result.outcome == "unchanged"
    assert pipeline_record(double, "edges")["version"] == 1


def test_a_cancel_before_the_apply_applies_nothing_and_during_it_is_recorded(tmp_path: Path, double):
    repo = make_repo(tmp_path / "repo")
    ctx = context(repo)
    ctx.is_cancelled = lambda: True
    assert run_step("update", ctx).outcome == "cancelled"
    assert not (double / "pipelines" / "edges.json").exists()
    answers = iter([False, True])
    ctx = context(repo)
    ctx.is_cancelled = lambda: next(answers)
    result = run_step("update", ctx)
    assert result.outcome == "done" and result.data["late_cancel"] == "1"
    assert pipeline_record(double, "edges")["version"] == 1


# -- transactions ------------------------------------------------------------------------


def specs_on_disk(tmp_path: Path, *names: str) -> list:
    applies = []
    for name in names:
        path = tmp_path / f"{name}.json"
        spec = {"pipeline": {"name": name}, "transform": {"image": f"{name}:1"}}
        path.write_text(json.dumps(spec))
        applies.append(Apply(name, str(path), path.read_text()))
    return applies


def test_a_commits_pipelines_are_applied_in_one_transaction(tmp_path: Path, double):
    with open_session() as session:
        backend = PachctlBackend(session=session)
        logs: list = []
        backend.apply_all(specs_on_disk(tmp_path, "edges", "montage"), logs.append)
    assert [pipeline_record(double, n)["version"] for n in ("edges", "montage")] == [1, 1]
    assert pipeline_record(double, "edges")["spec_commit"] == pipeline_record(double, "montage")["spec_commit"]
    assert logs and logs[0].startswith("transaction ")


def test_one_failing_request_applies_none_of_the_transaction(tmp_path: Path, double, monkeypatch):
    # Refused when run at `finish transaction` (the cluster changed after the updates were added).
    monkeypatch.setenv("PACHCTL_DOUBLE_REFUSE_AT_FINISH", "montage:montage: input repo missing")
    with open_session() as session:
        backend = PachctlBackend(session=session)
        with pytest.raises(BackendError) as caught:
            backend.apply_all(specs_on_disk(tmp_path, "edges", "montage"))
        assert "nothing applied: error running request 2 of 2: montage: input repo missing" in str(caught.value)
        assert "active_transaction" not in session.context_data()
    assert not (double / "pipelines" / "edges.json").exists()
    assert list((double / "transactions").iterdir()) == []
    # Refused already when added: pachd dry-runs the transaction with each new request.
    monkeypatch.delenv("PACHCTL_DOUBLE_REFUSE_AT_FINISH")
    monkeypatch.setenv("PACHCTL_DOUBLE_REFUSE", "montage:montage: input repo missing")
    with open_session() as session:
        with pytest.raises(BackendError) as caught:
            PachctlBackend(session=session).apply_all(specs_on_disk(tmp_path, "edges", "montage"))
    assert str(caught.value) == (
        "montage: pachctl update pipeline failed: error running request 2 of 2: montage: input repo missing"
    )
    assert not (double / "pipelines" / "edges.json").exists()
    assert list((double / "transactions").iterdir()) == []

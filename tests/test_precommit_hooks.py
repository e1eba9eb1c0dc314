"""pachhook's hooks under the real pre-commit framework.

The hook repository is a local clone of this checkout pinned to its HEAD commit, exactly
as a user's `.pre-commit-config.yaml` would pin a release; PRE_COMMIT_HOME is a session
temporary folder, so the framework builds pachhook's environment once (with pip, which
needs the package index) and every test reuses it. Uncommitted changes of the checkout
are not part of the clone: commit before running these.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gitutil import CHECKOUT, Repo, commit_at_once, git_env, live_jobs, make_repo, run, template

BROKEN = template("edges").replace('"pipeline": {', '"pipeline": {\n    "colour": "blue",', 1)


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("pre-commit")
    env = git_env(base / "home")
    clone = base / "pachhook-clone"
    run(["git", "clone", "-q", str(CHECKOUT), str(clone)], base, env)
    rev = run(["git", "rev-parse", "HEAD"], clone, env).stdout.strip()
    return {"path": clone, "rev": rev, "home": base / "pre-commit-home"}


def framework_repo(tmp_path: Path, hook_repo: dict, name: str = "repo") -> Repo:
    repo = make_repo(tmp_path, name=name)
    repo.env["PRE_COMMIT_HOME"] = str(hook_repo["home"])
    repo.write(
        ".pre-commit-config.yaml",
        (
            "repos:\n"
            f"- repo: {hook_repo['path']}\n"
            f"  rev: {hook_repo['rev']}\n"
            "  hooks:\n"
            "  - id: pachhook-validate\n"
            "  - id: pachhook-queue\n"
            "  - id: pachhook-check-push\n"
        ),
    )
    proc = repo.pachhook("install")
    assert proc.returncode == 0, proc.stderr
    assert "pre-commit installed at .git/hooks/post-commit" in proc.stdout
    # The first commit through the framework builds its environment (once per session).
    run(["git", "add", "."], repo.path, repo.env)
    run(["git", "commit", "-qm", "pre-commit configuration"], repo.path, repo.env, timeout=900)
    return repo


def commit(repo: Repo, message: str, *extra: str) -> str:
    run(["git", "add", "."], repo.path, repo.env)
    run(["git", "commit", "-qm", message, *extra], repo.path, repo.env, timeout=300)
    return repo.git("rev-parse", "HEAD")


def test_commit_queues_and_a_commit_touching_nothing_does_not(tmp_path: Path, hook_repo: dict):
    repo = framework_repo(tmp_path, hook_repo)
    first = repo.git("rev-parse", "HEAD")
    assert sorted((j["pipeline"], j["commit"]) for j in live_jobs(repo)) == [("edges", first), ("montage", first)]
    repo.write("edges/run.sh", "echo changed\n")
    second = commit(repo, "edges")
    assert [(j["pipeline"], j["commit"], j["state"]) for j in live_jobs(repo) if j["commit"] == second] == [
        ("edges", second, "queued")
    ]
    repo.write("README.md", "more words\n")
    commit(repo, "docs")
    assert len(live_jobs(repo)) == 3


def test_pre_commit_stage_refuses_a_broken_template(tmp_path: Path, hook_repo: dict):
    repo = framework_repo(tmp_path, hook_repo)
    repo.write("edges/pipeline.json", BROKEN)
    run(["git", "add", "."], repo.path, repo.env)
    proc = run(["git", "commit", "-qm", "broken"], repo.path, repo.env, check=False, timeout=300)
    assert proc.returncode != 0
    shown = proc.stdout + proc.stderr  # git hands hook output to stderr
    assert "edges/pipeline.json:3:" in shown and "colour" in shown


def test_push_with_a_broken_middle_commit_is_refused_and_a_valid_one_goes_through(tmp_path: Path, hook_repo: dict):
    repo = framework_repo(tmp_path, hook_repo)
    repo.add_origin(tmp_path / "origin.git")
    run(["git", "push", "-q", "origin", "main"], repo.path, repo.env, timeout=300)
    before = repo.git("rev-parse", "origin/main")
    repo.write("edges/run.sh", "echo 1\n")
    commit(repo, "fine")
    repo.write("edges/pipeline.json", BROKEN)
    middle = commit(repo, "broken", "--no-verify")
    repo.write("edges/pipeline.json", template("edges"))
    commit(repo, "fixed")
    proc = run(["git", "push", "origin", "main"], repo.path, repo.env, check=False, timeout=300)
    assert proc.returncode != 0
    assert f"{middle[:12]}:edges/pipeline.json:3:" in proc.stdout + proc.stderr
    assert repo.git("ls-remote", "origin", "refs/heads/main").split()[0] == before
    repo.git("reset", "-q", "--hard", before)
    repo.write("montage/run.sh", "echo 2\n")
    good = commit(repo, "fine again")
    proc = run(["git", "push", "origin", "main"], repo.path, repo.env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert repo.git("ls-remote", "origin", "refs/heads/main").split()[0] == good


def test_first_push_of_a_new_repository_checks_all_its_history(tmp_path: Path, hook_repo: dict):
    # The pushed history reaches the root commit: pre-commit then sets no FROM/TO refs.
    repo = framework_repo(tmp_path, hook_repo)
    repo.add_origin(tmp_path / "origin.git")
    repo.write("edges/pipeline.json", BROKEN)
    bad = commit(repo, "broken", "--no-verify")
    repo.write("edges/pipeline.json", template("edges"))
    commit(repo, "fixed")
    proc = run(["git", "push", "origin", "main"], repo.path, repo.env, check=False, timeout=300)
    assert proc.returncode != 0
    assert f"{bad[:12]}:edges/pipeline.json:3:" in proc.stdout + proc.stderr
    assert repo.git("ls-remote", "origin") == ""


def test_rebase_replaying_20_commits_leaves_one_live_job_per_pipeline(tmp_path: Path, hook_repo: dict):
    repo = framework_repo(tmp_path, hook_repo)
    config = repo.path / ".pachhook.toml"  # the feature branch delivers too (default: main only)
    config.write_text((config.read_text() if config.exists() else "") + 'branches = ["main", "feature"]\n')
    commit(repo, "deliver feature too", "--no-verify")
    repo.git("checkout", "-q", "-b", "feature")
    for number in range(20):
        repo.write("edges/run.sh", f"echo edges {number}\n")
        repo.write("montage/run.sh", f"echo montage {number}\n")
        commit(repo, f"feature {number}", "--no-verify")  # post-commit runs even so
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "main moved on\n")
    commit(repo, "main", "--no-verify")
    repo.git("checkout", "-q", "feature")
    run(["git", "rebase", "-q", "main"], repo.path, repo.env, timeout=600)
    rebased = repo.git("rev-list", "main..feature").split()
    assert len(rebased) == 20
    feature = [j for j in live_jobs(repo) if j["branch"] == "feature"]
    live = [j for j in feature if j["state"] in ("queued", "running")]
    assert sorted((j["pipeline"], j["commit"]) for j in live) == [("edges", rebased[0]), ("montage", rebased[0])]
    assert set(rebased[1:]) <= {j["commit"] for j in feature if j["state"] == "superseded"}


def test_two_worktrees_committing_at_once_lose_nothing(tmp_path: Path, hook_repo: dict):
    repo = framework_repo(tmp_path, hook_repo)
    config = repo.path / ".pachhook.toml"  # both worktrees' branches deliver (default: main only)
    config.write_text((config.read_text() if config.exists() else "") + 'branches = ["left", "right"]\n')
    commit(repo, "deliver left and right", "--no-verify")
    trees = {}
    for name in ("left", "right"):
        repo.git("worktree", "add", "-q", "-b", name, str(tmp_path / name))
        trees[name] = Repo(tmp_path / name, repo.env)
    made = commit_at_once(trees, {"left": "edges", "right": "montage"}, 8, commit)
    jobs = live_jobs(repo)
    for name, pipeline in (("left", "edges"), ("right", "montage")):
        recorded = sorted(j["commit"] for j in jobs if j["branch"] == name and j["pipeline"] == pipeline)
        assert recorded == sorted(made[name])

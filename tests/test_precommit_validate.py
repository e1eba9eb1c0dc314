"""The pachhook-validate hook under the real pre-commit framework, in a real git repository.

pre-commit installs pachhook from a local clone of this checkout (a commit made in the
clone from the working tree, so uncommitted work is what gets tested) into its own venv,
with pip and the configured package index, exactly as a user's machine would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

IDENTITY = {
    "GIT_AUTHOR_NAME": "pachhook test",
    "GIT_AUTHOR_EMAIL": "test@pachhook.invalid",
    "GIT_COMMITTER_NAME": "pachhook test",
    "GIT_COMMITTER_EMAIL": "test@pachhook.invalid",
}

TEMPLATE = """{
  "pipeline": {"name": "edges"},
  "transform": {
    "image": "registry.example.com/team/edges:{{ tag }}",
    "cmd": ["sh", "/edges.sh"]
  },
  "input": {"pfs": {"repo": "images", "glob": "/*"}}
}
"""


def git(*args: str, cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check)


def snapshot_of_checkout(destination: Path, env: dict) -> str:
    """Clone this checkout and commit its working tree there; returns that commit's SHA."""
    git("clone", "--quiet", "--no-hardlinks", str(REPO), str(destination), cwd=REPO, env=env)
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=REPO, env=env)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        target = destination / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif not source.exists() and target.exists():
            target.unlink()  # deleted in the working tree
    git("add", "-A", cwd=destination, env=env)
    git("commit", "-q", "--allow-empty", "-m", "working tree under test", cwd=destination, env=env)
    return git("rev-parse", "HEAD", cwd=destination, env=env).stdout.strip()


@pytest.fixture(scope="module")
def hook_project(tmp_path_factory):
    base = tmp_path_factory.mktemp("precommit")
    env = dict(os.environ, **IDENTITY)
    env["PRE_COMMIT_HOME"] = str(base / "pre-commit-home")
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    sha = snapshot_of_checkout(base / "pachhook", env)
    project = base / "project"
    project.mkdir()
    git("init", "-q", "-b", "main", cwd=project, env=env)
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {base / 'pachhook'}\n    rev: {sha}\n    hooks:\n      - id: pachhook-validate\n"
    )
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"], cwd=project, env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # build the hook's environment once (pip install of the clone, offline via the mirror)
    ready = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install-hooks"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ready.returncode == 0, ready.stdout + ready.stderr
    return project, env


def commit_count(project: Path, env: dict) -> int:
    result = git("rev-list", "--count", "HEAD", cwd=project, env=env, check=False)
    return int(result.stdout) if result.returncode == 0 else 0


def test_bad_template_blocks_the_commit_and_a_fixed_one_goes_through(hook_project):
    project, env = hook_project
    template = project / "edges" / "pipeline.json"
    template.parent.mkdir(exist_ok=True)
    template.write_text(TEMPLATE.replace("{{ tag }}", "{{ sha }}"))
    git("add", ".", cwd=project, env=env)
    refused = git("commit", "-m", "bad template", cwd=project, env=env, check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "validate Pachyderm pipeline templates" in output and "Failed" in output
    assert "edges/pipeline.json:4:5: error: unknown placeholder {{ sha }}" in output
    assert commit_count(project, env) == 0

    template.write_text(TEMPLATE)
    git("add", ".", cwd=project, env=env)
    made = git("commit", "-m", "good template", cwd=project, env=env, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "validate Pachyderm pipeline templates" in made.stdout + made.stderr
    assert commit_count(project, env) == 1


def test_files_that_are_not_templates_are_not_passed(hook_project):
    project, env = hook_project
    (project / "notes.json").write_text("{ this is not json, and not a template")
    git("add", ".", cwd=project, env=env)
    made = git("commit", "-m", "notes", cwd=project, env=env, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "(no files to check)Skipped" in (made.stdout + made.stderr).replace(".", "")


def test_manual_run_over_all_files_reports_every_template(hook_project):
    project, env = hook_project
    broken = project / "montage" / "montage.pipeline.yaml"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text("pipeline:\n  name: montage\ntransform:\n  image: x:{{ tag }}\n  env: &e {}\n")
    git("add", ".", cwd=project, env=env)  # --all-files means every file git knows
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--hook-stage", "manual"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "montage/montage.pipeline.yaml:5:8: error: YAML anchors and aliases" in result.stdout


def test_pre_push_refuses_a_bad_template_committed_without_hooks(hook_project, tmp_path):
    project, env = hook_project
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path, env=env)
    git("remote", "add", "origin", str(remote), cwd=project, env=env, check=False)
    git("remote", "set-url", "origin", str(remote), cwd=project, env=env)
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "-t", "pre-push"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    git("reset", "-q", cwd=project, env=env)  # leave nothing staged by earlier tests
    late = project / "late" / "pipeline.json"
    late.parent.mkdir(exist_ok=True)
    late.write_text(TEMPLATE.replace('"glob": "/*"', '"glob": "/*", "glob": "/"'))
    git("add", str(late), cwd=project, env=env)
    git("commit", "-q", "--no-verify", "-m", "skipped the pre-commit hook", cwd=project, env=env)
    pushed = git("push", "origin", "HEAD:refs/heads/main", cwd=project, env=env, check=False)
    output = pushed.stdout + pushed.stderr
    assert pushed.returncode != 0, output
    assert "late/pipeline.json:7:53: error: duplicate key 'glob'" in output, output
    assert git("branch", "--list", cwd=remote, env=env).stdout == ""  # nothing arrived

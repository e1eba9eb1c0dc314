"""Files named like templates by the conventions count only when they look like pipeline specs.

A real repository with the examples, a Buildkite `.buildkite/pipeline.yml` and an
application's `pipeline.yaml`; real git and pre-commit (hooks written by `pachhook init`).
"""

from __future__ import annotations

import json

import pytest
from gitutil import examples_project, run, terminal_env
from gitutil import pachhook_module as pachhook

BUILDKITE = "steps:\n  - label: test\n    command: make test\n  - wait\n"
APP = "pipeline:\n  name: nightly-report\nstages: [extract, load]\n"


@pytest.fixture
def env(tmp_path):
    return terminal_env(tmp_path)


@pytest.fixture
def project(tmp_path, env):
    folder = examples_project(tmp_path / "project", env)
    (folder / ".buildkite").mkdir()
    (folder / ".buildkite" / "pipeline.yml").write_text(BUILDKITE)
    (folder / "app").mkdir()
    (folder / "app" / "pipeline.yaml").write_text(APP)
    return folder


def test_foreign_pipeline_files_never_refuse_a_commit(project, env):
    init = pachhook("init", cwd=project, env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    assert "found edges/pipeline.json" in init.stdout and "found montage/montage.pipeline.yaml" in init.stdout
    assert ".buildkite" not in init.stdout and "app/pipeline.yaml" not in init.stdout

    run(["git", "add", "-A"], project, env)
    first = run(["git", "commit", "-m", "everything"], project, env, check=False, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "queued" in first.stderr and "for edges, montage" in first.stderr
    (project / "README.md").write_text("docs only\n")
    (project / ".buildkite" / "pipeline.yml").write_text(BUILDKITE + "  - label: lint\n    command: make lint\n")
    run(["git", "add", "-A"], project, env)
    second = run(["git", "commit", "-m", "readme and ci"], project, env, check=False, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "it changes no pipeline's template" in second.stderr
    assert "skipped" not in second.stdout + second.stderr  # no note without --verbose

    jobs = json.loads(pachhook("status", "--format", "json", cwd=project, env=env).stdout)["jobs"]
    assert sorted(job["pipeline"] for job in jobs) == ["edges", "montage"]

    quiet = pachhook("validate", cwd=project, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "pachhook: 0 errors, 0 warnings in 2 files\n"
    noted = pachhook("validate", "--verbose", cwd=project, env=env)
    assert noted.returncode == 0
    for path in (".buildkite/pipeline.yml", "app/pipeline.yaml"):
        assert (
            f"pachhook: {path}: named like a pipeline template but holds no pipeline spec"
            " (no pipeline.name with transform, spout or service): skipped" in noted.stderr
        )

    remote = project.parent / "remote.git"
    run(["git", "init", "-q", "--bare", str(remote)], project, env)
    run(["git", "remote", "add", "origin", str(remote)], project, env)
    direct = pachhook(
        "check-push", cwd=project, env=dict(env, PRE_COMMIT_TO_REF="HEAD", PRE_COMMIT_REMOTE_NAME="origin")
    )
    assert "pachhook check-push: 2 commit(s), 2 template(s): all valid" in direct.stdout, direct.stdout + direct.stderr
    pushed = run(["git", "push", "-q", "origin", "main"], project, env, check=False, timeout=300)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "validate pipeline templates in every pushed commit" in pushed.stdout and "Failed" not in pushed.stdout


def test_a_configured_template_is_checked_whatever_it_holds(project, env):
    (project / ".pachhook.toml").write_text(
        'worker = "manual"\ntemplates = ["**/pipeline.json", "**/*.pipeline.yaml", "app/pipeline.yaml"]\n'
    )
    init = pachhook("init", cwd=project, env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    run(["git", "add", "-A"], project, env)
    refused = run(["git", "commit", "-m", "app spec"], project, env, check=False, timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "app/pipeline.yaml:3:1: error: unknown field 'stages'" in refused.stdout + refused.stderr
    assert ".buildkite/pipeline.yml" not in refused.stdout + refused.stderr

"""The CI recipes under docs/recipes/ are linted as CI would read them: actionlint and zizmor
for the GitHub workflows, GitLab's CI schema (check-jsonschema) for .gitlab-ci.yml. Each
linter is also shown a broken copy, so a linter that passes everything cannot hide here."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes"
WORKFLOWS = sorted((RECIPES / "github").glob("*.yml"))
GITLAB = RECIPES / "gitlab" / ".gitlab-ci.yml"


def _tool(name: str) -> str:
    """The linter from the test venv (setup.cfg's test extra), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _lint(argv: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def _broken_copy(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text
    target = tmp_path / source.name
    target.write_text(text.replace(old, new, 1))
    return target


def test_recipes_exist():
    assert [p.name for p in WORKFLOWS] == ["deliver-dev.yml", "deliver-production.yml", "pull-request.yml"]
    assert GITLAB.is_file()


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_accepts_workflow(workflow):
    result = _lint([_tool("actionlint"), "-no-color", str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_refuses_broken_workflow(tmp_path):
    broken = _broken_copy(tmp_path, RECIPES / "github" / "deliver-production.yml", "runs-on:", "run-on:")
    result = _lint([_tool("actionlint"), "-no-color", str(broken)])
    assert result.returncode == 1
    assert "run-on" in result.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_finds_nothing(workflow):
    result = _lint([_tool("zizmor"), "--offline", "--no-progress", str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_refuses_persisted_credentials_and_unpinned_action(tmp_path):
    source = RECIPES / "github" / "deliver-production.yml"
    # without the line, checkout's default keeps the token in .git/config
    broken = _broken_copy(tmp_path, source, "          persist-credentials: false\n", "")
    result = _lint([_tool("zizmor"), "--offline", "--no-progress", str(broken)])
    assert result.returncode != 0 and "artipacked" in result.stdout
    (tmp_path / "unpinned").mkdir()
    unpinned = _broken_copy(
        tmp_path / "unpinned",
        source,
        "actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b",
        "actions/setup-python@v5",
    )
    result = _lint([_tool("zizmor"), "--offline", "--no-progress", str(unpinned)])
    assert result.returncode != 0 and "unpinned-uses" in result.stdout


def test_gitlab_schema_accepts_recipe():
    result = _lint([_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(GITLAB)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_refuses_broken_recipe(tmp_path):
    broken = _broken_copy(tmp_path, GITLAB, "resource_group: pachhook-production", "resource_group: [production]")
    result = _lint([_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(broken)])
    assert result.returncode == 1
    assert "resource_group" in result.stdout


# What the linters cannot know: the recipes' own promises (docs/ci.md).


@pytest.mark.parametrize(
    "name, environment, branches",
    [("deliver-production.yml", "production", ["main"]), ("deliver-dev.yml", "dev", ["feature/**"])],
)
def test_deliver_workflow_one_environment_serialized_never_cancelled(name, environment, branches):
    workflow = yaml.safe_load((RECIPES / "github" / name).read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as the boolean true
    assert triggers == {"push": {"branches": branches}}
    assert workflow["concurrency"] == {"group": f"pachhook-{environment}"}
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert job["environment"] == environment
    runs = [step.get("run", "") for step in job["steps"]]
    assert any('pachhook run --commit "$GITHUB_SHA"' in run for run in runs)
    assert all("${{" not in run for run in runs)  # expressions reach scripts through env only


def test_pull_request_workflow_only_validates_and_plans():
    workflow = yaml.safe_load((RECIPES / "github" / "pull-request.yml").read_text())
    assert list(workflow[True]) == ["pull_request"]
    text = (RECIPES / "github" / "pull-request.yml").read_text()
    assert "pachhook validate" in text and "pachhook plan" in text
    assert "run --commit" not in text and "secrets." not in text


def test_gitlab_jobs_one_resource_group_per_environment():
    jobs = yaml.safe_load(GITLAB.read_text())
    assert jobs["deliver-production"]["resource_group"] == "pachhook-production"
    assert jobs["deliver-production"]["rules"] == [{"if": '$CI_COMMIT_BRANCH == "main"'}]
    assert jobs["deliver-dev"]["resource_group"] == "pachhook-dev"
    assert jobs["plan"]["script"] == ["pachhook validate", "pachhook plan"]
    assert jobs["plan"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]

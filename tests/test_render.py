"""`pachhook render` as a user runs it: a real repository, the real command, its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_update import IMAGE, TEMPLATE, git, make_repo


def render(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "render", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_renders_head_with_the_commit_values_and_annotations(tmp_path):
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    out = render(repo, "edges/pipeline.json")
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)
    assert spec["transform"]["image"] == f"{IMAGE}:{sha}"
    assert spec["description"] == f"built from main at {sha[:7]}"
    assert spec["metadata"]["annotations"] == {
        "team": "vision",
        "pachhook.io/commit": sha,
        "pachhook.io/template": "edges/pipeline.json",
    }
    assert out.stderr == ""


def test_renders_an_older_commit_from_git_not_the_work_tree(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "edges" / "pipeline.json").write_text(json.dumps(dict(TEMPLATE, description="second")))
    git(repo, "commit", "-q", "-am", "second")
    (repo / "edges" / "pipeline.json").write_text(json.dumps(dict(TEMPLATE, description="dirty")))
    out = render(repo / "edges", "pipeline.json", "--commit", first[:10], "--branch", "release")
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)
    assert spec["description"] == f"built from release at {first[:7]}"
    assert spec["transform"]["image"] == f"{IMAGE}:{first}"


def test_short_tag_form_from_the_configuration(tmp_path):
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'tag = "short"\n'})
    sha = git(repo, "rev-parse", "HEAD")
    spec = json.loads(render(repo, "edges/pipeline.json", "--no-annotations").stdout)
    assert spec["transform"]["image"] == f"{IMAGE}:{sha[:7]}"
    assert spec["metadata"]["annotations"] == {"team": "vision"}


def test_several_pipelines_print_a_list(tmp_path):
    repo = make_repo(tmp_path / "repo")
    second = dict(TEMPLATE, pipeline={"name": "counts"}, input={"pfs": {"repo": "edges", "glob": "/"}})
    (repo / "both.pipeline.yaml").write_text(json.dumps(TEMPLATE) + "\n---\n" + json.dumps(second) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two")
    specs = json.loads(render(repo, "both.pipeline.yaml").stdout)
    assert [spec["pipeline"]["name"] for spec in specs] == ["edges", "counts"]


def test_a_template_that_does_not_render_is_one_line_per_problem(tmp_path):
    bad = dict(TEMPLATE, description="{{ sha }}")
    repo = make_repo(tmp_path / "repo", template=bad)
    out = render(repo, "edges/pipeline.json")
    assert out.returncode == 1
    assert out.stdout == ""
    [line] = out.stderr.splitlines()
    assert line.startswith("edges/pipeline.json:5:3: ")
    assert "unknown placeholder {{ sha }}" in line


def test_rendered_spec_is_validated(tmp_path):
    bad = dict(TEMPLATE, datum_timeout="1h")
    repo = make_repo(tmp_path / "repo", template=bad)
    out = render(repo, "edges/pipeline.json")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "datum_timeout" in out.stderr


def test_unknown_revision_and_missing_template(tmp_path):
    repo = make_repo(tmp_path / "repo")
    out = render(repo, "edges/pipeline.json", "--commit", "no-such-branch")
    assert out.returncode == 2
    assert out.stderr.strip() == "pachhook render: unknown revision 'no-such-branch'"
    (repo / "new.pipeline.json").write_text(json.dumps(TEMPLATE))
    out = render(repo, "new.pipeline.json")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("new.pipeline.json: not in commit ")

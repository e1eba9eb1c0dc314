"""CI-native output of `pachhook run --commit`: the GitHub Actions job summary and annotations,
and `--format json`. Real repositories, Docker engine and registry; the pachctl TEST DOUBLE."""

from __future__ import annotations

import json

import pytest
from gitutil import pachhook_run as run
from test_deliver import two_pipelines  # noqa: F401 (a fixture)
from test_update import double, git  # noqa: F401 (double is a fixture)

from pachhook.deliver import cireport


def test_workflow_command_escaping_follows_github():
    # actions/toolkit core/src/command.ts: escapeData and escapeProperty
    assert cireport.escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert cireport.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_annotation_names_file_and_line_and_escapes_them():
    report = cireport.RunReport()
    report.add_problems(
        ["odd, name: dir/p.json: line 3: bad value: 50%", "a.yaml: defined twice", "dependency cycle: a -> b -> a"]
    )
    assert cireport.workflow_commands(report) == [
        "::error file=odd%2C name%3A dir/p.json,line=3,title=pachhook::bad value: 50%25",
        "::error file=a.yaml,title=pachhook::defined twice",
        "::error title=pachhook::dependency cycle: a -> b -> a",
    ]


def test_summary_cells_cannot_break_the_table():
    report = cireport.RunReport(commit="a" * 40, branch="main", status=1)
    report.add_pipeline("p", "t.json", {}, {"build": "failed"}, {"build": 1.0}, "build: x | y \x1b[31m`z`\nw")
    table_row = [line for line in cireport.markdown(report, {}).splitlines() if line.startswith("| p |")]
    assert table_row == ["| p | - | - | `-` | 1.0s | - | - | build: x \\| y 'z' w |"]


def test_template_problem_becomes_an_annotation(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    (repo / "edges").mkdir()
    (repo / "edges" / "pipeline.json").write_text('{\n  "pipeline": {"name": "edges"},\n  "transform": [\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "broken")
    summary = tmp_path / "summary.md"
    out = run(repo, "--commit", "HEAD", GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    assert out.returncode == 1
    errors = [line for line in out.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith("::error file=edges/pipeline.json,line=")
    assert "### pachhook: failed" in summary.read_text()
    assert "edges/pipeline.json" in summary.read_text()

    # elsewhere: no workflow commands, and --format json is one document
    plain = run(repo, "--commit", "HEAD", "--format", "json")
    assert plain.returncode == 1
    document = json.loads(plain.stdout)
    assert document["status"] == 1
    assert document["problems"][0]["file"] == "edges/pipeline.json"
    assert "::error" not in plain.stdout + plain.stderr


@pytest.mark.integration
def test_github_summary_and_json_of_a_delivery(two_pipelines, double, tmp_path):  # noqa: F811
    repo, image, repository, services = two_pipelines
    sha = git(repo, "rev-parse", "HEAD")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = run(
        repo,
        "--commit",
        sha,
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_SERVER_URL="https://github.example",
        GITHUB_REPOSITORY="team/pipes",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "::error" not in out.stdout
    text = summary.read_text()
    assert text.startswith("earlier step\n### pachhook: delivered\n")  # appended, not replaced
    assert f"[{sha[:12]}](https://github.example/team/pipes/commit/{sha})" in text
    assert "- environment: `default`" in text
    edges = [line for line in text.splitlines() if line.startswith("| edges |")][0]
    cells = [cell.strip() for cell in edges.strip("|").split("|")]
    assert cells[1] == "1" and cells[2] == f"{image}:{sha}" and cells[3].startswith("`sha256:")
    assert cells[4].endswith("s") and cells[7] == "build done, push done, update done"
    assert [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")][1:] == [
        "edges",
        "counts",
        "alone",
    ]

    again = run(repo, "--commit", sha, "--format", "json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)  # the one document on stdout; progress went to stderr
    assert "edges: build: reused" in again.stderr
    assert document["commit"] == sha and document["branch"] == "main" and document["status"] == 0
    by_name = {item["pipeline"]: item for item in document["pipelines"]}
    assert list(by_name) == ["edges", "counts", "alone"]
    assert by_name["edges"]["version"] == "1" and by_name["edges"]["digest"].startswith("sha256:")
    assert by_name["edges"]["outcomes"] == {"build": "reused", "push": "reused", "update": "reused"}
    assert set(by_name["edges"]["timings"]) == {"build", "push", "update"}

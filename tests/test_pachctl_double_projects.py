"""The pachctl TEST DOUBLE's repos, commits, jobs and metadata belong to projects, as in pachctl 2.x.

Pachyderm 2.5+ keys every repo, branch, commit, job and pipeline by its project: two
projects may each have an `images` repo and an `edges` pipeline, and nothing done in one
shows in the other. Each read takes `--project` (default: the context's project, else
`default`), and a commit may be written `PROJECT/REPO@ID` (src/server/pfs/cmds/cmds.go,
src/server/pps/cmds/cmds.go, src/pfs/pfs.go pickers). The product's tests rely on the
double for this, so the double itself is checked here: a double kinder than pachctl would
hide the product's mistakes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import List

import pytest

from pachhook.deliver.backends.rawoutput import messages

DOUBLE = Path(__file__).parent / "doubles" / "pachctl"


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cluster"
    folder.mkdir()
    monkeypatch.setenv("PACHCTL_DOUBLE_DIR", str(folder))
    for name in [name for name in os.environ if name.startswith("PACHCTL_DOUBLE_") and name != "PACHCTL_DOUBLE_DIR"]:
        monkeypatch.delenv(name)
    return folder


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DOUBLE), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(*args: str) -> str:
    out = run(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def fails(*args: str) -> str:
    out = run(*args)
    assert out.returncode == 1, out.stdout
    return out.stderr.strip()


def raw(*args: str) -> List[dict]:
    return messages(ok(*args, "--raw"))


def pipeline(tmp_path: Path, name: str, project: str, source: str, source_project: str = "") -> str:
    """`update pipeline` of NAME in PROJECT reading SOURCE; the ID of the job it started."""
    pfs = {"repo": source, "glob": "/"}
    if source_project:
        pfs["project"] = source_project
    spec = {"pipeline": {"name": name}, "input": {"pfs": pfs}, "transform": {"image": "busybox:1.36"}}
    path = tmp_path / f"{project}-{name}.json"
    path.write_text(json.dumps(spec))
    ok("update", "pipeline", "-f", str(path), "--project", project)
    return raw("inspect", "pipeline", name, "--project", project)[0]["specCommit"]["id"]


@pytest.fixture
def two_projects(state, tmp_path):
    """`images` and `edges` in both `default` and `vision`; a new commit in each `images`."""
    ok("create", "project", "vision")
    for project in ("default", "vision"):
        ok("create", "repo", "images", "--project", project)
        pipeline(tmp_path, "edges", project, "images")
    data = tmp_path / "a.png"
    data.write_text("a")
    ok("put", "file", "images@master:/a.png", "-f", str(data))
    ok("put", "file", "vision/images@master:/a.png", "-f", str(data))
    return state


def test_same_named_repos_of_two_projects_are_two_repos(two_projects):
    default = raw("inspect", "commit", "images@master")[0]
    vision = raw("inspect", "commit", "images@master", "--project", "vision")[0]
    assert default["commit"]["id"] != vision["commit"]["id"]
    assert default["commit"]["repo"]["project"] == {"name": "default"}
    assert vision["commit"]["repo"]["project"] == {"name": "vision"}
    # PROJECT/ before the repo wins over --project (cmdutil.ParseCommit, pfs.RepoPicker)
    assert raw("inspect", "commit", "vision/images@master", "--project", "default")[0] == vision
    assert raw("inspect", "commit", f"vision/images@{vision['commit']['id']}")[0] == vision
    # each put file started a job in its own project's edges only (one job per project per commit)
    for project, commit in (("default", default), ("vision", vision)):
        jobs = raw("list", "job", "-p", "edges", "--project", project, "--history", "all")
        assert [job["job"]["pipeline"]["project"]["name"] for job in jobs] == [project, project]
        assert commit["commit"]["id"] in [job["job"]["id"] for job in jobs]


def test_the_contexts_project_is_the_default(two_projects):
    vision = raw("inspect", "commit", "images@master", "--project", "vision")[0]
    config = json.loads(Path(os.environ["PACH_CONFIG"]).read_text())
    config["v2"]["contexts"][config["v2"]["active_context"]]["project"] = "vision"
    Path(os.environ["PACH_CONFIG"]).write_text(json.dumps(config))
    assert raw("inspect", "commit", "images@master")[0] == vision
    assert raw("inspect", "commit", "images@master", "--project", "default")[0] != vision


def test_what_a_project_does_not_have_is_not_found_as_pachd_says(two_projects):
    vision = raw("inspect", "commit", "images@master", "--project", "vision")[0]["commit"]["id"]
    assert fails("inspect", "commit", f"images@{vision}") == f"commit default/images@{vision} not found"
    assert fails("inspect", "commit", "vision/nothing@master") == "repo vision/nothing not found"
    assert fails("inspect", "commit", "nowhere/images@master") == "repo nowhere/images not found"
    assert fails("inspect", "commit", "images@staging") == 'branch "staging" not found in repo default/images'
    assert fails("inspect", "commit", vision) == (
        'Use "list commit <id>" to see commits with a given ID across different repos'
    )
    assert fails("inspect", "job", f"edges@{vision}") == f"error from InspectJob: job default/edges@{vision} not found"
    assert fails("list", "datum", f"edges@{vision}") == f"error from InspectJob: job default/edges@{vision} not found"
    assert fails("create", "repo", "images") == "repo default/images already exists"
    assert fails("create", "repo", "images", "--project", "nowhere") == 'project "nowhere" not found'
    assert fails("create", "project", "vision") == "project vision already exists"
    missing = "0" * 12 + "4" + "0" * 19
    assert fails("list", "commit", missing) == f"error from InspectCommitSet: no commits found for commitset {missing}"


def test_a_commit_set_spans_projects(state, tmp_path):
    """`vision/edges` reads `default/images`: one put file, one global ID, a job in each
    project; `list commit ID` and `list job ID` list both, whatever --project says."""
    ok("create", "project", "vision")
    ok("create", "repo", "images")
    pipeline(tmp_path, "edges", "default", "images")
    pipeline(tmp_path, "edges", "vision", "images", source_project="default")
    data = tmp_path / "a.png"
    data.write_text("a")
    ok("put", "file", "images@master:/a.png", "-f", str(data))
    global_id = raw("inspect", "commit", "images@master")[0]["commit"]["id"]
    for project in ("default", "vision"):
        commits = raw("list", "commit", global_id, "--project", project)
        assert [(c["commit"]["repo"]["project"]["name"], c["commit"]["repo"]["name"]) for c in commits] == [
            ("default", "images"),
            ("default", "edges"),
            ("vision", "edges"),
        ]
        jobs = raw("list", "job", global_id, "--project", project)
        assert [job["job"]["pipeline"]["project"]["name"] for job in jobs] == ["default", "vision"]
    vision = raw("inspect", "commit", f"edges@{global_id}", "--project", "vision")[0]
    assert vision["directProvenance"][0]["repo"] == {"name": "images", "type": "user", "project": {"name": "default"}}
    # a repo's own list shows USER commits unless --all (ListCommitRequest.all)
    assert raw("list", "commit", "edges", "--project", "vision") == []
    assert [c["origin"]["kind"] for c in raw("list", "commit", "vision/edges", "--all")] == ["AUTO", "AUTO"]


def test_metadata_of_one_projects_commit_leaves_the_others_alone(two_projects):
    default = raw("inspect", "commit", "edges@master")[0]["commit"]["id"]
    vision = raw("inspect", "commit", "vision/edges@master")[0]["commit"]["id"]
    ok(
        "edit",
        "metadata",
        "commit",
        f"vision/edges@{vision}",
        "add",
        "team=vision",
        "pipeline",
        "vision/edges",
        "add",
        "team=vision",
    )
    assert raw("inspect", "commit", f"vision/edges@{vision}")[0]["metadata"] == {"team": "vision"}
    assert raw("inspect", "pipeline", "edges", "--project", "vision")[0]["metadata"] == {"team": "vision"}
    assert "metadata" not in raw("inspect", "commit", f"edges@{default}")[0]
    assert "metadata" not in raw("inspect", "pipeline", "edges")[0]
    # without PROJECT/ the picker is the context's project (fixupProjects); there is no --project
    assert fails("edit", "metadata", "commit", f"edges@{vision}", "add", "k=v") == (
        f"invoke EditMetadata: apply edits: edit #0: commit default/edges@{vision} not found"
    )
    assert fails("edit", "metadata", "commit", f"edges@{vision}", "add", "k=v", "--project", "vision") == (
        "Error: unknown flag: --project"
    )
    # a picker's ref that is not a UUIDv4 is a branch (CommitPicker.UnmarshalText): master's head
    ok("edit", "metadata", "commit", "vision/edges@master", "edit", "team=vision-2")
    assert raw("inspect", "commit", f"vision/edges@{vision}")[0]["metadata"] == {"team": "vision-2"}

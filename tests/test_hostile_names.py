"""Names an attacker (or an unlucky user) picks, through every command, as plain data.

Branch names, template folders, commit messages and remote paths carrying spaces, quotes,
`$()`, backticks, `;|&`, newlines, leading dashes and non-ASCII go through the real hooks
(`pachhook install`), `queue`, `status`, `logs`, `run` (with the pachctl TEST DOUBLE),
`provenance`, `render`, `validate`, `retry`, `cancel` and `check-push`. Each hostile name
that a shell would run leaves a marker file: none may appear. Each must come back intact
wherever pachhook shows or records it, and text output keeps one record per line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from gitutil import PACHCTL_DOUBLE, Repo, git_env, run

from pachhook.deliver.stamp import METADATA_TEMPLATE

# Each `$(...)`/backtick/`;` payload would create MARKER in the working directory of a shell.
MARKER = "PWNED"

# git refuses spaces in branch names; ${IFS} is what a shell would turn into one
BRANCHES = [
    f"feat/$(touch${{IFS}}{MARKER})",
    f'it\'s-"quoted"-`touch${{IFS}}{MARKER}`',
    f"a;touch${{IFS}}{MARKER}|b&c",
    "ünï/ブランチ",
    "{{commit}}",  # rendered into {{ branch }}: must not be rendered again
    "-leading-dash",
    "--help",
]

FOLDERS = [
    "dir with space",
    f"$(touch {MARKER})",
    "-rf",
    "--version",
    "q'uo\"te`x`",
    "new\nline",
    "ü ñ 漢字",
    "semi;colon|pipe&amp",
]

MESSAGE = f"$(touch {MARKER})\n\n'\"`touch {MARKER}`; rm -rf ./x ü\n-m --amend\n%s%n{{{{ commit }}}}"


def spec(name: str) -> str:
    # A fixed image: build and push have nothing to do, so the update step (and the
    # pachctl double) gets the names quickly.
    return (
        json.dumps(
            {
                "pipeline": {"name": name},
                "description": "from {{ branch }} at {{ short_commit }}",
                "transform": {
                    "image": "registry.invalid/team/hostile:1",
                    "cmd": ["/bin/sh", "-c", "true"],
                    "env": {"BRANCH": "{{ branch }}"},
                },
                "input": {"pfs": {"repo": "images", "glob": "/*"}},
            },
            indent=2,
        )
        + "\n"
    )


def no_marker_anywhere(*roots: Path) -> None:
    for root in roots:
        found = [p for p in root.rglob(MARKER)] if root.exists() else []
        assert not found, f"a name was run by a shell: {found}"


@pytest.fixture
def hostile_repo(tmp_path) -> Repo:
    env = git_env(tmp_path / "home")
    state = tmp_path / "pachctl-state"
    state.mkdir()
    env["PACHCTL_DOUBLE_DIR"] = str(state)
    env.pop("PACHCTL_DOUBLE_VERSION", None)
    path = tmp_path / "repo with space $(touch PWNED)"
    path.mkdir()
    run(["git", "init", "-q", "-b", "main", str(path)], tmp_path, env)
    repo = Repo(path, env)
    # every branch delivers (the hostile names are branch names): an explicit glob
    repo.write(".pachhook.toml", f'worker = "manual"\nbranches = ["*"]\npachctl = {json.dumps(str(PACHCTL_DOUBLE))}\n')
    installed = repo.pachhook("install", "--plain")
    assert installed.returncode == 0, installed.stderr
    for index, folder in enumerate(FOLDERS):
        repo.write(f"{folder}/pipeline.json", spec(f"p{index}"))
    repo.commit(MESSAGE)
    return repo


def status(repo: Repo) -> list:
    proc = repo.pachhook("status", "--format", "json", "--all")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["jobs"]


def calls(repo: Repo) -> list:
    path = Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def received(repo: Repo) -> list:
    folder = Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "received"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def switch(repo: Repo, branch: str) -> None:
    # `git switch -c -x` would read the name as an option: create and enter it by ref
    repo.git("update-ref", f"refs/heads/{branch}", "HEAD")
    repo.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")


def test_names_travel_as_data_through_every_command(hostile_repo, tmp_path):
    repo = hostile_repo
    first = repo.git("rev-parse", "HEAD")
    jobs = status(repo)
    assert sorted(job["template"] for job in jobs) == sorted(f"{f}/pipeline.json" for f in FOLDERS)
    assert {job["branch"] for job in jobs} == {"main"}

    commits = {}
    for index, branch in enumerate(BRANCHES):
        switch(repo, branch)
        folder = FOLDERS[index % len(FOLDERS)]
        repo.write(f"{folder}/pipeline.json", spec(f"p{index % len(FOLDERS)}").replace("true", f"echo {index}"))
        commits[branch] = repo.commit(MESSAGE + f" {index}")
        assert repo.git("log", "-1", "--format=%B").startswith(f"$(touch {MARKER})")
    no_marker_anywhere(tmp_path)

    jobs = status(repo)
    by_branch = {job["branch"]: job for job in jobs if job["commit"] != first}
    assert set(by_branch) == set(BRANCHES)
    for index, branch in enumerate(BRANCHES):
        job = by_branch[branch]
        assert job["commit"] == commits[branch]
        assert job["template"] == f"{FOLDERS[index % len(FOLDERS)]}/pipeline.json"

    # text status: one line per job plus the worker line (names with newlines escaped or not,
    # a job row must not be split into two rows that look like two jobs)
    text = repo.pachhook("status", "--all")
    assert text.returncode == 0, text.stderr
    rows = [line for line in text.stdout.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert len(rows) == len(jobs), text.stdout

    # run everything: the pachctl double gets each spec with the names rendered as data
    ran = repo.pachhook("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    no_marker_anywhere(tmp_path)
    jobs = status(repo)
    assert len(jobs) == len(FOLDERS) + len(BRANCHES)  # one per folder on main, one per branch
    assert {job["state"] for job in jobs} == {"done"}, [(job["id"], job["state"], job["steps"]) for job in jobs]
    applied = received(repo)
    branches_applied = {spec["transform"]["env"]["BRANCH"] for spec in applied}
    assert branches_applied == set(BRANCHES) | {"main"}
    assert all(spec["description"].startswith(f"from {spec['transform']['env']['BRANCH']} at ") for spec in applied)
    templates = {spec["metadata"]["annotations"]["pachhook.io/template"] for spec in applied}
    assert templates == {f"{f}/pipeline.json" for f in FOLDERS}
    # the provenance stamp (pipeline metadata, written by `pachctl edit metadata`, whose
    # key=value parser reads spaces and quotes as syntax) carries each hostile path intact
    records = (Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "pipelines").glob("*.json")
    stamped = {json.loads(path.read_text()).get("metadata", {}).get(METADATA_TEMPLATE) for path in records}
    assert stamped == templates
    for call in calls(repo):  # argument lists only; a spec path under the git dir, never a name
        assert all(isinstance(arg, str) for arg in call)
        if call[:2] == ["edit", "metadata"]:
            # provenance stamps carry the template's path as the value of one KEY=VALUE argument
            assert all(arg.startswith("pachhook.io/") for arg in call[5:] if "=" in arg), call
            continue
        assert not any(arg in BRANCHES or "\n" in arg for arg in call), call

    # logs, provenance and render of each hostile branch's job
    for index, branch in enumerate(BRANCHES):
        job = next(j for j in jobs if j["branch"] == branch)
        logs = repo.pachhook("logs", str(job["id"]))
        assert logs.returncode == 0 and "update" in logs.stdout, logs.stderr
        prov = repo.pachhook("provenance", commits[branch], "--format", "json")
        assert prov.returncode == 0, prov.stderr
        template = f"{FOLDERS[index % len(FOLDERS)]}/pipeline.json"
        matches = json.loads(prov.stdout)["matches"]
        assert [(m["template"], m["branch"]) for m in matches] == [(template, branch)], matches
        # `--opt=value` and `--`: how a user passes values that start with a dash
        rendered = repo.pachhook("render", f"--commit={commits[branch]}", f"--branch={branch}", "--", template)
        assert rendered.returncode == 0, rendered.stderr
        assert json.loads(rendered.stdout)["transform"]["env"]["BRANCH"] == branch

    # retry and cancel take job ids only; a hostile id is a usage error, not a crash
    for bad in ("$(touch PWNED)", "-1; touch PWNED", "0x10"):
        for command in ("retry", "cancel", "logs"):
            proc = repo.pachhook(command, bad)
            assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, (command, bad, proc.stderr)
    no_marker_anywhere(tmp_path)


def test_validate_and_render_take_hostile_paths(hostile_repo, tmp_path):
    repo = hostile_repo
    for folder in FOLDERS:
        relative = f"{folder}/pipeline.json"
        # `--` so that a path starting with a dash is a path, as a user would have to write it
        checked = repo.pachhook("validate", "--", relative)
        assert checked.returncode == 0, (folder, checked.stdout, checked.stderr)
        rendered = repo.pachhook("render", "--", relative)
        assert rendered.returncode == 0, (folder, rendered.stderr)
        assert json.loads(rendered.stdout)["metadata"]["annotations"]["pachhook.io/template"] == relative
    # as the pre-commit framework calls the hook: its own arguments, then the staged file
    # names, with no `--` between them
    staged = [f"{folder}/pipeline.json" for folder in FOLDERS]
    framework = repo.pachhook("validate", "--strict", *staged)
    assert framework.returncode == 0, framework.stdout + framework.stderr
    assert f"in {len(FOLDERS)} files" in framework.stderr
    unknown = repo.pachhook("validate", "--no-such-option", *staged)
    assert unknown.returncode == 2 and "--no-such-option" in unknown.stderr
    # a broken template in a hostile folder: the diagnostic names the path, escaped onto one line
    repo.write("new\nline/pipeline.json", '{"pipeline": {"name": "a"}, "transform": {"image": "x:1"}, "bad key\\n": 1}')
    checked = repo.pachhook("validate", "--", "new\nline/pipeline.json")
    assert checked.returncode == 1
    [line] = checked.stdout.splitlines()
    assert line.startswith("new\\nline/pipeline.json:1:") and "unknown field" in line
    # no file argument: the configured globs find every hostile folder
    everything = repo.pachhook("validate")
    assert everything.returncode == 1
    assert "1 error" in everything.stderr and f"in {len(FOLDERS)} files" in everything.stderr
    no_marker_anywhere(tmp_path)


@pytest.mark.parametrize("name", [f"$(touch {MARKER})", "-rf", "--help", "a b", "a\nb", "ü", "a;b"])
def test_hostile_pipeline_names_are_refused_before_any_cluster_call(hostile_repo, tmp_path, name):
    repo = hostile_repo
    repo.write("bad/pipeline.json", spec(name))
    checked = repo.pachhook("validate", "bad/pipeline.json")
    assert checked.returncode == 1
    assert "pipeline name" in checked.stdout and "Traceback" not in checked.stderr
    assert len(checked.stdout.splitlines()) == 1, checked.stdout
    # committed anyway (with --no-verify there is no pre-commit check to stop it):
    # the job fails at update with the validator's message, and pachctl never sees the name
    repo.commit("bad pipeline", ["bad/pipeline.json"], "--no-verify")
    ran = repo.pachhook("run")
    jobs = [job for job in status(repo) if job["template"] == "bad/pipeline.json"]
    for job in jobs:
        assert job["state"] == "failed", job
        update = next(step for step in job["steps"] if step["name"] == "update")
        assert "pipeline name" in update["error"] and "\n" not in update["error"]
    assert not any(name in call for call in calls(repo))
    assert "Traceback" not in ran.stderr
    no_marker_anywhere(tmp_path)


def test_check_push_with_hostile_branches_and_remote_path(hostile_repo, tmp_path):
    repo = hostile_repo
    remote = tmp_path / f"remote $(touch {MARKER}) ü"
    repo.add_origin(remote)
    for branch in BRANCHES[:4]:
        switch(repo, branch)
        repo.write("dir with space/pipeline.json", spec("p0").replace("true", branch.replace('"', "")))
        repo.commit(MESSAGE)
    pushed = repo.git("push", "-q", "origin", "--all")  # the pre-push hook runs check-push
    assert run(["git", "branch", "--list"], remote, repo.env).stdout.count("\n") >= 4
    # a broken template on a hostile branch: the push is refused, naming the file
    switch(repo, BRANCHES[0] + "-broken")
    repo.write("-rf/pipeline.json", '{"pipeline": {"name": "p2"}, "transform": {"image": 7}}')
    repo.commit(MESSAGE, ["--", "-rf/pipeline.json"], "--no-verify")
    refused = run(["git", "push", "origin", "HEAD"], repo.path, repo.env, check=False)
    assert refused.returncode != 0
    assert "-rf/pipeline.json" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
    no_marker_anywhere(tmp_path)
    del pushed


def test_background_worker_starts_and_delivers_from_a_hostile_path(hostile_repo, tmp_path):
    """The post-commit hook spawns `pachhook worker --repo <work tree>`: a work tree named
    `repo with space $(touch PWNED)` on a branch named `feat/$(touch${IFS}PWNED)` is an
    argument, not a command line."""
    repo = hostile_repo
    ran = repo.pachhook("run")  # deliver what the fixture queued, in the foreground
    assert ran.returncode == 0, ran.stdout + ran.stderr
    repo.write(".pachhook.toml", f'branches = ["*"]\npachctl = {json.dumps(str(PACHCTL_DOUBLE))}\n')  # background
    switch(repo, BRANCHES[0])
    repo.write(f"{FOLDERS[1]}/pipeline.json", spec("p1").replace("true", "echo background"))
    commit = repo.commit(MESSAGE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = next((j for j in status(repo) if j["commit"] == commit), None)
        if job and job["state"] in ("done", "failed"):
            break
        time.sleep(0.3)
    log = (repo.common_dir / "pachhook" / "worker.log").read_text()
    assert job and job["state"] == "done", log
    assert job["branch"] == BRANCHES[0]
    assert any(
        s["transform"]["env"]["BRANCH"] == BRANCHES[0] and "echo background" in s["transform"]["cmd"][2]
        for s in received(repo)
    )
    no_marker_anywhere(tmp_path)


def test_a_folder_name_that_is_not_utf8_is_named_and_skipped_not_a_crash(hostile_repo, tmp_path):
    """git keeps file names as bytes: a template under `\\xff\\xfe dir/` cannot go into the
    queue or an annotation (UTF-8 only). The hook says so in one line, escaped, and queues
    the commit's other templates."""
    repo = hostile_repo
    folder = os.fsencode(repo.path) + b"/\xff\xfe dir"
    os.mkdir(folder)
    with open(folder + b"/pipeline.json", "w") as handle:
        handle.write(spec("bytes"))
    repo.write("plain/pipeline.json", spec("plain"))
    run(["git", "add", "."], repo.path, repo.env)
    proc = run(["git", "commit", "-q", "-m", "bytes"], repo.path, repo.env, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    said = proc.stdout + proc.stderr
    [line] = [line for line in said.splitlines() if "not UTF-8" in line]
    assert "\\xff\\xfe dir/pipeline.json: skipped" in line, line
    commit = repo.git("rev-parse", "HEAD")
    assert [job["pipeline"] for job in status(repo) if job["commit"] == commit] == ["plain"]

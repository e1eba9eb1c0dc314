"""The plain git hooks (hooks/), driven by real `git commit` and `git push`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from gitutil import CHECKOUT, Repo, live_jobs, make_repo, run, template

from pachhook.setup.hookscripts import HOOK_NAMES, MARKER, script

BROKEN = template("edges").replace('"pipeline": {', '"pipeline": {\n    "colour": "blue",', 1)


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hooks_folder_matches_what_install_writes(name: str):
    shipped = CHECKOUT / "hooks" / name
    assert shipped.read_text(encoding="utf-8") == script(name)
    assert os.access(shipped, os.X_OK)
    assert MARKER in script(name)


@pytest.fixture
def hooked(tmp_path: Path) -> Repo:
    repo = make_repo(tmp_path)
    repo.add_origin(tmp_path / "origin.git")
    repo.git("push", "-q", "origin", "main")
    assert repo.pachhook("install").returncode == 0
    return repo


def test_commit_records_the_job(hooked: Repo):
    hooked.write("edges/run.sh", "echo changed\n")
    proc = run(["git", "commit", "-qam", "edges"], hooked.path, hooked.env)
    head = hooked.git("rev-parse", "HEAD")
    assert f"pachhook: queued {head[:12]} for edges, montage" in proc.stderr
    assert {(j["pipeline"], j["commit"]) for j in live_jobs(hooked)} == {("edges", head), ("montage", head)}


def test_a_commit_touching_nothing_records_nothing(hooked: Repo):
    hooked.write("edges/run.sh", "echo changed\n")
    run(["git", "commit", "-qam", "edges"], hooked.path, hooked.env)
    hooked.write("README.md", "words\n")
    proc = run(["git", "commit", "-qam", "docs"], hooked.path, hooked.env)
    assert "changes no pipeline's template, Dockerfile or build context" in proc.stderr
    assert len(live_jobs(hooked)) == 2


def test_pre_commit_hook_refuses_a_broken_template(hooked: Repo):
    hooked.write("edges/pipeline.json", BROKEN)
    proc = run(["git", "commit", "-qam", "broken"], hooked.path, hooked.env, check=False)
    assert proc.returncode != 0
    assert "edges/pipeline.json:3:" in proc.stderr and "colour" in proc.stderr


def test_push_with_a_broken_middle_commit_is_refused_and_a_valid_one_goes_through(hooked: Repo):
    hooked.write("edges/run.sh", "echo 1\n")
    hooked.commit("fine", ["."], "--no-verify")
    hooked.write("edges/pipeline.json", BROKEN)
    middle = hooked.commit("broken", ["."], "--no-verify")
    hooked.write("edges/pipeline.json", template("edges"))
    hooked.commit("fixed", ["."], "--no-verify")
    remote_before = hooked.git("rev-parse", "origin/main")
    proc = run(["git", "push", "origin", "main"], hooked.path, hooked.env, check=False)
    assert proc.returncode != 0
    assert f"{middle[:12]}:edges/pipeline.json:3:" in proc.stderr
    assert "push refused" in proc.stderr
    assert hooked.git("ls-remote", "origin", "refs/heads/main").split()[0] == remote_before
    # Rewrite the history without the broken commit: the push goes through.
    hooked.git("reset", "-q", "--hard", remote_before)
    hooked.write("edges/run.sh", "echo 2\n")
    good = hooked.commit("fine again")
    proc = run(["git", "push", "origin", "main"], hooked.path, hooked.env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "pachhook check-push: 1 commit(s), 2 template(s): all valid" in proc.stdout
    assert hooked.git("ls-remote", "origin", "refs/heads/main").split()[0] == good


def test_without_pachhook_on_path_post_commit_lets_the_commit_through(hooked: Repo):
    env = dict(hooked.env, PATH="/usr/bin:/bin")
    hooked.write("edges/run.sh", "echo 3\n")
    proc = run(["git", "commit", "--no-verify", "-qam", "no pachhook"], hooked.path, env)
    assert "'pachhook' is not on PATH, so nothing was queued for this commit" in proc.stderr
    assert hooked.git("log", "-1", "--format=%s") == "no pachhook"
    push = run(["git", "push", "origin", "main"], hooked.path, env, check=False)
    assert push.returncode != 0 and "pipeline templates were not checked" in push.stderr


def test_pre_commit_hook_checks_the_staged_template_not_the_work_tree_copy(hooked: Repo):
    # Issue 16: a broken template staged, a good copy left in the work tree. The commit
    # would hold the broken one, so the hook reads the index and refuses it.
    hooked.write("edges/pipeline.json", BROKEN)
    hooked.git("add", "edges/pipeline.json")
    hooked.write("edges/pipeline.json", template("edges"))
    before = hooked.git("rev-parse", "HEAD")
    proc = run(["git", "commit", "-qm", "broken staged"], hooked.path, hooked.env, check=False)
    assert proc.returncode != 0
    assert "edges/pipeline.json:3:" in proc.stderr and "colour" in proc.stderr
    assert hooked.git("rev-parse", "HEAD") == before


def test_an_untracked_broken_draft_does_not_block_an_unrelated_commit(hooked: Repo):
    hooked.write("draft/pipeline.json", BROKEN)
    hooked.write("README.md", "words\n")
    hooked.git("add", "README.md")
    proc = run(["git", "commit", "-qm", "docs"], hooked.path, hooked.env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "no pipeline templates staged" in proc.stderr
    assert hooked.git("log", "-1", "--format=%s") == "docs"
    # Staged, the same draft is checked and refused.
    hooked.git("add", "draft/pipeline.json")
    proc = run(["git", "commit", "-qm", "draft"], hooked.path, hooked.env, check=False)
    assert proc.returncode != 0 and "draft/pipeline.json:3:" in proc.stderr and "colour" in proc.stderr


def test_a_good_staged_template_with_a_broken_work_tree_copy_is_committed(hooked: Repo):
    hooked.write("edges/pipeline.json", template("edges") + "\n")
    hooked.git("add", "edges/pipeline.json")
    hooked.write("edges/pipeline.json", BROKEN)
    proc = run(["git", "commit", "-qm", "good staged"], hooked.path, hooked.env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "pachhook: 0 errors, 0 warnings in 1 file" in proc.stderr


def test_a_staged_file_of_another_tool_under_a_template_name_does_not_block_a_commit(hooked: Repo):
    hooked.write(".buildkite/pipeline.yml", "steps:\n  - command: make test\n")
    hooked.git("add", ".buildkite/pipeline.yml")
    proc = run(["git", "commit", "-qm", "ci"], hooked.path, hooked.env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "no pipeline templates staged" in proc.stderr


def test_the_pre_commit_hooks_command_line_reads_as_the_parser_reads_it():
    # `validate --staged` (what the plain hook runs) skips argparse: its options must be
    # exactly what the parser gives for the same command line.
    from pachhook.commands import validate

    parsed = vars(validate.build_parser().parse_args(list(validate.HOOK_ARGV)))
    assert vars(validate.HookArgs()) == parsed


def pre_commit_imports(repo: Repo) -> set:
    """Top-level names of what `pachhook validate --staged` imports, as a regular install
    runs it (no editable-install finder, whose own imports would hide pathlib and re)."""
    env = dict(repo.env, PYTHONPATH=str(CHECKOUT))
    code = "import sys; from pachhook.cli import main; sys.exit(main(['validate', '--staged']))"
    proc = run([sys.executable, "-S", "-X", "importtime", "-c", code], repo.path, env, check=False)
    assert proc.returncode == 0, proc.stderr
    names = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in names[names.index("pachhook") :]}


def test_the_pre_commit_hook_imports_little_and_less_when_no_template_is_staged(hooked: Repo):
    # after a first commit with the hooks: the post-commit hook has kept the parsed
    # configuration, so neither hook imports the TOML parser (and the typing it brings)
    hooked.write("README.md", "words\n")
    run(["git", "commit", "-qam", "docs"], hooked.path, hooked.env)
    hooked.write("README.md", "more words\n")
    hooked.git("add", "README.md")
    nothing_staged = pre_commit_imports(hooked)
    assert sorted(nothing_staged & {"argparse", "typing", "pathlib", "json", "subprocess", "sqlite3"}) == []
    hooked.write("edges/pipeline.json", template("edges") + "\n")
    hooked.git("add", "edges/pipeline.json")
    one_staged = pre_commit_imports(hooked)
    assert "json" in one_staged  # it did read the template
    assert sorted(one_staged & {"argparse", "subprocess", "sqlite3", "yaml", "dataclasses", "typing", "pathlib"}) == []

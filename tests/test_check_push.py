"""`pachhook check-push`: every pushed commit of every ref, from git's stdin or pre-commit's variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitutil import Repo, make_repo, run, template

ZERO = "0" * 40
BROKEN = template("edges").replace('"pipeline": {', '"pipeline": {\n    "colour": "blue",', 1)


@pytest.fixture
def pushed(tmp_path: Path) -> Repo:
    """A repository whose main branch is on the bare remote `origin`."""
    repo = make_repo(tmp_path)
    repo.add_origin(tmp_path / "origin.git")
    repo.git("push", "-q", "origin", "main")
    return repo


def broken_middle(repo: Repo) -> list:
    """Three commits: fine, a broken edges template, fixed again. Returns their SHAs."""
    repo.write("edges/run.sh", "echo 1\n")
    first = repo.commit("fine")
    repo.write("edges/pipeline.json", BROKEN)
    middle = repo.commit("broken template")
    repo.write("edges/pipeline.json", template("edges"))
    last = repo.commit("fixed")
    return [first, middle, last]


def check(repo: Repo, lines: list, remote: str = "origin", env: dict = None):
    full_env = dict(repo.env, **(env or {}))
    args = ["check-push", remote, "url"] if remote else ["check-push"]
    return run(
        [str(Path(repo.env["PATH"].split(":")[0]) / "pachhook"), *args],
        repo.path,
        full_env,
        input="".join(line + "\n" for line in lines),
        check=False,
    )


def test_valid_push_is_allowed(pushed: Repo):
    old = pushed.git("rev-parse", "HEAD")
    pushed.write("edges/run.sh", "echo 2\n")
    new = pushed.commit("valid")
    proc = check(pushed, [f"refs/heads/main {new} refs/heads/main {old}"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "pachhook check-push: 1 commit(s), 2 template(s): all valid\n"


def test_a_broken_middle_commit_refuses_the_push(pushed: Repo):
    old = pushed.git("rev-parse", "HEAD")
    first, middle, last = broken_middle(pushed)
    proc = check(pushed, [f"refs/heads/main {last} refs/heads/main {old}"])
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{middle[:12]}:edges/pipeline.json:3:")
    assert "colour" in lines[0] and "error" in lines[0]
    assert lines[-1].startswith(
        "pachhook check-push: push refused: 1 invalid template version(s) in 1 of the 3 commit(s)"
    )


def test_a_new_branch_is_checked_from_where_it_leaves_the_remote(pushed: Repo):
    pushed.git("checkout", "-q", "-b", "topic")
    _, middle, last = broken_middle(pushed)
    proc = check(pushed, [f"refs/heads/topic {last} refs/heads/topic {ZERO}"])
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{middle[:12]}:edges/pipeline.json:")
    assert "in 1 of the 3 commit(s)" in proc.stderr


def test_every_ref_of_the_push_is_checked_not_only_the_first(pushed: Repo):
    main_old = pushed.git("rev-parse", "HEAD")
    pushed.write("README.md", "fine\n")
    main_new = pushed.commit("fine on main")
    pushed.git("checkout", "-q", "-b", "topic", main_old)
    pushed.write("edges/pipeline.json", BROKEN)
    topic = pushed.commit("broken on topic")
    proc = check(
        pushed,
        [
            f"refs/heads/main {main_new} refs/heads/main {main_old}",
            f"refs/heads/topic {topic} refs/heads/topic {ZERO}",
        ],
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{topic[:12]}:edges/pipeline.json:")


def test_a_root_commit_is_checked_on_the_first_push(tmp_path: Path):
    repo = make_repo(tmp_path, pipelines=())
    repo.write("edges/pipeline.json", BROKEN)
    root_amended = repo.commit("root with a broken template", ["."], "--amend")
    assert repo.git("rev-list", "--max-parents=0", "HEAD") == root_amended
    repo.add_origin(tmp_path / "origin.git")
    proc = check(repo, [f"refs/heads/main {root_amended} refs/heads/main {ZERO}"])
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{root_amended[:12]}:edges/pipeline.json:")


def test_a_deletion_pushes_nothing_to_check(pushed: Repo):
    proc = check(pushed, [f"(delete) {ZERO} refs/heads/gone {pushed.git('rev-parse', 'HEAD')}"])
    assert proc.returncode == 0
    assert proc.stdout.startswith("pachhook check-push: 0 commit(s)")


def test_pre_commit_variables_give_the_range(pushed: Repo):
    old = pushed.git("rev-parse", "HEAD")
    _, middle, last = broken_middle(pushed)
    env = {
        "PRE_COMMIT_REMOTE_NAME": "origin",
        "PRE_COMMIT_FROM_REF": old,
        "PRE_COMMIT_TO_REF": last,
        "PRE_COMMIT_LOCAL_BRANCH": "refs/heads/main",
        "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main",
    }
    proc = check(pushed, [], remote=None, env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{middle[:12]}:edges/pipeline.json:")


def test_pre_commit_root_push_without_from_and_to(tmp_path: Path):
    repo = make_repo(tmp_path, pipelines=())
    repo.write("edges/pipeline.json", BROKEN)
    bad = repo.commit("broken")
    repo.write("edges/pipeline.json", template("edges"))
    repo.commit("fixed")
    repo.add_origin(tmp_path / "origin.git")
    env = {
        "PRE_COMMIT_REMOTE_NAME": "origin",
        "PRE_COMMIT_LOCAL_BRANCH": "refs/heads/main",
        "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main",
    }
    proc = check(repo, [], remote=None, env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{bad[:12]}:edges/pipeline.json:")


def test_by_hand_it_checks_what_no_remote_has(pushed: Repo):
    _, middle, _ = broken_middle(pushed)
    proc = check(pushed, [], remote=None)
    assert proc.returncode == 1 and proc.stderr.startswith(f"{middle[:12]}:")


def test_bad_configuration_refuses_in_one_line(pushed: Repo):
    pushed.write(".pachhook.toml", "templates = 3\n")
    proc = check(pushed, [], remote=None)
    assert proc.returncode == 1
    assert proc.stderr == (
        "pachhook check-push: .pachhook.toml:1: templates: must be a non-empty array"
        " of non-empty strings, not an integer (3)\n"
    )


def test_unexpected_input_is_one_line(pushed: Repo):
    proc = check(pushed, ["not a ref line"])
    assert proc.returncode == 1
    assert proc.stderr == "pachhook check-push: unexpected pre-push input line: 'not a ref line'\n"


def test_the_refusal_says_how_to_get_the_push_through_and_that_way_works(pushed: Repo):
    """A fix in a new commit leaves the broken one in the push: the refusal says to fix the
    broken commit itself (it is not on the remote yet), and doing as it says gets the push through."""
    old = pushed.git("rev-parse", "HEAD")
    pushed.write("edges/run.sh", "echo 2\n")
    pushed.write("edges/pipeline.json", BROKEN)
    middle = pushed.commit("new step, and a typo in the template")
    pushed.write("edges/pipeline.json", template("edges"))
    last = pushed.commit("fixed")
    proc = check(pushed, [f"refs/heads/main {last} refs/heads/main {old}"])
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].endswith(
        "commit(s) pushed; a fix in a new commit leaves the broken one in the push (every pushed commit is"
        f" checked); these commits are not on the remote yet, so fix {middle[:12]} itself: git rebase -i"
        f" {middle[:12]}^, mark {middle[:12]} edit (or squash your fixing commit into it), then push again"
    )
    # what the advice says, with a scripted editor: squash the fixing commit into the broken one
    script = f"sed -i -e 's/^pick {last[:7]}\\([0-9a-f]*\\) /fixup {last[:7]}\\1 /' "
    pushed.env["GIT_SEQUENCE_EDITOR"] = script
    pushed.git("rebase", "-q", "-i", f"{middle[:12]}^")
    del pushed.env["GIT_SEQUENCE_EDITOR"]
    new = pushed.git("rev-parse", "HEAD")
    proc = check(pushed, [f"refs/heads/main {new} refs/heads/main {old}"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pachhook check-push: 1 commit(s)")


def test_a_broken_newest_commit_is_amended(pushed: Repo):
    old = pushed.git("rev-parse", "HEAD")
    pushed.write("edges/pipeline.json", BROKEN)
    bad = pushed.commit("broken template")
    proc = check(pushed, [f"refs/heads/main {bad} refs/heads/main {old}"])
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].endswith(
        "in 1 of the 1 commit(s) pushed; fix the template, git add it and git commit --amend"
        " (the commit is not on the remote yet), then push again"
    )
    pushed.write("edges/pipeline.json", template("edges"))
    amended = pushed.commit("fixed template", ["."], "--amend")
    assert check(pushed, [f"refs/heads/main {amended} refs/heads/main {old}"]).returncode == 0


def test_a_broken_root_commit_is_rebased_from_the_root(tmp_path: Path):
    repo = make_repo(tmp_path, pipelines=())
    repo.write("edges/pipeline.json", BROKEN)
    root = repo.commit("root with a broken template", ["."], "--amend")
    repo.write("edges/pipeline.json", template("edges"))
    fixed = repo.commit("fixed")
    run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path, repo.env)
    repo.git("remote", "add", "origin", str(tmp_path / "origin.git"))
    proc = check(repo, [f"refs/heads/main {fixed} refs/heads/main {ZERO}"])
    assert proc.returncode == 1
    assert f"so fix {root[:12]} itself: git rebase -i --root, mark {root[:12]} edit" in proc.stderr

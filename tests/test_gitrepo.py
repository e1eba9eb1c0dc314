"""The one git layer (core/gitrepo.py), exercised on real repositories."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gitutil import Repo, git_env

from pachhook.core import gitrepo
from pachhook.deliver import buildcontext
from pachhook.deliver.buildcontext import BuildInputs, ContextError


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    env = git_env(tmp_path / "home")
    work = Repo(tmp_path / "repo", env)
    work.path.mkdir()
    work.git("init", "-q")
    return work


def commit_files(repo: Repo, files: dict) -> str:
    for name, text in files.items():
        repo.write(name, text)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "files")
    return repo.git("rev-parse", "HEAD")


def test_ls_tree_lists_only_the_paths_asked_for(repo):
    commit = commit_files(repo, {"c[1]/a.txt": "a", "c1/b.txt": "b"})
    literal = gitrepo.ls_tree(commit, repo.path, paths=["c[1]/"], literal_pathspecs=True)
    assert sorted(literal) == ["c[1]", "c[1]/a.txt"]


def test_build_context_with_glob_characters_holds_only_its_own_files(repo):
    commit = commit_files(repo, {"c[1]/Dockerfile": "FROM scratch\n", "c[1]/a.txt": "a", "c1/b.txt": "b"})
    plan = buildcontext.plan_context(repo.path, commit, BuildInputs("c[1]", "c[1]/Dockerfile"))
    assert plan.files == 2  # Dockerfile and a.txt, not c1/b.txt


def test_unknown_commit_is_the_build_contexts_one_line_error(repo):
    commit_files(repo, {"c/Dockerfile": "FROM scratch\n"})
    with pytest.raises(ContextError, match=r"^git ls-tree failed: .*\S$"):
        buildcontext.plan_context(repo.path, "f" * 40, BuildInputs("c", "c/Dockerfile"))


def test_run_reports_status_and_streams_and_git_raises_the_first_line(repo):
    result = gitrepo.run(["rev-parse", "--verify", "--quiet", "nothing^{commit}"], repo.path, env=repo.env)
    assert result.returncode != 0 and result.stdout == b""
    with pytest.raises(gitrepo.GitError, match=r"^ambiguous argument 'nothing'"):
        gitrepo.git(["rev-parse", "nothing"], repo.path)


def test_a_timeout_is_a_git_error_not_a_traceback(repo):
    with pytest.raises(gitrepo.GitError, match=r"^git slow did not finish within 0.5 s$"):
        gitrepo.run(["-c", "alias.slow=!sleep 1", "slow"], repo.path, env=repo.env, timeout=0.5)


def test_a_git_that_writes_much_to_both_streams_does_not_block(repo: Repo, tmp_path: Path):
    # GIT_TRACE_PACK_ACCESS writes a stderr line per object read: with stdout read to its end
    # first, git filled the stderr pipe and waited on it for ever (`git commit` never returned).
    for n in range(3):
        commit_files(repo, {f"f{i}.txt": f"{n} {i}\n" * 20 for i in range(600)})
    repo.git("gc", "-q")
    env = dict(repo.env, GIT_TRACE_PACK_ACCESS="2")
    results = []
    # The hooks' call form (no timeout of their own), in a thread: a deadlock fails the test.
    reader = threading.Thread(
        target=lambda: results.append(gitrepo.run(["log", "-p", "--format=%H"], repo.path, env=env)), daemon=True
    )
    reader.start()
    reader.join(60)
    assert results, "git blocked on a full pipe"
    result = results[0]
    assert result.returncode == 0
    assert len(result.stdout) > 64 * 1024 and len(result.stderr) > 64 * 1024


def test_git_never_prompts_and_never_runs_past_its_deadline(repo: Repo):
    shown = gitrepo.run(["-c", "alias.prompt=!printenv GIT_TERMINAL_PROMPT", "prompt"], repo.path, env=repo.env)
    assert shown.stdout.strip() == b"0"
    with pytest.raises(gitrepo.GitError, match=r"git hang did not finish within 1 s"):
        gitrepo.run(["-c", "alias.hang=!sleep 30", "hang"], repo.path, env=repo.env, timeout=1)


def test_input_larger_than_a_pipe_is_written_as_git_reads_it(repo: Repo):
    # `cat-file --batch` answers while it reads its input: with 64 KiB pipes, input and
    # output both far larger, writing all the input first would block on a full pipe.
    files = {f"f{i:04d}.txt": f"file {i}\n" * 40 for i in range(2000)}
    commit_files(repo, files)
    listing = repo.git("ls-tree", "-r", "HEAD")
    shas = {line.split()[3]: line.split()[2] for line in listing.splitlines()}
    results = []
    reader = threading.Thread(target=lambda: results.append(gitrepo.read_blobs(shas.values(), repo.path)), daemon=True)
    reader.start()
    reader.join(60)
    assert results, "git or pachhook blocked on a full pipe"
    assert len(results[0]) == len(files)
    assert all(results[0][shas[name]] == text.encode() for name, text in files.items())


def test_git_that_stops_reading_its_input_is_a_git_error(repo: Repo):
    # the input is still being written when git fails: its complaint, not a broken pipe
    with pytest.raises(gitrepo.GitError, match=r"^bad revision"):
        gitrepo.git(["rev-list", "--stdin"], repo.path, input=b"nothing-here\n" * 100_000)


def test_the_hooks_never_import_subprocess_to_run_git(repo: Repo):
    commit_files(repo, {"a.txt": "a"})
    code = (
        "import sys; from pachhook.core import gitrepo;"
        "sha = gitrepo.git(['rev-parse', 'HEAD:a.txt']).decode().strip();"
        "assert gitrepo.read_blobs([sha]) == {sha: b'a'};"
        "print('subprocess' in sys.modules)"
    )
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=repo.path,
        env=dict(repo.env, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "False"


def test_show_files_reads_several_files_of_a_commit_at_once(repo: Repo):
    commit = commit_files(repo, {"a.txt": "a\n", "sub/b.txt": "b\n"})
    shown = gitrepo.show_files(commit, ["a.txt", "sub", "none.txt", "sub/b.txt"], repo.path)
    # a folder is no file, as `git cat-file blob` says of it
    assert shown == {"a.txt": b"a\n", "sub": None, "none.txt": None, "sub/b.txt": b"b\n"}
    assert [gitrepo.show_file(commit, name, repo.path) for name in shown] == list(shown.values())


def test_the_common_dir_is_asked_again_once_its_folder_is_gone(repo: Repo, tmp_path: Path):
    commit_files(repo, {"a.txt": "a"})
    inner = repo.path / "inner"
    inner.mkdir()
    assert gitrepo.git_common_dir_text(inner) == str(repo.path / ".git")
    inner.rmdir()
    with pytest.raises(gitrepo.GitError):
        gitrepo.git_common_dir_text(inner)
    # a folder made a repository of its own since it was last asked about
    inner.mkdir()
    assert gitrepo.git_common_dir_text(inner) == str(repo.path / ".git")
    import shutil

    shutil.rmtree(repo.path / ".git")
    (inner / "x").write_text("x")
    subprocess_env = dict(repo.env)
    Repo(inner, subprocess_env).git("init", "-q")
    assert gitrepo.git_common_dir_text(inner) == str(inner / ".git")


def test_what_a_commit_holds_is_read_once_and_handed_out_as_a_copy(repo: Repo, monkeypatch):
    commit = commit_files(repo, {"a.txt": "a\n", "sub/b.txt": "b\n"})
    first = gitrepo.ls_tree(commit, repo.path)
    first.pop("a.txt")  # a caller changing its listing changes no one else's
    assert gitrepo.show_file(commit, "a.txt", repo.path) == b"a\n"
    # From here git would fail every call: what a full SHA names is not asked again.
    monkeypatch.setenv("GIT_DIR", str(repo.path / "no-such-git-dir"))
    assert sorted(gitrepo.ls_tree(commit, repo.path)) == ["a.txt", "sub", "sub/b.txt"]
    assert gitrepo.show_files(commit, ["a.txt"], repo.path) == {"a.txt": b"a\n"}
    # A name that can move (a branch, HEAD) is asked each time.
    with pytest.raises(gitrepo.GitError):
        gitrepo.ls_tree("HEAD", repo.path)


def test_git_configuration_is_read_once_within_a_snapshot_and_afresh_after_it(repo: Repo):
    commit_files(repo, {"a.txt": "a"})
    repo.git("remote", "add", "origin", "https://example.invalid/one.git")
    with gitrepo.config_snapshot():
        assert gitrepo.remote_url("origin", repo.path) == "https://example.invalid/one.git"
        assert gitrepo.config_get("pachhook.test", repo.path) is None
        repo.git("remote", "set-url", "origin", "https://example.invalid/two.git")
        repo.git("config", "pachhook.test", "set")
        # one delivery sees one configuration
        assert gitrepo.remote_url("origin", repo.path) == "https://example.invalid/one.git"
        assert gitrepo.config_get("pachhook.test", repo.path) is None
    # the next one sees the change; and outside a snapshot nothing is kept
    assert gitrepo.remote_url("origin", repo.path) == "https://example.invalid/two.git"
    assert gitrepo.config_get("pachhook.test", repo.path) == "set"
    repo.git("config", "pachhook.test", "changed")
    assert gitrepo.config_get("pachhook.test", repo.path) == "changed"


def test_a_read_git_could_not_answer_is_asked_again(repo: Repo, monkeypatch):
    commit = commit_files(repo, {"a.txt": "a\n"})
    monkeypatch.setenv("GIT_DIR", str(repo.path / "no-such-git-dir"))  # git fails, as on a lock or a timeout
    assert gitrepo.show_file(commit, "a.txt", repo.path) is None
    monkeypatch.delenv("GIT_DIR")
    assert gitrepo.show_file(commit, "a.txt", repo.path) == b"a\n"


def test_a_git_started_soon_is_running_before_its_answer_is_read(repo: Repo):
    commit_files(repo, {"a.txt": "a"})
    flag = repo.path / "started"
    # the early process makes the flag; the later one, run to the end first, waits for it
    early = gitrepo.run_soon(["-c", f"alias.mark=!touch '{flag}'; echo marked", "mark"], repo.path)
    wait = ["-c", f"alias.wait=!for i in $(seq 600); do [ -e '{flag}' ] && exit 0; sleep 0.05; done; exit 1", "wait"]
    assert gitrepo.run(wait, repo.path, timeout=60).returncode == 0
    assert early().stdout == b"marked\n"


def test_a_failure_of_a_git_started_soon_comes_when_it_is_read(repo: Repo):
    commit_files(repo, {"a.txt": "a"})
    asked = gitrepo.head_info_soon(repo.path, "no-such-branch")
    with pytest.raises(gitrepo.GitError, match="unknown revision 'no-such-branch'"):
        asked()
    with pytest.raises(gitrepo.GitError):
        gitrepo.ls_tree_soon("no-such-branch", repo.path)()
    assert gitrepo.show_files_soon(repo.git("rev-parse", "HEAD"), ["a.txt", "b.txt"], repo.path)() == {
        "a.txt": b"a",
        "b.txt": None,
    }


def test_configuration_asked_ahead_is_started_at_once_and_asked_once(repo: Repo, tmp_path: Path, monkeypatch):
    import os
    import time

    commit_files(repo, {"a.txt": "a"})
    repo.git("config", "pachhook.test", "set")
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # git writes a line as each command starts

    def asked(key: str) -> int:
        text = trace.read_text() if trace.exists() else ""
        return sum(line.endswith(f"built-in: git config --get {key}") for line in text.splitlines())

    fds = len(os.listdir("/proc/self/fd"))
    with gitrepo.config_snapshot():
        gitrepo.ask_ahead("config", repo.path, "pachhook.test")
        gitrepo.ask_ahead("config", repo.path, "pachhook.never-read")  # asked, never needed
        deadline = time.monotonic() + 30
        while asked("pachhook.test") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert asked("pachhook.test") == 1  # running before anything reads it
        assert gitrepo.config_get("pachhook.test", repo.path) == "set"
        assert gitrepo.config_get("pachhook.test", repo.path) == "set"
    assert asked("pachhook.test") == 1  # the answer asked ahead is the one read, twice
    assert len(os.listdir("/proc/self/fd")) == fds  # the unread process was reaped, its pipes closed
    # outside a snapshot there is nowhere to keep an answer: nothing is asked ahead
    gitrepo.ask_ahead("config", repo.path, "pachhook.test")
    assert asked("pachhook.test") == 1
    assert gitrepo.config_get("pachhook.test", repo.path) == "set"
    assert asked("pachhook.test") == 2


def test_commits_soon_names_each_rev_s_commit_and_leaves_out_what_names_none(repo: Repo):
    first = commit_files(repo, {"a.txt": "a"})
    second = commit_files(repo, {"a.txt": "b"})
    repo.git("tag", "-a", "-m", "annotated", "v1", first)  # a tag object: peeled to its commit
    found = gitrepo.commits_soon([f"{second}^", f"{first}^", "refs/remotes/origin/HEAD", "v1"], repo.path)
    assert found() == {f"{second}^": first, "v1": first}  # a root's parent, a missing ref: left out
    assert found() == {f"{second}^": first, "v1": first}  # read again: the same, nothing asked

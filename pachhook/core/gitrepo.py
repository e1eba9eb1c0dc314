"""pachhook's one git layer: every git call, hook or worker, as a `git` process with an argument list.

GitPython is not used (and not a dependency): importing it costs ~100 ms on a quiet
machine (420-550 ms measured under load), while one `git` process costs 1-3 ms; and the
worker's needs (ls-tree, one `cat-file --batch` for many blobs, a checkout through an
index file of its own) are the same few plumbing commands GitPython would run for it.
The hooks ask git directly and ask few questions: `head_info` answers the post-commit
hook's five questions with a single process.
"""

from __future__ import annotations

import _thread  # built in: a lock without importing threading, which the hooks do not need
import os

ZERO_SHA = "0" * 40
# The deadline of a git call that names none: far beyond any healthy command, short enough
# that a hook or worker stuck on git comes back with an error.
DEFAULT_TIMEOUT = 300.0

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from pathlib import Path
    from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

    PathLike = Union[str, Path]
    T = TypeVar("T")


class GitError(Exception):
    """A git command failed; str(error) is git's own one-line complaint."""


class GitResult:
    """What one git process did: its exit status and its two output streams."""

    __slots__ = ("returncode", "stdout", "stderr")

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(
    args: Sequence[str],
    cwd: Optional[PathLike] = None,
    input: Optional[bytes] = None,
    *,
    env: Optional[Dict[str, str]] = None,
    timeout: Optional[float] = None,
    literal_pathspecs: bool = False,
) -> GitResult:
    """Run `git ARGS` (in `cwd`) and return what it did, whatever its exit status.

    literal_pathspecs makes git read every path argument as a plain name (a file called
    `*.py` or `:x` is itself and nothing else). The process is started with
    os.posix_spawnp, `input` (if any) written to its stdin through a pipe: the hooks then
    never import subprocess (~5-12 ms, with locale, signal, threading and selectors behind
    it), not even when they read template blobs. A call without a timeout gets
    DEFAULT_TIMEOUT; running past it raises GitError.
    """
    return run_soon(args, cwd, input, env=env, timeout=timeout, literal_pathspecs=literal_pathspecs)()


def run_soon(
    args: Sequence[str],
    cwd: Optional[PathLike] = None,
    input: Optional[bytes] = None,
    *,
    env: Optional[Dict[str, str]] = None,
    timeout: Optional[float] = None,
    literal_pathspecs: bool = False,
) -> Callable[[], GitResult]:
    """`run`, started now and read later: git answers on another core while the caller goes
    on (the post-commit hook imports and opens its queue meanwhile). Call what it returns,
    once, for the GitResult; the deadline counts from the start. GitError comes at once when
    git cannot start, else when the answer is read (a deadline passed); so for the `*_soon`
    readers below, which also raise what their plain form raises when read."""
    argv = ["git"]
    if literal_pathspecs:
        argv.append("--literal-pathspecs")
    if cwd is not None:
        argv += ["-C", os.fspath(cwd)]
    argv += args
    # No git process may wait on a person: no terminal prompt for credentials (stdin is
    # closed too), and a deadline for every call.
    base = os.environ if env is None else env
    if base.get("GIT_TERMINAL_PROMPT") != "0":
        base = {**base, "GIT_TERMINAL_PROMPT": "0"}
    deadline = DEFAULT_TIMEOUT if timeout is None else timeout
    return _Started(argv, base, deadline, _command_name(args), input).finish


def read_quietly(asked: Callable[[], T]) -> Optional[T]:
    """What a `*_soon` reader gives, None when git failed: for an answer asked ahead that the
    caller asks again where a failure is reported, or only reaps."""
    try:
        return asked()
    except GitError:
        return None


def git(
    args: Sequence[str], cwd: Optional[PathLike] = None, input: Optional[bytes] = None, literal_pathspecs: bool = False
) -> bytes:
    """Run `git ARGS` (in `cwd`) and return its stdout; GitError with git's first stderr line.

    Callers with errors of their own catch GitError and raise theirs `from None`; callers
    that need an environment, a timeout or the exit status use `run`.
    """
    result = run(args, cwd, input, literal_pathspecs=literal_pathspecs)
    if result.returncode != 0:
        raise GitError(complaint(result, _command_name(args)))
    return result.stdout


def complaint(result: GitResult, command: str) -> str:
    """git's first non-empty stderr line without its "fatal: " prefix (or the exit status)."""
    lines = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    message = lines[0] if lines else f"git {command} exited with status {result.returncode}"
    return message.replace("fatal: ", "", 1)


def _command_name(args: Sequence[str]) -> str:
    """The git command among args, past git's own options (`-c key=value`, `-C dir`)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-c", "-C") else 1
    return args[i] if i < len(args) else "git"


class _Started:
    """One git process, started at once; `finish` feeds its input, reads both pipes and
    reaps it.

    Both pipes are read as data arrives, and the input written as git takes it: git
    writes a lot to stderr when a GIT_TRACE* variable is set, and `cat-file --batch`
    answers while it reads, so finishing one pipe first would leave git blocked on a
    full other one. The input end never blocks: a write takes what the pipe has room for.
    """

    def __init__(self, argv: List[str], env: Mapping[str, str], timeout: float, command: str, input: Optional[bytes]):
        import time

        self.command = command
        self.ends = time.monotonic() + timeout
        self.timeout = timeout
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        in_r, self.in_w = os.pipe() if input is not None else (-1, -1)
        stdin = (
            (os.POSIX_SPAWN_DUP2, in_r, 0)
            if input is not None
            else (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
        )
        try:
            self.pid = os.posix_spawnp(
                argv[0],
                argv,
                env,
                file_actions=[stdin, (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
            )
        except OSError as error:
            for fd in (self.out_r, out_w, self.err_r, err_w, in_r, self.in_w):
                if fd >= 0:
                    os.close(fd)
            raise GitError(f"cannot run git: {error}") from None
        for fd in (out_w, err_w, in_r):
            if fd >= 0:
                os.close(fd)
        self.pending = memoryview(input or b"")
        if self.in_w >= 0:
            os.set_blocking(self.in_w, False)
            if not self.pending:
                os.close(self.in_w)
                self.in_w = -1

    def finish(self) -> GitResult:
        import select  # a built-in module: no import cost worth naming
        import time

        out_r, err_r, pid = self.out_r, self.err_r, self.pid
        chunks: Dict[int, List[bytes]] = {out_r: [], err_r: []}
        open_fds = [out_r, err_r]
        try:
            while open_fds:
                left = self.ends - time.monotonic()
                writing = [self.in_w] if self.in_w >= 0 else []
                ready, can_write, _ = select.select(open_fds, writing, [], max(left, 0)) if left > 0 else ([], [], [])
                if not ready and not can_write:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    raise GitError(f"git {self.command} did not finish within {self.timeout:g} s")
                if can_write:
                    try:
                        self.pending = self.pending[os.write(self.in_w, self.pending) :]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:  # git stopped reading (it failed): what it says is in its output
                        self.pending = self.pending[:0]
                    if not self.pending:
                        os.close(self.in_w)
                        self.in_w = -1
                for fd in ready:
                    chunk = os.read(fd, 1 << 16)
                    if chunk:
                        chunks[fd].append(chunk)
                    else:
                        open_fds.remove(fd)
        finally:
            os.close(out_r)
            os.close(err_r)
            if self.in_w >= 0:
                os.close(self.in_w)
        _, status = os.waitpid(pid, 0)
        return GitResult(os.waitstatus_to_exitcode(status), b"".join(chunks[out_r]), b"".join(chunks[err_r]))


def _text(args: Sequence[str], cwd: Optional[PathLike] = None) -> str:
    return git(args, cwd).decode("utf-8", errors="surrogateescape").strip()


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)


class HeadInfo:
    """Work tree, git dirs, commit, tree and branch of one revision.

    The folders are kept as strings and handed out as Paths: the post-commit hook never
    needs pathlib (~9 ms to import), its callers with more time do.
    """

    __slots__ = ("root_str", "git_dir_str", "common_dir_str", "commit", "tree", "branch")

    def __init__(self, root: str, git_dir: str, common_dir: str, commit: str, tree: str, branch: str) -> None:
        self.root_str = root
        self.git_dir_str = git_dir
        self.common_dir_str = common_dir
        self.commit = commit
        self.tree = tree
        self.branch = branch  # short branch name, "" when detached outside a rebase

    @property
    def root(self) -> Path:
        return _path(self.root_str)

    @property
    def git_dir(self) -> Path:  # this worktree's git dir
        return _path(self.git_dir_str)

    @property
    def common_dir(self) -> Path:  # shared by all worktrees: the queue lives here
        return _path(self.common_dir_str)

    def __repr__(self) -> str:
        return (
            f"HeadInfo(root={self.root_str!r}, commit={self.commit!r}, branch={self.branch!r}, "
            f"common_dir={self.common_dir_str!r})"
        )


def head_info(cwd: Optional[PathLike] = None, rev: str = "HEAD") -> HeadInfo:
    """Work tree, git dirs, commit, tree and branch of `rev`, in one git process."""
    return head_info_soon(cwd, rev)()


def head_info_soon(cwd: Optional[PathLike] = None, rev: str = "HEAD") -> Callable[[], HeadInfo]:
    """`head_info`, its git process started now (see `run_soon`)."""
    _no_option(rev)
    args = ["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-dir", "--git-common-dir"]
    answer = run_soon([*args, f"{rev}^{{commit}}", f"{rev}^{{tree}}"], cwd)
    return lambda: _head_info(answer(), cwd, rev)


def _head_info(result: GitResult, cwd: Optional[PathLike], rev: str) -> HeadInfo:
    if result.returncode != 0:
        message = complaint(result, "rev-parse")
        if "unknown revision" in message or "ambiguous argument" in message:
            raise GitError(f"unknown revision {rev!r}" if rev != "HEAD" else "no commit yet")
        raise GitError(message)
    out = result.stdout.decode("utf-8", errors="surrogateescape").strip().splitlines()
    if len(out) != 5:
        raise GitError(f"unknown revision {rev!r}")
    root, git_dir, common, commit, tree = out
    for folder in (cwd, root):
        _remember_dir("common", folder, common)
    _remember_dir("git", cwd, git_dir)
    info = HeadInfo(root, git_dir, common, commit, tree, "")
    info.branch = _branch_of(git_dir, rev)
    return info


def _branch_of(git_dir: str, rev: str) -> str:
    """The branch a commit is being made on.

    HEAD's symbolic ref when attached; during a rebase HEAD is detached, and the branch
    being rebased is written in the worktree's rebase state folder.
    """
    if rev != "HEAD":
        return ""
    head = _read_text(os.path.join(git_dir, "HEAD"))
    if head.startswith("ref: "):
        return _short_ref(head[len("ref: ") :])
    for folder in ("rebase-merge", "rebase-apply"):
        name = _read_text(os.path.join(git_dir, folder, "head-name"))
        if name.startswith("refs/heads/"):
            return _short_ref(name)
    return ""


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _short_ref(ref: str) -> str:
    return ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref


def repo_root(cwd: Optional[PathLike] = None) -> Path:
    return _path(_text(["rev-parse", "--path-format=absolute", "--show-toplevel"], cwd))


def git_common_dir(cwd: Optional[PathLike] = None) -> Path:
    return _path(git_common_dir_text(cwd))


def git_common_dir_text(cwd: Optional[PathLike] = None) -> str:
    """The git common dir as text: for the post-commit hook, which never imports pathlib.

    Asked of git once per folder and process: a delivery needs it in several places
    (the queue, the build step, the default branch, twice), each a git process.
    """
    return _dir_of("common", "--git-common-dir", cwd)


def git_dir(cwd: Optional[PathLike] = None) -> Path:
    """This worktree's git dir; asked of git once per folder and process, as the common dir."""
    return _path(_dir_of("git", "--git-dir", cwd))


# (kind, folder) -> the git dir ("git") or common dir ("common") of the repository the
# folder is in, as git said it in this process: a folder's repository does not change
# under a running command.
_DIRS: Dict[Tuple[str, str], str] = {}
_DIRS_LIMIT = 128  # tests and long workers meet many folders: keep the newest


def _dir_of(kind: str, option: str, cwd: Optional[PathLike]) -> str:
    key = _folder_key(cwd)
    known = _DIRS.get((kind, key))
    # a folder or repository removed since is asked of git again, which says what is wrong
    if known is None or not (os.path.isdir(key) and os.path.isdir(known)):
        known = _text(["rev-parse", "--path-format=absolute", option], cwd)
        _remember_dir(kind, cwd, known)
    return known


def _folder_key(cwd: Optional[PathLike]) -> str:
    """The absolute folder; "" (remembered never) for a current folder that is gone."""
    try:
        return os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
    except OSError:
        return ""


def _remember_dir(kind: str, cwd: Optional[PathLike], found: str) -> None:
    key = _folder_key(cwd)
    if not key or not os.path.isdir(found):
        return
    if len(_DIRS) >= _DIRS_LIMIT:
        _DIRS.pop(next(iter(_DIRS)), None)
    _DIRS[(kind, key)] = found


def head_commit(cwd: Optional[PathLike] = None) -> str:
    return rev_parse("HEAD", cwd)


def rev_parse(rev: str, cwd: Optional[PathLike] = None) -> str:
    """The full SHA of the commit `rev` names; GitError when it names none."""
    _no_option(rev)
    try:
        return _text(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd) or _missing(rev)
    except GitError:
        _missing(rev)
        raise


def commits_soon(revs: Sequence[str], cwd: Optional[PathLike] = None) -> Callable[[], Dict[str, str]]:
    """The full SHA of the commit each of `revs` names, from one `git cat-file --batch-check`
    started now (see `run_soon`); a rev that names no commit (a root's parent, a missing ref)
    is left out, and so is every rev when git cannot answer. Reading it twice gives the same
    answer without asking again."""
    names = "".join(f"{rev}^{{commit}}\n" for rev in revs)

    def read(result: GitResult) -> Dict[str, str]:
        found: Dict[str, str] = {}
        for rev, line in zip(revs, result.stdout.decode(errors="replace").splitlines()):
            parts = line.split()  # "SHA commit SIZE", or "NAME missing"
            if len(parts) == 3 and parts[1] == "commit" and is_full_sha(parts[0]):
                found[rev] = parts[0]
        return found

    asked = _ask(["cat-file", "--batch-check"], read, cwd, names.encode())
    return lambda: dict(asked.answer())  # type: ignore[call-overload]


def _missing(rev: str) -> str:
    raise GitError(f"unknown revision {rev!r}")


def _no_option(rev: str) -> None:
    # A revision given by a user must never be read by git as an option.
    if rev.startswith("-"):
        raise GitError(f"unknown revision {rev!r}")


def rev_exists(rev: str, cwd: Optional[PathLike] = None) -> bool:
    try:
        rev_parse(rev, cwd)
    except GitError:
        return False
    return True


def current_branch(cwd: Optional[PathLike] = None) -> str:
    """Short name of the checked-out branch ("" when detached, the rebased branch in a rebase)."""
    return _branch_of(os.fspath(git_dir(cwd)), "HEAD")


def show_file(commit: str, path: str, cwd: Optional[PathLike] = None) -> Optional[bytes]:
    """The bytes of `path` as it stands in `commit`, None when the commit has no such file."""
    question = ("file", _folder_key(cwd), commit, path)
    known = settled(question)
    if known is not UNKNOWN:
        return known  # type: ignore[return-value]
    try:
        data = git(["cat-file", "blob", f"{commit}:{path}"], cwd)
    except GitError:
        # no such file, or git could not answer at all (a lock, a timeout): the same error,
        # so nothing is kept (show_files keeps a "missing" that git says in so many words)
        return None
    _settle_file(question, data)
    return data


def changed_paths(a: Optional[str], b: str, cwd: Optional[PathLike] = None) -> List[str]:
    """Paths that differ between commits a and b (all of b's paths when a is None)."""
    if a is None:
        return [entry.path for entry in ls_tree(b, cwd).values() if entry.kind == "blob"]
    out = git(["diff-tree", "-r", "-z", "--no-renames", "--name-only", a, b], cwd)
    return [p.decode("utf-8", errors="surrogateescape") for p in out.split(b"\0") if p]


def remote_url(name: str, cwd: Optional[PathLike] = None) -> Optional[str]:
    """The URL of remote `name` (insteadOf applied), None when there is no such remote."""
    return _configured("remote-url", cwd, name)  # type: ignore[return-value]


def remote_names(cwd: Optional[PathLike] = None) -> List[str]:
    """The repository's remotes, as `git remote` lists them ([] when it cannot)."""
    names: List[str] = _configured("remotes", cwd)  # type: ignore[assignment]
    return list(names)


def checkout_settings(cwd: Optional[PathLike] = None) -> str:
    """The configuration that decides how a checkout writes files (`core.autocrlf`, `core.eol`,
    `core.symlinks`, `core.filemode`, ..., every `filter.*`), as `git config --get-regexp` lists it."""
    return _configured("checkout-settings", cwd)  # type: ignore[return-value]


class TreeEntry:
    """One entry of `git ls-tree`: kind is "blob", "tree" or "commit" (a submodule)."""

    __slots__ = ("path", "kind", "sha", "mode")

    def __init__(self, path: str, kind: str, sha: str, mode: str) -> None:
        self.path, self.kind, self.sha, self.mode = path, kind, sha, mode

    def __repr__(self) -> str:
        return f"TreeEntry({self.path!r}, {self.kind!r}, {self.sha!r})"


def ls_tree(
    commit: str, cwd: Optional[PathLike] = None, paths: Sequence[str] = (), literal_pathspecs: bool = False
) -> Dict[str, TreeEntry]:
    """Every file and folder of `commit` by path from the repository root.

    With paths, only the entries under those paths and the folders leading to them.
    """
    return ls_tree_soon(commit, cwd, paths, literal_pathspecs)()


def ls_tree_soon(
    commit: str, cwd: Optional[PathLike] = None, paths: Sequence[str] = (), literal_pathspecs: bool = False
) -> Callable[[], Dict[str, TreeEntry]]:
    """`ls_tree`, its git process started now (see `run_soon`)."""
    question = ("ls-tree", _folder_key(cwd), commit, tuple(paths), literal_pathspecs and bool(paths))
    known = settled(question)
    if known is not UNKNOWN:
        return lambda: dict(known)  # type: ignore[call-overload]  # a copy: callers may change theirs
    args = ["ls-tree", "-r", "-t", "-z", "--full-tree", commit]
    if paths:
        args += ["--", *paths]
    answer = run_soon(args, cwd, literal_pathspecs=literal_pathspecs)
    return lambda: _tree_entries(answer(), commit, question)


def _tree_entries(result: GitResult, commit: str, question: Tuple[object, ...]) -> Dict[str, TreeEntry]:
    """The listing `ls-tree` printed, kept as the answer to `question` when `commit` is a full SHA."""
    if result.returncode != 0:
        raise GitError(complaint(result, "ls-tree"))
    out = result.stdout
    entries: Dict[str, TreeEntry] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, sha = meta.decode().split(" ")
        path = raw_path.decode("utf-8", errors="surrogateescape")
        entries[path] = TreeEntry(path, kind, sha, mode)
    if is_full_sha(commit):
        settle(question, dict(entries), 1 + len(entries))
    return entries


def tree_of(commit: str, cwd: Optional[PathLike] = None) -> str:
    return _text(["rev-parse", "--verify", f"{commit}^{{tree}}"], cwd)


def read_blobs(shas: Iterable[str], cwd: Optional[PathLike] = None) -> Dict[str, bytes]:
    """Contents of several blobs from one `git cat-file --batch` process."""
    return {name: data for name, (_, data) in _read_objects(shas, cwd).items()}


def show_files(commit: str, paths: Sequence[str], cwd: Optional[PathLike] = None) -> Dict[str, Optional[bytes]]:
    """The bytes of each of `paths` as it stands in `commit` (None for a path it has no
    file at), from one git process: `show_file` for several files."""
    return show_files_soon(commit, paths, cwd)()


def show_files_soon(
    commit: str, paths: Sequence[str], cwd: Optional[PathLike] = None
) -> Callable[[], Dict[str, Optional[bytes]]]:
    """`show_files`, its git process started now (see `run_soon`)."""
    folder = _folder_key(cwd)
    shown: Dict[str, Optional[bytes]] = {}
    for path in paths:
        known = settled(("file", folder, commit, path))
        if known is not UNKNOWN:
            shown[path] = known  # type: ignore[assignment]
    asked = [path for path in paths if path not in shown]
    read = _read_objects_soon([f"{commit}:{path}" for path in asked], cwd)

    def answer() -> Dict[str, Optional[bytes]]:
        found = read()
        for path in asked:
            kind, data = found.get(f"{commit}:{path}", ("missing", b""))
            shown[path] = data if kind == "blob" else None
            _settle_file(("file", folder, commit, path), shown[path])
        return shown

    return answer


def _read_objects(names: Iterable[str], cwd: Optional[PathLike] = None) -> Dict[str, Tuple[str, bytes]]:
    """Type and content of each object `git cat-file --batch` finds among `names`."""
    return _read_objects_soon(names, cwd)()


def _read_objects_soon(names: Iterable[str], cwd: Optional[PathLike]) -> Callable[[], Dict[str, Tuple[str, bytes]]]:
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return lambda: {}
    started = run_soon(["cat-file", "--batch"], cwd, input=("\n".join(wanted) + "\n").encode())

    def answer() -> Dict[str, Tuple[str, bytes]]:
        result = started()
        if result.returncode != 0:
            raise GitError(complaint(result, "cat-file"))
        out = result.stdout
        objects: Dict[str, Tuple[str, bytes]] = {}
        pos = 0
        for name in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode(errors="replace").rsplit(None, 2)
            pos = end + 1
            if len(header) < 3 or header[-1] == "missing" or not header[-1].isdigit():
                continue  # "NAME missing", "NAME ambiguous"
            size = int(header[2])
            objects[name] = (header[1], out[pos : pos + size])
            pos += size + 1  # the content is followed by a newline
        return objects

    return answer


def rev_list(args: Sequence[str], cwd: Optional[PathLike] = None) -> List[str]:
    return _text(["rev-list", *args], cwd).split()


def config_get(key: str, cwd: Optional[PathLike] = None) -> Optional[str]:
    return _configured("config", cwd, key)  # type: ignore[return-value]


# Answers kept in this process, so that one delivery asks git each question once.
#
# Settled: what a full object id names never changes (a commit's tree listing and files,
# whether one commit descends from another), so those answers are kept for the process,
# bounded by weight: an answer weighs 1, a tree listing 1 per entry, a file 1 per 64 bytes
# (a whole listing of a 100k-file tree weighs 100k, about 15 MB held).
_SETTLED: Dict[Tuple[object, ...], Tuple[object, int]] = {}
_SETTLED_WEIGHT = [0]
_SETTLING = _thread.allocate_lock()  # the builds of one commit run in threads
_SETTLED_WEIGHT_LIMIT = 400_000
_SETTLED_FILE_BYTES = 1 << 20  # a bigger file is read again when asked again
UNKNOWN = object()


def settled(question: Tuple[object, ...]) -> object:
    """The kept answer to `question` (see `settle`), or `UNKNOWN`."""
    return _SETTLED.get(question, (UNKNOWN, 0))[0]


def settle(question: Tuple[object, ...], answer: object, weight: int = 1) -> None:
    """Keep `answer` to `question` for the process: for questions about full object ids
    only, whose answers cannot change. The oldest answers go first past the weight limit."""
    if weight > _SETTLED_WEIGHT_LIMIT // 4:
        return
    with _SETTLING:
        _SETTLED_WEIGHT[0] += weight - _SETTLED.pop(question, (None, 0))[1]
        _SETTLED[question] = (answer, weight)
        while _SETTLED_WEIGHT[0] > _SETTLED_WEIGHT_LIMIT:
            _SETTLED_WEIGHT[0] -= _SETTLED.pop(next(iter(_SETTLED)))[1]


def _settle_file(question: Tuple[object, ...], data: Optional[bytes]) -> None:
    if is_full_sha(str(question[2])) and (data is None or len(data) <= _SETTLED_FILE_BYTES):
        settle(question, data, 1 + len(data or b"") // 64)


# A snapshot of git's configuration (config values, remotes and their URLs): within one,
# each question is asked of git once. A delivery reads under one (`config_snapshot`), so
# its steps see one configuration; a change made meanwhile is seen by the next delivery.
_SNAPSHOT: Optional[Dict[Tuple[str, str, str], _AskedAhead]] = None
_SNAPSHOT_DEPTH = 0


class config_snapshot:
    """`with gitrepo.config_snapshot():` git configuration read once inside (nests; the
    outermost ends it). Threads started inside share it."""

    def __enter__(self) -> "config_snapshot":
        global _SNAPSHOT, _SNAPSHOT_DEPTH
        if _SNAPSHOT_DEPTH == 0:
            _SNAPSHOT = {}
        _SNAPSHOT_DEPTH += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _SNAPSHOT, _SNAPSHOT_DEPTH
        _SNAPSHOT_DEPTH -= 1
        if _SNAPSHOT_DEPTH == 0:
            for asked in (_SNAPSHOT or {}).values():
                asked.answer()  # one asked ahead and never needed: its git is reaped here
            _SNAPSHOT = None


def _printed_text(result: GitResult) -> Optional[str]:
    text = result.stdout.decode("utf-8", errors="surrogateescape").strip()
    return text if result.returncode == 0 and text else None


# The questions about git's configuration (see config_snapshot): kind -> (the git command
# asking it, for the name given; how its answer is read). `--get-regexp` exits 1 when nothing
# matches: its output, empty, is the answer then too.
_CONFIG_QUESTIONS: Dict[str, Tuple[Callable[[str], List[str]], Callable[[GitResult], object]]] = {
    "config": (lambda key: ["config", "--get", key], _printed_text),
    "remote-url": (lambda name: ["remote", "get-url", name], _printed_text),
    "remotes": (
        lambda _: ["remote"],
        lambda result: result.stdout.decode(errors="replace").split() if result.returncode == 0 else [],
    ),
    "checkout-settings": (
        lambda _: [
            "config",
            "--get-regexp",
            r"^(core\.(autocrlf|eol|symlinks|filemode|safecrlf|checkroundtripencoding)|filter\.)",
        ],
        lambda result: result.stdout.decode("utf-8", "replace"),
    ),
}


def _configured(kind: str, cwd: Optional[PathLike], name: str = "") -> object:
    """The answer to a configuration question: asked of git now, or kept by the snapshot
    (asked once in it, perhaps ahead)."""
    snapshot = _SNAPSHOT
    if snapshot is None:
        return _asked(kind, cwd, name).answer()
    question = (kind, _folder_key(cwd), name)
    with _ASKING:  # the builds of one commit run in threads: one git process per question
        known = snapshot.get(question)
        if known is None:
            known = snapshot[question] = _asked(kind, cwd, name)
    return known.answer()


def ask_ahead(kind: str, cwd: Optional[PathLike] = None, name: str = "") -> None:
    """Start asking a configuration question now ("config" KEY, "remote-url" NAME, "remotes",
    "checkout-settings"), for the call that needs it later in this snapshot: git answers
    while the caller works. Outside a snapshot there is nowhere to keep the answer, and
    nothing is started."""
    snapshot = _SNAPSHOT
    question = (kind, _folder_key(cwd), name)
    with _ASKING:
        if snapshot is not None and question not in snapshot:
            snapshot[question] = _asked(kind, cwd, name)


_ASKING = _thread.allocate_lock()


class _AskedAhead:
    """A git process started for a question (`_ask`), and once read its answer."""

    __slots__ = ("read", "started", "lock", "answered", "value")

    def __init__(self, read: Callable[[GitResult], object], started: Callable[[], GitResult]) -> None:
        self.read, self.started = read, started
        self.lock = _thread.allocate_lock()
        self.answered = False
        self.value: object = None

    def answer(self) -> object:
        with self.lock:  # read once, whichever thread asks first
            if not self.answered:
                try:
                    self.value = self.read(self.started())
                except GitError:  # git ran out of time: as if it said nothing
                    self.value = self.read(_NOTHING_SAID)
                self.answered = True
        return self.value


_NOTHING_SAID = GitResult(1, b"", b"")


def _asked(kind: str, cwd: Optional[PathLike], name: str) -> _AskedAhead:
    command, read = _CONFIG_QUESTIONS[kind]
    return _ask(command(name), read, cwd)


def _ask(
    args: Sequence[str], read: Callable[[GitResult], object], cwd: Optional[PathLike], input: Optional[bytes] = None
) -> _AskedAhead:
    """`git ARGS` started now, its answer read once by `read`; git that cannot start or runs
    out of time answers as if it said nothing."""
    try:
        started = run_soon(args, cwd, input)
    except GitError:
        started = lambda: _NOTHING_SAID  # noqa: E731
    return _AskedAhead(read, started)


def hooks_dir(cwd: Optional[PathLike] = None) -> Path:
    """Where git looks for hooks (core.hooksPath honoured), as an absolute path."""
    return _path(_text(["rev-parse", "--path-format=absolute", "--git-path", "hooks"], cwd))


def env_without_git_vars() -> Dict[str, str]:
    """The environment minus GIT_DIR and friends that a hook inherits from git.

    A detached worker outlives the hook; variables like GIT_INDEX_FILE would point its
    own git calls at a lock file that no longer exists.
    """
    return {k: v for k, v in os.environ.items() if not (k.startswith("GIT_") and k not in _KEEP_GIT_VARS)}


_KEEP_GIT_VARS = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS")


def short(sha: str) -> str:
    return sha[:12]


def split_ref_line(line: str) -> Optional[Tuple[str, str, str, str]]:
    """One pre-push stdin line: local ref, local SHA, remote ref, remote SHA."""
    parts = line.split()
    if len(parts) != 4 or not (is_full_sha(parts[1]) and is_full_sha(parts[3])):
        return None
    return parts[0], parts[1], parts[2], parts[3]


# pachhook's own files (the queue, its caches, logs and locks) live in this folder of the git
# common dir: shared by all worktrees, never part of a commit.
STATE_FOLDER = "pachhook"


def state_folder(common_dir: PathLike) -> str:
    """`<git common dir>/pachhook`, where pachhook keeps its state."""
    return os.path.join(os.fspath(common_dir), STATE_FOLDER)


def is_full_sha(text: str) -> bool:
    """Whether `text` is a whole object id (not a prefix, a ref or HEAD): 40 hex digits in
    SHA-1 repositories, 64 in SHA-256 ones. What it names never changes."""
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)

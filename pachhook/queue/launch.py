"""Starting the background worker from the post-commit hook, and asking whether one runs.

A background worker is one detached process per repository. It holds an `fcntl.flock`
lock on `<git common dir>/pachhook/worker.lock` while it works; the OS drops the lock
when the process ends, however it ends, so "is a worker running?" is answered by trying
the lock, never by guessing from a pid file.

On the post-commit path: this module imports os, sys and fcntl only, never the worker's
own modules (docker, the steps); the worker is a new `python -m pachhook worker` process.
"""

from __future__ import annotations

import fcntl
import os
import sys

from pachhook.core.gitrepo import env_without_git_vars, state_folder

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Optional

    from pachhook.core.gitrepo import PathLike

LOCK_NAME = "worker.lock"
LOG_NAME = "worker.log"


class WorkerLock:
    """The repository's worker lock; held while open, released by the OS on exit."""

    def __init__(self, folder: PathLike) -> None:
        self.path = os.path.join(os.fspath(folder), LOCK_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def write_owner(self) -> None:
        """Write this process's id into the held lock file: for people, not for liveness."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def worker_pid(folder: PathLike) -> Optional[int]:
    """The process id of the running worker, None when none holds the lock."""
    if not worker_running(folder):
        return None
    try:
        with open(os.path.join(os.fspath(folder), LOCK_NAME), encoding="ascii") as handle:
            return int(handle.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def worker_running(folder: PathLike) -> bool:
    """Whether a worker holds the lock of this queue folder."""
    lock = WorkerLock(folder)
    if lock.acquire():
        lock.release()
        return False
    return True


def start_background(repo_root: PathLike, common_dir: PathLike) -> bool:
    """Start a detached worker unless one is running; True when one was started.

    The worker gets its own session (setsid) and its standard streams go to worker.log:
    git waits for a hook's stdout and stderr to close, so an inherited stream would hold
    `git commit` until the worker ends. posix_spawn keeps subprocess off the hook's path.
    """
    folder = state_folder(common_dir)
    if worker_running(folder):
        return False
    log = os.path.join(folder, LOG_NAME)
    # --git-dir too: should the work tree go (removed, moved) before the worker reads it, the
    # worker still finds the queue and fails the jobs with that cause instead of leaving them.
    argv = [sys.executable, "-m", "pachhook", "worker", "--repo", os.fspath(repo_root)]
    argv += ["--git-dir", os.fspath(common_dir)]
    os.posix_spawn(
        sys.executable,
        argv,
        env_without_git_vars(),
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )
    # Not waited for: the worker outlives this process and is re-parented to init.
    return True

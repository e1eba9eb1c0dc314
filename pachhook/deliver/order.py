"""The cluster decides the order: may this commit replace what the live pipeline runs?

Right before applying, the update step reads the live pipeline of the environment and
its `pachhook.io/commit` annotation. A delivery only moves a pipeline forward along the
history of git: when the live commit is the job's commit or a descendant of it, the job
is superseded; when it is an ancestor (or there is none), the job applies; anything else
(a commit this clone cannot find even after fetching the branch's remote once, a force
push, another branch) is refused unless the run is forced.

Pachyderm has no compare-and-swap on `update pipeline`: between this read and the apply
another deliverer can still update the pipeline. docs/delivery.md says how narrow that is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pachhook.core import gitrepo

APPLY, NEWER_LIVE, REFUSE, SAME = "apply", "newer-live", "refuse", "same"
FETCH_TIMEOUT = 120.0


@dataclass
class Verdict:
    action: str  # APPLY | NEWER_LIVE (the job is superseded) | REFUSE | SAME (the live commit is the job's)
    message: str = ""  # one line, for the job's log and result
    live_commit: str = ""
    forced: bool = False


def is_ancestor(older: str, newer: str, root: Path) -> bool:
    """Whether `older` is `newer` or an ancestor of it (git merge-base --is-ancestor).

    Between two full SHAs the answer never changes: it is asked of git once per process
    (the early read asks it while the images build: earlyread.py)."""
    question = ("is-ancestor", str(root), older, newer)
    answer = gitrepo.settled(question)
    if isinstance(answer, bool):
        return answer
    result = gitrepo.run(["merge-base", "--is-ancestor", older, newer], root, timeout=60)
    # 0: it is; 1: it is not; anything else (a commit missing) is no answer to keep
    if result.returncode in (0, 1) and gitrepo.is_full_sha(older) and gitrepo.is_full_sha(newer):
        gitrepo.settle(question, result.returncode == 0)
    return result.returncode == 0


def known(commit: str, root: Path) -> bool:
    """Whether this clone has `commit`, a live pipeline's. Only a yes is kept for the
    process: a fetch may bring a commit in. (`unreachable` asks git each time: a rewritten
    job's commit may be garbage-collected while a worker runs.)"""
    question = ("known", str(root), commit)
    if gitrepo.settled(question) is True:
        return True
    found = _exists(commit, root)
    if found and gitrepo.is_full_sha(commit):
        gitrepo.settle(question, True)
    return found


def _exists(commit: str, root: Path) -> bool:
    return gitrepo.run(["cat-file", "-e", f"{commit}^{{commit}}"], root, timeout=30).returncode == 0


def fetch_branch(branch: str, root: Path) -> str:
    """Fetch `branch` from its remote (branch.NAME.remote, else origin); the remote's name, "" if none."""
    remote = (gitrepo.config_get(f"branch.{branch}.remote", root) if branch else None) or "origin"
    if gitrepo.remote_url(remote, root) is None:
        return ""
    refspec = [branch] if branch else []
    gitrepo.run(["fetch", "--quiet", "--no-tags", remote, *refspec], root, timeout=FETCH_TIMEOUT)
    return remote


def unreachable(commit: str, branch: str, root: Path) -> str:
    """Why a queued job must not be delivered any more ("" when it may).

    An amend, rebase or reset leaves the old commit off its branch, and `git gc` may then
    delete it: such a job is superseded, never delivered (a commit nobody's branch holds
    must not replace what runs).
    """
    if not _exists(commit, root):
        return f"commit {commit[:12]} no longer exists in this repository (rewritten, then garbage-collected)"
    if not branch:
        return ""
    ref = f"refs/heads/{branch}"
    if gitrepo.run(["rev-parse", "--verify", "--quiet", ref], root, timeout=30).returncode != 0:
        return f"branch {branch} no longer exists, so commit {commit[:12]} is on no branch to deliver"
    if not is_ancestor(commit, ref, root):
        return f"commit {commit[:12]} is no longer on branch {branch} (amended, rebased or reset)"
    return ""


def decide(
    job_commit: str,
    live_commit: str,
    branch: str,
    root: Path,
    force: bool = False,
    log: Callable[[str], None] = lambda line: None,
    fetch: Optional[Callable[[str, Path], str]] = None,
) -> Verdict:
    """What the update step does, given the commit the live pipeline is annotated with."""
    if not live_commit:
        return Verdict(APPLY, "the live pipeline names no commit (or does not exist)")
    short_live, short_job = live_commit[:12], job_commit[:12]
    if live_commit == job_commit:
        return Verdict(SAME, f"the live pipeline already runs {short_job}", live_commit)
    if not known(live_commit, root):  # asked again only after a fetch: each ask is a git process
        remote = (fetch or fetch_branch)(branch, root)
        if remote:
            log(f"live commit {short_live} is not in this clone: fetched {branch or 'HEAD'} from {remote}")
        if not known(live_commit, root):
            return _refuse_or_force(
                f"the live pipeline runs commit {short_live}, unknown to this clone"
                + (" even after fetching its branch" if branch else ""),
                live_commit,
                force,
            )
    # Two different full SHAs: at most one is the other's ancestor, so the usual answer (the
    # live commit is an older one) is asked first, one git process instead of two. A short
    # or symbolic name keeps the order that calls a prefix of the job's commit newer.
    older_first = gitrepo.is_full_sha(job_commit) and gitrepo.is_full_sha(live_commit)
    if older_first and is_ancestor(live_commit, job_commit, root):
        return Verdict(APPLY, f"the live pipeline runs {short_live}, an ancestor of {short_job}", live_commit)
    if is_ancestor(job_commit, live_commit, root):
        return Verdict(NEWER_LIVE, f"the live pipeline runs {short_live}, a newer commit", live_commit)
    if not older_first and is_ancestor(live_commit, job_commit, root):
        return Verdict(APPLY, f"the live pipeline runs {short_live}, an ancestor of {short_job}", live_commit)
    return _refuse_or_force(
        f"the live pipeline runs commit {short_live}, which is not an ancestor of {short_job}"
        " (a force push, or another branch delivered there)",
        live_commit,
        force,
    )


def _refuse_or_force(reason: str, live_commit: str, force: bool) -> Verdict:
    if force:
        return Verdict(APPLY, f"forced: {reason}", live_commit, forced=True)
    return Verdict(REFUSE, f"refused: {reason}; `pachhook run --force` overrides", live_commit)

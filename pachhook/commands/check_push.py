"""`pachhook check-push`: the pre-push hook; refuse a push carrying an invalid template.

Every commit being pushed is checked, templates as they stand *in that commit* (read
from git, not from the work tree), for every ref of the push:

- plain git hands the hook the remote's name and URL as arguments and one stdin line per
  ref: `<local ref> <local sha> <remote ref> <remote sha>`;
- the pre-commit framework reads those lines itself and passes only the first pushed ref
  on, as PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF (absent when that ref's history reaches a
  root commit: then PRE_COMMIT_LOCAL_BRANCH names it). So that no other ref of the push
  goes unchecked, the commits of every local branch that the remote does not have yet
  are checked as well.

Exit status: 0 push allowed, 1 refused (or the configuration is unreadable), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from pachhook.commands._common import new_parser, parse_args
from pachhook.core import gitrepo


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="pachhook check-push",
        description=(
            "Validate the pipeline templates in every commit being pushed, as they stand in"
            " that commit, and refuse the push if any is invalid. Reads plain git's pre-push"
            " stdin lines or the pre-commit framework's PRE_COMMIT_* variables; run by hand"
            " (no input), it checks the commits of HEAD that no remote has."
        ),
    )
    parser.add_argument("remote", nargs="?", help="remote name (git passes it to the pre-push hook)")
    parser.add_argument("url", nargs="?", help="remote URL (git passes it to the pre-push hook)")
    parser.add_argument(
        "--strict", action="store_true", help="treat an image without a tag, or tagged :latest, as an error"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        return check_push(args, os.environ, _stdin_lines())
    except gitrepo.GitError as error:
        print(f"pachhook check-push: {error}", file=sys.stderr)
        return 1


def _stdin_lines() -> List[str]:
    if sys.stdin is None or sys.stdin.isatty():
        return []
    return [line for line in sys.stdin.read().splitlines() if line.strip()]


def pushed_commits(remote: Optional[str], lines: Sequence[str], env: Mapping[str, str]) -> List[str]:
    """The commits a push sends, oldest first, without repeats."""
    revs: List[List[str]] = []
    pre_commit_remote = env.get("PRE_COMMIT_REMOTE_NAME")
    if pre_commit_remote:
        remote = pre_commit_remote
        from_ref, to_ref = env.get("PRE_COMMIT_FROM_REF"), env.get("PRE_COMMIT_TO_REF")
        if from_ref and to_ref:
            revs.append([to_ref, "--not", from_ref])
        else:
            revs.append([env.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD", "--not", f"--remotes={remote}"])
        revs.append(["--branches", "--not", f"--remotes={remote}"])
    elif lines:
        for line in lines:
            parts = gitrepo.split_ref_line(line)
            if parts is None:
                raise gitrepo.GitError(f"unexpected pre-push input line: {line!r}")
            _, local_sha, _, remote_sha = parts
            if local_sha == gitrepo.ZERO_SHA:
                continue  # a deletion pushes no commit
            if remote_sha != gitrepo.ZERO_SHA and gitrepo.rev_exists(remote_sha):
                revs.append([local_sha, "--not", remote_sha])
            elif remote:
                revs.append([local_sha, "--not", f"--remotes={remote}"])
            else:
                revs.append([local_sha, "--not", "--remotes"])
    else:
        revs.append(["HEAD", "--not", f"--remotes={remote}" if remote else "--remotes"])
    commits: List[str] = []
    seen = set()
    for rev in revs:
        for commit in gitrepo.rev_list(["--topo-order", "--reverse", *rev]):
            if commit not in seen:
                seen.add(commit)
                commits.append(commit)
    return commits


def check_push(args: argparse.Namespace, env: Mapping[str, str], lines: Sequence[str]) -> int:
    from pachhook.core.config import ConfigError, load_config
    from pachhook.queue.affected import commit_templates

    root = gitrepo.repo_root()
    try:
        config = load_config(root)
    except ConfigError as error:
        for problem in error.problems:
            print(f"pachhook check-push: {problem}", file=sys.stderr)
        return 1
    commits = pushed_commits(args.remote, lines, env)
    # (path, blob) -> commits holding that version of the template
    versions: Dict[Tuple[str, str], List[str]] = {}
    for commit in commits:
        entries = gitrepo.ls_tree(commit, root)
        for path in commit_templates(entries, config.templates):
            versions.setdefault((path, entries[path].sha), []).append(commit)
    versions = {key: holders for key, holders in versions.items() if not _foreign(root, key, config)}
    refused = check_versions(root, versions, args.strict, config.jsonnet_args, config.tag)
    _tell_failed_deliveries(root)
    templates = len({path for path, _ in versions})
    if refused:
        bad_commits = {commit for key in refused for commit in versions[key]}
        print(
            f"pachhook check-push: push refused: {len(refused)} invalid template version(s) in "
            f"{len(bad_commits)} of the {len(commits)} commit(s) pushed; {_how_to_fix(root, commits, bad_commits)}",
            file=sys.stderr,
        )
        return 1
    print(f"pachhook check-push: {len(commits)} commit(s), {templates} template(s): all valid")
    if config.plan_on_push and commits:
        # by hand (no pre-push input) the commits checked are HEAD's, so its branch is the one planned for
        print_push_plan(root, commits[-1], pushed_branch(lines, env) or gitrepo.current_branch(root), config)
    return 0


def _how_to_fix(root: Path, commits: Sequence[str], bad: "set[str]") -> str:
    """What gets the push through. Every pushed commit is checked, so a fix in a new commit
    leaves the broken one in the push: the broken commits themselves must change. None of
    them is on the remote yet, so rewriting them rewrites no one else's history."""
    oldest = next(commit for commit in commits if commit in bad)
    head = gitrepo.rev_parse("HEAD", root)
    if bad == {head}:
        return (
            "fix the template, git add it and git commit --amend (the commit is not on the remote yet), then push again"
        )
    parents = gitrepo.run(["rev-list", "--parents", "-n", "1", oldest], root).stdout.split()
    base = f"{oldest[:12]}^" if len(parents) > 1 else "--root"
    return (
        "a fix in a new commit leaves the broken one in the push (every pushed commit is checked);"
        f" these commits are not on the remote yet, so fix {oldest[:12]} itself: git rebase -i {base},"
        f" mark {oldest[:12]} edit (or squash your fixing commit into it), then push again"
    )


def pushed_branch(lines: Sequence[str], env: Mapping[str, str]) -> str:
    """The local branch being pushed (the first one), "" when none is named."""
    if env.get("PRE_COMMIT_LOCAL_BRANCH"):
        return env["PRE_COMMIT_LOCAL_BRANCH"].removeprefix("refs/heads/")
    for line in lines:
        parts = gitrepo.split_ref_line(line)
        if parts and parts[0].startswith("refs/heads/"):
            return parts[0][len("refs/heads/") :]
    return ""


def print_push_plan(root: Path, commit: str, branch: str, config: object) -> None:
    """`plan_on_push`: one line per pipeline of the newest pushed commit; never stops the push."""
    from pachhook.deliver.preview import PlanError, make_plan, summary_lines

    prefix = f"pachhook plan: {commit[:12]}"
    try:
        lines = summary_lines(make_plan(root, commit, branch, config))
    except PlanError as error:
        lines = [f"not planned: {error.problems[0]}"]
    except Exception as error:  # the plan is information: a failure to make it must not refuse the push
        lines = [f"not planned: {type(error).__name__}: {' '.join(str(error).split())}"]
    for line in lines:
        print(f"{prefix}: {line}")


def _tell_failed_deliveries(root: Path) -> None:
    """Deliveries that failed or are stuck since the user last heard: one line each (never fails the push)."""
    from pachhook.queue.attention import tell_unseen

    try:
        tell_unseen(str(gitrepo.git_common_dir(root)), lambda line: print(f"pachhook: {line}", file=sys.stderr))
    except Exception as error:  # the queue is a side show here: the push goes on
        print(f"pachhook: cannot read the delivery queue: {type(error).__name__}: {error}", file=sys.stderr)


def _foreign(root: Path, version: Tuple[str, str], config: object) -> bool:
    """A version named like a template only by the conventions that holds no pipeline spec."""
    from pachhook.queue.affected import foreign_file, parse_template
    from pachhook.spec.sniff import has_conventional_name

    path, blob = version
    if not has_conventional_name(path):
        return False
    data = gitrepo.read_blobs([blob], root).get(blob)
    return foreign_file(path, parse_template(data, path, getattr(config, "jsonnet_args", None)), config)


def check_versions(
    root: Path,
    versions: Dict[Tuple[str, str], List[str]],
    strict: bool,
    jsonnet_args: Optional[Dict[str, str]] = None,
    tag_form: str = "full",
) -> List[Tuple[str, str]]:
    """Validate each distinct template version once; print the problems; return the bad ones."""
    from pachhook.validate.checks import validate_bytes
    from pachhook.validate.reporters import format_text

    blobs = gitrepo.read_blobs([blob for _, blob in versions], root)
    refused = []
    for (path, blob), holders in versions.items():
        diagnostics = validate_bytes(
            path, blobs.get(blob, b""), strict=strict, jsonnet_args=jsonnet_args, tag_form=tag_form
        )
        if not diagnostics:
            continue
        first = holders[0][:12]
        # git's `rev:path` names the file as it stands in that commit.
        placed = [item.replace(file=f"{first}:{path}") for item in diagnostics]
        print(format_text(placed), file=sys.stderr)
        if len(holders) > 1:
            print(f"  (the same version of {path} is in {len(holders) - 1} more pushed commit(s))", file=sys.stderr)
        if any(item.severity == "error" for item in diagnostics):
            refused.append((path, blob))
    return refused

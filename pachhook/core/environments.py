"""Environments: which branches deliver where (pachctl context, Pachyderm project, naming).

`[environments.NAME]` tables bind branch globs to a pachctl context (passed to pachctl
as PACH_CONTEXT: pachctl 2.x has no `--context` flag), a Pachyderm project (`--project`),
an optional pipeline-name suffix and per-environment settings. With none configured,
one implicit environment, `default`, delivers only the repository's default branch
(or the top-level `branches`) to the active context.

On the post-commit path: plain classes, stdlib imports inside functions (see config.py).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

IMPLICIT_NAME = "default"
ENVIRONMENT_KEYS = (
    "branches",
    "context",
    "project",
    "pipeline_suffix",
    "deployment_id",
    "reprocess",
    "pin_digest",
    "backend",
    "verify",
    "verify_timeout",
)
# Pachyderm names (pipelines, repos, projects) are letters, digits, `_` and `-`; a
# suffix made from a branch keeps to those and to a length that leaves room for the name.
SLUG_MAX = 40


class Environment:
    """Where one set of branches delivers. Unset per-environment settings are None."""

    __slots__ = ("name", *ENVIRONMENT_KEYS, "implicit")

    def __init__(
        self,
        name: str,
        branches: Optional[List[str]] = None,
        context: str = "",
        project: str = "",
        pipeline_suffix: str = "",
        deployment_id: str = "",
        reprocess: Optional[bool] = None,
        pin_digest: Optional[bool] = None,
        backend: Optional[str] = None,
        implicit: bool = False,
        verify: Optional[bool] = None,
        verify_timeout: Optional[float] = None,
    ) -> None:
        self.name = name
        self.branches: List[str] = list(branches or [])
        self.context = context  # "" = the active context of the user's pachctl configuration
        self.project = project  # "" = the context's project (pachd's `default` when none)
        self.pipeline_suffix = pipeline_suffix
        self.deployment_id = deployment_id
        self.reprocess = reprocess
        self.pin_digest = pin_digest
        self.backend = backend
        # after an update, wait (bounded) for the job it started; None: the top-level keys
        self.verify = verify
        self.verify_timeout = verify_timeout
        self.implicit = implicit

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return f"Environment({self.name!r}, branches={self.branches!r}, context={self.context!r})"

    def matches(self, branch: str) -> bool:
        return bool(branch) and any(_branch_matches(branch, glob) for glob in self.branches)

    def describe(self) -> str:
        """`env NAME (context C, project P)`: how every line about a delivery names it."""
        where = [f"context {self.context}" if self.context else "the active pachctl context"]
        if self.project:
            where.append(f"project {self.project}")
        return f"env {self.name} ({', '.join(where)})"

    def suffix_for(self, branch: str) -> str:
        """The pipeline-name suffix with `{{ branch_slug }}` filled in ("" when none)."""
        if not self.pipeline_suffix:
            return ""
        import re

        return re.sub(r"\{\{\s*branch_slug\s*\}\}", branch_slug(branch), self.pipeline_suffix)


def _branch_matches(branch: str, glob: str) -> bool:
    """fnmatch's reading of a branch glob (`*` crosses `/`); a plain name is compared as text,
    which spares the post-commit hook fnmatch's `re` (most configurations name branches)."""
    if not any(char in glob for char in "*?["):
        return branch == glob
    import fnmatch

    return fnmatch.fnmatchcase(branch, glob)


def branch_slug(branch: str) -> str:
    """A branch name as a Pachyderm-name fragment: `experiment/Try Sobel` -> `experiment-try-sobel`."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-") or "branch"


def parse_environments(checker: Any, value: Any) -> Dict[str, Environment]:
    """`[environments.NAME]` tables; problems go to `checker` (config._Checker), one line each."""
    import re

    found: Dict[str, Environment] = {}
    if not isinstance(value, dict) or not value:
        checker.problem(("environments",), "must be a table of environments ([environments.NAME])")
        return found
    for name, body in value.items():
        keys: Tuple[str, ...] = ("environments", name)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            checker.problem(keys, "an environment name is letters, digits, `.`, `_` and `-`")
            continue
        if not isinstance(body, dict):
            checker.problem(keys, f"must be a table with {', '.join(ENVIRONMENT_KEYS)}")
            continue
        env = Environment(name)
        for key, item in body.items():
            where = keys + (key,)
            if key == "branches":
                if not isinstance(item, list) or not item or not all(isinstance(v, str) and v for v in item):
                    checker.problem(where, "must be a non-empty array of branch globs")
                    continue
                env.branches = [b[len("refs/heads/") :] if b.startswith("refs/heads/") else b for b in item]
            elif key in ("context", "project", "deployment_id", "pipeline_suffix"):
                if not isinstance(item, str) or not item.strip() or item != item.strip():
                    checker.problem(where, "must be a non-empty string without surrounding spaces")
                    continue
                if key == "project" and not re.fullmatch(r"[A-Za-z0-9_-]+", item):
                    checker.problem(where, "a Pachyderm project name is letters, digits, `_` and `-`")
                    continue
                if key == "pipeline_suffix":
                    filled = re.sub(r"\{\{\s*branch_slug\s*\}\}", "x", item)
                    if not re.fullmatch(r"[A-Za-z0-9_-]+", filled):
                        checker.problem(
                            where, "may hold letters, digits, `_`, `-` and `{{ branch_slug }}` (a pipeline name part)"
                        )
                        continue
                setattr(env, key, item)
            elif key in ("reprocess", "pin_digest", "verify"):
                if not isinstance(item, bool):
                    checker.problem(where, "must be true or false")
                    continue
                setattr(env, key, item)
            elif key == "verify_timeout":
                if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < float("inf"):
                    checker.problem(where, f"must be a positive number of seconds, not {item!r}")
                    continue
                env.verify_timeout = float(item)
            elif key == "backend":
                if item not in ("pachctl", "api"):
                    checker.problem(where, 'must be "pachctl" or "api"')
                    continue
                env.backend = item
            else:
                checker.problem(where, f"unknown key (known keys: {', '.join(ENVIRONMENT_KEYS)})")
        if not env.branches:
            checker.problem(keys, "needs `branches` (the branch globs that deliver to it)")
            continue
        found[name] = env
    # The same glob in two environments can never be meant; overlapping globs are caught
    # when a branch matches both (environment_for).
    owners: Dict[str, str] = {}
    for env in found.values():
        for glob in env.branches:
            if glob in owners and owners[glob] != env.name:
                checker.problem(
                    ("environments", env.name, "branches"),
                    f"branch glob {glob!r} is in environments {owners[glob]} and {env.name}: a branch delivers to one",
                )
            owners.setdefault(glob, env.name)
    return found


def environment_for(config: Any, branch: str, root: Any = None) -> Optional[Environment]:
    """The environment `branch` delivers to, None when it delivers nowhere.

    Raises config.ConfigError when the branch matches two environments.
    """
    environments: Dict[str, Environment] = getattr(config, "environments", None) or {}
    if environments:
        matching = [env for env in environments.values() if env.matches(branch)]
        if len(matching) > 1:
            from pachhook.core.config import ConfigError

            names = " and ".join(env.name for env in matching)
            raise ConfigError([f"branch {branch} matches environments {names}: make their branch globs disjoint"])
        return matching[0] if matching else None
    env = implicit_environment(config, root)
    return env if env.matches(branch) else None


def implicit_environment(config: Any, root: Any = None) -> Environment:
    """The environment of a configuration without `[environments]`: the top-level
    `branches`, else the repository's default branch, to the active context."""
    branches = getattr(config, "branches", None)
    if not branches:
        branches = [default_branch(root if root is not None else getattr(config, "root", None))]
    return Environment(IMPLICIT_NAME, branches=list(branches), implicit=True)


def all_environments(config: Any, root: Any = None) -> List[Environment]:
    environments: Dict[str, Environment] = getattr(config, "environments", None) or {}
    return list(environments.values()) or [implicit_environment(config, root)]


def default_branch(root: Any = None) -> str:
    """origin/HEAD's branch, else `init.defaultBranch`, else `main` or `master` (whichever exists)."""
    from pachhook.core import gitrepo

    try:
        common = gitrepo.git_common_dir_text(root)
    except Exception:  # not a repository: the conventional name
        return "main"
    from_origin = _origin_head_branch(common)
    if from_origin:
        return from_origin
    configured = gitrepo.config_get("init.defaultBranch", root)
    if configured:
        return configured
    packed = _read(os.path.join(common, "packed-refs"))
    for name in ("main", "master"):
        if os.path.exists(os.path.join(common, "refs", "heads", name)) or f" refs/heads/{name}\n" in packed + "\n":
            return name
    return "main"


def ask_default_branch_ahead(root: str, common_dir: str) -> None:
    """Start the git question `default_branch` will ask when origin/HEAD names no branch,
    so git answers while the caller reads its configuration (gitrepo.ask_ahead)."""
    from pachhook.core import gitrepo

    if not _origin_head_branch(common_dir):
        gitrepo.ask_ahead("config", root, "init.defaultBranch")


def _origin_head_branch(common_dir: str) -> str:
    head = _read(os.path.join(common_dir, "refs", "remotes", "origin", "HEAD"))
    return head[len("ref: refs/remotes/origin/") :] if head.startswith("ref: refs/remotes/origin/") else ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() if not path.endswith("packed-refs") else handle.read()
    except OSError:
        return ""

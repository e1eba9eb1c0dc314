"""A commit's build context: a clean checkout of the commit (never the working tree) in a folder.

Uncommitted edits therefore never leak into an image tagged with the commit's SHA. The folder
is written by git itself, into a temporary index, so checkout semantics apply as in a fresh
clone: smudge filters (Git LFS content when git-lfs is installed), `eol`/`text` conversion and
`ident`. Submodules are checked out when the image asks for them. Docker then reads the
folder, applies its `.dockerignore` and builds; pachhook decides nothing about which file is
sent, so the image holds what `docker build` of a clean checkout holds.

The reuse key names the inputs of a build from git alone, before anything is written: the
context's tree (path, mode and object of every entry, pipeline templates left out), the
Dockerfile, the build args, the platform and the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pachhook.core import gitrepo
from pachhook.core.sanitize import one_line

GIT_TIMEOUT = 3600  # seconds for one checkout: LFS content may come over the network
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
DEFAULT_PLATFORM = "linux/amd64"


class ContextError(Exception):
    """The build context cannot be made; str() is the one-line cause."""


@dataclass(frozen=True)
class BuildInputs:
    context: str  # directory relative to the repository root, posix, "" for the root itself
    dockerfile: str  # file relative to the repository root, posix
    build_args: Dict[str, str] = field(default_factory=dict)
    platform: str = DEFAULT_PLATFORM
    target: str = ""
    network: str = ""
    # BuildKit secrets by id: ("env", VARIABLE) or ("src", FILE); the values are never kept.
    secrets: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    submodules: bool = False


@dataclass
class ContextPlan:
    """What a build of one image at one commit takes, decided from git alone."""

    commit: str
    inputs: BuildInputs
    files: int  # files and links of the context (submodules count as one)
    left_out_of_key: List[str]  # pipeline templates: in the context, not in the key
    submodules: List[str]  # gitlinks in the context, from the repository root
    key: str


@dataclass
class Materialized:
    """The checked-out context on disk; `cleanup()` removes it."""

    root: Path  # temporary folder holding the checkout (and nothing the user owns)
    context_dir: Path
    dockerfile: Path
    size: int  # bytes of the files in the context folder
    files: int
    done: Optional[Callable[[], None]] = None  # what cleanup() does: remove a temporary folder, or unlock a kept one

    def cleanup(self) -> None:
        if self.done is not None:
            self.done()


# ---------------------------------------------------------------- paths and inputs


def repo_relative(path: str, what: str) -> str:
    """Normalise a repository-relative path; refuse one that is absolute or leaves the repository."""
    if not path or path in (".", "./"):
        return ""
    text = path.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise ContextError(f"{what} {path!r} is absolute; give it relative to the repository root")
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../"):
        raise ContextError(f"{what} {path!r} lies outside the repository")
    return "" if normal == "." else normal


def default_platform() -> str:
    """DOCKER_DEFAULT_PLATFORM when set (as docker's CLI reads it), else linux/amd64."""
    return os.environ.get("DOCKER_DEFAULT_PLATFORM", "").strip() or DEFAULT_PLATFORM


def resolve_inputs(template: str, image_config: Optional[object]) -> BuildInputs:
    """Context, Dockerfile, build args and settings for a template's image.

    Defaults: the template's directory as context, the Dockerfile in the context, the platform
    of default_platform().
    """

    def setting(name: str, default: object = None) -> object:
        value = getattr(image_config, name, None) if image_config is not None else None
        return default if value is None else value

    context_setting = setting("context")
    dockerfile_setting = setting("dockerfile")
    if context_setting is None:
        context = repo_relative(posixpath.dirname(template.replace("\\", "/")), "template directory")
    else:
        context = repo_relative(str(context_setting), "build context")
    if dockerfile_setting is None:
        dockerfile = posixpath.join(context, "Dockerfile") if context else "Dockerfile"
    else:
        dockerfile = repo_relative(str(dockerfile_setting), "Dockerfile")
        if not dockerfile:
            raise ContextError("Dockerfile setting names the repository root, not a file")
    build_args = setting("build_args", {})
    secrets = setting("secrets", {})
    return BuildInputs(
        context=context,
        dockerfile=dockerfile,
        build_args={str(k): str(v) for k, v in dict(build_args).items()},  # type: ignore[call-overload]
        platform=str(setting("platform") or default_platform()),
        target=str(setting("target", "")),
        network=str(setting("network", "")),
        secrets=dict(secrets),  # type: ignore[call-overload]
        submodules=bool(setting("submodules", False)),
    )


# ---------------------------------------------------------------- plan and key


def _list_tree(repo_root: Path, commit: str, paths: Sequence[str] = ()) -> Dict[str, gitrepo.TreeEntry]:
    """Entries of commit under paths (and the folders leading to them); every entry without paths."""
    try:
        return gitrepo.ls_tree(commit, repo_root, paths=paths, literal_pathspecs=True)
    except gitrepo.GitError as error:
        raise ContextError(f"git ls-tree failed: {error}") from None


def plan_context(
    repo_root: Path,
    commit: str,
    inputs: BuildInputs,
    leave_out: Optional[Callable[[str], bool]] = None,
    scope: str = "",
) -> ContextPlan:
    """Check the context and Dockerfile of commit, and compute the reuse key.

    leave_out(path from the repo root) names files kept out of the key (pachhook's pipeline
    templates): a commit changing only those reuses the image, whose copy of the template is
    then the older one. The key is the sha256 of the context's tree entries, the Dockerfile,
    the sorted build args, platform, target, whether submodules are checked out, and scope
    (the image repository and the source repository), so that an image is only reused for the
    repository and image name that built it: its labels name that source.
    """
    listing = _list_tree(repo_root, commit, [inputs.context + "/", inputs.dockerfile] if inputs.context else [])
    if inputs.context and getattr(listing.get(inputs.context), "kind", "") != "tree":
        raise ContextError(f"build context {inputs.context!r} is not a directory in commit {commit[:12]}")
    dockerfile = listing.get(inputs.dockerfile)
    if dockerfile is None or dockerfile.kind != "blob" or dockerfile.mode == "120000":
        what = "a symlink" if dockerfile is not None and dockerfile.mode == "120000" else "missing"
        raise ContextError(f"Dockerfile {inputs.dockerfile!r} is {what} in commit {commit[:12]}")

    prefix = inputs.context + "/" if inputs.context else ""
    entries = sorted(
        (path, entry) for path, entry in listing.items() if path.startswith(prefix) and entry.kind in ("blob", "commit")
    )
    refuse_escaping_links(repo_root, commit, [entry for _, entry in entries])
    keyed: List[List[str]] = []
    left_out: List[str] = []
    submodules: List[str] = []
    for path, entry in entries:
        if entry.kind == "commit":
            submodules.append(path)
        if leave_out is not None and entry.kind == "blob" and leave_out(path):
            left_out.append(path)
            continue
        keyed.append([path[len(prefix) :], entry.mode, entry.sha])
    material = json.dumps(
        {
            "tree": keyed,
            "dockerfile": [inputs.dockerfile, dockerfile.sha],
            "build_args": sorted(inputs.build_args.items()),
            "platform": inputs.platform,
            "target": inputs.target,
            "submodules": inputs.submodules,
            "scope": scope,
        }
    )
    return ContextPlan(
        commit=commit,
        inputs=inputs,
        files=len(entries),
        left_out_of_key=left_out,
        submodules=submodules,
        key=hashlib.sha256(material.encode()).hexdigest(),
    )


def _symlink_escapes(link_path: str, target: str) -> bool:
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    return resolved == ".." or resolved.startswith("../")


def refuse_escaping_links(repo_root: Path, commit: str, entries: Sequence[gitrepo.TreeEntry]) -> None:
    """Raise ContextError for the first symlink among entries that points out of the repository."""
    links = [entry for entry in entries if entry.mode == "120000"]
    if not links:
        return
    try:
        targets = gitrepo.read_blobs([entry.sha for entry in links], repo_root)
    except gitrepo.GitError as error:
        raise ContextError(f"git cat-file failed: {error}") from None
    for entry in links:
        target = targets.get(entry.sha, b"").decode("utf-8", "surrogateescape")
        if _symlink_escapes(entry.path, target):
            raise ContextError(
                f"symlink {entry.path!r} in commit {commit[:12]} points outside the repository "
                f"(-> {target}); refusing to build"
            )


# ---------------------------------------------------------------- checkout


def _lfs_options() -> List[str]:
    """git-lfs's filter for this checkout when git-lfs is installed, even without `git lfs install`."""
    if not shutil.which("git-lfs"):
        return []
    return [
        "-c",
        "filter.lfs.process=git-lfs filter-process",
        "-c",
        "filter.lfs.smudge=git-lfs smudge -- %f",
        "-c",
        "filter.lfs.clean=git-lfs clean -- %f",
        "-c",
        "filter.lfs.required=true",
    ]


def _git_at(git_dir: Path, work_tree: Path, index: Path, args: Sequence[str], what: str) -> bytes:
    """One git command on git_dir with a temporary index and work tree; ContextError naming what."""
    env = dict(gitrepo.env_without_git_vars(), GIT_INDEX_FILE=str(index))
    # Parallel checkout (one worker per core) writes many small files faster.
    argv = ["-c", "core.hooksPath=/dev/null", "-c", "checkout.workers=0", *_lfs_options()]
    argv += [f"--git-dir={git_dir}", f"--work-tree={work_tree}"]
    try:
        result = gitrepo.run([*argv, *args], env=env, timeout=GIT_TIMEOUT)
    except gitrepo.GitError:
        raise ContextError(f"checking out {what} took longer than {GIT_TIMEOUT}s") from None
    if result.returncode != 0:
        # git's last line says why (an LFS smudge failure ends with git's own "external filter failed").
        lines = [line for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        cause = one_line(lines[-1] if lines else f"exit status {result.returncode}", 500)
        hint = ""
        if "lfs" in " ".join(lines).lower():
            hint = "; fetch the LFS content first (git lfs fetch) or check the LFS remote"
        raise ContextError(f"checking out {what} failed: {cause.replace('fatal: ', '', 1)}{hint}")
    return result.stdout


def _checkout(git_dir: Path, commit: str, work_tree: Path, index: Path, paths: Sequence[str], what: str) -> None:
    """`git checkout COMMIT -- PATHS` into work_tree, through a temporary index.

    The whole commit is first read into that index, so `.gitattributes` above the context
    count as in a clone; hooks are off (a file checkout would run post-checkout).
    """
    _git_at(git_dir, work_tree, index, ["read-tree", commit], what)
    _git_at(git_dir, work_tree, index, ["--literal-pathspecs", "checkout", commit, "--", *paths], what)


def _submodule_names(repo_root: Path, commit: str) -> Dict[str, str]:
    """Submodule name by path, from the commit's `.gitmodules`."""
    try:
        out = gitrepo.git(
            ["config", "--blob", f"{commit}:.gitmodules", "-z", "--get-regexp", r"^submodule\..*\.path$"], repo_root
        )
    except gitrepo.GitError:
        return {}
    names: Dict[str, str] = {}
    for record in out.decode("utf-8", "surrogateescape").split("\0"):
        key, _, path = record.partition("\n")
        if key.startswith("submodule.") and key.endswith(".path"):
            names[posixpath.normpath(path)] = key[len("submodule.") : -len(".path")]
    return names


def _checkout_submodules(repo_root: Path, plan: ContextPlan, tree: Path, scratch: Path) -> None:
    names = _submodule_names(repo_root, plan.commit)
    common = gitrepo.git_common_dir(repo_root).resolve()
    listing = _list_tree(repo_root, plan.commit, plan.submodules)
    for number, path in enumerate(plan.submodules):
        sha = listing[path].sha
        module_dir = common / "modules" / names.get(path, path)
        fix = f"run `git submodule update --init -- {path}` in the repository, or set submodules = false"
        if not module_dir.is_dir():
            raise ContextError(f"submodule {path!r} is not cloned here; {fix}")
        known = gitrepo.run([f"--git-dir={module_dir}", "cat-file", "-e", f"{sha}^{{commit}}"], timeout=60)
        if known.returncode != 0:
            raise ContextError(f"submodule {path!r} lacks commit {sha[:12]} here; {fix}")
        _checkout(module_dir, sha, tree / path, scratch / f"submodule-{number}.index", ["."], f"submodule {path}")


def _lfs_pointers(context_dir: Path) -> List[str]:
    """Files of the folder that still are Git LFS pointers (LFS content not checked out)."""
    found = []
    for folder, _dirs, files in os.walk(context_dir):
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 1024:
                    continue
                with open(path, "rb") as handle:
                    if handle.read(len(LFS_POINTER)) == LFS_POINTER:
                        found.append(os.path.relpath(path, context_dir))
            except OSError:
                continue
    return sorted(found)


def _lfs_tracked(git_dir: Path, work_tree: Path, index: Path, paths: Sequence[str]) -> List[str]:
    """Those of paths (from the repository root) whose `filter` attribute is lfs, read from the
    temporary index (the commit's `.gitattributes`)."""
    if not paths:
        return []
    out = _git_at(git_dir, work_tree, index, ["check-attr", "--cached", "-z", "filter", "--", *paths], "attributes")
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    return [fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] == "lfs"]


def _folder_size(folder: Path) -> Tuple[int, int]:
    size = files = 0
    for current, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(current, name)).st_size
                files += 1
            except OSError:
                continue
    return size, files


def _attributes_paths(listing: Dict[str, gitrepo.TreeEntry], context: str) -> List[str]:
    """The `.gitattributes` files of the commit that apply to the context: those in the folders
    leading to it (the ones inside it come with its checkout)."""
    parts = context.split("/") if context else []
    candidates = ["/".join(parts[:n] + [".gitattributes"]) for n in range(len(parts))]
    return [path for path in candidates if path in listing]


def _fingerprint(repo_root: Path, plan: ContextPlan, listing: Dict[str, gitrepo.TreeEntry]) -> str:
    """What, besides the files' contents, decides how git writes them: every `.gitattributes` of
    the commit, the checkout settings of git's configuration, the LFS filter and the umask.

    A reused checkout folder is thrown away when this changes, since git rewrites only files
    whose content changed."""
    attributes = sorted((path, entry.sha) for path, entry in listing.items() if path.split("/")[-1] == ".gitattributes")
    settings = gitrepo.checkout_settings(repo_root)
    mask = os.umask(0)
    os.umask(mask)
    material = json.dumps([1, attributes, settings, _lfs_options(), mask, plan.inputs.context, plan.inputs.dockerfile])
    return hashlib.sha256(material.encode()).hexdigest()


class _Lock:
    """An exclusive, non-blocking lock on a file (released by close())."""

    def __init__(self, path: Path) -> None:
        import fcntl

        self.handle = open(path, "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise

    def close(self) -> None:
        self.handle.close()


def materialize(
    repo_root: Path, plan: ContextPlan, parent: Optional[str] = None, keep_in: Optional[Path] = None
) -> Materialized:
    """Check the context (and the Dockerfile) of plan's commit out into a folder.

    The folder mirrors the repository's layout, so a Dockerfile outside the context keeps its
    place. With keep_in (a folder pachhook owns, one per image), the checkout is kept there
    between builds and brought to the new commit by git, which rewrites only the files that
    changed; the folder's name then stays the same, so BuildKit sends only what changed too.
    Without it (or when another build holds that folder, or with submodules) a new temporary
    folder under parent is used and removed by cleanup(). Raises ContextError; on failure no
    temporary folder is left behind.
    """
    if keep_in is not None and not (plan.inputs.submodules and plan.submodules):
        try:
            keep_in.mkdir(parents=True, exist_ok=True)
            lock = _Lock(keep_in / "lock")
        except OSError:
            lock = None  # busy (a concurrent build of the same image) or not writable
        if lock is not None:
            try:
                return _materialize_kept(repo_root, plan, keep_in, lock)
            except BaseException:
                lock.close()
                raise
    root = Path(tempfile.mkdtemp(prefix="pachhook-context-", dir=parent))
    try:
        tree = root / "tree"
        tree.mkdir()
        git_dir = gitrepo.git_dir(repo_root).resolve()
        paths = [plan.inputs.context or ".", plan.inputs.dockerfile]
        _checkout(git_dir, plan.commit, tree, root / "index", paths, f"commit {plan.commit[:12]}")
        if plan.inputs.submodules and plan.submodules:
            _checkout_submodules(repo_root, plan, tree, root)
        return _finish(git_dir, plan, root, tree, root / "index", lambda: shutil.rmtree(root, ignore_errors=True))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _materialize_kept(repo_root: Path, plan: ContextPlan, folder: Path, lock: "_Lock") -> Materialized:
    inputs = plan.inputs
    git_dir = gitrepo.git_dir(repo_root).resolve()
    tree, index, marker = folder / "tree", folder / "index", folder / "fingerprint"
    listing = _list_tree(repo_root, plan.commit)
    fingerprint = _fingerprint(repo_root, plan, listing)
    try:
        kept = marker.read_text() == fingerprint and tree.is_dir() and index.is_file()
    except OSError:
        kept = False
    # Unmarked while git works: a checkout cut short is thrown away next time.
    marker.unlink(missing_ok=True)
    if not kept:
        shutil.rmtree(tree, ignore_errors=True)
        index.unlink(missing_ok=True)
        tree.mkdir()
    prefix = inputs.context + "/" if inputs.context else ""
    attributes = _attributes_paths(listing, inputs.context) + sorted(
        path for path in listing if path.startswith(prefix) and path.split("/")[-1] == ".gitattributes"
    )
    what = f"commit {plan.commit[:12]}"
    # --no-overlay: files the new commit no longer has leave the folder too. The attributes
    # files go first, in a command of their own, so that git knows them when it writes the rest.
    for paths in ([*attributes] if attributes else [], [inputs.context or ".", inputs.dockerfile, *attributes]):
        if paths:
            command = ["--literal-pathspecs", "checkout", "--no-overlay", plan.commit, "--", *paths]
            _git_at(git_dir, tree, index, command, what)
    materialized = _finish(git_dir, plan, folder, tree, index, lock.close)
    marker.write_text(fingerprint)
    return materialized


def _finish(
    git_dir: Path, plan: ContextPlan, root: Path, tree: Path, index: Path, cleanup: Callable[[], None]
) -> Materialized:
    """Refuse LFS pointers, measure the context; the Materialized record."""
    inputs = plan.inputs
    context_dir = tree / inputs.context if inputs.context else tree
    pointers = _lfs_pointers(context_dir)
    if pointers:
        prefix = inputs.context + "/" if inputs.context else ""
        tracked = _lfs_tracked(git_dir, tree, index, [prefix + path for path in pointers])
        if tracked:
            fix = (
                "fetch it (git lfs fetch) and try again"
                if shutil.which("git-lfs")
                else "install git-lfs (https://git-lfs.com) and try again"
            )
            more = f" and {len(tracked) - 1} more" if len(tracked) > 1 else ""
            raise ContextError(f"{tracked[0]}{more} would be sent as a Git LFS pointer, not its content; {fix}")
    size, files = _folder_size(context_dir)
    return Materialized(
        root=root, context_dir=context_dir, dockerfile=tree / inputs.dockerfile, size=size, files=files, done=cleanup
    )


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"

"""A commit's build context, exported from git (never the working tree) as a tar for the engine.

Uncommitted edits therefore never leak into an image tagged with the commit's SHA. The tar
holds the files of the context directory as that commit has them, minus what the context's
`.dockerignore` (also as committed) excludes, following docker's own matching rules.
Pipeline templates are left out (they are deployment settings, not build input). The context
key names the inputs of a build: every file sent (path, mode, git blob), the Dockerfile blob
and the build args; the same key means the same image can be reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple

from pachhook.core import gitrepo
from pachhook.core.gitrepo import GitError, TreeEntry

# Name of the Dockerfile inside the tar when the configured one lies outside the context;
# docker's CLI does the same with a random name.
OUTSIDE_DOCKERFILE = ".dockerfile.pachhook"


class ContextError(Exception):
    """The build context cannot be exported; str() is the one-line cause."""


@dataclass(frozen=True)
class BuildInputs:
    context: str  # directory relative to the repository root, posix, "" for the root itself
    dockerfile: str  # file relative to the repository root, posix
    build_args: Dict[str, str] = field(default_factory=dict)


@dataclass
class ExportedContext:
    tar: IO[bytes]  # positioned at 0
    dockerfile: str  # path of the Dockerfile inside the tar
    files: int
    excluded: int
    skipped_submodules: List[str]


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


def resolve_inputs(template: str, image_config: Optional[object]) -> BuildInputs:
    """Context, Dockerfile and build args for a template's image.

    Defaults: the template's directory as context and the Dockerfile in the context.
    """
    context_setting = getattr(image_config, "context", None) if image_config else None
    dockerfile_setting = getattr(image_config, "dockerfile", None) if image_config else None
    build_args = dict(getattr(image_config, "build_args", None) or {}) if image_config else {}
    if context_setting is None:
        context = repo_relative(posixpath.dirname(template.replace("\\", "/")), "template directory")
    else:
        context = repo_relative(context_setting, "build context")
    if dockerfile_setting is None:
        dockerfile = posixpath.join(context, "Dockerfile") if context else "Dockerfile"
    else:
        dockerfile = repo_relative(dockerfile_setting, "Dockerfile")
        if not dockerfile:
            raise ContextError("Dockerfile setting names the repository root, not a file")
    return BuildInputs(
        context=context, dockerfile=dockerfile, build_args={str(k): str(v) for k, v in build_args.items()}
    )


# ---------------------------------------------------------------- git plumbing


def list_tree(repo_root: Path, commit: str, context: str, also: Sequence[str] = ()) -> Dict[str, TreeEntry]:
    """Entries of commit under context, plus the paths in `also` and the folders leading to
    them, by path from the repository root: one `git ls-tree`."""
    paths = [context + "/", *also] if context else []
    try:
        return gitrepo.ls_tree(commit, repo_root, paths=paths, literal_pathspecs=True)
    except GitError as error:
        raise ContextError(f"git ls-tree failed: {error}") from None


def _blobs(repo_root: Path, shas: Sequence[str]) -> Dict[str, bytes]:
    """Contents of the blobs by SHA, from one `git cat-file --batch` process."""
    try:
        contents = gitrepo.read_blobs(shas, repo_root)
    except GitError as error:
        raise ContextError(f"git cat-file failed: {error}") from None
    for sha in shas:
        if sha not in contents:
            raise ContextError(f"git cat-file could not read object {sha}")
    return contents


# ---------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    """Docker's translation of a .dockerignore pattern (Go filepath.Match plus `**`)."""
    out = "^"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(ch)
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out += "[" + body.replace("\\", "\\\\") + "]"
                i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$", re.DOTALL)


@dataclass
class DockerIgnore:
    patterns: List[Tuple[bool, "re.Pattern[str]"]]  # (is exception "!", regex)

    @classmethod
    def parse(cls, text: str) -> "DockerIgnore":
        patterns = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/")
            if line == ".":
                continue
            patterns.append((exception, _pattern_regex(line)))
        return cls(patterns)

    def excludes(self, path: str) -> bool:
        """Whether path (relative to the context) stays out: the last matching pattern wins,
        and a pattern matching a parent directory matches the file too."""
        parts = path.split("/")
        parents = ["/".join(parts[:n]) for n in range(1, len(parts))]
        excluded = False
        for exception, regex in self.patterns:
            if exception != excluded:
                continue  # an exception can only re-include, a plain pattern only exclude
            if regex.match(path) or any(regex.match(parent) for parent in parents):
                excluded = not exception
        return excluded


# ---------------------------------------------------------------- plan, key and export


@dataclass
class ContextPlan:
    """What goes to the engine for one build, decided from the commit alone."""

    commit: str
    inputs: BuildInputs
    chosen: List[Tuple[str, TreeEntry]]  # (path inside the context, entry), sorted
    dockerfile_name: str  # path of the Dockerfile inside the tar
    dockerfile_sha: str
    dockerfile_inside: bool
    ignore_text: str
    excluded: int  # left out by .dockerignore
    left_out: List[str]  # left out by the caller's rule (pipeline templates)
    skipped_submodules: List[str]
    key: str


def plan_context(
    repo_root: Path,
    commit: str,
    inputs: BuildInputs,
    leave_out: Optional[Callable[[str], bool]] = None,
    scope: str = "",
) -> ContextPlan:
    """Decide the files of the build context of commit and its context key.

    leave_out(path from the repo root) names files that are never build input (pachhook's
    pipeline templates), so changing only those neither rebuilds nor reaches the image.
    The key is the sha256 of what is sent: each file's path, mode and blob, the Dockerfile blob
    and the sorted build args, plus scope (the image repository and the source repository), so
    that an image is only reused for the repository and image name that built it: its labels
    name that source.
    """
    listing = list_tree(repo_root, commit, inputs.context, also=(inputs.dockerfile,))
    if inputs.context and getattr(listing.get(inputs.context), "kind", "") != "tree":
        raise ContextError(f"build context {inputs.context!r} is not a directory in commit {commit[:12]}")
    dockerfile = listing.get(inputs.dockerfile)
    if dockerfile is None or dockerfile.kind != "blob" or dockerfile.mode == "120000":
        what = "a symlink" if dockerfile is not None and dockerfile.mode == "120000" else "missing"
        raise ContextError(f"Dockerfile {inputs.dockerfile!r} is {what} in commit {commit[:12]}")
    dockerfile_sha = dockerfile.sha

    prefix = inputs.context + "/" if inputs.context else ""
    by_rel: Dict[str, TreeEntry] = {
        path[len(prefix) :]: entry
        for path, entry in listing.items()
        if path.startswith(prefix) and entry.kind in ("blob", "commit")
    }
    ignore_entry = by_rel.get(".dockerignore")
    ignore_text = ""
    if ignore_entry is not None and ignore_entry.mode != "120000":
        ignore_text = _blobs(repo_root, [ignore_entry.sha])[ignore_entry.sha].decode("utf-8", "replace")
    ignore = DockerIgnore.parse(ignore_text)

    dockerfile_inside = inputs.dockerfile.startswith(prefix) and inputs.dockerfile[len(prefix) :] in by_rel
    dockerfile_name = inputs.dockerfile[len(prefix) :] if dockerfile_inside else OUTSIDE_DOCKERFILE

    chosen: List[Tuple[str, TreeEntry]] = []
    submodules: List[str] = []
    left_out: List[str] = []
    excluded = 0
    for rel, entry in sorted(by_rel.items()):
        if entry.kind == "commit":
            submodules.append(entry.path)
            continue
        # The engine needs the Dockerfile and .dockerignore even when they are ignored; it
        # drops them from COPY itself (as with docker's own CLI).
        if rel in (dockerfile_name, ".dockerignore"):
            chosen.append((rel, entry))
        elif leave_out is not None and leave_out(entry.path):
            left_out.append(entry.path)
        elif ignore.excludes(rel):
            excluded += 1
        else:
            chosen.append((rel, entry))

    # Checked when planning, not only when exporting: a dry run, or a build with the engine
    # down, must give the same refusal as a build.
    refuse_escaping_links(repo_root, commit, [entry for _, entry in chosen])
    material = json.dumps(
        {
            "files": [[rel, entry.mode, entry.sha] for rel, entry in chosen],
            "dockerfile": [dockerfile_name, dockerfile_sha],
            "build_args": sorted(inputs.build_args.items()),
            "scope": scope,
        }
    )
    return ContextPlan(
        commit=commit,
        inputs=inputs,
        chosen=chosen,
        dockerfile_name=dockerfile_name,
        dockerfile_sha=dockerfile_sha,
        dockerfile_inside=dockerfile_inside,
        ignore_text=ignore_text,
        excluded=excluded,
        left_out=left_out,
        skipped_submodules=submodules,
        key=hashlib.sha256(material.encode()).hexdigest(),
    )


def _symlink_escapes(link_path: str, target: str) -> bool:
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    return resolved == ".." or resolved.startswith("../")


def refuse_escaping_links(repo_root: Path, commit: str, entries: Sequence[TreeEntry]) -> None:
    """Raise ContextError for the first symlink among entries that points out of the repository."""
    links = [entry for entry in entries if entry.mode == "120000"]
    if not links:
        return
    targets = _blobs(repo_root, list(dict.fromkeys(entry.sha for entry in links)))
    for entry in links:
        target = targets[entry.sha].decode("utf-8", "surrogateescape")
        if _symlink_escapes(entry.path, target):
            raise ContextError(
                f"symlink {entry.path!r} in commit {commit[:12]} points outside the repository "
                f"(-> {target}); refusing to build"
            )


def _commit_time(repo_root: Path, commit: str) -> int:
    try:
        return int(gitrepo.git(["show", "-s", "--format=%ct", commit], repo_root).decode().strip() or 0)
    except GitError as error:
        raise ContextError(f"git show failed: {error}") from None


def export_context(repo_root: Path, plan: ContextPlan) -> ExportedContext:
    """Write the planned context as a tar (temporary file) ready for the engine's build API.

    Refuses symlinks that point outside the repository.
    """
    commit = plan.commit
    wanted = [entry.sha for _, entry in plan.chosen]
    if not plan.dockerfile_inside:
        wanted.append(plan.dockerfile_sha)
    contents = _blobs(repo_root, list(dict.fromkeys(wanted)))

    for _, entry in plan.chosen:
        if entry.mode == "120000":
            target = contents[entry.sha].decode("utf-8", "surrogateescape")
            if _symlink_escapes(entry.path, target):
                raise ContextError(
                    f"symlink {entry.path!r} in commit {commit[:12]} points outside the repository "
                    f"(-> {target}); refusing to build"
                )

    mtime = _commit_time(repo_root, commit)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made_dirs = set()

        def add_dirs(rel: str) -> None:
            parts = rel.split("/")[:-1]
            for n in range(1, len(parts) + 1):
                directory = "/".join(parts[:n])
                if directory not in made_dirs:
                    made_dirs.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tar.addfile(info)

        def add_file(rel: str, data: bytes, mode: int) -> None:
            add_dirs(rel)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))

        for rel, entry in plan.chosen:
            data = contents[entry.sha]
            if entry.mode == "120000":
                add_dirs(rel)
                info = tarfile.TarInfo(rel)
                info.type, info.linkname, info.mode, info.mtime = (
                    tarfile.SYMTYPE,
                    data.decode("utf-8", "surrogateescape"),
                    0o777,
                    mtime,
                )
                tar.addfile(info)
            elif rel == ".dockerignore" and not plan.dockerfile_inside:
                continue  # written below with the borrowed Dockerfile added to it
            else:
                add_file(rel, data, 0o755 if entry.mode == "100755" else 0o644)
        if not plan.dockerfile_inside:
            add_file(OUTSIDE_DOCKERFILE, contents[plan.dockerfile_sha], 0o644)
            # Keep the borrowed Dockerfile out of `COPY .`, as docker's CLI does.
            ignore = plan.ignore_text.rstrip("\n") + f"\n{OUTSIDE_DOCKERFILE}\n.dockerignore\n"
            add_file(".dockerignore", ignore.encode(), 0o644)
    spool.seek(0)
    return ExportedContext(
        tar=spool,
        dockerfile=plan.dockerfile_name,
        files=len(plan.chosen),
        excluded=plan.excluded,
        skipped_submodules=plan.skipped_submodules,
    )

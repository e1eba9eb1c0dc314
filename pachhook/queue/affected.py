"""Which pipelines a commit affects, and what their jobs must know.

A pipeline is affected when its *fingerprint* differs from the one of the pipeline's
newest job that is done, queued or running (what is delivered or on its way there). The
fingerprint is a digest of the template's blob, the Dockerfile's blob, the build
context's tree and the build arguments, all read from one `git ls-tree` of the commit:
no second commit needs reading, and a commit touching nothing yields the same digests.

Parsing a template costs a YAML import (~40 ms); results are cached in the queue's
database keyed by the template's blob SHA, so an unchanged template is parsed once.
"""

from __future__ import annotations

import os
import posixpath

from pachhook.core import gitrepo
from pachhook.core.globs import GlobSet, find_templates
from pachhook.queue.store import NewJob
from pachhook.spec.ordering import CycleError, dependency_order

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Any, Dict, List, Optional, Sequence

    from pachhook.core.config import Config
    from pachhook.queue.store import Queue

# Bumped whenever what a cache entry holds changes, so stale entries are not read.
CACHE_VERSION = "2"  # 2: entries say whether the file looks like a pipeline spec


class Affected:
    """The outcome of `find_affected` (a plain class: see core/records.py on dataclasses)."""

    __slots__ = ("jobs", "templates", "problems")

    def __init__(self, templates: int = 0) -> None:
        self.jobs: List[NewJob] = []
        self.templates = templates  # templates found in the commit
        self.problems: List[str] = []  # one line each


def commit_templates(entries: Dict[str, Any], globs: Sequence[str]) -> List[str]:
    """The templates of a commit, sorted, from its `gitrepo.ls_tree` listing."""
    return find_templates(sorted(path for path, entry in entries.items() if entry.kind == "blob"), globs)


# The cache key under which the queue keeps the last commit it read and its templates.
TEMPLATE_SET_KEY = f"{CACHE_VERSION}:template-set"
# A name no folder holds: `ls-tree -r -t` asked for FOLDER/NAME shows FOLDER's own entry
# (its tree id) without listing what the folder holds.
_NO_FILE = ".pachhook-no-such-file"


def find_affected(
    root: Any, commit: str, tree: str, config: Config, queue: Queue, environment: Optional[str] = None
) -> Affected:
    """The jobs `commit` needs: one per pipeline whose fingerprint is new.

    The cost follows the change, not the repository: the commit's templates are the last
    queued commit's, updated by `git diff-tree` between the two, and only the templates,
    their Dockerfiles and build context folders are read from the commit's tree.
    """
    # The last queued commit's templates are most often this commit's too: their entries are
    # asked for while `git diff-tree` compares the two, and asked again only if the set changed.
    guess = _known_template_set(config, queue).get("templates")
    early = gitrepo.ls_tree_soon(commit, root, _lookup_paths(guess, config), literal_pathspecs=True) if guess else None
    try:
        templates = commit_template_set(root, commit, config, queue)
    finally:
        # a failure is met again, and reported, where the entries are asked anew below
        asked = gitrepo.read_quietly(early) if early is not None else None
    result = Affected(len(templates))
    if not templates:
        return result
    entries = (
        asked
        if asked is not None and templates == guess
        else gitrepo.ls_tree(commit, root, _lookup_paths(templates, config), literal_pathspecs=True)
    )
    templates = [path for path in templates if getattr(entries.get(path), "kind", "") == "blob"]
    jsonnet_names = {entries[path].sha: path for path in templates if path.endswith(".jsonnet")}
    specs_by_blob = _specs(root, [entries[path].sha for path in templates], queue, jsonnet_names, config.jsonnet_args)
    seen: Dict[str, str] = {}
    every: List[Dict[str, Any]] = []  # every pipeline of the commit, changed or not, as listed
    for path in templates:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # git keeps names as bytes; these are not UTF-8
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            result.problems.append(
                f"{shown}: skipped: the path is not UTF-8 text; rename it"
                " (the queue, specs and annotations hold UTF-8 only)"
            )
            continue
        parsed = specs_by_blob.get(entries[path].sha, {})
        if foreign_file(path, parsed, config):
            result.templates -= 1  # `.buildkite/pipeline.yml` and the like: someone else's file
            continue
        if parsed.get("error"):
            result.problems.append(f"{path}: skipped: {parsed['error']}")
            continue
        for spec in parsed.get("specs", []):
            name = spec["pipeline"]
            if name in seen:
                result.problems.append(f"{path}: skipped pipeline {name!r}: {seen[name]} defines it too")
                continue
            seen[name] = path
            every.append(spec)
            fingerprint = _fingerprint(path, spec["image"], entries, tree, config)
            result.jobs.append(NewJob(name, path, spec["image"], tuple(spec["inputs"]), fingerprint))
    baselines = queue.baselines([job.pipeline for job in result.jobs], environment)
    result.jobs = [job for job in result.jobs if baselines.get(job.pipeline) != job.fingerprint]
    # The order comes from all of the commit's pipelines, not only the changed ones: the
    # changed ones then go in the order `pachhook run --commit` delivers the whole commit.
    try:
        order = dependency_order(every, lambda spec: spec["pipeline"], lambda spec: spec["inputs"])
    except CycleError as error:
        result.problems.append(f"nothing queued: {error}")
        result.jobs = []
        return result
    rank = {spec["pipeline"]: position for position, spec in enumerate(order)}
    result.jobs.sort(key=lambda job: rank[job.pipeline])
    return result


def commit_template_set(root: Any, commit: str, config: Config, queue: Queue) -> List[str]:
    """The templates of `commit`, sorted: from the last queued commit's and the diff between
    the two when the queue knows them (under the same globs), else from the whole tree."""
    globs = list(config.templates)
    known = _known_template_set(config, queue)
    templates: Optional[List[str]] = None
    if known:
        if known["commit"] == commit:
            return list(known["templates"])
        templates = _templates_after(root, known["commit"], commit, known["templates"], globs, queue.folder_str)
    if templates is None:  # nothing known yet, or the base commit is gone (gc after a rebase)
        templates = commit_templates(gitrepo.ls_tree(commit, root), globs)
    queue.templates.put({TEMPLATE_SET_KEY: {"commit": commit, "globs": globs, "templates": templates}})
    return templates


def _known_template_set(config: Config, queue: Queue) -> Dict[str, Any]:
    """The last queued commit and its templates, as the queue keeps them; {} when it keeps
    none under the configuration's globs."""
    known = queue.templates.get([TEMPLATE_SET_KEY]).get(TEMPLATE_SET_KEY)
    if isinstance(known, dict) and known.get("globs") == list(config.templates) and known.get("commit"):
        return known
    return {}


def _templates_after(
    root: Any, base: str, commit: str, templates: Sequence[str], globs: Sequence[str], scratch: str
) -> Optional[List[str]]:
    """`templates` (those of `base`) as `commit` has them; None when git cannot compare.

    `git diff-tree` reads the index although comparing two commits needs none of it: 33 ms
    at 100k files here. It is pointed at an index file that does not exist (in `scratch`,
    the queue's folder), which git reads as empty.
    """
    env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, "no-index"))
    result = gitrepo.run(["diff-tree", "-r", "-z", "--no-renames", "--raw", base, commit], root, env=env)
    if result.returncode != 0:
        return None
    matcher = GlobSet(globs)
    found = set(templates)
    records = result.stdout.split(b"\0")
    # --raw -z: ":OLDMODE NEWMODE OLDSHA NEWSHA STATUS" then the path, each NUL-terminated
    for at in range(0, len(records) - 1, 2):
        path = records[at + 1].decode("utf-8", errors="surrogateescape")
        if not matcher.matches(path):  # by the name's ending first: most paths stop there
            continue
        new_mode = records[at][1:].split(b" ", 2)[1]
        if new_mode in (b"000000", b"160000"):  # deleted, or a submodule: no template file
            found.discard(path)
        else:
            found.add(path)
    return sorted(found)


def _lookup_paths(templates: Sequence[str], config: Config) -> List[str]:
    """What `ls-tree` must show of a commit to fingerprint its templates' pipelines.

    The templates, each folder's Dockerfile (the default) and entry (the default context),
    and every configured image's Dockerfile and context: a handful of paths per pipeline.
    """
    paths = set(templates)
    for template in templates:
        folder = posixpath.dirname(template)
        paths.add(posixpath.join(folder, "Dockerfile") if folder else "Dockerfile")
        if folder:
            paths.add(posixpath.join(folder, _NO_FILE))
    for settings in config.images.values():
        if settings.dockerfile:
            paths.add(settings.dockerfile)
        if settings.context and settings.context not in (".", ""):
            paths.add(posixpath.join(settings.context, _NO_FILE))
    return sorted(paths)


def build_paths(template: str, image: str, config: Config) -> Dict[str, str]:
    """Dockerfile and build context of an image, relative to the repository root ("" = root)."""
    folder = posixpath.dirname(template)
    settings = config.image_config(image)
    context = settings.context if settings and settings.context else folder
    context = "" if context in (".", "") else context
    if settings and settings.dockerfile:
        dockerfile = settings.dockerfile
    else:
        dockerfile = posixpath.join(folder, "Dockerfile") if folder else "Dockerfile"
    return {"dockerfile": dockerfile, "context": context}


def _fingerprint(path: str, image: str, entries: Dict[str, Any], tree: str, config: Config) -> str:
    """Everything a delivery of this pipeline depends on, as one comparable string.

    Made of git object ids, which are digests already; no need to hash them again.
    """
    parts: List[str] = [path, entries[path].sha, image]
    if image:
        where = build_paths(path, image, config)
        dockerfile = entries.get(where["dockerfile"])
        context_sha = tree if not where["context"] else getattr(entries.get(where["context"]), "sha", "")
        settings = config.image_config(image)
        parts += [
            where["dockerfile"],
            dockerfile.sha if dockerfile else "-",
            where["context"] or ".",
            context_sha,
        ]
        if settings:
            parts += [f"{key}={value}" for key, value in sorted(settings.build_args.items())]
    return "\0".join(parts)


def _specs(
    root: Any,
    blobs: Sequence[str],
    queue: Queue,
    jsonnet_names: Optional[Dict[str, str]] = None,
    jsonnet_args: Optional[Dict[str, str]] = None,
) -> Dict[str, Dict[str, Any]]:
    """Parsed specs by blob SHA, from the cache where possible.

    `jsonnet_names` maps the blobs of Jsonnet templates to a path of theirs: those are
    rendered, and their cache entries are keyed by the arguments too.
    """
    jsonnet_names = jsonnet_names or {}
    rendered_with = repr(sorted((jsonnet_args or {}).items()))
    keys = {
        blob: f"{CACHE_VERSION}:{blob}" + (f":jsonnet:{rendered_with}" if blob in jsonnet_names else "")
        for blob in blobs
    }
    cached = queue.templates.get(list(keys.values()))
    found = {blob: cached[key] for blob, key in keys.items() if key in cached}
    missing = [blob for blob in blobs if blob not in found]
    if missing:
        contents = gitrepo.read_blobs(missing, root)
        fresh = {
            blob: parse_template(contents.get(blob), jsonnet_names.get(blob, "template"), jsonnet_args)
            for blob in missing
        }
        queue.templates.put({keys[blob]: data for blob, data in fresh.items()})
        found.update(fresh)
    return found


def parse_template(
    data: Optional[bytes], name: str = "template", jsonnet_args: Optional[Dict[str, str]] = None
) -> Dict[str, Any]:
    """{"specs": [{"pipeline", "image", "inputs"}...]} or {"error": one line}.

    A Jsonnet template (by `name`) is rendered with sample commit values: its pipeline
    names, image repositories and inputs must not depend on the commit.
    """
    if data is None:
        return {"error": "cannot read the file from git"}
    from pachhook.spec.loader import load_bytes
    from pachhook.spec.template import image_to_build, sample_values

    rendered = name.endswith(".jsonnet")
    if rendered:
        from pachhook.spec import jsonnet

        samples = sample_values()
        loaded = jsonnet.load(name, data, jsonnet.arguments(samples, jsonnet_args))
    else:
        loaded = load_bytes("template", data)
    from pachhook.spec.sniff import looks_like_spec, looks_like_template

    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    if errors and not loaded.documents:
        first = errors[0]
        spec_like = rendered or looks_like_template(name, data)
        return {"error": f"line {first.line}: {first.message}", "spec_like": spec_like}
    # False: another tool's file under a conventional name (a template only if configured)
    spec_like = rendered or any(looks_like_spec(document.value) for document in loaded.documents)
    specs = []
    for document in loaded.documents:
        value = document.value
        pipeline = value.get("pipeline")
        pipeline_name = pipeline.get("name") if isinstance(pipeline, dict) else None
        if not isinstance(pipeline_name, str) or not pipeline_name:
            return {"error": f"spec {document.index} has no pipeline.name", "spec_like": spec_like}
        image = jsonnet.built_image(value, samples["tag"]) if rendered else image_to_build(value)
        specs.append(
            {
                "pipeline": pipeline_name,
                "image": image or "",
                "inputs": sorted(set(input_repos(value.get("input")))),
            }
        )
    if not specs:
        return {"error": "holds no pipeline spec", "spec_like": spec_like}
    return {"specs": specs, "spec_like": spec_like}


def foreign_file(path: str, parsed: Dict[str, Any], config: Any) -> bool:
    """A file matched only by the naming conventions that holds no pipeline spec: not a template."""
    from pachhook.spec.sniff import by_convention_only

    if parsed.get("spec_like", True):
        return False
    return by_convention_only(path, config.templates, lambda globs, p: GlobSet(globs).matches(p))


def input_repos(node: Any) -> List[str]:
    """Repos a spec's input reads through `pfs` (inside cross, union, join, group too)."""
    return [pfs["repo"] for pfs in pfs_inputs(node) if isinstance(pfs.get("repo"), str)]


def pfs_inputs(node: Any) -> List[Dict[str, Any]]:
    """The `pfs` tables of a spec's input, nested ones too (the caller may edit them in place)."""
    found: List[Dict[str, Any]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, dict):
            if isinstance(current.get("pfs"), dict):
                found.append(current["pfs"])
            for key in ("cross", "union", "join", "group"):
                if key in current:
                    stack.append(current[key])
    return found

"""BuildKit's cache across machines: the flags a CLI build gets so that a build on a laptop
warms CI and the other way round.

- inline (the default): the image carries its cache metadata (`BUILDKIT_INLINE_CACHE=1`), and a
  build imports the layers of earlier images straight from the registry (`--cache-from`): the
  image of the commit's first parent (the branch's previous image) and the image of the remote
  default branch's tip (what CI last delivered from it). An image that does not exist is a
  warning of BuildKit's, not a failure.
- registry: also a separate cache image `REPOSITORY:buildcache` written with `mode=max` (every
  stage's layers, not only the final image's); needs buildx and a builder that can export a
  cache (docker-container, remote or kubernetes drivers; the engine's own `docker` driver
  cannot).
- none: no cache flags.

`builder = "NAME"` runs `docker buildx build --builder NAME`: a builder made once with
`docker buildx create` (see docs/ci.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from pachhook.core import gitrepo

CACHE_TAG = "buildcache"  # the tag of the registry cache image


class CacheError(Exception):
    """A setting this docker CLI cannot honour; one line."""


@dataclass
class CachePlan:
    flags: List[str] = field(default_factory=list)  # cache flags for `docker build`
    builder: List[str] = field(default_factory=list)  # `--builder NAME` right after `buildx build`
    sources: List[str] = field(default_factory=list)  # images the cache may come from
    notes: List[str] = field(default_factory=list)  # lines for the build log


def source_commits_soon(repo_root: Path, commit: str) -> Callable[[], List[str]]:
    """The commits a build of `commit` may take its layers from, most likely first: its
    parent, then the remote's default branch. Asked of git now; read what is returned for them."""
    revs = [f"{commit}^", "refs/remotes/origin/HEAD"]  # a root commit, a shallow clone, no remote: fewer
    asked = gitrepo.commits_soon(revs, repo_root)

    def answer() -> List[str]:
        found = asked()
        return list(dict.fromkeys(found[rev] for rev in revs if rev in found and found[rev] != commit))

    return answer


def cache_sources(commits: List[str], repository: str, tag_of: Callable[[str], str]) -> List[str]:
    """The images of `commits` in `repository`: where a build may take its layers from."""
    return [f"{repository}:{tag_of(found)}" for found in commits]


def plan_cache(mode: str, builder: Optional[str], buildx: bool, repository: str, sources: List[str]) -> CachePlan:
    """The flags for one build; raises CacheError for a builder without buildx."""
    plan = CachePlan()
    if builder:
        if not buildx:
            raise CacheError(
                f'builder = "{builder}" needs the docker CLI\'s buildx plugin (docker buildx build --builder)'
            )
        plan.builder = ["--builder", builder]
    if mode == "none":
        return plan
    plan.flags += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    if mode == "registry":
        cache_ref = f"{repository}:{CACHE_TAG}"
        if buildx:
            plan.flags += ["--cache-to", f"type=registry,ref={cache_ref},mode=max"]
            plan.flags += ["--cache-from", f"type=registry,ref={cache_ref}"]
            plan.sources.append(cache_ref)
        else:
            plan.notes.append('cache = "registry" needs buildx; using the inline cache only')
    for source in sources:
        plan.flags += ["--cache-from", source]
        plan.sources.append(source)
    return plan

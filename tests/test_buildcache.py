"""BuildKit's cache across machines (deliver/buildcache.py): inline cache metadata in the
pushed image, --cache-from the branch's previous image, the registry cache and builders.

buildx is not packaged for the test machines: the buildx-only parts (cache = "registry",
builder = NAME) are tested as the command pachhook composes, not run."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
import services as test_services
from gitutil import pachhook_run as run
from test_update import double, git, make_repo  # noqa: F401 (double is a fixture)

from pachhook.core.config import ConfigError, load_config
from pachhook.deliver import buildcache


def test_inline_cache_by_default():
    plan = buildcache.plan_cache("inline", None, False, "r.example/team/edges", ["r.example/team/edges:abc"])
    assert plan.builder == []
    assert plan.flags == [
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
        "--cache-from",
        "r.example/team/edges:abc",
    ]


def test_registry_cache_with_buildx_and_a_builder():
    plan = buildcache.plan_cache("registry", "team-pods", True, "r.example/team/edges", ["r.example/team/edges:abc"])
    assert plan.builder == ["--builder", "team-pods"]
    assert plan.flags == [
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
        "--cache-to",
        "type=registry,ref=r.example/team/edges:buildcache,mode=max",
        "--cache-from",
        "type=registry,ref=r.example/team/edges:buildcache",
        "--cache-from",
        "r.example/team/edges:abc",
    ]


def test_registry_cache_without_buildx_falls_back_to_inline_and_says_so():
    plan = buildcache.plan_cache("registry", None, False, "r/edges", [])
    assert plan.flags == ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    assert plan.notes == ['cache = "registry" needs buildx; using the inline cache only']


def test_no_cache_and_builder_needs_buildx():
    assert buildcache.plan_cache("none", None, False, "r/edges", ["r/edges:abc"]).flags == []
    with pytest.raises(buildcache.CacheError, match=r'builder = "pods" needs the docker CLI\'s buildx plugin'):
        buildcache.plan_cache("inline", "pods", False, "r/edges", [])


def test_configuration_keys(tmp_path):
    (tmp_path / ".pachhook.toml").write_text(
        '[images."r.example/edges"]\ncache = "registry"\nbuilder = "team-pods"\n'
        '[images."r.example/other"]\ncache = "sometimes"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [
        '.pachhook.toml:5: images."r.example/other".cache: must be "inline", "registry" or "none",'
        " not a string ('sometimes')"
    ]
    (tmp_path / ".pachhook.toml").write_text('[images."r.example/edges"]\ncache = "registry"\nbuilder = "team-pods"\n')
    image = load_config(tmp_path).images["r.example/edges"]
    assert (image.cache, image.builder) == ("registry", "team-pods")


def _config_of(registry: str, repository: str, tag: str) -> dict:
    """The pushed image's config document, read from the registry."""
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as answer:
        manifest = json.load(answer)
    digest = manifest["config"]["digest"]
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/blobs/{digest}", timeout=10) as answer:
        return json.load(answer)


def _edges_repo(path: Path, image: str, dockerfile: str) -> Path:
    """A repository whose one pipeline, edges, builds `image` from `dockerfile` on the host's network."""
    spec = {
        "pipeline": {"name": "edges"},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": {"image": image + ":{{ tag }}", "cmd": ["sh"]},
    }
    files = {
        "edges/Dockerfile": dockerfile,
        "edges/run.sh": "echo 1\n",
        ".pachhook.toml": f'[images."{image}"]\nnetwork = "host"\n',
    }
    return make_repo(path, spec, files)


@pytest.mark.integration
def test_pushed_image_carries_its_cache_and_the_next_build_imports_it(tmp_path, docker_env, double):
    services = docker_env
    repository = f"test-cache/{uuid.uuid4().hex[:10]}/edges"
    image = f"{services.registry}/{repository}"
    dockerfile = test_services.base_dockerfile(services, f"RUN echo {repository} > /id", "COPY run.sh /run.sh")
    repo = _edges_repo(tmp_path / "repo", image, dockerfile)
    first = git(repo, "rev-parse", "HEAD")

    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"edges: build: cache from {image}:" not in out.stdout  # a root commit has no previous image
    assert "moby.buildkit.cache.v0" in _config_of(services.registry, repository, first)  # the inline cache

    (repo / "edges" / "run.sh").write_text("echo 2\n")
    git(repo, "commit", "-q", "-am", "second")
    second = git(repo, "rev-parse", "HEAD")
    # an uncommitted setting does not change how the commit is built: its own configuration does
    config = repo / ".pachhook.toml"
    config.write_text(config.read_text() + 'cache = "none"\n')
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"edges: build: cache from {image}:{first}" in out.stdout
    assert "no cache from" not in out.stdout  # the previous image was there to import
    assert "moby.buildkit.cache.v0" in _config_of(services.registry, repository, second)


@pytest.mark.integration
def test_a_second_empty_engine_builds_the_next_commit_from_the_registry_cache(tmp_path, docker_env, double):
    """Two machines: commit 1 built and pushed through the first engine, commit 2 built on a
    second engine that has never built this image; its slow RUN step comes from the cache."""
    services = docker_env
    second = test_services.second_engine()
    # The second machine starts empty: its build cache is dropped (the engine serves this test
    # only). A base layer it once built without a cache source would otherwise be preferred to
    # the imported chain by the engine's BuildKit (20.10), and the test would measure that.
    subprocess.run(
        ["docker", "-H", second, "builder", "prune", "-af"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=True,
    )
    unique = uuid.uuid4().hex[:10]
    repository = f"test-cache/{unique}/edges"
    image = f"{services.registry}/{repository}"
    # Both machines start FROM the same registry image, as real ones pull a shared base.
    base = f"{services.registry}/test-cache/{unique}/base:1"
    client = test_services.docker_client(services)
    try:
        client.images.get(services.base_image).tag(base)
        client.images.push(base)
    finally:
        client.close()
    dockerfile = f"FROM {base}\nRUN sleep 4 && echo {unique} > /slow\nCOPY run.sh /run.sh\n"
    repo = _edges_repo(tmp_path / "repo", image, dockerfile)

    def deliver(host: str) -> dict:
        out = run(repo, "--commit", "HEAD", "--format", "json", DOCKER_HOST=host)
        assert out.returncode == 0, out.stdout + out.stderr
        document = json.loads(out.stdout)
        document["log"] = out.stderr
        return document

    cold = deliver(services.docker_host)
    assert "RUN sleep 4" in cold["log"] and "(cached)" not in cold["log"].split("RUN sleep 4")[1].splitlines()[0]
    (repo / "edges" / "run.sh").write_text("echo 2\n")
    git(repo, "commit", "-q", "-am", "second")
    warm = deliver(second)
    run_line = [line for line in warm["log"].splitlines() if "RUN sleep 4" in line and "build:" in line]
    assert run_line and run_line[-1].endswith("(cached)"), warm["log"]
    cold_build = cold["pipelines"][0]["timings"]["build"]
    warm_build = warm["pipelines"][0]["timings"]["build"]
    assert warm["pipelines"][0]["outcomes"]["build"] == "done"  # built on the second engine, not re-tagged
    assert warm_build < cold_build, (cold_build, warm_build)
    print(f"cold build {cold_build:.2f}s (first engine), warm build {warm_build:.2f}s (second, empty engine)")

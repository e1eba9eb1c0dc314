"""The build step: the job's image, built from a clean checkout of the commit and tagged IMAGE:TAG.

The docker CLI builds with BuildKit (docker-py's legacy builder only when no CLI is installed).
No rebuild for inputs built before: an image labelled with the same context key (locally, or
pushed earlier and recorded in the git dir) is retagged for this commit instead.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from pachhook import __version__
from pachhook.core.gitrepo import state_folder
from pachhook.core.sanitize import clean, one_line
from pachhook.deliver.steps.base import StepContext, StepError, StepResult

LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_TEMPLATE = "io.pachhook.template"
LABEL_VERSION = "io.pachhook.version"
LABEL_KEY = "io.pachhook.context-key"

_NETWORK_HINTS = re.compile(r"connection refused|timeout|timed out|temporary|i/o timeout|tls handshake|eof", re.I)


def image_tag(commit: str, tag_form: str) -> str:
    """The tag for commit: the full SHA, or its first 7 characters (as `{{ short_commit }}`)."""
    return commit[:7] if tag_form == "short" else commit


def strip_credentials(url: str) -> str:
    """A remote URL without user, password or token: fit for an image label."""
    if "://" not in url:
        return url  # scp-like `git@host:path` or a local path: the user there is not a secret
    parts = urlsplit(url)
    if parts.query:
        # a query can carry a token as well (`?access_token=...`); naming the remote needs none
        parts = parts._replace(query="", fragment="")
        url = urlunsplit(parts)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    # ssh://git@host keeps its login name (no secret); http(s) userinfo often is a token.
    if parts.scheme == "ssh" and parts.username and parts.password is None:
        return url
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def remote_url(repo_root: Path, branch: str) -> str:
    """The URL of the branch's upstream remote, else origin, else the first remote ("" if none)."""
    from pachhook.core import gitrepo

    names = [gitrepo.config_get(f"branch.{branch}.remote", repo_root)] if branch else []
    names.append("origin")
    names.extend(gitrepo.remote_names(repo_root))
    for name in names:
        if name and name != ".":
            url = gitrepo.remote_url(name, repo_root)
            if url:
                return strip_credentials(url)
    return ""


def ask_git_ahead(repo_root: Path, branch: str) -> None:
    """Start the questions about git's configuration every build of `branch` asks (the remote
    for the source label, the checkout settings for the context's key), so git answers
    them while the commit is planned (gitrepo.ask_ahead: within a configuration snapshot)."""
    from pachhook.core import gitrepo

    if branch:
        gitrepo.ask_ahead("config", repo_root, f"branch.{branch}.remote")
    gitrepo.ask_ahead("remote-url", repo_root, "origin")
    gitrepo.ask_ahead("remotes", repo_root)
    gitrepo.ask_ahead("checkout-settings", repo_root)


def _find_reusable(engine: Any, key: str, image_ref: str, ctx: StepContext) -> Optional[Any]:
    """A local image built from the same inputs, else one pushed earlier and pulled again
    (an enginecli.LocalImage)."""
    from pachhook.deliver import dockerauth, imagekeys
    from pachhook.deliver.enginecli import EngineError

    # Where the key was recorded: the image this clone built for it and the tag itself (one
    # inspect), then the digests pushed for it (pulled from the registry). Never a label
    # search over every image on the engine: that grew with the engine (0.46 s at 4,363
    # images) and was paid by every new key. A key this clone has recorded nothing for (a
    # code change, most often) asks the engine nothing: a docker CLI start saved.
    recorded = imagekeys.recorded_image(ctx.git_dir, key)
    if recorded:
        candidates = (recorded, image_ref)
        held = engine.images(candidates)
        for candidate in candidates:
            image = held.get(candidate)
            if image is not None and image.labels.get(LABEL_KEY) == key:
                return image

    for ref in imagekeys.recorded_refs(ctx.git_dir, key):
        ctx.log(f"build: pulling {ref}, pushed earlier for the same context")
        try:
            engine.pull(ref)
            image = engine.images([ref]).get(ref)
        except (EngineError, dockerauth.LoginUnavailable) as error:
            ctx.log(f"build: cannot pull {ref}: {one_line(error)}")
            continue
        if image is not None and image.labels.get(LABEL_KEY) == key:
            return image
    return None


def plan_build(repo_root: Path, commit: str, template: str, image: str, config: Any) -> Any:
    """The build plan (context, Dockerfile, settings, context key) of image for template at commit.

    Raises buildcontext.ContextError with a one-line cause. Pipeline templates (the files the
    configuration's template globs match) are left out of the key, not out of the context.
    """
    from pachhook.core import gitrepo
    from pachhook.core.globs import GlobSet
    from pachhook.deliver import buildcontext

    inputs = buildcontext.resolve_inputs(template, config.images.get(image))
    templates = GlobSet(config.templates)
    # Worktrees of one repository share the git common dir, so they share reuse too.
    source = remote_url(repo_root, "") or str(gitrepo.git_common_dir(repo_root).resolve())
    return buildcontext.plan_context(
        repo_root,
        commit,
        inputs,
        leave_out=templates.matches,
        scope=f"{image}\n{source}",
    )


def run(ctx: StepContext, reuse: bool = True) -> StepResult:
    """Build (or, for inputs built before, reuse) the job's image.

    reuse=False always builds (the engine's layer cache still applies); benchmarks use it.
    """
    if not ctx.job.image:
        return StepResult(outcome="skipped", message="the template names no image to build")
    plan, image_ref, tag = _prepare(ctx)
    if ctx.dry_run:
        return _dry_run(ctx, plan, image_ref)
    if ctx.shared is not None:
        # pipelines of this delivery that share the image wait for one build of it
        return ctx.shared.once(
            "build", image_ref, plan.key, ctx.job.pipeline, lambda: _build_step(ctx, plan, image_ref, tag, reuse)
        )
    return _build_step(ctx, plan, image_ref, tag, reuse)


def on_engine(ctx: StepContext) -> StepResult:
    """The build step through the Docker engine alone: for the push, when the image the build
    step found in the registry must be pushed through the engine after all (the registry
    stopped serving it meanwhile). The image is reused from the engine, pulled, or built."""
    plan, image_ref, tag = _prepare(ctx)
    return _build_step(ctx, plan, image_ref, tag, reuse=True, registry=False)


def _prepare(ctx: StepContext) -> "Tuple[Any, str, str]":
    """(the build plan, IMAGE:TAG, TAG) of the job's image at its commit; StepError when the
    commit's configuration or build inputs are wrong."""
    from pachhook.core.config import load_config_at
    from pachhook.deliver import buildcontext

    job = ctx.job
    try:
        # the commit's configuration: uncommitted build args never reach an image tagged with it
        config = load_config_at(ctx.repo_root, job.commit)
    except Exception as error:  # ConfigError carries one line per problem
        raise StepError(f"configuration: {one_line(error)}", retryable=False) from None
    tag = image_tag(job.commit, config.tag)
    image_ref = f"{job.image}:{tag}"
    try:
        plan = plan_build(ctx.repo_root, job.commit, job.template, job.image, config)
    except buildcontext.ContextError as error:
        raise StepError(f"build of {job.image}: {error}", retryable=False) from None
    return plan, image_ref, tag


def _build_step(
    ctx: StepContext, plan: Any, image_ref: str, tag: str, reuse: bool, registry: bool = True
) -> StepResult:
    if reuse and registry:
        held = _held_by_registry(ctx, plan)
        if held is not None:
            return _reused_from_registry(held, plan, image_ref)
    result = _build_or_reuse(ctx, open_engine(ctx), plan, image_ref, tag, reuse)
    from pachhook.deliver import imagekeys

    try:
        imagekeys.record_built(ctx.git_dir, plan.key, result.data["image_id"])
    except OSError as error:  # a cache: losing it only costs a slower lookup
        ctx.log(f"build: could not record the image for its context key: {one_line(error)}")
    return result


def open_engine(ctx: StepContext, remember: bool = True) -> Any:
    """The Docker engine (dockerengine.Engine: through the docker CLI when one builds here,
    else docker-py), or the StepError saying why there is none. remember=False (a dry run)
    writes nothing, not even what the docker CLI said about itself."""
    from pachhook.deliver import dockerclient, dockerengine

    try:
        return dockerengine.open_engine(state_folder(ctx.git_dir) if remember else None)
    except dockerclient.EngineUnavailable as error:
        raise StepError(str(error), retryable=not isinstance(error, dockerclient.DockerConfigError)) from None


@dataclass(frozen=True)
class _HeldImage:
    """An image pushed earlier for the same context key that the registry still serves."""

    registry: str
    digest: str  # its manifest's digest in the job's repository
    config: Any  # registry.ImageConfig: the image id (its config digest) and labels


def _held_by_registry(ctx: StepContext, plan: Any) -> Optional[_HeldImage]:
    """The image pushed earlier for plan's context key to the job's own repository, when the
    registry still serves it and its key label says so; asked of the registry alone (no
    Docker engine, no docker-py). None when there is none, or when the registry cannot say
    without the engine (then the engine path decides, as before)."""
    from pachhook.deliver import imagekeys

    repository = ctx.job.image
    refs = [ref.partition("@") for ref in imagekeys.recorded_refs(ctx.git_dir, plan.key)]
    digests = [digest for pushed_to, _, digest in refs if pushed_to == repository and digest]
    if not digests:
        return None  # most code changes: a context key this clone has pushed nothing for
    from pachhook.deliver.dockerclient import split_image
    from pachhook.deliver.registry import RegistryError, session_without_engine

    registry, name = split_image(repository)
    session = session_without_engine(registry)
    for digest in digests:
        try:
            config = session.served_config(name, digest)
            if config is None:
                ctx.log(f"build: registry {registry} no longer serves {repository}@{digest}")
                continue
        except RegistryError as error:
            ctx.log(
                f"build: cannot ask registry {registry} for {repository}@{digest} without the Docker engine"
                f" ({error}); asking the engine"
            )
            return None
        if config.digest and config.labels.get(LABEL_KEY) == plan.key:
            return _HeldImage(registry, digest, config)
    return None


def _reused_from_registry(held: _HeldImage, plan: Any, image_ref: str) -> StepResult:
    built_for = held.config.labels.get(LABEL_REVISION, "")[:12] or "an earlier commit"
    return StepResult(
        outcome="reused",
        message=(
            f"reused image {held.config.digest[7:19]} built for commit {built_for} (same context key {plan.key[:12]}),"
            f" which registry {held.registry} holds as {held.digest}; no build and no Docker engine: the push tags it"
            f" {image_ref} in the registry"
        ),
        data={
            "image_id": held.config.digest,
            "image_ref": image_ref,
            "context_key": plan.key,
            "reused": "true",
            "registry_digest": held.digest,
        },
    )


def _dry_run(ctx: StepContext, plan: Any, image_ref: str) -> StepResult:
    """Say whether the image would be reused or built; changes nothing (no tag, no pull)."""
    where = f"{plan.inputs.context or '.'} ({plan.inputs.dockerfile}), context key {plan.key[:12]}"
    verdict = f"would build {image_ref} from {where}"
    try:
        held = _held_by_registry(ctx, plan)  # reads from the registry only: changes nothing
    except StepError as error:  # a credential helper that does not answer
        held = None
        ctx.log(f"build: {error}")
    if held is not None:
        verdict = (
            f"would reuse image {held.config.digest[7:19]} (same context key {plan.key[:12]}), which registry"
            f" {held.registry} holds as {held.digest}, and tag it {image_ref} there, without the Docker engine"
        )
        return StepResult(
            outcome="skipped", data={"image_ref": image_ref, "context_key": plan.key}, message=f"dry run: {verdict}"
        )
    from pachhook.deliver import dockerclient, imagekeys
    from pachhook.deliver.enginecli import EngineError

    candidates = (imagekeys.recorded_image(ctx.git_dir, plan.key), image_ref)
    try:
        held = open_engine(ctx, remember=False).images(candidates)
    except (StepError, dockerclient.EngineUnavailable, EngineError) as error:
        verdict += f"; cannot tell whether an image can be reused: {error}"
    else:
        local = next((c for c in candidates if c in held and held[c].labels.get(LABEL_KEY) == plan.key), "")
        pushed = imagekeys.recorded_refs(ctx.git_dir, plan.key)
        if local:
            verdict = (
                f"would reuse image {local[7:19] if local.startswith('sha256:') else local} "
                f"(same context key {plan.key[:12]}) and tag it {image_ref}"
            )
        elif pushed:
            verdict = f"would pull {pushed[0]} (same context key {plan.key[:12]}) and tag it {image_ref}"
    return StepResult(
        outcome="skipped", data={"image_ref": image_ref, "context_key": plan.key}, message=f"dry run: {verdict}"
    )


def _build_or_reuse(ctx: StepContext, engine: Any, plan: Any, image_ref: str, tag: str, reuse: bool) -> StepResult:
    from pachhook.deliver.dockerclient import EngineUnavailable
    from pachhook.deliver.enginecli import EngineError

    key = plan.key
    try:
        reusable = _find_reusable(engine, key, image_ref, ctx) if reuse else None
        if reusable is not None:
            engine.tag(reusable.id, image_ref)
            built_for = reusable.labels.get(LABEL_REVISION, "")[:12] or "an earlier commit"
            message = (
                f"reused image {reusable.id[7:19]} built for commit {built_for} (same context key "
                f"{key[:12]}); tagged {image_ref} without building"
            )
            return StepResult(
                outcome="reused",
                message=message,
                data={"image_id": reusable.id, "image_ref": image_ref, "context_key": key, "reused": "true"},
            )
        from pachhook.deliver.steps import push

        push.ask_ahead(engine, image_ref)  # the push's first question, while the image builds
        image_id = _build(ctx, engine, plan, image_ref)
        ctx.log(f"build: built {image_ref} ({image_id[7:19]})")
        from pachhook.deliver import dockerengine

        dockerengine.built_here(image_ref, image_id)
        return StepResult(
            outcome="done",
            message=f"built {image_ref}",
            data={"image_id": image_id, "image_ref": image_ref, "context_key": key, "reused": "false"},
        )
    except StepError:
        raise
    except EngineUnavailable as error:
        raise StepError(str(error), retryable=True) from None
    except EngineError as error:
        raise StepError(f"docker engine at {_host()} failed during build of {image_ref}: {error}", True) from None
    except Exception as error:  # docker-py's errors in an engine-API build, a connection dropped mid-stream
        talking = type(error).__module__.partition(".")[0] == "docker"
        raise StepError(
            f"docker engine at {_host()} failed during build of {image_ref}: {_explain(error)}"
            if talking
            else f"build of {image_ref} failed talking to the Docker engine at {_host()}: {_explain(error)}",
            retryable=True,
        ) from None


def _explain(error: BaseException) -> str:
    """The engine's explanation of an API error, without the request URL docker-py puts first."""
    explanation = getattr(error, "explanation", None)
    text = str(explanation) if explanation else str(error)
    text = re.sub(r"\S+ (?:Client|Server) Error(?: for| \(|:)[^\s]*\s*(?:url: \S+)?", "", text)
    text = re.sub(r"(?:https?|http\+docker|unix)://\S+", "the engine", text)
    return one_line(text.strip(' :("') or type(error).__name__, 2000)


_BRIDGE_MISSING = re.compile(r"network bridge not found|could not find bridge|bridge docker0", re.I)


def _host_arch() -> str:
    machine = os.uname().machine.lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _check_secrets(image: str, secrets: Dict[str, Tuple[str, str]]) -> None:
    """StepError naming a secret whose variable or file is missing (never a value)."""
    for secret_id, (kind, source) in sorted(secrets.items()):
        if kind == "env" and source not in os.environ:
            raise StepError(
                f"build of {image}: secret {secret_id!r} comes from environment variable {source}, which is not set "
                "in the environment of pachhook's worker",
                retryable=False,
            )
        if kind == "src" and not os.path.isfile(os.path.expanduser(source)):
            raise StepError(f"build of {image}: secret {secret_id!r} comes from file {source}, which is missing", False)


def _build(ctx: StepContext, engine: Any, plan: Any, image_ref: str) -> str:
    """Check the context out, build it (docker CLI with BuildKit, else the engine API); the image id."""
    from pachhook.deliver import buildcache, buildcontext, dockerclient

    job, inputs = ctx.job, plan.inputs
    try:
        cli = dockerclient.find_cli(state_folder(ctx.git_dir))
    except dockerclient.BuilderUnavailable as error:
        raise StepError(f"build of {image_ref}: {error}", retryable=False) from None
    if cli is None and inputs.secrets:
        raise StepError(
            f"build of {image_ref}: build secrets need BuildKit, and no docker CLI is installed; install the "
            "docker CLI with the buildx plugin",
            retryable=False,
        )
    _check_secrets(image_ref, inputs.secrets)
    # what the cache may come from (BuildKit's, through the CLI), asked of git while the context is checked out
    source_commits = buildcache.source_commits_soon(ctx.repo_root, job.commit) if cli is not None else (lambda: [])
    try:
        checkout = buildcontext.materialize(ctx.repo_root, plan, keep_in=_kept_checkout(ctx, plan))
    except buildcontext.ContextError as error:
        source_commits()
        raise StepError(f"build of {job.image}: {error}", retryable=False) from None
    try:
        how = cli.describe() if cli is not None else "the engine's API (legacy builder: no docker CLI installed)"
        ctx.log(
            f"build: context {inputs.context or '.'} at {job.commit[:12]}: {checkout.files} files, "
            f"{buildcontext.human_size(checkout.size)}, Dockerfile {inputs.dockerfile}, {inputs.platform}; with {how}"
        )
        wanted_arch = inputs.platform.split("/")[1] if inputs.platform.count("/") >= 1 else ""
        if wanted_arch and wanted_arch != _host_arch():
            ctx.log(
                f"build: warning: building {inputs.platform} on a {_host_arch()} host (emulated, slower); "
                f'set platform = "linux/{_host_arch()}" for the image if the cluster runs {_host_arch()}'
            )
        if plan.submodules and not inputs.submodules:
            ctx.log(
                f"build: submodules are empty folders in the context (submodules = true checks them out): "
                f"{', '.join(plan.submodules)}"
            )
        labels = {
            LABEL_REVISION: job.commit,
            LABEL_CREATED: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            LABEL_TEMPLATE: job.template,
            LABEL_VERSION: __version__,
            LABEL_KEY: plan.key,
        }
        source = remote_url(ctx.repo_root, job.branch)
        if source:
            labels[LABEL_SOURCE] = source
        if cli is not None:
            return _build_with_cli(ctx, cli, plan, checkout, image_ref, labels, source_commits())
        return _build_with_api(ctx, engine.client, plan, checkout, image_ref, labels)
    finally:
        source_commits()  # read (its git reaped) whichever way the build went
        checkout.cleanup()


def _kept_checkout(ctx: StepContext, plan: Any) -> Path:
    """Where the image's checkout is kept between builds: one folder per image, context and Dockerfile."""
    import hashlib

    inputs = plan.inputs
    name = hashlib.sha256(f"{ctx.job.image}\n{inputs.context}\n{inputs.dockerfile}".encode()).hexdigest()[:16]
    return Path(state_folder(ctx.git_dir)) / "contexts" / name


def _build_with_cli(
    ctx: StepContext,
    cli: Any,
    plan: Any,
    checkout: Any,
    image_ref: str,
    labels: Dict[str, str],
    source_commits: List[str],
) -> str:
    from pachhook.deliver import clibuild

    inputs = plan.inputs
    cache = _cache_plan(ctx, cli, image_ref, source_commits)
    command = cli.build_command()
    # `--builder NAME` belongs to `buildx build`: right after those two words
    command[3:3] = cache.builder
    argv = command + ["-f", str(checkout.dockerfile), "-t", image_ref]
    for name, value in sorted(labels.items()):
        argv += ["--label", f"{name}={value}"]
    for name, value in sorted(inputs.build_args.items()):
        argv += ["--build-arg", f"{name}={value}"]
    argv += ["--platform", inputs.platform]
    if inputs.target:
        argv += ["--target", inputs.target]
    if inputs.network:
        argv += ["--network", inputs.network]
    argv += clibuild.secret_flags(inputs.secrets)
    argv += cache.flags
    argv.append(str(checkout.context_dir))
    view = ctx.live.image(ctx.job.pipeline) if ctx.live is not None else None
    try:
        result = clibuild.run_build(argv, clibuild.cli_env(buildkit=not cli.buildx), ctx.log, view=view)
    finally:
        if view is not None:
            view.close()
    if result.image_id:
        return result.image_id
    from pachhook.deliver import dockerclient, enginecli

    if enginecli.cannot_connect(result.error):  # said as every other engine call says it
        raise StepError(str(dockerclient.unreachable("the docker CLI cannot connect to it")), retryable=True)
    message = f"docker build of {image_ref} failed: {result.error}"
    if _BRIDGE_MISSING.search(result.error):
        message += (
            '; the engine has no bridge network for RUN steps: set network = "host" for the image '
            "in the configuration, or give the engine a bridge"
        )
    raise StepError(message, retryable=result.transient)


def _cache_plan(ctx: StepContext, cli: Any, image_ref: str, source_commits: List[str]) -> Any:
    """BuildKit cache flags and builder for the image (deliver/buildcache.py), said in the log."""
    from pachhook.core.config import load_config_at
    from pachhook.deliver import buildcache

    job = ctx.job
    # the commit's configuration, as for the rest of the build (the build step read it already)
    config = load_config_at(ctx.repo_root, job.commit)
    image_config = config.images.get(job.image)
    mode = getattr(image_config, "cache", "inline")
    builder = getattr(image_config, "builder", None)
    sources = buildcache.cache_sources(source_commits, job.image, lambda c: image_tag(c, config.tag))
    try:
        cache = buildcache.plan_cache(mode, builder, cli.buildx, job.image, sources)
    except buildcache.CacheError as error:
        raise StepError(f"build of {image_ref}: {error}", retryable=False) from None
    for note in cache.notes:
        ctx.log(f"build: {note}")
    if cache.sources:
        ctx.log(f"build: cache from {', '.join(cache.sources)}" + (f"; builder {builder}" if builder else ""))
    return cache


def _build_with_api(
    ctx: StepContext, client: Any, plan: Any, checkout: Any, image_ref: str, labels: Dict[str, str]
) -> str:
    """The fallback: docker-py's legacy builder (no BuildKit), docker-py applying .dockerignore."""
    from pachhook.deliver import credhelpers

    inputs = plan.inputs
    # docker-py hands the engine every login of the docker config for the base images (all of
    # them, through its own reading: dockerauth.py answers for one registry). Read afresh, so a
    # docker login made after the worker started counts; its helpers are bounded.
    client.api._auth_configs = credhelpers.bounded_auth_config(client.api.credstore_env)
    image_id = ""
    stream = client.api.build(
        path=str(checkout.context_dir),
        dockerfile=str(checkout.dockerfile),
        tag=image_ref,
        labels=labels,
        buildargs=dict(inputs.build_args) or None,
        platform=inputs.platform,
        target=inputs.target or None,
        network_mode=inputs.network or None,
        rm=True,
        forcerm=True,
        decode=True,
    )
    for event in stream:
        if "stream" in event:
            for line in str(event["stream"]).splitlines():
                if line.strip():
                    ctx.log(f"build: {clean(line)}")
        elif "error" in event:
            cause = one_line(event.get("error") or event.get("errorDetail", {}).get("message", ""), 3000)
            raise StepError(
                f"docker build of {image_ref} failed: {cause}", retryable=bool(_NETWORK_HINTS.search(cause))
            )
        elif isinstance(event.get("aux"), dict) and event["aux"].get("ID"):
            image_id = event["aux"]["ID"]
    return image_id or client.images.get(image_ref).id


def _host() -> str:
    from pachhook.deliver.dockerclient import engine_host

    return engine_host()

"""The push step: IMAGE:TAG to its registry, with the user's docker login, digest confirmed.

Transient failures (connection refused, timeouts, 5xx) are retried with backoff a bounded
number of times; then the step fails with one line naming the registry and the job stays
retryable. A registry that already serves the tag with the local image's digest is recorded
as it is, without pushing; one that holds the image under another tag gets only the new
tag's manifest. When the build step found the image in the registry (pushed for an earlier
commit with the same context key), the push talks to the registry alone: no Docker engine,
no docker-py; should the registry not hold it any more, the image is brought to the engine
(reused, pulled or built) and pushed through it.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Dict, NoReturn, Optional

from pachhook.core.sanitize import one_line
from pachhook.deliver import dockerauth, dockerclient, dockerengine, enginecli, imagekeys, order
from pachhook.deliver.buildcontext import human_size
from pachhook.deliver.earlyread import FRESH_SECONDS, Early
from pachhook.deliver.enginecli import EngineError
from pachhook.deliver.registry import RegistryError, RegistrySession, session_without_engine
from pachhook.deliver.steps.base import StepContext, StepError, StepResult
from pachhook.deliver.steps.build import LABEL_REVISION, open_engine

ATTEMPTS = 3
FIRST_DELAY = 1.0  # seconds before the second attempt; doubled for each further one
MAX_DELAY = 8.0
SHARE_SECONDS = 5.0  # a layer still pushing gets a line with its share this often


class _Transient(Exception):
    """One attempt failed in a way that trying again may fix."""


class _NeedsEngine(Exception):
    """Pushing without the engine cannot go on (the registry lost the image); str() says why."""


def _is_ancestor(older: str, newer: str, root: Any) -> bool:
    return order.known(older, root) and order.is_ancestor(older, newer, root)


# The push's first question, whether the registry serves IMAGE:TAG already, asked while the
# image builds (issue 16): a registry request, and the first one's imports and connection,
# off the critical path. As with the order check's early read (earlyread.py), the answer is
# used when it is at most FRESH_SECONDS old when the push starts, else (or when it failed)
# asked again; and what moved in between is judged after the push, which checks that the
# registry serves what was pushed.
_AHEAD: Dict[str, "Early[Optional[str]]"] = {}
_AHEAD_LOCK = threading.Lock()


def ask_ahead(engine: Any, image_ref: str) -> None:
    """Start asking the registry what it serves as image_ref, in a thread of its own (the
    build step, as the build starts; the docker CLI's engine only, whose every call is a
    process of its own)."""
    if getattr(engine, "cli", None) is None:
        return
    repository, tag = split_ref(image_ref)
    registry, name = dockerclient.split_image(repository)

    def ask() -> Optional[str]:
        secure = dockerclient.registry_secure(engine.client, registry, engine.registry_config)
        return session_without_engine(registry, secure).manifest_digest(name, tag)

    with _AHEAD_LOCK:
        for stale in [ref for ref, early in _AHEAD.items() if _too_old(early)]:
            del _AHEAD[stale]  # asked for a build that failed, or long ago
        _AHEAD[image_ref] = Early(ask, "pachhook-push-ahead")


def _too_old(early: "Early[Optional[str]]") -> bool:
    return time.monotonic() - early.started > FRESH_SECONDS


def _asked_ahead(image_ref: str) -> "Optional[Early[Optional[str]]]":
    """The question asked ahead for image_ref, once, when still fresh."""
    with _AHEAD_LOCK:
        early = _AHEAD.pop(image_ref, None)
    return None if early is None or _too_old(early) else early


def split_ref(image_ref: str) -> "tuple[str, str]":
    """`host:5000/a/b:TAG` -> (`host:5000/a/b`, `TAG`): the tag follows the last `:` after the last `/`."""
    slash = image_ref.rfind("/")
    colon = image_ref.rfind(":")
    if colon > slash:
        return image_ref[:colon], image_ref[colon + 1 :]
    return image_ref, "latest"


def run(ctx: StepContext) -> StepResult:
    job = ctx.job
    if not job.image:
        return StepResult(outcome="skipped", message="the template names no image to push")
    built = ctx.results.get("build") or {}
    image_ref = built.get("image_ref", "")
    if not image_ref:
        raise StepError(f"nothing to push for {job.image}: the build step recorded no image", retryable=True)
    repository, tag = split_ref(image_ref)
    registry, name = dockerclient.split_image(repository)
    if ctx.dry_run:
        ctx.log(f"push: would push {image_ref} to registry {registry}")
        return StepResult(outcome="skipped", data={"image_ref": image_ref}, message=f"dry run: push {image_ref}")

    key = built.get("context_key", "")
    if ctx.shared is not None:
        # pipelines of this delivery that share the image wait for one push of it
        return ctx.shared.once(
            "push",
            image_ref,
            key,
            job.pipeline,
            lambda: _push_step(ctx, image_ref, repository, tag, registry, name, key),
        )
    return _push_step(ctx, image_ref, repository, tag, registry, name, key)


def _push_step(
    ctx: StepContext, image_ref: str, repository: str, tag: str, registry: str, name: str, key: str
) -> StepResult:
    held = (ctx.results.get("build") or {}).get("registry_digest", "")
    result: Optional[StepResult] = None
    if held:
        try:
            result = _Pusher(ctx, None, image_ref, repository, tag, registry, name, held).run_with_retries()
        except _NeedsEngine as why:
            ctx.log(f"push: {why}; bringing the image to the Docker engine")
            from pachhook.deliver.steps import build

            on_engine = build.on_engine(ctx)
            ctx.log(f"push: build: {on_engine.outcome}: {on_engine.message}")
    if result is None:
        result = _Pusher(ctx, open_engine(ctx), image_ref, repository, tag, registry, name).run_with_retries()
    if key:
        try:
            imagekeys.record_pushed(ctx.git_dir, key, result.data["repo_digest"])
        except OSError as error:  # a cache: losing it only costs a rebuild later
            ctx.log(f"push: could not record the image for its context key: {one_line(error)}")
    return result


def _count(value: Any) -> int:
    """A byte count of the engine's progress (a number; anything else counts as unknown)."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else 0


class _LayerShares:
    """A layer's push in the log: its share every SHARE_SECONDS while it goes (the engine
    sends one event per chunk: far too many lines for a log)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.last: Dict[str, float] = {}

    def seen(self, layer: str, current: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last.setdefault(layer, now) >= SHARE_SECONDS:
            self.last[layer] = now
            self.log(f"push: {layer}: {100 * current // max(total, 1)}% of {human_size(total)}")


class _Pusher:
    """One image's push. With an engine (dockerengine.Engine), through it; without (None), the
    image is the one the registry holds as `held` and only the registry is asked."""

    def __init__(
        self,
        ctx: StepContext,
        engine: Any,
        image_ref: str,
        repository: str,
        tag: str,
        registry: str,
        name: str,
        held: str = "",
    ) -> None:
        self.ctx, self.engine, self.held = ctx, engine, held
        self.image_ref, self.repository, self.tag = image_ref, repository, tag
        self.registry, self.name = registry, name
        self.login: Dict[str, str] = {}
        if engine is None:
            self.session = session_without_engine(registry)
            return
        secure = dockerclient.registry_secure(engine.client, registry, engine.registry_config)
        if engine.cli is not None:
            # The CLI's push finds the login itself; pachhook's own requests read it (dockerauth.py)
            # only when the registry asks for one.
            self.session = session_without_engine(registry, secure)
            return
        try:
            # Looked up once, kept in memory only: never logged, never stored. The engine's
            # push is handed the same login (dockerauth.py is its one reading).
            self.login = dockerauth.registry_login(registry) or {}
        except dockerauth.LoginUnavailable as error:
            raise StepError(f"push of {image_ref}: {error}", retryable=False) from None
        self.session = RegistrySession(registry, self.login, secure)

    def run_with_retries(self) -> StepResult:
        delay = FIRST_DELAY
        last = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self.attempt()
            except _Transient as error:
                last = str(error)
                if attempt == ATTEMPTS:
                    break
                self.ctx.log(f"push: {last}; trying again in {delay:g}s (attempt {attempt} of {ATTEMPTS})")
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
        cause = (
            last[len(f"registry {self.registry}") :].lstrip(": ")
            if last.startswith(f"registry {self.registry}")
            else last
        )
        raise StepError(
            f"push of {self.image_ref} to registry {self.registry} failed after {ATTEMPTS} attempts: {cause}",
            retryable=True,
        )

    def _remote_digest(self, reference: str, precheck: bool = False) -> Optional[str]:
        try:
            return self.session.manifest_digest(self.name, reference)
        except RegistryError as error:
            if error.transient:
                raise _Transient(str(error)) from None
            if precheck:
                # Not knowing what the registry holds only costs a push; the engine's own
                # answer to that push then names the problem (e.g. "no basic auth credentials").
                self.ctx.log(f"push: cannot ask {self.registry} for {self.tag} ({error}); pushing")
                return None
            raise StepError(f"push of {self.image_ref}: {error}", retryable=False) from None

    def _served_now(self) -> Optional[str]:
        """What the registry serves as the tag before this push: asked while the image built
        (ask_ahead) when that answer is fresh, else now."""
        early = _asked_ahead(self.image_ref) if self.engine is not None else None
        if early is not None:
            try:
                return early.result()
            except Exception:  # RegistryError, the engine's settings unreadable: asked again, reported as always
                pass
        return self._remote_digest(self.tag, precheck=True)

    def _local_digests(self) -> set:
        """The digests the image has in this repository: the registry's one when only it holds
        the image, else those the engine recorded for its pushes."""
        if self.engine is None:
            return {self.held}
        built_here = dockerengine.new_here(self.image_ref)
        if built_here and self.engine.cli is not None:
            return set()  # built by this process a moment ago: no push has named it (dockerengine.py)
        try:
            image = self.engine.images([self.image_ref]).get(self.image_ref)
        except dockerclient.EngineUnavailable as error:
            raise StepError(str(error), retryable=True) from None
        except EngineError as error:
            raise _Transient(f"Docker engine: {error}") from None
        if image is None:
            raise StepError(self._gone(), retryable=True)
        return image.digests_in(self.repository)

    def _gone(self) -> str:
        return f"image {self.image_ref} is not on the Docker engine any more; retry the job to build it again"

    def _result(self, digest: str, outcome: str, message: str) -> StepResult:
        return StepResult(
            outcome=outcome,
            message=message,
            data={"digest": digest, "image_ref": self.image_ref, "repo_digest": f"{self.repository}@{digest}"},
        )

    def attempt(self) -> StepResult:
        # the engine first: one that does not answer fails the step at once, naming DOCKER_HOST
        local = self._local_digests()
        remote = self._served_now()
        if remote and remote in local:
            message = f"registry {self.registry} already serves {self.image_ref} as {remote}; not pushing"
            self.ctx.log(f"push: {message}")
            return self._result(remote, "reused", message)
        if remote:
            # Tags are immutable: a commit's tag another build pushed (CI, another clone) is
            # adopted when its image names this commit, never pushed over (issue 10).
            return self._adopt(remote)
        digest = self._tag_in_registry(local) or self._push()
        # What is recorded is what the registry serves for the exact reference the spec
        # names (IMAGE:TAG), not merely a digest it holds.
        served = self._remote_digest(self.tag)
        if served is None:
            raise _Transient(f"registry {self.registry} does not serve {self.image_ref} yet")
        if served != digest:
            raise StepError(
                f"registry {self.registry} serves {self.image_ref} as {served}, not the pushed {digest}:"
                " another push replaced the tag meanwhile",
                retryable=False,
            )
        self.ctx.log(f"push: registry {self.registry} serves {self.image_ref} as {digest}")
        return self._result(digest, "done", f"pushed {self.image_ref} ({digest})")

    def _adopt(self, remote: str) -> StepResult:
        """Record the digest the registry serves for this tag when that image was built for
        this commit (or for an ancestor whose build this commit reused); refuse otherwise."""
        try:
            labels = self.session.image_config(self.name, remote).labels
        except RegistryError as error:
            if error.transient:
                raise _Transient(str(error)) from None
            raise StepError(f"push of {self.image_ref}: {error}", retryable=False) from None
        revision = labels.get(LABEL_REVISION, "")
        commit = self.ctx.job.commit
        if revision and (revision == commit or _is_ancestor(revision, commit, self.ctx.repo_root)):
            whose = "this commit" if revision == commit else f"{revision[:12]}, an ancestor whose build it reuses"
            message = (
                f"registry {self.registry} already serves {self.image_ref} as {remote}, built elsewhere"
                f" for {whose}; adopted it, not pushing over the tag"
            )
            self.ctx.log(f"push: {message}")
            return self._result(remote, "reused", message)
        built_for = f"commit {revision[:12]}" if revision else "no commit (no revision label)"
        raise StepError(
            f"registry {self.registry} already serves {self.image_ref} as {remote}, built for {built_for},"
            f" neither {commit[:12]} nor an ancestor; a commit's tag is never pushed over:"
            " delete that tag from the registry, then pachhook retry",
            retryable=False,
        )

    def _tag_in_registry(self, local: set) -> str:
        """When the registry already holds this very image (pushed for an earlier commit with
        the same build context), send it only the new tag's manifest; returns the digest, or
        "" to push through the engine instead."""
        for digest in sorted(local):
            try:
                if self.session.manifest_digest(self.name, digest) != digest:
                    continue  # asked each time: a registry clean-up may have deleted it since
                self.session.tag_manifest(self.name, digest, self.tag)
            except RegistryError as error:
                if error.transient:
                    raise _Transient(str(error)) from None
                self.ctx.log(
                    f"push: cannot tag {digest} in {self.registry} directly ({error}); pushing through the engine"
                )
                return ""
            self.ctx.log(
                f"push: registry {self.registry} already holds the image as {digest}; "
                f"sent only the manifest for tag {self.tag}"
            )
            return digest
        return ""

    def _push(self) -> str:
        """Push once; returns the digest. Errors come as stream events or as exceptions."""
        if self.engine is None:
            raise _NeedsEngine(
                f"{self.repository}@{self.held} could not be tagged {self.tag} in registry {self.registry}"
            )
        self.ctx.log(f"push: pushing {self.image_ref} with {self.engine.describe()}")
        view = self.ctx.live.image(self.ctx.job.pipeline) if self.ctx.live is not None else None
        if view is not None:
            view.pushing()
        try:
            return self._push_with_cli(view) if self.engine.cli is not None else self._push_stream(view)
        finally:
            if view is not None:
                view.close()

    def _push_with_cli(self, view: Any) -> str:
        """`docker push`, its lines to the log (a layer's each time its status changes, its share
        every SHARE_SECONDS while it pushes) and to the terminal's view, which gets the bytes."""
        seen: Dict[str, str] = {}
        shares = _LayerShares(self.ctx.log)

        def progress(layer: str, status: str, current: int, total: int) -> None:
            if not layer:
                self.ctx.log(f"push: {status}")
                return
            if view is not None:
                view.layer(layer, status, current, total)
            if status == "Pushing" and total:
                shares.seen(layer, current, total)
            if seen.get(layer) != status:
                seen[layer] = status
                if status != "Waiting":
                    self.ctx.log(f"push: {layer}: {status}")

        try:
            return enginecli.push(self.engine.cli.path, self.repository, self.tag, progress, terminal=view is not None)
        except dockerclient.EngineUnavailable as error:
            raise StepError(str(error), retryable=True) from None
        except EngineError as error:
            if "does not exist locally" in error.cause:  # the CLI's words for an image gone meanwhile
                raise StepError(self._gone(), retryable=True) from None
            self._fail(error.cause)

    def _push_stream(self, view: Any) -> str:
        from docker.errors import APIError, DockerException

        digest = ""
        seen: Dict[str, str] = {}
        shares = _LayerShares(self.ctx.log)
        try:
            # the login as dockerauth.py reads it ({} for none), not docker-py's own reading
            stream = self.engine.client.api.push(
                self.repository, tag=self.tag, stream=True, decode=True, auth_config=self.login
            )
            for event in stream:
                if "error" in event or "errorDetail" in event:
                    detail = event.get("errorDetail") or {}
                    self._fail(one_line(event.get("error") or detail.get("message") or "push refused"))
                aux = event.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = aux["Digest"]
                # the engine's words: cleaned (no control sequences, bounded) before any log or screen
                status, layer = one_line(event.get("status", ""), 300), one_line(event.get("id", ""), 80)
                detail = event.get("progressDetail") or {}
                if status and layer:
                    current, total = _count(detail.get("current")), _count(detail.get("total"))
                    if view is not None:
                        view.layer(layer, status, current, total)
                    if status == "Pushing" and total:
                        shares.seen(layer, current, total)
                if status and layer and seen.get(layer) != status:
                    seen[layer] = status
                    if status not in ("Pushing", "Waiting"):
                        self.ctx.log(f"push: {layer}: {status}")
                    elif status == "Pushing":
                        self.ctx.log(f"push: {layer}: Pushing")
                elif status and not layer:
                    self.ctx.log(f"push: {one_line(status)}")
        except (APIError, DockerException) as error:
            self._fail(one_line(getattr(error, "explanation", None) or error))
        except (StepError, _Transient):
            raise
        except Exception as error:  # the engine connection dropped mid-stream and the like
            raise _Transient(f"Docker engine connection failed during push: {one_line(error)}") from None
        if not digest:
            raise _Transient("the push stream ended without a digest")
        return digest

    def _fail(self, cause: str) -> NoReturn:
        if enginecli.is_transient(cause):
            raise _Transient(f"registry {self.registry}: {cause}")
        hint = ""
        if re.search(r"unauthorized|authentication required|no basic auth|denied", cause, re.I):
            hint = f"; log in with docker login {self.registry}, then pachhook retry"
        raise StepError(f"push of {self.image_ref} to registry {self.registry} refused: {cause}{hint}", retryable=False)

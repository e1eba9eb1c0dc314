"""The Docker engine of a delivery: through the docker CLI when one builds here, else docker-py.

The build and push steps ask the engine for the same few things either way (the images it
holds, a new name for one, a pull, its registry settings); this is where the two ways meet,
so that the steps' logic is written once. With a CLI (dockerclient.find_cli) every call is a
CLI call (enginecli.py) and docker-py is never imported; without one, docker-py's client
(dockerclient.make_client) answers, as before the CLI was used for more than builds.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence

from pachhook.core.sanitize import one_line
from pachhook.deliver import dockerclient, enginecli
from pachhook.deliver.enginecli import EngineError, LocalImage


@dataclass(frozen=True)
class Engine:
    """The engine, through `cli` (a docker CLI that builds) or else `client` (docker-py's)."""

    cli: Optional[dockerclient.DockerCli]
    client: Any = None

    def describe(self) -> str:
        return f"the docker CLI {self.cli.path}" if self.cli is not None else "docker-py"

    def images(self, refs: Sequence[str]) -> Dict[str, LocalImage]:
        """The images the engine holds among refs, by ref (a missing one is left out).

        Raises dockerclient.EngineUnavailable or EngineError.
        """
        if self.cli is not None:
            return enginecli.inspect_images(self.cli.path, refs)
        from docker.errors import ImageNotFound

        found: Dict[str, LocalImage] = {}
        for ref in dict.fromkeys(ref for ref in refs if ref):
            try:
                image = _api(functools.partial(self.client.images.get, ref), f"inspect {ref}", ImageNotFound)
            except ImageNotFound:
                continue
            found[ref] = LocalImage(
                id=image.id,
                labels=dict(image.labels or {}),
                repo_digests=tuple(image.attrs.get("RepoDigests") or ()),
            )
        return found

    def tag(self, source: str, target: str) -> None:
        """Name the image `source` names `target` (REPOSITORY:TAG) too."""
        if self.cli is not None:
            enginecli.tag(self.cli.path, source, target)
            return
        repository, _, tag = target.rpartition(":")
        _api(lambda: self.client.api.tag(source, repository, tag), f"tag {source} {target}")

    def pull(self, ref: str) -> None:
        """Pull ref (REPOSITORY@DIGEST) with the docker config's login for its registry: the CLI
        finds it itself; docker-py is handed dockerauth.py's reading (which raises
        dockerauth.LoginUnavailable when the config names a login it cannot read)."""
        if self.cli is not None:
            enginecli.pull(self.cli.path, ref, lambda layer, status, current, total: None)
            return
        from pachhook.deliver import dockerauth

        login = dockerauth.registry_login(dockerclient.split_image(ref.partition("@")[0])[0])
        _api(lambda: self.client.images.pull(ref, auth_config=login or {}), f"pull {ref}")

    def registry_config(self) -> Dict[str, Any]:
        """The engine's registry settings (`docker info`'s RegistryConfig); {} when it does not say."""
        if self.cli is not None:
            return enginecli.registry_config(self.cli.path)
        try:
            found = self.client.info().get("RegistryConfig")
        except Exception:  # docker-py's errors, or requests' escaping it: the engine does not say
            return {}
        return found if isinstance(found, dict) else {}


# IMAGE:TAG -> image id, for images this process built. A build names a new image (its labels
# hold the commit and the time it was built), which no push has named yet: the push step of
# the same delivery then knows its (empty) RepoDigests without asking the engine, a CLI start
# fewer. Another process (a retry, the worker) knows nothing of it and asks.
_BUILT_HERE: Dict[str, str] = {}
_BUILT_LOCK = threading.Lock()


def built_here(image_ref: str, image_id: str) -> None:
    """Note that this process has just built image_id and tagged it image_ref."""
    with _BUILT_LOCK:
        _BUILT_HERE[image_ref] = image_id


def new_here(image_ref: str) -> bool:
    """Whether this process built image_ref and has not asked about it since (asked once)."""
    with _BUILT_LOCK:
        return _BUILT_HERE.pop(image_ref, None) is not None


def _api(call: Callable[[], Any], what: str, passes: Optional[type] = None) -> Any:
    """docker-py's call, its errors as EngineError (one line, the engine's explanation);
    `passes` is an error the caller handles itself."""
    from docker.errors import APIError, DockerException

    try:
        return call()
    except Exception as error:
        if passes is not None and isinstance(error, passes):
            raise
        if isinstance(error, (APIError, DockerException)):
            cause = one_line(getattr(error, "explanation", None) or error, 1000)
            raise EngineError(f"{what}: {cause}", transient=True) from None
        raise EngineError(f"{what}: the engine connection failed ({one_line(error, 300)})", transient=True) from None


def open_engine(cache_dir: Optional[str] = None) -> Engine:
    """The engine: through the docker CLI that builds here, else docker-py's client (checked to
    answer). A docker CLI that cannot build (dockerclient.BuilderUnavailable) leaves the engine
    to docker-py; the build step names that problem itself.

    Raises dockerclient.DockerConfigError for a malformed docker config (the CLI would only
    warn and read it half), and dockerclient.EngineUnavailable from docker-py.
    """
    try:
        cli = dockerclient.find_cli(cache_dir)
    except dockerclient.BuilderUnavailable:
        cli = None
    if cli is None:
        return Engine(cli=None, client=dockerclient.make_client())
    dockerclient.check_docker_config()
    return Engine(cli=cli)

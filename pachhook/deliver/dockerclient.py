"""The Docker engine and registry credentials, as the user's own docker CLI would find them.

The engine is the one DOCKER_HOST names (unix://, tcp:// or ssh://), else the default socket.
Registry logins come from the user's docker config and its credential helpers (dockerauth.py):
pachhook never prompts for them and never prints, logs or stores them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from pachhook.deliver import credhelpers
from pachhook.deliver.dockerauth import docker_config_file, docker_config_problem
from pachhook.deliver.registry import insecure_by_default

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = 15  # seconds for the first answer of the engine


class EngineUnavailable(Exception):
    """The Docker engine cannot be reached; str() is the one-line cause."""


class DockerConfigError(EngineUnavailable):
    """The user's docker config file is malformed; trying again will not help until it is fixed."""


class BuilderUnavailable(Exception):
    """Docker CLIs are installed but none builds with BuildKit; str() names the problem and the fix."""


# ---------------------------------------------------------------- the Docker CLI that builds

CLI_ENV = "PACHHOOK_DOCKER_CLI"  # a docker CLI to use instead of the one found on PATH
PROBE_TIMEOUT = 20


@dataclass(frozen=True)
class DockerCli:
    """A docker CLI that builds with BuildKit."""

    path: str
    version: str
    buildx: bool  # `docker buildx build`; else `DOCKER_BUILDKIT=1 docker build` (built-in client, < 23)

    def build_command(self) -> List[str]:
        # --load: a buildx builder other than the engine's own keeps its result otherwise.
        return [self.path, "buildx", "build", "--load"] if self.buildx else [self.path, "build"]

    def describe(self) -> str:
        how = "docker buildx build" if self.buildx else "DOCKER_BUILDKIT=1 docker build"
        return f"{self.path} {self.version} ({how})"


_CLI_CACHE: Dict[Tuple[str, str], Tuple[Optional[DockerCli], str]] = {}
PROBE_TOPIC = "docker-cli"  # toolfacts.py: what a docker CLI said about itself, per file

# Where the docker CLI looks for its plugins (docker/cli cli-plugins/manager: the config
# folder's cli-plugins, the config's cliPluginsExtraDirs, then defaultSystemPluginDirs in
# manager_unix.go): `docker buildx version` answers according to what is there.
SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def _candidates() -> List[str]:
    explicit = os.environ.get(CLI_ENV, "").strip()
    if explicit:
        found = shutil.which(explicit)
        return [found] if found else [explicit]
    paths: List[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(folder or ".", "docker")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            real = os.path.realpath(path)
            if real not in (os.path.realpath(known) for known in paths):
                paths.append(path)
    return paths


def _buildx_plugin_paths() -> List[str]:
    """Every place the docker CLI would find its buildx plugin (present or not)."""
    import json

    config_folder = os.path.dirname(docker_config_file())
    folders = [os.path.join(config_folder, "cli-plugins")]
    try:
        with open(docker_config_file(), encoding="utf-8") as handle:
            extra = json.load(handle).get("cliPluginsExtraDirs")
    except (OSError, ValueError, AttributeError):
        extra = None
    if isinstance(extra, list):
        folders += [str(folder) for folder in extra if isinstance(folder, str)]
    folders += SYSTEM_PLUGIN_DIRS
    return [os.path.join(folder, "docker-buildx") for folder in folders]


def _ask_cli(path: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """(what the CLI says about itself: version and whether `docker buildx` answers; or None
    with the reason when it does not run)."""

    def ask(*args: str) -> Tuple[int, str]:
        try:
            done = subprocess.run(
                [path, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT, text=True
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return 127, str(error)
        return done.returncode, done.stdout + done.stderr

    status, text = ask("--version")
    found = re.search(r"version (\d+)\.(\d+)[^\s,]*", text)
    if status != 0 or not found:
        return None, f"{path} does not run ({' '.join(text.split())[:120] or 'exit ' + str(status)})"
    version = found.group(0).split()[-1]
    status, _ = ask("buildx", "version")
    return {"version": version, "major": int(found.group(1)), "minor": int(found.group(2)), "buildx": status == 0}, ""


def _stored_facts(stored: Any) -> Optional[Dict[str, Any]]:
    """What _ask_cli said, as toolfacts.py kept it; None when the file held something else."""
    shapes = {"version": str, "major": int, "minor": int, "buildx": bool}
    if isinstance(stored, dict) and all(type(stored.get(name)) is kind for name, kind in shapes.items()):
        return stored
    return None


def _judge(path: str, facts: Dict[str, Any]) -> Tuple[Optional[DockerCli], str]:
    """(the CLI when it builds with BuildKit, else None with the reason)."""
    version = facts["version"]
    if facts["buildx"]:
        return DockerCli(path, version, buildx=True), ""
    major, minor = facts["major"], facts["minor"]
    # Docker CLIs before 23.0 carry a BuildKit client of their own (DOCKER_BUILDKIT=1); from 23.0
    # on, BuildKit builds go through the buildx plugin and the CLI refuses without it.
    if (18, 9) <= (major, minor) < (23, 0):
        return DockerCli(path, version, buildx=False), ""
    if (major, minor) < (18, 9):
        return None, f"{path} ({version}) is older than 18.09 and cannot build with BuildKit"
    return None, f"{path} ({version}) has no buildx plugin (BuildKit is enabled but the buildx component is missing)"


def _probe_cli(path: str, cache_dir: Optional[str] = None) -> Tuple[Optional[DockerCli], str]:
    """(the CLI when it builds with BuildKit, else None with the reason).

    Its answers are remembered per docker executable and buildx plugin files (toolfacts.py),
    across processes when a cache_dir is given: two Go starts fewer per delivery. A CLI that
    did not run is asked again next time.
    """
    from pachhook.deliver import toolfacts

    key = toolfacts.keys_of([path, *_buildx_plugin_paths()])
    facts = toolfacts.recall(PROBE_TOPIC, key, _stored_facts, cache_dir)
    if facts is None:
        facts, problem = _ask_cli(path)
        if facts is None:
            return None, problem
        toolfacts.remember(PROBE_TOPIC, key, facts, cache_dir)
    return _judge(path, facts)


def find_cli(cache_dir: Optional[str] = None) -> Optional[DockerCli]:
    """The docker CLI that builds: the first on PATH (or PACHHOOK_DOCKER_CLI) that builds with
    BuildKit, through its buildx plugin or its own BuildKit client.

    None when no docker CLI is installed (the caller falls back to the engine API). Raises
    BuilderUnavailable, naming each CLI's problem and the fix, when CLIs exist and none works.
    cache_dir: where what each CLI said about itself is remembered across processes.
    """
    cache_key = (os.environ.get("PATH", ""), os.environ.get(CLI_ENV, ""))
    if cache_key not in _CLI_CACHE:
        problems: List[str] = []
        chosen: Optional[DockerCli] = None
        candidates = _candidates()
        for path in candidates:
            cli, problem = _probe_cli(path, cache_dir)
            if cli is not None:
                chosen = cli
                break
            problems.append(problem)
        _CLI_CACHE[cache_key] = (chosen, "; ".join(problems) if candidates and chosen is None else "")
    cli, problem = _CLI_CACHE[cache_key]
    if problem:
        raise BuilderUnavailable(
            f"no docker CLI here builds with BuildKit: {problem}; install the buildx plugin "
            "(Debian/Ubuntu: apt-get install docker-buildx-plugin or docker-buildx; "
            f"https://docs.docker.com/go/buildx/), or set {CLI_ENV} to a docker CLI that builds"
        )
    return cli


def engine_host() -> str:
    """The engine address in use, for messages: DOCKER_HOST or the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _short_cause(error: BaseException) -> str:
    """The innermost readable reason of a connection error, on one line."""
    text = str(error)
    for marker in ("FileNotFoundError", "ConnectionRefusedError", "PermissionError", "TimeoutError"):
        if marker in text:
            return {
                "FileNotFoundError": "no socket there",
                "ConnectionRefusedError": "connection refused",
                "PermissionError": "permission denied",
                "TimeoutError": "timed out",
            }[marker]
    return " ".join(text.split())[:200]


# One client per engine settings, kept for the life of the process: a worker runs many steps,
# and making a client costs two round trips to the engine.
_CLIENTS: Dict[tuple, Any] = {}
_ENV_KEYS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONFIG")


def unreachable(cause: str) -> EngineUnavailable:
    """The error for an engine that does not answer, naming DOCKER_HOST, the cause and the fix."""
    return EngineUnavailable(
        f"Docker engine not reachable at DOCKER_HOST={engine_host()} ({cause}); "
        "start dockerd or point DOCKER_HOST at a running engine"
    )


def _unreachable(error: BaseException) -> EngineUnavailable:
    return unreachable(_short_cause(error))


def check_docker_config() -> None:
    """DockerConfigError naming what is wrong with the user's docker config file, if anything."""
    problem = docker_config_problem()
    if problem:
        raise DockerConfigError(f"{problem}; fix or remove it (docker login writes it anew)")


def make_client(timeout: int = 600) -> Any:
    """A docker-py client for the engine DOCKER_HOST names, checked to answer.

    Clients are shared within a process; callers must not close them. Raises
    EngineUnavailable with one line naming the engine and DOCKER_HOST, or DockerConfigError
    naming a malformed docker config file.
    """
    import docker

    check_docker_config()
    settings = tuple(os.environ.get(key, "") for key in _ENV_KEYS) + (timeout,)
    client = _CLIENTS.get(settings)
    try:
        if client is not None:
            client.ping()
            return client
        # from_env asks the engine for its API version, which proves it answers; a short
        # timeout for that, so an unreachable tcp:// or ssh:// engine fails in seconds.
        client = docker.from_env(timeout=CONNECT_TIMEOUT)
        client.api.timeout = timeout  # builds may stay silent for minutes
        # every credential helper docker-py runs for this client gets a deadline (credhelpers.py)
        client.api._auth_configs = credhelpers.bounded_auth_config(client.api.credstore_env)
    except Exception as error:  # DockerException, or requests' errors escaping docker-py
        _CLIENTS.pop(settings, None)
        raise _unreachable(error) from None
    _CLIENTS[settings] = client
    return client


def split_image(image: str) -> "tuple[str, str]":
    """Split an image repository into (registry host, path): `127.0.0.1:5000/a/b` -> (127.0.0.1:5000, a/b).

    Follows docker's rule: the first component is a registry when it has a `.` or `:` or is
    `localhost`; otherwise the image lives on Docker Hub.
    """
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    path = image if "/" in image else f"library/{image}"
    return "docker.io", path


def registry_secure(client: Any, registry: str, registry_config: Optional[Callable[[], Dict[str, Any]]] = None) -> bool:
    """Whether the engine talks TLS to registry (loopback and --insecure-registry ones it does not).

    The engine's settings come from registry_config() when given (dockerengine.Engine's, which
    asks the docker CLI), else from docker-py's client.info(); they are asked only for a
    registry that is not insecure by default.
    """
    import ipaddress

    if insecure_by_default(registry):
        return False
    try:
        info = (registry_config() if registry_config is not None else client.info().get("RegistryConfig")) or {}
    except Exception:
        info = {}
    index = (info.get("IndexConfigs") or {}).get(registry)
    if isinstance(index, dict) and "Secure" in index:
        return bool(index["Secure"])
    host = registry.rsplit(":", 1)[0].strip("[]") if registry.count(":") <= 1 or registry.startswith("[") else registry
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    for cidr in info.get("InsecureRegistryCIDRs") or []:
        network = cidr if isinstance(cidr, str) else "{}/{}".format(cidr.get("IP", ""), cidr.get("Mask", ""))
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return False
        except ValueError:
            continue
    return True

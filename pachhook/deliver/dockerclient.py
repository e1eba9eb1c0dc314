"""The Docker engine and registry credentials, as the user's own docker CLI would find them.

The engine is the one DOCKER_HOST names (unix://, tcp:// or ssh://), else the default socket.
Credentials come from the user's docker config (DOCKER_CONFIG or ~/.docker/config.json) and its
credential helpers, through docker-py's own loading: pachhook never prompts for them and never
prints, logs or stores them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = 15  # seconds for the first answer of the engine


class EngineUnavailable(Exception):
    """The Docker engine cannot be reached; str() is the one-line cause."""


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


def _unreachable(error: BaseException) -> EngineUnavailable:
    return EngineUnavailable(
        f"Docker engine not reachable at DOCKER_HOST={engine_host()} ({_short_cause(error)}); "
        "start dockerd or point DOCKER_HOST at a running engine"
    )


def make_client(timeout: int = 600) -> Any:
    """A docker-py client for the engine DOCKER_HOST names, checked to answer.

    Clients are shared within a process; callers must not close them. Raises
    EngineUnavailable with one line naming the engine and DOCKER_HOST.
    """
    import docker

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


def registry_auth(client: Any, registry: str) -> Optional[Dict[str, str]]:
    """The credentials the user's docker config holds for registry, or None.

    Credential helpers (`credsStore`, `credHelpers`) are asked through docker-py, exactly as
    for the push itself; the result stays in memory. Keys are normalised to lower case:
    username, password, identitytoken.
    """
    from docker import auth

    api = getattr(client, "api", client)
    credstore_env = getattr(api, "credstore_env", None)
    # Read afresh for every push, so a `docker login` made after the worker started counts;
    # the engine's push then gets the same login through docker-py.
    configs = auth.load_config(credstore_env=credstore_env)
    if hasattr(api, "_auth_configs"):
        api._auth_configs = configs
    lookup = None if registry == "docker.io" else registry
    try:
        found = auth.resolve_authconfig(configs, lookup, credstore_env=credstore_env)
    except Exception:
        # A broken credential helper must not crash the step: the registry's own answer
        # ("unauthorized") then names the problem.
        return None
    if not found:
        return None
    return {str(k).lower(): str(v) for k, v in found.items() if v}


def registry_secure(client: Any, registry: str) -> bool:
    """Whether the engine talks TLS to registry (loopback and --insecure-registry ones it does not)."""
    import ipaddress

    host = registry.rsplit(":", 1)[0].strip("[]") if registry.count(":") <= 1 or registry.startswith("[") else registry
    if host == "localhost":
        return False
    try:
        if ipaddress.ip_address(host).is_loopback:
            return False  # the engine always treats 127.0.0.0/8 as insecure
    except ValueError:
        pass
    try:
        info = client.info().get("RegistryConfig") or {}
    except Exception:
        info = {}
    index = (info.get("IndexConfigs") or {}).get(registry)
    if isinstance(index, dict) and "Secure" in index:
        return bool(index["Secure"])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    if address.is_loopback:
        return False
    for cidr in info.get("InsecureRegistryCIDRs") or []:
        network = cidr if isinstance(cidr, str) else "{}/{}".format(cidr.get("IP", ""), cidr.get("Mask", ""))
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return False
        except ValueError:
            continue
    return True

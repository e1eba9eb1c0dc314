"""The test services (Docker engine, open registry, htpasswd registry) as the tests see them.

`tests/services/up` starts them and writes DIR/env (DIR: $PACHHOOK_SERVICES_DIR or /tmp/phk);
variables already set in the environment win over that file. When the services are absent,
`require_services()` skips with the reason, except under CI (env CI set), where integration
tests must run and it fails instead.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

SKIP_REASON = "Docker services not running: run tests/services/up"
# Where DOCKER_HOST points in tests that must not reach any engine.
DEAD_DOCKER_HOST = "unix:///nonexistent/pachhook-tests/docker.sock"

_KEYS = {
    "docker_host": "PACHHOOK_TEST_DOCKER_HOST",
    "registry": "PACHHOOK_TEST_REGISTRY",
    "auth_registry": "PACHHOOK_TEST_AUTH_REGISTRY",
    "auth_user": "PACHHOOK_TEST_AUTH_USER",
    "auth_password_file": "PACHHOOK_TEST_AUTH_PASSWORD_FILE",
    "base_image": "PACHHOOK_TEST_BASE_IMAGE",
}


@dataclass(frozen=True)
class Services:
    docker_host: str  # e.g. unix:///tmp/phk/docker.sock
    registry: str  # open registry, host:port
    auth_registry: str  # htpasswd registry, host:port
    auth_user: str
    auth_password_file: Path  # the secret stays in this file; read it only to hand it on
    base_image: str  # offline base image holding busybox, e.g. pachhook-test/busybox:base

    def auth_password(self) -> str:
        return self.auth_password_file.read_text().strip()


def services_dir() -> Path:
    return Path(os.environ.get("PACHHOOK_SERVICES_DIR") or "/tmp/phk")


def read_env_file(path: Path) -> Dict[str, str]:
    """Parse the `export NAME=VALUE` lines tests/services/up writes (values shell-quoted)."""
    values: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


def _probe(services: Services) -> Optional[str]:
    """Why the services cannot be reached, or None when the engine and both registries answer."""
    if not services.docker_host.startswith("unix://"):
        return None  # a remote engine: let docker-py report on it
    sock_path = services.docker_host[len("unix://") :]
    targets: Tuple[Tuple[str, object], ...] = (("Docker engine at " + services.docker_host, sock_path),)
    for name in ("registry", "auth_registry"):
        host, _, port = getattr(services, name).rpartition(":")
        targets += ((f"registry {getattr(services, name)}", (host, int(port))),)
    for label, address in targets:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(address)
            except OSError as error:
                return f"{label} does not answer ({error.strerror or error})"
    if not services.auth_password_file.is_file():
        return f"registry password file {services.auth_password_file} is missing"
    return None


def load_services() -> Tuple[Optional[Services], str]:
    """The services from the environment or DIR/env, with the reason when they are unusable."""
    values = {}
    env_file = services_dir() / "env"
    if env_file.is_file():
        values.update(read_env_file(env_file))
    values.update({var: os.environ[var] for var in _KEYS.values() if os.environ.get(var)})
    missing = [var for var in _KEYS.values() if not values.get(var)]
    if missing:
        return None, SKIP_REASON
    services = Services(
        docker_host=values[_KEYS["docker_host"]],
        registry=values[_KEYS["registry"]],
        auth_registry=values[_KEYS["auth_registry"]],
        auth_user=values[_KEYS["auth_user"]],
        auth_password_file=Path(values[_KEYS["auth_password_file"]]),
        base_image=values[_KEYS["base_image"]],
    )
    problem = _probe(services)
    if problem:
        return None, f"{SKIP_REASON} ({problem})"
    return services, ""


def require_services() -> Services:
    """The running services; skip (or, under CI, fail) with the reason when they are not there."""
    services, reason = load_services()
    if services is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the integration tests, but: {reason}", pytrace=False)
        pytest.skip(reason)
    return services


def second_engine() -> str:
    """DOCKER_HOST of the second, empty engine tests/services/up starts (a second machine's);
    skip (or, under CI, fail) when it is not there."""
    values = read_env_file(services_dir() / "env") if (services_dir() / "env").is_file() else {}
    host = os.environ.get("PACHHOOK_TEST_DOCKER_HOST2") or values.get("PACHHOOK_TEST_DOCKER_HOST2", "")
    socket = host[len("unix://") :] if host.startswith("unix://") else ""
    if not socket or not os.path.exists(socket):
        reason = "the second Docker engine is not running (run tests/services/up)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the integration tests, but: {reason}", pytrace=False)
        pytest.skip(reason)
    return host


def docker_client(services: Optional[Services] = None):
    """A docker-py client for the test engine (never the default socket)."""
    import docker

    services = services or require_services()
    return docker.DockerClient(base_url=services.docker_host, timeout=120)


def run_in_image(services: Services, image_ref: str, command: str) -> str:
    """What `sh -c COMMAND` prints on stdout in a container of the image (no network).

    The output is read once the container has exited, not followed from its start: a follow
    begun as a quick container ends can come back empty (seen once in a full run: `busybox
    cat` of a file the image holds printing nothing).
    """
    client = docker_client(services)
    try:
        container = client.containers.create(image_ref, ["sh", "-c", command], network_mode="none")
        try:
            container.start()
            status = container.wait(timeout=120)["StatusCode"]
            out = container.logs(stdout=True, stderr=False)
            errors = container.logs(stdout=False, stderr=True)
        finally:
            container.remove(force=True)
    finally:
        client.close()
    assert status == 0, f"{command!r} in {image_ref} exited {status}: {errors.decode(errors='replace')}"
    return out.decode()


def write_docker_config(folder: Path, registry: str, user: str, password: str) -> Path:
    """Write a DOCKER_CONFIG folder whose config.json holds login for registry; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = folder / "config.json"
    config.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    config.chmod(0o600)
    return folder


def credential_helper(folder: Path, name: str, services: Services, asked: Optional[Path] = None) -> Path:
    """A real credential helper program `docker-credential-NAME` in folder, speaking docker's
    helper protocol (`get`, the server on stdin, JSON on stdout) as pass/osxkeychain/ecr-login
    helpers do, answering the htpasswd registry's login; each server asked is appended to
    `asked` when given. Returns folder (to put first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    helper = folder / f"docker-credential-{name}"
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read -r server\n"
        + (f"echo \"$server\" >> '{asked}'\n" if asked else "")
        + f"secret=$(cat '{services.auth_password_file}')\n"
        f'printf \'{{"ServerURL":"%s","Username":"{services.auth_user}","Secret":"%s"}}\' "$server" "$secret"\n'
    )
    helper.chmod(0o755)
    return folder


def base_dockerfile(services: Services, *lines: str) -> str:
    """A Dockerfile that builds offline: FROM the local base image, then the given lines."""
    return "\n".join((f"FROM {services.base_image}",) + lines) + "\n"

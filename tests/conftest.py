"""Shared pytest set-up: hypothesis profiles, and the Docker services fixtures below."""

import os as _os

from hypothesis import settings as _settings

# Before anything imports grpc (the API test double, pachyderm-sdk), as
# pachhook/deliver/backends/api.py does for the product: grpc's fork handlers would restart
# its event engine in every child forked later by this process (run_cli's preexec_fn), and
# the child then aborts with "epoll_wait error: Bad file descriptor".
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# Local runs explore new examples each time; CI runs the same examples every time, so a
# landing is never decided by a lucky draw (a failure found locally is fixed, not skipped).
_settings.register_profile("ci", derandomize=True, print_blob=True)
if _os.environ.get("CI"):
    _settings.load_profile("ci")

# ---- Docker services fixtures (build/push engineer; see tests/services.py) ----
import os as _os
from pathlib import Path as _Path

import pytest as _pytest
import services as _services


@_pytest.fixture(autouse=True)
def _docker_env_isolation(monkeypatch, tmp_path_factory):
    """Keep pachhook code under test away from the default Docker socket and the user's login.

    DOCKER_HOST is always set explicitly: to the test engine when tests/services/up wrote its
    env file, else to a socket that does not exist. DOCKER_CONFIG points at an empty folder.
    """
    env_file = _services.services_dir() / "env"
    host = _os.environ.get("PACHHOOK_TEST_DOCKER_HOST")
    if not host and env_file.is_file():
        host = _services.read_env_file(env_file).get("PACHHOOK_TEST_DOCKER_HOST")
    monkeypatch.setenv("DOCKER_HOST", host or _services.DEAD_DOCKER_HOST)
    for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.getbasetemp() / "docker-config-empty"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))


@_pytest.fixture(scope="session")
def services() -> "_services.Services":
    """The running Docker engine and registries (skips, or fails under CI, when absent)."""
    return _services.require_services()


@_pytest.fixture
def docker_env(services, monkeypatch) -> "_services.Services":
    """DOCKER_HOST set to the test engine, for code that builds its own client."""
    monkeypatch.setenv("DOCKER_HOST", services.docker_host)
    return services


@_pytest.fixture
def auth_docker_config(services, tmp_path, monkeypatch) -> _Path:
    """A DOCKER_CONFIG folder in tmp holding the login for the htpasswd registry."""
    folder = _services.write_docker_config(
        tmp_path / "docker-config", services.auth_registry, services.auth_user, services.auth_password()
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


# ---- end of Docker services fixtures ----


# ---- Pachyderm session isolation (environments engineer) ----


@_pytest.fixture(autouse=True)
def _pachctl_config_isolation(monkeypatch, tmp_path_factory):
    """Keep pachhook and the pachctl double away from the user's ~/.pachyderm/config.json.

    pachctl (and so its double) creates and writes the file PACH_CONFIG names; without this
    every test would share, and write, the home folder's one.
    """
    folder = tmp_path_factory.mktemp("pachyderm-config")
    monkeypatch.setenv("PACH_CONFIG", str(folder / "config.json"))
    monkeypatch.delenv("PACH_CONTEXT", raising=False)
    monkeypatch.delenv("PACHD_ADDRESS", raising=False)

"""The test services themselves: what tests/services/up promises the rest of the suite."""

from __future__ import annotations

import base64
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import services as svc

ROOT = Path(__file__).resolve().parent.parent


def _status(url: str, auth: str = "") -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _clear_service_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PACHHOOK_SERVICES_DIR", str(tmp_path / "none"))
    for var in svc._KEYS.values():
        monkeypatch.delenv(var, raising=False)


def test_absent_services_skip_with_the_stated_reason(monkeypatch, tmp_path):
    _clear_service_env(monkeypatch, tmp_path)
    monkeypatch.delenv("CI", raising=False)
    assert svc.load_services() == (None, svc.SKIP_REASON)
    with pytest.raises(pytest.skip.Exception, match="Docker services not running: run tests/services/up"):
        svc.require_services()


def test_absent_services_fail_under_ci(monkeypatch, tmp_path):
    _clear_service_env(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the integration tests"):
        svc.require_services()


def test_env_file_with_dead_socket_names_the_engine(monkeypatch, tmp_path):
    _clear_service_env(monkeypatch, tmp_path)
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "env").write_text(
        "export PACHHOOK_TEST_DOCKER_HOST=unix://%s/docker.sock\n" % folder
        + "export PACHHOOK_TEST_REGISTRY=127.0.0.1:9\n"
        + "export PACHHOOK_TEST_AUTH_REGISTRY=127.0.0.1:9\n"
        + "export PACHHOOK_TEST_AUTH_USER=u\n"
        + "export PACHHOOK_TEST_AUTH_PASSWORD_FILE=%s/pw\n" % folder
        + "export PACHHOOK_TEST_BASE_IMAGE='x/y:base'\n"
    )
    monkeypatch.setenv("PACHHOOK_SERVICES_DIR", str(folder))
    services, reason = svc.load_services()
    assert services is None
    assert reason.startswith(svc.SKIP_REASON)
    assert "Docker engine at unix://" in reason


def test_tests_never_see_the_default_docker_socket():
    import os

    assert os.environ["DOCKER_HOST"] != "unix:///var/run/docker.sock"
    assert os.environ["DOCKER_HOST"].startswith(("unix:///nonexistent/", "unix://", "tcp://"))
    assert "/var/run/docker.sock" not in os.environ["DOCKER_HOST"]


@pytest.mark.integration
def test_engine_answers_and_holds_the_offline_base_image(services):
    client = svc.docker_client(services)
    try:
        assert client.ping() is True
        image = client.images.get(services.base_image)
    finally:
        client.close()
    assert image.id.startswith("sha256:")
    assert svc.run_in_image(services, services.base_image, "echo from-busybox") == "from-busybox\n"


@pytest.mark.integration
def test_open_registry_answers_without_login(services):
    assert _status(f"http://{services.registry}/v2/") == 200


@pytest.mark.integration
def test_auth_registry_wants_the_generated_bcrypt_login(services):
    url = f"http://{services.auth_registry}/v2/"
    assert _status(url) == 401
    assert _status(url, f"{services.auth_user}:wrong-password") == 401
    assert _status(url, f"{services.auth_user}:{services.auth_password()}") == 200


@pytest.mark.integration
def test_env_file_names_the_password_file_not_the_secret(services):
    env_text = (svc.services_dir() / "env").read_text()
    assert services.auth_password() not in env_text
    assert str(services.auth_password_file) in env_text
    assert services.auth_password_file.stat().st_mode & 0o077 == 0


@pytest.mark.integration
def test_up_is_idempotent_and_keeps_the_running_services(services):
    folder = svc.services_dir()
    before = {name: (folder / name).read_text() for name in ("dockerd.pid", "registry-open.pid", "env")}
    result = subprocess.run(
        ["bash", str(ROOT / "tests" / "services" / "up")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    after = {name: (folder / name).read_text() for name in before}
    assert after == before
    assert "starting dockerd" not in result.stderr
    assert services.auth_password() not in result.stdout + result.stderr

"""A Docker credential helper that waits for input never holds a delivery (issue 13).

A real helper program on PATH, speaking docker's helper protocol, that waits for a person:
it reads its request to the end of stdin (a caller that leaves stdin open already waits
there), then asks for a password on the terminal and, with none, waits as an unlock dialog
would. pachhook's own calls (docker-py, the push's login) and the docker CLI's (a BuildKit
build asking for a base image's login) must both end it at the deadline, with one line
naming the helper. Real engine, real registry, real docker CLI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import List

import pytest
import services as svc
from gitutil import examples_project, offline_env, pachhook_module
from test_build import edges_files, make_job, make_repo, run_build
from test_push import push_again

from pachhook.deliver.steps.base import StepError

DEADLINE = 3  # seconds given to the helper in these tests (PACHHOOK_CREDENTIAL_HELPER_TIMEOUT)


def waiting_helper(folder: Path, pids: Path) -> None:
    folder.mkdir(exist_ok=True)
    helper = folder / "docker-credential-waits"
    helper.write_text(
        "#!/bin/sh\n"
        "request=$(cat)\n"
        f"echo $$ >> '{pids}'\n"
        "printf 'Password for %s: ' \"$request\" > /dev/tty && read -r answer < /dev/tty\n"
        "sleep 3600\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)


def docker_config(folder: Path, registry: str) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"credHelpers": {registry: "waits"}}))
    return folder


def living_in_group(group: int) -> List[str]:
    """The processes of a process group that still run (zombies, ended but not yet reaped by
    this machine's init, are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            found.append(f"{entry.name} ({state})")
    return found


def assert_helpers_ended(pids: Path) -> None:
    started: List[int] = [int(line) for line in pids.read_text().split()]
    assert started, "the helper was never asked"
    for pid in started:
        # each helper ran in a process group of its own, ended whole (its `sleep` too)
        assert living_in_group(pid) == []


@pytest.fixture
def waits(tmp_path, monkeypatch) -> Path:
    """The waiting helper first on PATH; returns the file where each run writes its pid."""
    pids = tmp_path / "helper-pids"
    pids.touch()
    waiting_helper(tmp_path / "helper-bin", pids)
    monkeypatch.setenv("PATH", f"{tmp_path / 'helper-bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PACHHOOK_CREDENTIAL_HELPER_TIMEOUT", str(DEADLINE))
    return pids


@pytest.mark.integration
def test_a_waiting_helper_fails_the_push_in_one_line_naming_it(docker_env, tmp_path, monkeypatch, waits):
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, f"{docker_env.auth_registry}/test-cred/{uuid.uuid4().hex[:10]}")
    built, _ = run_build(repo, job)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "dc", docker_env.auth_registry)))

    started = time.monotonic()
    with pytest.raises(StepError) as failure:
        push_again(repo, job, built.data)
    took = time.monotonic() - started

    assert took < 4 * DEADLINE, took  # asked once, not once per docker-py lookup
    assert str(failure.value) == (
        f"docker credential helper docker-credential-waits did not answer `get` for {docker_env.auth_registry}"
        f" within {DEADLINE}s: it may be waiting for input no one can give here (a locked keychain, a password"
        " prompt); unlock it or log in once in a terminal (docker login), then pachhook retry"
    )
    assert failure.value.retryable is False
    assert_helpers_ended(waits)


@pytest.mark.integration
def test_a_waiting_helper_asked_by_the_docker_cli_during_a_build_is_ended(docker_env, tmp_path, monkeypatch, waits):
    # A base image only the login-protected registry has: BuildKit asks the CLI for its login
    # (an open registry is never asked for one, so its helper is never run).
    base = f"{docker_env.auth_registry}/test-cred/base-{uuid.uuid4().hex[:10]}:1"
    client = svc.docker_client(docker_env)
    try:
        client.images.get(docker_env.base_image).tag(base)
        login = {"username": docker_env.auth_user, "password": docker_env.auth_password()}
        for event in client.api.push(base, stream=True, decode=True, auth_config=login):
            assert "error" not in event, event
        client.images.remove(base)
    finally:
        client.close()
    files = edges_files(docker_env)
    files["edges/Dockerfile"] = f"FROM {base}\nCOPY . /app\n"
    repo = make_repo(tmp_path, files)
    job = make_job(repo, f"{docker_env.registry}/test-cred/{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "dc", docker_env.auth_registry)))

    started = time.monotonic()
    with pytest.raises(StepError) as failure:
        run_build(repo, job)
    took = time.monotonic() - started

    assert took < 60, took
    message = str(failure.value)
    assert "\n" not in message
    assert "error getting credentials - err: exit status 1, out: `docker credential helper docker-credential-waits" in (
        message
    ), message
    assert f"did not answer `get` for {docker_env.auth_registry} within {DEADLINE}s" in message
    assert_helpers_ended(waits)


@pytest.mark.integration
def test_doctor_names_a_waiting_helper_instead_of_waiting(services, tmp_path, waits):
    env = dict(offline_env(tmp_path), DOCKER_HOST=services.docker_host, PATH=os.environ["PATH"])
    env["PACHHOOK_CREDENTIAL_HELPER_TIMEOUT"] = str(DEADLINE)
    env["DOCKER_CONFIG"] = str(docker_config(tmp_path / "dc", services.auth_registry))
    project = examples_project(tmp_path / "project", env, config=None)
    template = project / "edges" / "pipeline.json"
    template.write_text(template.read_text().replace("localhost:5000", services.auth_registry))

    started = time.monotonic()
    result = pachhook_module("doctor", cwd=project, env=env, timeout=120)
    assert time.monotonic() - started < 60
    assert (
        f"fail  registry {services.auth_registry}: docker credential helper docker-credential-waits did not answer"
        f" `get` for {services.auth_registry} within {DEADLINE}s"
    ) in result.stdout, result.stdout
    assert_helpers_ended(waits)


def test_the_helper_gets_a_closed_stdin_and_its_answer_is_passed_on(tmp_path):
    """Through the guard the CLI runs: the request arrives, stdin closes, the answer comes back."""
    from pachhook.deliver import credhelpers

    helper = tmp_path / "bin" / "docker-credential-echoes"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nrequest=$(cat)\nprintf \'{"ServerURL":"%s","Username":"u","Secret":"s"}\' "$request"\n'
    )
    helper.chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "echoes", "credHelpers": {"x": "../evil"}}))
    path = credhelpers.guarded_path({"PATH": f"{helper.parent}{os.pathsep}/usr/bin:/bin"}, str(config))
    guard_folder = path.split(os.pathsep)[0]
    guards = os.listdir(guard_folder)  # the process's guards: earlier tests' helpers too
    assert "docker-credential-echoes" in guards
    assert not [name for name in guards if "evil" in name]  # "../evil" is no helper name
    # the CLI's way: the server on stdin, then EOF (docker-credential-helpers client.Get)
    answer = subprocess.run(
        ["docker-credential-echoes", "get"],
        input=b"127.0.0.1:5000\n",
        capture_output=True,
        env={"PATH": path},
        timeout=30,
    )
    assert answer.returncode == 0, answer
    assert json.loads(answer.stdout) == {"ServerURL": "127.0.0.1:5000\n".strip(), "Username": "u", "Secret": "s"}

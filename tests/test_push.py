"""The push step against the real engine and the two test registries (open and htpasswd)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import services as svc
from test_build import commit_all, edges_files, git, make_repo, path_with

from pachhook.deliver import imagekeys
from pachhook.deliver.steps import push
from pachhook.deliver.steps.base import StepContext, StepError, StepResult, run_step
from pachhook.queue.jobs import Job


def make_job(repo: Path, image: str) -> Job:
    return Job(
        id=7,
        commit=git(repo, "rev-parse", "HEAD"),
        branch="main",
        pipeline="edges",
        template="edges/pipeline.json",
        image=image,
    )


def deliver(repo: Path, job: Job, steps=("build", "push")) -> Tuple[Dict[str, StepResult], List[str]]:
    """Run steps like the worker does, passing earlier results on; returns results and log."""
    lines: List[str] = []
    results: Dict[str, StepResult] = {}
    data: Dict[str, Dict[str, str]] = {}
    for name in steps:
        ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append, results=dict(data))
        results[name] = run_step(name, ctx)
        data[name] = results[name].data
    return results, lines


def push_again(repo: Path, job: Job, build_data: Dict[str, str]) -> Tuple[StepResult, List[str]]:
    lines: List[str] = []
    ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append, results={"build": build_data})
    return run_step("push", ctx), lines


def served_digest(registry: str, name: str, reference: str, login: Optional[Tuple[str, str]] = None) -> int:
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{reference}", method="HEAD")
    request.add_header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Docker-Content-Digest"]


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["docker CLI", "docker-py"])
def engine_way(request, tmp_path, monkeypatch) -> str:
    """The test twice: with the docker CLI that builds here (the push goes through it), and with
    no docker CLI installed at all (a PATH without one: docker-py talks to the engine)."""
    if request.param == "docker CLI":
        if not os.path.exists("/usr/bin/docker"):
            pytest.skip("needs the docker CLI 20.10 at /usr/bin/docker")
        monkeypatch.setenv("PACHHOOK_DOCKER_CLI", "/usr/bin/docker")
        return "the docker CLI /usr/bin/docker"
    (tmp_path / "no-docker").mkdir()
    # git, and what the tests' credential helper scripts run; no docker
    monkeypatch.setenv("PATH", path_with(tmp_path / "no-docker", cat=shutil.which("cat") or "/bin/cat"))
    monkeypatch.delenv("PACHHOOK_DOCKER_CLI", raising=False)
    return "docker-py"


def pushed_with(way: str, lines: List[str]) -> bool:
    return any(line.startswith("push: ") and line.endswith(f" with {way}") for line in lines)


# ---------------------------------------------------------------- open registry


@pytest.mark.integration
def test_push_records_a_digest_the_registry_serves(docker_env, tmp_path, engine_way):
    repo = make_repo(tmp_path, edges_files(docker_env))
    name = f"test-push/{uuid.uuid4().hex[:10]}"
    job = make_job(repo, f"{docker_env.registry}/{name}")

    results, lines = deliver(repo, job)

    pushed = results["push"]
    assert pushed.outcome == "done"
    digest = pushed.data["digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert pushed.data["image_ref"] == f"{job.image}:{job.commit}"
    assert pushed.data["repo_digest"] == f"{job.image}@{digest}"
    assert served_digest(docker_env.registry, name, job.commit) == digest
    assert served_digest(docker_env.registry, name, digest) == digest
    assert any(line.endswith(": Pushed") for line in lines), lines
    assert pushed_with(engine_way, lines), lines
    # Remembered for the context key, so a pruned engine can pull instead of building.
    assert imagekeys.recorded_refs(repo / ".git", results["build"].data["context_key"]) == [pushed.data["repo_digest"]]


@pytest.mark.integration
def test_push_of_a_tag_already_served_is_recorded_without_pushing(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, f"{docker_env.registry}/test-push/{uuid.uuid4().hex[:10]}")
    results, _ = deliver(repo, job)

    again, lines = push_again(repo, job, results["build"].data)

    assert again.outcome == "reused"
    assert again.data["digest"] == results["push"].data["digest"]
    assert not any("Preparing" in line or "Pushed" in line for line in lines), lines
    assert "already serves" in again.message


@pytest.mark.integration
def test_unchanged_context_for_a_new_commit_pushes_only_a_manifest(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    name = f"test-push/{uuid.uuid4().hex[:10]}"
    first, _ = deliver(repo, make_job(repo, f"{docker_env.registry}/{name}"))
    (repo / "edges" / "pipeline.json").write_text('{"pipeline": {"name": "edges"}, "description": "v2"}\n')
    commit_all(repo, "template only")
    job = make_job(repo, f"{docker_env.registry}/{name}")

    second, lines = deliver(repo, job)

    assert second["build"].outcome == "reused"
    assert second["push"].outcome == "done"
    assert second["push"].data["digest"] == first["push"].data["digest"]
    assert served_digest(docker_env.registry, name, job.commit) == first["push"].data["digest"]
    assert any(f"sent only the manifest for tag {job.commit}" in line for line in lines), lines
    assert not any(line.endswith(": Pushed") or "Preparing" in line for line in lines), lines


# ---------------------------------------------------------------- htpasswd registry


def assert_secret_absent(secret: str, lines: List[str], results: Dict[str, StepResult]) -> None:
    assert secret not in "\n".join(lines)
    for result in results.values():
        assert secret not in json.dumps(result.data) + result.message


@pytest.mark.integration
def test_push_to_auth_registry_with_login_from_docker_config(docker_env, auth_docker_config, tmp_path, engine_way):
    repo = make_repo(tmp_path, edges_files(docker_env))
    name = f"test-push/{uuid.uuid4().hex[:10]}"
    job = make_job(repo, f"{docker_env.auth_registry}/{name}")

    results, lines = deliver(repo, job)

    digest = results["push"].data["digest"]
    login = (docker_env.auth_user, docker_env.auth_password())
    assert served_digest(docker_env.auth_registry, name, job.commit, login) == digest
    assert_secret_absent(docker_env.auth_password(), lines, results)

    # A template-only commit: the manifest alone is tagged, with the same login.
    (repo / "edges" / "pipeline.json").write_text('{"pipeline": {"name": "edges"}, "description": "v2"}\n')
    commit_all(repo, "template only")
    second_job = make_job(repo, job.image)
    again, again_lines = deliver(repo, second_job)
    assert again["push"].data["digest"] == digest
    assert served_digest(docker_env.auth_registry, name, second_job.commit, login) == digest
    assert any("sent only the manifest" in line for line in again_lines), again_lines
    assert_secret_absent(docker_env.auth_password(), again_lines, again)
    assert docker_env.auth_password() not in (repo / ".git" / "pachhook" / "image-keys.json").read_text()


@pytest.mark.integration
def test_push_to_auth_registry_through_a_credential_helper(docker_env, tmp_path, monkeypatch, engine_way):
    helpers = svc.credential_helper(tmp_path / "bin", "pachhooktest", docker_env)
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {docker_env.auth_registry: "pachhooktest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{helpers}{os.pathsep}{os.environ['PATH']}")
    repo = make_repo(tmp_path, edges_files(docker_env))
    name = f"test-push/{uuid.uuid4().hex[:10]}"
    job = make_job(repo, f"{docker_env.auth_registry}/{name}")

    results, lines = deliver(repo, job)

    login = (docker_env.auth_user, docker_env.auth_password())
    assert served_digest(docker_env.auth_registry, name, job.commit, login) == results["push"].data["digest"]
    assert_secret_absent(docker_env.auth_password(), lines, results)


@pytest.mark.integration
def test_auth_registry_without_login_fails_with_one_line_naming_the_fix(docker_env, tmp_path, engine_way):
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, f"{docker_env.auth_registry}/test-push/{uuid.uuid4().hex[:10]}")
    built, _ = deliver(repo, job, steps=("build",))

    with pytest.raises(StepError) as failure:
        push_again(repo, job, built["build"].data)

    message = str(failure.value)
    assert "\n" not in message
    # The engine's own answer, which arrives as an error event in the push stream.
    assert f"to registry {docker_env.auth_registry} refused: no basic auth credentials" in message
    assert f"docker login {docker_env.auth_registry}" in message
    assert failure.value.retryable is False


@pytest.mark.integration
def test_wrong_password_is_refused_and_never_shown(docker_env, tmp_path, monkeypatch, engine_way):
    wrong = "not-the-" + uuid.uuid4().hex
    folder = svc.write_docker_config(tmp_path / "dc", docker_env.auth_registry, docker_env.auth_user, wrong)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, f"{docker_env.auth_registry}/test-push/{uuid.uuid4().hex[:10]}")
    built, _ = deliver(repo, job, steps=("build",))

    with pytest.raises(StepError) as failure:
        push_again(repo, job, built["build"].data)

    assert "refused: unauthorized: authentication required" in str(failure.value)
    assert wrong not in str(failure.value)
    assert failure.value.retryable is False


# ---------------------------------------------------------------- failures


@pytest.mark.integration
def test_registry_down_retries_then_fails_retryable_with_one_line(docker_env, tmp_path, monkeypatch, engine_way):
    monkeypatch.setattr(push, "FIRST_DELAY", 0.05)  # keep the test short; the bound is what counts
    registry = f"127.0.0.1:{dead_port()}"
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, f"{registry}/test-push/down")
    built, _ = deliver(repo, job, steps=("build",))

    lines: List[str] = []
    ctx = StepContext(
        repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append, results={"build": built["build"].data}
    )
    with pytest.raises(StepError) as failure:
        run_step("push", ctx)

    message = str(failure.value)
    assert "\n" not in message
    assert f"to registry {registry} failed after {push.ATTEMPTS} attempts" in message
    assert "refused" in message.lower() or "unreachable" in message
    assert failure.value.retryable is True
    assert sum("trying again" in line for line in lines) == push.ATTEMPTS - 1


def _push_failure(tmp_path: Path) -> StepError:
    """The push step's failure for an image built at a fixed commit (each test breaks the engine or its config)."""
    job = Job(id=1, commit="a" * 40, branch="main", pipeline="p", template="p/pipeline.json", image="127.0.0.1:9/p")
    ctx = StepContext(
        repo_root=tmp_path,
        git_dir=tmp_path,
        job=job,
        log=lambda line: None,
        results={"build": {"image_ref": f"127.0.0.1:9/p:{'a' * 40}"}},
    )
    with pytest.raises(StepError) as failure:
        run_step("push", ctx)
    return failure.value


def test_engine_down_push_is_one_line(tmp_path, monkeypatch, engine_way):
    dead = f"unix://{tmp_path}/dead.sock"
    monkeypatch.setenv("DOCKER_HOST", dead)
    message = str(_push_failure(tmp_path))
    assert "\n" not in message
    assert f"Docker engine not reachable at DOCKER_HOST={dead}" in message


def test_push_without_a_build_result_says_so(tmp_path):
    job = Job(id=1, commit="a" * 40, branch="main", pipeline="p", template="p/pipeline.json", image="r:1/p")
    ctx = StepContext(repo_root=tmp_path, git_dir=tmp_path, job=job, log=lambda line: None)
    with pytest.raises(StepError, match="the build step recorded no image"):
        run_step("push", ctx)


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("127.0.0.1:5000/team/edges:abc", ("127.0.0.1:5000/team/edges", "abc")),
        ("127.0.0.1:5000/team/edges", ("127.0.0.1:5000/team/edges", "latest")),
        ("edges:1", ("edges", "1")),
    ],
)
def test_split_ref(ref, expected):
    assert push.split_ref(ref) == expected


# ---------------------------------------------------------------- registries that misbehave


class _BadRegistry:
    """A TCP listener on loopback that answers every connection the given way (or never)."""

    def __init__(self, answer: Optional[bytes]) -> None:
        import threading

        self.answer = answer
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: List[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)  # kept open: a silent registry never answers nor closes
            if self.answer is not None:
                try:
                    conn.recv(65536)
                    conn.sendall(self.answer)
                    conn.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize(
    "answer, expected",
    [
        (None, r"no answer within 0\.5s \(timed out\)"),
        (b"HELLO THERE\r\n\r\n", r"not an HTTP answer \(BadStatusLine"),
        (b"", "connection reset by the registry|closed the connection without answering"),
    ],
)
def test_registry_failures_are_named_and_transient(answer, expected):
    from pachhook.deliver.registry import RegistryError, RegistrySession

    server = _BadRegistry(answer)
    try:
        session = RegistrySession(server.address, None, secure=False, timeout=0.5)
        with pytest.raises(RegistryError) as failure:
            session.manifest_digest("team/edges", "latest")
    finally:
        server.close()
    assert re.match(f"registry {re.escape(server.address)}: (?:{expected})", str(failure.value)), str(failure.value)
    assert "\n" not in str(failure.value) and "SSL" not in str(failure.value)
    assert failure.value.transient is True


def test_refused_connection_is_named():
    from pachhook.deliver.registry import RegistryError, RegistrySession

    address = f"127.0.0.1:{dead_port()}"
    with pytest.raises(RegistryError, match=r"connection refused \(nothing listens there\)") as failure:
        RegistrySession(address, None, secure=False, timeout=1).manifest_digest("a/b", "latest")
    assert failure.value.transient is True


def test_docker_hub_is_asked_at_its_registry_host():
    from pachhook.deliver.registry import RegistrySession, api_host

    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("index.docker.io") == "registry-1.docker.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert RegistrySession("docker.io", None, secure=True).host == "registry-1.docker.io"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"auths": {', "is not valid JSON (line 1"),
        ("[]", "must hold a JSON object, not list"),
        ('{"auths": []}', '"auths" must be an object of registries'),
        ('{"auths": {"r:5000": {"auth": "!!!notbase64"}}}', "the login for r:5000 is not valid base64"),
    ],
)
def test_malformed_docker_config_is_named_as_such(tmp_path, monkeypatch, text, expected):
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    failure = _push_failure(tmp_path)
    message = str(failure)
    assert message.startswith(f"docker config {folder / 'config.json'}") and expected in message, message
    assert "not reachable" not in message
    assert failure.retryable is False


@pytest.mark.integration
def test_a_push_right_after_its_build_starts_the_docker_cli_once(docker_env, tmp_path, monkeypatch):
    # A docker CLI that notes each start, then runs the real one.
    calls = tmp_path / "calls"
    cli = tmp_path / "cli" / "docker"
    cli.parent.mkdir()
    cli.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec /usr/bin/docker "$@"\n')
    cli.chmod(0o755)
    monkeypatch.setenv("PACHHOOK_DOCKER_CLI", str(cli))
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, f"{docker_env.registry}/test-push/{uuid.uuid4().hex[:10]}")
    built, _ = deliver(repo, job, steps=("build",))
    image_ref = built["build"].data["image_ref"]
    started = len(calls.read_text().splitlines())

    pushed, lines = push_again(repo, job, built["build"].data)

    # built by this process a moment ago: no push has named it, so the engine is not asked
    assert pushed.outcome == "done"
    assert calls.read_text().splitlines()[started:] == [f"push {image_ref}"]
    started = len(calls.read_text().splitlines())
    # a retry knows nothing of that: it asks the engine, and finds the tag already served
    again, _ = push_again(repo, job, built["build"].data)
    assert again.outcome == "reused"
    assert calls.read_text().splitlines()[started:] == [f"image inspect {image_ref}"]

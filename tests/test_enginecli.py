"""The engine through the docker CLI (enginecli.py), and what a docker CLI said about itself
(find_cli's probe, remembered per executable: toolfacts.py): against the real test engine,
the open registry and the htpasswd one, with each docker CLI installed here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List, Tuple

import pytest
import services as svc
from test_build import commit_all, path_with
from test_deliver import two_pipelines  # noqa: F401 (a fixture)
from test_push import dead_port, served_digest
from test_registry_retag import HEAVY, imported, run_commit
from test_update import double, git, received  # noqa: F401 (double is a fixture)

from pachhook.deliver import dockerclient, enginecli, toolfacts

# The CLI that builds here (20.10) and the newer one without buildx (28.x): their words differ.
CLIS = [path for path in ("/usr/bin/docker", "/usr/local/bin/docker") if os.path.exists(path)]


@pytest.fixture(params=CLIS)
def cli(request) -> str:
    return request.param


def build_labelled(services: svc.Services, cli: str, image_ref: str, **labels: str) -> str:
    """A tiny image with labels, built by the CLI itself; its id."""
    argv = [cli, "build", "-q", "-t", image_ref]
    for name, value in labels.items():
        argv += ["--label", f"{name}={value}"]
    done = subprocess.run(
        [*argv, "-"],
        input=f"FROM {services.base_image}\nRUN echo {uuid.uuid4().hex} > /nonce\n",
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_HOST=services.docker_host),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


class Recorder:
    """What enginecli hands its progress callback, as the push step would log it."""

    def __init__(self) -> None:
        self.lines: List[Tuple[str, str]] = []
        self.bytes: List[Tuple[str, int, int]] = []

    def __call__(self, layer: str, status: str, current: int, total: int) -> None:
        self.lines.append((layer, status))
        if total:
            self.bytes.append((layer, current, total))

    def text(self) -> str:
        return "\n".join(f"{layer}: {status}" for layer, status in self.lines)


# ---------------------------------------------------------------- inspect and tag


@pytest.mark.integration
def test_inspect_finds_the_held_images_in_one_call_and_leaves_out_the_missing(docker_env, cli):
    name = f"{docker_env.registry}/test-enginecli/{uuid.uuid4().hex[:10]}"
    image_id = build_labelled(docker_env, cli, f"{name}:one", **{"io.pachhook.context-key": "k1"})
    missing = f"{name}:absent"

    found = enginecli.inspect_images(cli, [missing, f"{name}:one", image_id, "sha256:" + "0" * 64])

    assert sorted(found) == sorted([f"{name}:one", image_id])
    assert found[f"{name}:one"].id == image_id
    assert found[image_id].labels["io.pachhook.context-key"] == "k1"
    assert found[f"{name}:one"].repo_digests == ()  # never pushed
    assert enginecli.inspect_images(cli, [missing]) == {}


@pytest.mark.integration
def test_tag_names_the_image_anew(docker_env, cli):
    name = f"{docker_env.registry}/test-enginecli/{uuid.uuid4().hex[:10]}"
    image_id = build_labelled(docker_env, cli, f"{name}:one")
    enginecli.tag(cli, image_id, f"{name}:two")
    assert enginecli.inspect_images(cli, [f"{name}:two"])[f"{name}:two"].id == image_id
    with pytest.raises(enginecli.EngineError) as failure:
        enginecli.tag(cli, f"{name}:absent", f"{name}:three")
    assert "\n" not in str(failure.value) and "absent" in str(failure.value)
    assert failure.value.transient is False


def test_engine_down_names_docker_host(tmp_path, monkeypatch, cli):
    dead = f"unix://{tmp_path}/dead.sock"
    monkeypatch.setenv("DOCKER_HOST", dead)
    with pytest.raises(dockerclient.EngineUnavailable) as failure:
        enginecli.inspect_images(cli, ["anything:1"])
    message = str(failure.value)
    assert f"Docker engine not reachable at DOCKER_HOST={dead}" in message and "\n" not in message


@pytest.mark.integration
def test_registry_config_says_which_registries_are_insecure(docker_env, cli):
    config = enginecli.registry_config(cli)
    assert config["IndexConfigs"]["docker.io"]["Secure"] is True
    assert "127.0.0.0/8" in config["InsecureRegistryCIDRs"]


# ---------------------------------------------------------------- push and pull


@pytest.mark.integration
def test_push_streams_its_lines_and_gives_the_digest_the_registry_serves(docker_env, cli):
    path = f"test-enginecli/{uuid.uuid4().hex[:10]}"
    repository = f"{docker_env.registry}/{path}"
    image_id = build_labelled(docker_env, cli, f"{repository}:v1", **{"io.pachhook.context-key": "k2"})
    progress = Recorder()

    digest = enginecli.push(cli, repository, "v1", progress)

    assert served_digest(docker_env.registry, path, "v1") == digest
    assert ("", f"The push refers to repository [{repository}]") in progress.lines
    assert any(layer and status == "Pushed" for layer, status in progress.lines), progress.lines
    assert any(status.startswith(f"v1: digest: {digest}") for _, status in progress.lines)
    # The engine records the push: the image's RepoDigests name it from now on.
    held = enginecli.inspect_images(cli, [image_id])[image_id]
    assert held.digests_in(repository) == {digest}

    # Pulled back by digest after the engine lost it, with its labels.
    subprocess.run([cli, "rmi", "-f", image_id], capture_output=True, check=True, env=dict(os.environ))
    pulled = Recorder()
    enginecli.pull(cli, f"{repository}@{digest}", pulled)
    again = enginecli.inspect_images(cli, [f"{repository}@{digest}"])[f"{repository}@{digest}"]
    assert again.id == image_id and again.labels["io.pachhook.context-key"] == "k2"
    assert any(status.startswith("Digest: ") for _, status in pulled.lines), pulled.lines


@pytest.mark.integration
def test_on_a_terminal_the_push_gives_each_layers_bytes(docker_env, cli):
    # What a terminal's live view draws: the CLI shows the bytes only on a (pseudo-)terminal.
    path = f"test-enginecli/{uuid.uuid4().hex[:10]}"
    repository = f"{docker_env.registry}/{path}"
    argv = [cli, "build", "-q", "-t", f"{repository}:big", "-"]
    dockerfile = (
        f"FROM {docker_env.base_image}\nRUN echo {path} && dd if=/dev/urandom of=/blob bs=1M count=8 2>/dev/null\n"
    )
    built = subprocess.run(argv, input=dockerfile, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert built.returncode == 0, built.stderr
    progress = Recorder()

    digest = enginecli.push(cli, repository, "big", progress, terminal=True)

    assert served_digest(docker_env.registry, path, "big") == digest
    assert progress.bytes, progress.lines
    layer, current, total = progress.bytes[-1]
    assert 8_000_000 <= total <= 8_500_000 and 0 < current <= total
    assert (layer, "Pushed") in progress.lines
    assert not any("\x1b" in status or "\r" in status for _, status in progress.lines)


@pytest.mark.integration
def test_push_to_a_registry_that_is_down_is_transient_and_one_line(docker_env, cli):
    repository = f"127.0.0.1:{dead_port()}/test-enginecli/down"
    build_labelled(docker_env, cli, f"{repository}:v1")
    with pytest.raises(enginecli.EngineError) as failure:
        enginecli.push(cli, repository, "v1", Recorder())
    message = str(failure.value)
    assert message.startswith(f"docker push {repository}:v1: ") and "connection refused" in message
    assert "\n" not in message
    assert failure.value.transient is True


@pytest.mark.integration
def test_pull_of_an_unknown_manifest_is_not_transient(docker_env, cli):
    with pytest.raises(enginecli.EngineError) as failure:
        enginecli.pull(cli, f"{docker_env.registry}/test-enginecli/never-{uuid.uuid4().hex[:8]}:x", Recorder())
    assert "not found" in str(failure.value) or "manifest unknown" in str(failure.value)
    assert failure.value.transient is False


@pytest.mark.integration
def test_htpasswd_registry_without_login_is_refused_not_transient(docker_env, cli):
    repository = f"{docker_env.auth_registry}/test-enginecli/{uuid.uuid4().hex[:10]}"
    build_labelled(docker_env, cli, f"{repository}:v1")
    with pytest.raises(enginecli.EngineError) as failure:
        enginecli.push(cli, repository, "v1", Recorder())
    assert str(failure.value) == f"docker push {repository}:v1: no basic auth credentials"
    assert failure.value.transient is False


@pytest.mark.integration
def test_htpasswd_registry_with_the_login_of_the_docker_config(docker_env, auth_docker_config, cli):
    path = f"test-enginecli/{uuid.uuid4().hex[:10]}"
    repository = f"{docker_env.auth_registry}/{path}"
    build_labelled(docker_env, cli, f"{repository}:v1")
    progress = Recorder()

    digest = enginecli.push(cli, repository, "v1", progress)

    login = (docker_env.auth_user, docker_env.auth_password())
    assert served_digest(docker_env.auth_registry, path, "v1", login) == digest
    assert docker_env.auth_password() not in progress.text()


@pytest.mark.integration
def test_wrong_password_is_refused_and_never_shown(docker_env, tmp_path, monkeypatch, cli):
    wrong = "not-the-" + uuid.uuid4().hex
    folder = svc.write_docker_config(tmp_path / "dc", docker_env.auth_registry, docker_env.auth_user, wrong)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    repository = f"{docker_env.auth_registry}/test-enginecli/{uuid.uuid4().hex[:10]}"
    build_labelled(docker_env, cli, f"{repository}:v1")
    progress = Recorder()
    with pytest.raises(enginecli.EngineError) as failure:
        enginecli.push(cli, repository, "v1", progress)
    assert "unauthorized: authentication required" in str(failure.value)
    assert failure.value.transient is False
    assert wrong not in str(failure.value) + progress.text()


@pytest.mark.parametrize(
    "cause, transient",
    [
        ('Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused', True),
        ("received unexpected HTTP status: 503 Service Unavailable", True),
        ("net/http: TLS handshake timeout", True),
        ("read tcp 10.0.0.2:51234->10.0.0.9:443: read: connection reset by peer", True),
        ("unauthorized: authentication required", False),
        ("denied: requested access to the resource is denied", False),
        ("no basic auth credentials", False),
        ("manifest for r/x:y not found: manifest unknown: manifest unknown", False),
    ],
)
def test_failures_are_classified(cause, transient):
    assert enginecli.is_transient(cause) is transient


# ---------------------------------------------------------------- find_cli, remembered


def probe_in_a_new_process(cli: Path, cache: Path, env: dict) -> str:
    code = (
        "import sys; from pachhook.deliver import dockerclient\n"
        "found = dockerclient.find_cli(sys.argv[1])\n"
        "print(found.describe() if found else None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(cache)],
        env=dict(env, PACHHOOK_DOCKER_CLI=str(cli)),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not os.path.exists("/usr/bin/docker"), reason="needs the docker CLI 20.10 at /usr/bin/docker")
def test_what_the_cli_said_about_itself_is_remembered_across_processes(tmp_path):
    # A docker CLI that notes each start, then runs the real one.
    calls = tmp_path / "calls"
    cli = tmp_path / "bin" / "docker"
    cli.parent.mkdir()
    cli.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec /usr/bin/docker "$@"\n')
    cli.chmod(0o755)
    cache = tmp_path / "state"
    config = tmp_path / "docker-config"
    config.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), DOCKER_CONFIG=str(config))
    starts = lambda: calls.read_text().splitlines() if calls.exists() else []  # noqa: E731

    first = probe_in_a_new_process(cli, cache, env)
    assert first.startswith(f"{cli} 20.10") and "DOCKER_BUILDKIT=1 docker build" in first
    assert starts() == ["--version", "buildx version"]
    assert probe_in_a_new_process(cli, cache, env) == first
    assert len(starts()) == 2  # not asked again
    assert (cache / f"{dockerclient.PROBE_TOPIC}.json").is_file()

    # Replaced on disk (an upgrade: another size and mtime): asked again.
    cli.write_text(cli.read_text() + "# upgraded\n")
    assert probe_in_a_new_process(cli, cache, env) == first
    assert len(starts()) == 4

    # A buildx plugin appearing where the CLI looks for it changes the answer: asked again.
    plugins = config / "cli-plugins"
    plugins.mkdir()
    plugin = plugins / "docker-buildx"
    plugin.write_text("#!/bin/sh\nexit 1\n")
    plugin.chmod(0o755)
    assert probe_in_a_new_process(cli, cache, env) == first
    assert len(starts()) == 6


@pytest.mark.parametrize("damage", ["not json {", "[]", "wrong shape", "not a dict"])
def test_a_damaged_probe_cache_is_a_miss(tmp_path, monkeypatch, damage):
    if not os.path.exists("/usr/bin/docker"):
        pytest.skip("needs the docker CLI 20.10 at /usr/bin/docker")
    cache = tmp_path / "state"
    cache.mkdir()
    key = json.dumps(toolfacts.keys_of(["/usr/bin/docker", *dockerclient._buildx_plugin_paths()]))
    stored = {"wrong shape": {key: {"version": 3, "buildx": True}}, "not a dict": {key: [20, 10]}}
    text = json.dumps(stored[damage]) if damage in stored else damage
    (cache / f"{dockerclient.PROBE_TOPIC}.json").write_text(text)
    monkeypatch.setattr(toolfacts, "_IN_PROCESS", {})

    cli, problem = dockerclient._probe_cli("/usr/bin/docker", str(cache))

    assert cli is not None and cli.version.startswith("20.10") and not cli.buildx and problem == ""
    written = json.loads((cache / f"{dockerclient.PROBE_TOPIC}.json").read_text())
    assert written[key]["version"] == cli.version


# ---------------------------------------------------------------- `pachhook run --commit`, no docker-py


@pytest.mark.integration
def test_a_code_change_delivered_through_the_cli_never_imports_docker_py(two_pipelines, double):
    repo, image, repository, services = two_pipelines
    env = dict(os.environ, PACHHOOK_DOCKER_CLI="/usr/bin/docker")
    first = run_commit(repo, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(imported(first) & set(HEAVY)) == []

    (repo / "edges" / "run.sh").write_text(f"echo {repository} v2\n")  # a code change: a new build
    sha = commit_all(repo, "v2")
    second = run_commit(repo, env)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "edges: build: done: built " in second.stdout, second.stdout
    assert f"edges: push: done: pushed {image}:{sha}" in second.stdout, second.stdout
    assert sorted(imported(second) & set(HEAVY)) == []
    digest = served_digest(services.registry, repository, sha)
    edges = [spec for spec in received(double) if spec["pipeline"]["name"] == "edges"][-1]
    assert edges["transform"]["image"] in (f"{image}:{sha}", f"{image}@{digest}")


@pytest.mark.integration
def test_without_a_docker_cli_docker_py_delivers(tmp_path, two_pipelines, double):
    repo, image, repository, services = two_pipelines
    (tmp_path / "no-docker").mkdir()
    # the pachctl double (first on PATH, from the fixture), the python3 it runs with, and git; no docker CLI
    doubles = os.environ["PATH"].split(os.pathsep)[0]
    tools = path_with(tmp_path / "no-docker", python3=os.path.realpath(sys.executable))
    env = dict(os.environ, PATH=f"{doubles}{os.pathsep}{tools}")
    env.pop("PACHHOOK_DOCKER_CLI", None)
    done = run_commit(repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "with docker-py" in done.stdout and "docker" in imported(done)
    sha = git(repo, "rev-parse", "HEAD")
    assert served_digest(services.registry, repository, sha).startswith("sha256:")

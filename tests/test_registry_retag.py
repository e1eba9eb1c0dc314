"""A template-only commit is tagged in the registry alone (issue 16): no Docker engine, no
docker-py, when the image built for the same context key was pushed to the job's repository
and the registry still serves it. Anything else goes through the engine, as before.

Real engine, real registries (open and htpasswd), real credential helper programs; the
pachctl double for the cluster.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import services as svc
from test_build import commit_all, edges_files, make_repo
from test_deliver import registry_tags, two_pipelines  # noqa: F401 (two_pipelines is a fixture)
from test_push import deliver, make_job, served_digest
from test_update import double, git, received  # noqa: F401 (double is a fixture)

from pachhook.deliver import dockerauth, registry
from pachhook.deliver.registry import RegistrySession, insecure_by_default, session_without_engine
from pachhook.deliver.steps.base import StepContext, StepError, run_step

# The modules a registry-only retag must not import: docker-py and what it pulls in.
HEAVY = ("docker", "requests", "urllib3", "websocket", "paramiko")


def template_only_commit(repo: Path, note: str) -> str:
    """Commit a change of the template alone (its description): the build context stays."""
    path = repo / "edges" / "pipeline.json"
    spec = json.loads(path.read_text())
    spec["description"] = note
    path.write_text(json.dumps(spec, indent=2))
    return commit_all(repo, f"template only: {note}")


def engine_tags(services: svc.Services, image: str) -> List[str]:
    client = svc.docker_client(services)
    try:
        return sorted(tag for found in client.images.list(name=image) for tag in found.tags)
    finally:
        client.close()


def delete_manifest(registry: str, name: str, digest: str, login: Optional[Tuple[str, str]] = None) -> None:
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{digest}", method="DELETE")
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202


def assert_secret_absent(secret: str, lines: List[str], results: Dict[str, object], repo: Path) -> None:
    assert secret not in "\n".join(lines)
    for result in results.values():
        assert secret not in json.dumps(result.data) + result.message  # type: ignore[attr-defined]
    assert secret not in (repo / ".git" / "pachhook" / "image-keys.json").read_text()


# ---------------------------------------------------------------- `pachhook run --commit`


def run_commit(repo: Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pachhook", "run", "--commit", "HEAD"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def imported(process: subprocess.CompletedProcess) -> set:
    """Top-level names of the modules the process imported (python -X importtime)."""
    names = [line.split("|")[-1].strip() for line in process.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in names}


@pytest.mark.integration
def test_a_template_only_commit_is_tagged_in_the_registry_without_engine_or_docker_py(two_pipelines, double):
    repo, image, repository, services = two_pipelines
    first = run_commit(repo, dict(os.environ))
    assert first.returncode == 0, first.stdout + first.stderr
    first_sha = git(repo, "rev-parse", "HEAD")
    digest = served_digest(services.registry, repository, first_sha)
    assert "edges: build: done: built " in first.stdout  # the first build went through the engine

    sha = template_only_commit(repo, "v2")
    # No engine to talk to: a contact would fail the run.
    out = run_commit(repo, dict(os.environ, DOCKER_HOST=svc.DEAD_DOCKER_HOST))

    assert out.returncode == 0, out.stdout + out.stderr
    assert "edges: build: reused: reused image " in out.stdout
    assert (
        f"which registry {services.registry} holds as {digest}; no build and no Docker engine: the push tags it"
        f" {image}:{sha} in the registry" in out.stdout
    ), out.stdout
    assert f"sent only the manifest for tag {sha}" in out.stdout
    assert served_digest(services.registry, repository, sha) == digest
    assert sorted(registry_tags(services.registry, repository)) == sorted([first_sha, sha])
    assert engine_tags(services, image) == [f"{image}:{first_sha}"]  # no new tag on the engine
    assert sorted(imported(out) & set(HEAVY)) == []
    edges = [spec for spec in received(double) if spec["pipeline"]["name"] == "edges"][-1]
    assert edges["transform"]["image"] == f"{image}:{sha}"


@pytest.mark.integration
def test_the_dry_run_says_the_registry_would_tag_it_and_changes_nothing(two_pipelines, double):
    repo, image, repository, services = two_pipelines
    assert run_commit(repo, dict(os.environ)).returncode == 0
    sha = template_only_commit(repo, "dry")

    out = subprocess.run(
        [sys.executable, "-m", "pachhook", "run", "--commit", "HEAD", "--dry-run"],
        cwd=repo,
        env=dict(os.environ, DOCKER_HOST=svc.DEAD_DOCKER_HOST),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert out.returncode == 0, out.stdout + out.stderr
    assert f"and tag it {image}:{sha} there, without the Docker engine" in out.stdout, out.stdout
    assert sha not in registry_tags(services.registry, repository)


# ---------------------------------------------------------------- the steps, open registry


def delivered_once(tmp_path: Path, registry: str, services: svc.Services) -> Tuple[Path, str, Dict[str, object]]:
    """A repository whose image was built and pushed: (repo, repository name, results)."""
    repo = make_repo(tmp_path, edges_files(services))
    name = f"test-retag/{uuid.uuid4().hex[:10]}"
    first, _ = deliver(repo, make_job(repo, f"{registry}/{name}"))
    return repo, name, first


@pytest.mark.integration
def test_a_digest_deleted_from_the_registry_falls_back_to_the_engine(docker_env, tmp_path):
    repo, name, first = delivered_once(tmp_path, docker_env.registry, docker_env)
    digest = first["push"].data["digest"]
    delete_manifest(docker_env.registry, name, digest)
    template_only_commit(repo, "after delete")
    job = make_job(repo, f"{docker_env.registry}/{name}")

    again, lines = deliver(repo, job)

    assert f"build: registry {docker_env.registry} no longer serves {job.image}@{digest}" in lines
    assert again["build"].outcome == "reused"
    assert "registry_digest" not in again["build"].data
    assert again["build"].message.endswith(f"tagged {job.image}:{job.commit} without building")
    assert f"{job.image}:{job.commit}" in engine_tags(docker_env, job.image)
    # the engine pushed the image again: the registry serves the new tag as the same image
    assert served_digest(docker_env.registry, name, job.commit) == again["push"].data["digest"]
    assert again["push"].data["digest"] == digest


@pytest.mark.integration
def test_a_digest_gone_between_build_and_push_is_pushed_through_the_engine(docker_env, tmp_path):
    repo, name, first = delivered_once(tmp_path, docker_env.registry, docker_env)
    digest = first["push"].data["digest"]
    template_only_commit(repo, "gone before the push")
    job = make_job(repo, f"{docker_env.registry}/{name}")
    built, _ = deliver(repo, job, steps=("build",))
    assert built["build"].data["registry_digest"] == digest
    delete_manifest(docker_env.registry, name, digest)  # as a registry clean-up would, meanwhile

    lines: List[str] = []
    ctx = StepContext(
        repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append, results={"build": built["build"].data}
    )
    pushed = run_step("push", ctx)

    assert (
        f"push: {job.image}@{digest} could not be tagged {job.commit} in registry {docker_env.registry};"
        " bringing the image to the Docker engine" in lines
    ), lines
    assert any(line.startswith("push: build: reused: reused image ") for line in lines), lines
    assert pushed.outcome == "done"
    assert served_digest(docker_env.registry, name, job.commit) == pushed.data["digest"] == digest


@pytest.mark.integration
def test_a_pruned_engine_is_not_needed_and_the_engine_path_pulls_the_image_back(docker_env, tmp_path):
    from pachhook.deliver.steps import build

    repo, name, first = delivered_once(tmp_path, docker_env.registry, docker_env)
    client = svc.docker_client(docker_env)
    try:
        client.images.remove(first["build"].data["image_id"], force=True)  # as `docker image prune -a` would
    finally:
        client.close()
    template_only_commit(repo, "pruned")
    job = make_job(repo, f"{docker_env.registry}/{name}")

    again, lines = deliver(repo, job)

    assert again["build"].outcome == "reused" and again["build"].data["registry_digest"]
    # the image id is the config digest: the id the engine gave the image it built
    assert again["build"].data["image_id"] == first["build"].data["image_id"]
    assert again["push"].data["digest"] == first["push"].data["digest"]
    assert engine_tags(docker_env, job.image) == []  # neither pulled nor built

    # Should the push need it on the engine after all, the pushed image is pulled, not rebuilt.
    lines = []
    ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append)
    on_engine = build.on_engine(ctx)
    assert on_engine.outcome == "reused"
    assert any(f"pulling {first['push'].data['repo_digest']}" in line for line in lines), lines
    assert f"{job.image}:{job.commit}" in engine_tags(docker_env, job.image)


# ---------------------------------------------------------------- htpasswd registry


@pytest.mark.integration
def test_the_htpasswd_registry_is_tagged_with_the_docker_config_login(
    docker_env, auth_docker_config, tmp_path, monkeypatch
):
    repo, name, first = delivered_once(tmp_path, docker_env.auth_registry, docker_env)
    template_only_commit(repo, "v2")
    job = make_job(repo, f"{docker_env.auth_registry}/{name}")
    monkeypatch.setenv("DOCKER_HOST", svc.DEAD_DOCKER_HOST)  # a contact with the engine would fail

    again, lines = deliver(repo, job)

    login = (docker_env.auth_user, docker_env.auth_password())
    assert "no build and no Docker engine" in again["build"].message
    assert served_digest(docker_env.auth_registry, name, job.commit, login) == first["push"].data["digest"]
    assert again["push"].data["digest"] == first["push"].data["digest"]
    assert_secret_absent(docker_env.auth_password(), lines, again, repo)


@pytest.mark.integration
def test_the_htpasswd_registry_is_tagged_with_a_credential_helper_login(docker_env, tmp_path, monkeypatch):
    asked = tmp_path / "asked"
    svc.credential_helper(tmp_path / "bin", "retagtest", docker_env, asked)
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {docker_env.auth_registry: "retagtest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    repo, name, first = delivered_once(tmp_path, docker_env.auth_registry, docker_env)
    template_only_commit(repo, "v2")
    job = make_job(repo, f"{docker_env.auth_registry}/{name}")
    monkeypatch.setenv("DOCKER_HOST", svc.DEAD_DOCKER_HOST)
    asked.write_text("")

    again, lines = deliver(repo, job)

    login = (docker_env.auth_user, docker_env.auth_password())
    assert "no build and no Docker engine" in again["build"].message
    assert served_digest(docker_env.auth_registry, name, job.commit, login) == first["push"].data["digest"]
    assert asked.read_text().split() and set(asked.read_text().split()) == {docker_env.auth_registry}
    assert_secret_absent(docker_env.auth_password(), lines, again, repo)


# ---------------------------------------------------------------- the docker config's login


def write_config(tmp_path: Path, monkeypatch, config: dict) -> None:
    folder = tmp_path / "dc"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))


def helper_answering(tmp_path: Path, monkeypatch, name: str, script: str) -> None:
    folder = tmp_path / "helpers"
    folder.mkdir(exist_ok=True)
    helper = folder / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_login_order_is_cred_helpers_then_creds_store_then_auths(tmp_path, monkeypatch):
    helper_answering(tmp_path, monkeypatch, "one", 'read -r s; printf \'{"Username":"from-one","Secret":"p1"}\'\n')
    helper_answering(tmp_path, monkeypatch, "store", 'read -r s; printf \'{"Username":"from-store","Secret":"p2"}\'\n')
    write_config(
        tmp_path,
        monkeypatch,
        {
            "credHelpers": {"r1:5000": "one"},
            "credsStore": "store",
            "auths": {"r1:5000": {"auth": basic("file", "p3")}, "r3:5000": {"auth": basic("file", "p3")}},
        },
    )
    assert dockerauth.registry_login("r1:5000") == {
        "username": "from-one",
        "password": "p1",
        "serveraddress": "r1:5000",
    }
    assert dockerauth.registry_login("r2:5000")["username"] == "from-store"
    write_config(tmp_path, monkeypatch, {"auths": {"https://r3:5000/v1/": {"auth": basic("file", "p:3")}}})
    assert dockerauth.registry_login("r3:5000") == {"username": "file", "password": "p:3", "serveraddress": "r3:5000"}
    assert dockerauth.registry_login("r4:5000") is None


def test_a_helper_without_a_login_passes_on_to_auths(tmp_path, monkeypatch):
    # the helper protocol's answer for an unknown server (docker-credential-helpers)
    helper_answering(tmp_path, monkeypatch, "empty", "echo 'credentials not found in native keychain'; exit 1\n")
    write_config(tmp_path, monkeypatch, {"credsStore": "empty", "auths": {"r:1": {"auth": basic("u", "p")}}})
    assert dockerauth.registry_login("r:1") == {"username": "u", "password": "p", "serveraddress": "r:1"}
    assert dockerauth.registry_login("other:1") is None


def test_docker_hub_is_asked_under_its_index_url_and_tokens_are_kept_as_tokens(tmp_path, monkeypatch):
    helper_answering(
        tmp_path, monkeypatch, "hub", 'read -r s; printf \'{"Username":"<token>","Secret":"tok-for-%s"}\' "$s"\n'
    )
    write_config(tmp_path, monkeypatch, {"credHelpers": {"https://index.docker.io/v1/": "hub"}})
    assert dockerauth.registry_login("docker.io") == {
        "identitytoken": "tok-for-https://index.docker.io/v1/",
        "serveraddress": "https://index.docker.io/v1/",
    }
    write_config(tmp_path, monkeypatch, {"auths": {"https://index.docker.io/v1/": {"auth": basic("hubuser", "pw")}}})
    assert dockerauth.registry_login("docker.io")["username"] == "hubuser"


def test_a_failing_or_missing_helper_is_named_without_any_secret(tmp_path, monkeypatch):
    write_config(tmp_path, monkeypatch, {"credsStore": "nowhere-to-be-found"})
    with pytest.raises(dockerauth.LoginUnavailable, match="docker-credential-nowhere-to-be-found .* is not installed"):
        dockerauth.registry_login("r:1")
    helper_answering(tmp_path, monkeypatch, "broken", "echo 'keychain is locked'; exit 1\n")
    write_config(tmp_path, monkeypatch, {"credsStore": "broken", "auths": {"r:1": {"auth": basic("u", "s3cret")}}})
    with pytest.raises(dockerauth.LoginUnavailable) as failure:
        dockerauth.registry_login("r:1")
    assert str(failure.value) == "docker credential helper docker-credential-broken failed for r:1: keychain is locked"


def test_only_localhost_and_ipv4_loopback_registries_go_without_tls():
    # every engine's built-in insecure registries: 127.0.0.0/8, by address or by name (moby
    # registry/config.go loadInsecureRegistries); [::1] is not among them
    assert (
        insecure_by_default("127.0.0.1:5000")
        and insecure_by_default("127.3.4.5")
        and insecure_by_default("localhost:5000")
    )
    assert not insecure_by_default("[::1]:5000")
    assert not insecure_by_default("10.0.0.7:5000")
    assert not insecure_by_default("registry.example.com")
    session = session_without_engine("registry.example.com:5000")
    assert session.secure and session._bases() == [("https", True)]  # TLS, checked, and nothing else


@pytest.mark.integration
def test_the_login_is_looked_up_only_when_the_registry_asks(docker_env, tmp_path, monkeypatch):
    # A broken helper does not matter to an open registry: it is never asked.
    write_config(tmp_path, monkeypatch, {"credsStore": "nowhere-to-be-found"})
    session = session_without_engine(docker_env.registry)
    assert session.manifest_digest("test-retag/none", "latest") is None
    assert isinstance(session, RegistrySession)


@pytest.mark.integration
def test_a_refused_login_goes_to_the_engine_and_is_never_shown(docker_env, auth_docker_config, tmp_path, monkeypatch):
    repo, name, _ = delivered_once(tmp_path, docker_env.auth_registry, docker_env)
    wrong = "not-the-" + uuid.uuid4().hex
    folder = svc.write_docker_config(tmp_path / "wrong", docker_env.auth_registry, docker_env.auth_user, wrong)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    template_only_commit(repo, "wrong login")
    job = make_job(repo, f"{docker_env.auth_registry}/{name}")
    lines: List[str] = []
    results: Dict[str, Dict[str, str]] = {}

    with pytest.raises(StepError) as failure:
        for step in ("build", "push"):
            ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append, results=dict(results))
            results[step] = dict(run_step(step, ctx).data)

    # the registry-only check was refused, so the engine path ran; its push is refused too
    assert any(
        line.startswith(f"build: cannot ask registry {docker_env.auth_registry} for ") and "refused the login" in line
        for line in lines
    ), lines
    assert "refused: unauthorized: authentication required" in str(failure.value)
    assert wrong not in str(failure.value) + "\n".join(lines) + json.dumps(results)
    assert failure.value.retryable is False


@pytest.mark.integration
def test_the_registry_only_retag_reads_the_held_manifest_once(docker_env, tmp_path, monkeypatch):
    # Each request the steps make, as the registry session sends it (a spy: the registry answers).
    repo, name, first = delivered_once(tmp_path, docker_env.registry, docker_env)
    digest = first["push"].data["digest"]
    template_only_commit(repo, "retag")
    job = make_job(repo, f"{docker_env.registry}/{name}")
    sent: List[Tuple[str, str]] = []
    send = registry.RegistrySession._send

    def spy(self, method, path, headers, data=None):
        sent.append((method, path))
        return send(self, method, path, headers, data)

    monkeypatch.setattr(registry.RegistrySession, "_send", spy)

    again, lines = deliver(repo, job)

    assert again["build"].data["registry_digest"] == digest and again["push"].outcome == "done"
    by_digest = f"/v2/{name}/manifests/{digest}"
    by_tag = f"/v2/{name}/manifests/{job.commit}"
    # The manifest pushed earlier is read once (the build's look at it); its presence is asked
    # again right before the push tags it (a clean-up may have deleted it meanwhile); no HEAD
    # before a GET of the same manifest.
    assert sent.count(("GET", by_digest)) == 1, sent
    assert sent.count(("HEAD", by_digest)) == 1, sent
    assert sent.index(("GET", by_digest)) < sent.index(("HEAD", by_digest)) < sent.index(("PUT", by_tag)), sent
    assert len(sent) == 6, sent  # + the config blob, the tag asked before and after the PUT

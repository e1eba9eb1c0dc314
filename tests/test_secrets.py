"""Secrets never leave the places the user put them.

A real htpasswd-protected registry (tests/services, bcrypt), its login in a DOCKER_CONFIG of
this test, a session token in a pachctl config (PACH_CONFIG), and a git remote whose URL holds
a password. The whole delivery runs (the detached background worker, `pachhook run`,
`run --commit`, `--dry-run`, `render`, `status`, `logs`, `provenance`), and so do its
failures (a wrong registry password, a cluster refusing the update, the registry gone).
Then everything pachhook wrote is searched: every command's stdout and stderr, the worker
log, the queue database (and its WAL), every file under the git dir's `pachhook/`, the
specs the pachctl TEST DOUBLE received, and the labels of the images built. Neither the
password (plain, base64 in `user:password` form, or URL-encoded), nor the token, nor the
git password may appear. Remote URLs are recorded without their credentials.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.parse
import uuid
from typing import Dict, List

import pytest
import services as test_services
from gitutil import PACHCTL_DOUBLE, VENV_BIN, Repo, git_env, run

GIT_PASSWORD = "gitpw-" + uuid.uuid4().hex
TOKEN = "pachtoken-" + uuid.uuid4().hex
QUERY_TOKEN = "querytoken-" + uuid.uuid4().hex
WAIT = 180.0


class Transcript:
    """Everything the commands printed, kept to be searched at the end."""

    def __init__(self) -> None:
        self.outputs: List[str] = []

    def add(self, proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
        self.outputs.append(f"$ {proc.args}\n{proc.stdout}\n{proc.stderr}")
        return proc


def spec(name: str, image: str) -> str:
    return (
        json.dumps(
            {
                "pipeline": {"name": name},
                "description": "built from {{ branch }}",
                "transform": {"image": image + ":{{ tag }}", "cmd": ["/bin/sh", "-c", "true"]},
                "input": {"pfs": {"repo": "images", "glob": "/*"}},
            },
            indent=2,
        )
        + "\n"
    )


def wait_done(repo: Repo, commit: str, transcript: Transcript) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        proc = transcript.add(repo.pachhook("status", "--format", "json", "--all"))
        jobs = [job for job in json.loads(proc.stdout)["jobs"] if job["commit"] == commit]
        if jobs and jobs[0]["state"] in ("done", "failed"):
            return jobs[0]
        time.sleep(0.5)
    raise AssertionError(f"job of {commit} not finished in {WAIT}s")


@pytest.mark.integration
def test_no_secret_in_anything_pachhook_writes(tmp_path, docker_env):
    services = docker_env
    password = services.auth_password()
    user = services.auth_user
    secrets = {
        "registry password": password,
        "registry password, URL-encoded": urllib.parse.quote(password, safe=""),
        "docker config auth token": base64.b64encode(f"{user}:{password}".encode()).decode(),
        "pachctl session token": TOKEN,
        "git remote password": GIT_PASSWORD,
        "git remote query token": QUERY_TOKEN,
    }
    transcript = Transcript()

    env = git_env(tmp_path / "home")
    docker_config = test_services.write_docker_config(
        tmp_path / "docker-config", services.auth_registry, user, password
    )
    wrong_config = test_services.write_docker_config(
        tmp_path / "docker-config-wrong", services.auth_registry, user, password[::-1] + "x"
    )
    pach_config = tmp_path / "pachctl" / "config.json"
    pach_config.parent.mkdir()
    pach_config.write_text(
        json.dumps(
            {
                "user_id": "u",
                "v2": {
                    "active_context": "default",
                    "contexts": {"default": {"pachd_address": "grpc://127.0.0.1:1", "session_token": TOKEN}},
                },
            }
        )
    )
    state = tmp_path / "pachctl-state"
    env.update(
        {
            "DOCKER_CONFIG": str(docker_config),
            "DOCKER_HOST": services.docker_host,
            "PACH_CONFIG": str(pach_config),
            "PACHCTL_DOUBLE_DIR": str(state),
        }
    )
    path = tmp_path / "repo"
    path.mkdir()
    run(["git", "init", "-q", "-b", "main", str(path)], tmp_path, env)
    repo = Repo(path, env)
    repo.git(
        "remote",
        "add",
        "origin",
        f"https://builder:{GIT_PASSWORD}@git.example.invalid/team/repo.git?access_token={QUERY_TOKEN}",
    )
    repository = f"secrets/{uuid.uuid4().hex[:10]}/edges"
    image = f"{services.auth_registry}/{repository}"
    repo.write(".pachhook.toml", f"pachctl = {json.dumps(str(PACHCTL_DOUBLE))}\n")  # background worker
    repo.write("edges/pipeline.json", spec("edges", image))
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY run.sh /run.sh"))
    repo.write("edges/run.sh", f"echo {uuid.uuid4().hex}\n")
    transcript.add(repo.pachhook("install", "--plain"))
    repo.git("add", ".")

    # 1. the whole delivery through the hooks and the detached background worker
    committed = transcript.add(run(["git", "commit", "-q", "-m", "edges"], repo.path, env))
    first = repo.git("rev-parse", "HEAD")
    job = wait_done(repo, first, transcript)
    assert job["state"] == "done", (job["steps"], committed.stdout)
    for command in (
        ["status"],
        ["logs", str(job["id"])],
        ["provenance", first],
        ["provenance", first, "--format", "json"],
        ["doctor"],
        ["doctor", "--verbose"],
        ["doctor", "--format", "json"],
        ["render", "edges/pipeline.json"],
        ["run", "--commit", "HEAD", "--dry-run"],
        ["run", "--commit", "HEAD"],
    ):
        transcript.add(repo.pachhook(*command))

    # 2. failures: the registry refuses a wrong password; the cluster refuses the update;
    #    the registry is gone
    repo.write(".pachhook.toml", f'worker = "manual"\npachctl = {json.dumps(str(PACHCTL_DOUBLE))}\n')
    repo.write("edges/run.sh", f"echo {uuid.uuid4().hex}\n")
    second = repo.commit("wrong password")
    wrong = dict(env, DOCKER_CONFIG=str(wrong_config))
    refused = transcript.add(run([str(VENV_BIN / "pachhook"), "run"], repo.path, wrong, check=False, timeout=WAIT))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    state.mkdir(exist_ok=True)
    (state / "pachctl_double_fail").write_text(
        "update:rpc error: code = Unauthenticated desc = the session token is invalid"
    )
    job_id = next(
        j["id"] for j in json.loads(repo.pachhook("status", "--format", "json").stdout)["jobs"] if j["commit"] == second
    )
    transcript.add(repo.pachhook("retry", str(job_id)))
    failed_update = transcript.add(repo.pachhook("run"))
    assert failed_update.returncode == 1
    (state / "pachctl_double_fail").unlink()
    repo.write("edges/pipeline.json", spec("edges", "127.0.0.1:9/" + repository))
    third = repo.commit("registry gone")
    gone = transcript.add(repo.pachhook("run"))
    assert gone.returncode == 1
    for command in (
        ["status", "--all"],
        ["status", "--format", "json", "--all"],
        ["logs", str(job_id)],
        ["provenance", second],
        ["provenance", third, "--format", "json"],
    ):
        transcript.add(repo.pachhook(*command))
    jobs = json.loads(repo.pachhook("status", "--format", "json", "--all").stdout)["jobs"]
    errors = " | ".join(s["error"] for j in jobs for s in j["steps"] if s["error"])
    assert "auth" in errors.lower() or "denied" in errors.lower() or "unauthorized" in errors.lower(), errors
    assert "Unauthenticated" in errors and "127.0.0.1:9" in errors, errors

    # 3. search everything pachhook wrote
    places: Dict[str, bytes] = {f"output {n}": text.encode() for n, text in enumerate(transcript.outputs)}
    pachhook_dir = repo.common_dir / "pachhook"
    files = [p for p in pachhook_dir.rglob("*") if p.is_file()]
    assert any(p.name == "queue.db" for p in files) and any(p.name == "worker.log" for p in files)
    assert any(p.suffix == ".json" for p in (pachhook_dir / "specs").rglob("*")), "no rendered spec kept"
    places.update({str(p): p.read_bytes() for p in files})
    places.update({str(p): p.read_bytes() for p in state.rglob("*") if p.is_file()})
    client = test_services.docker_client(services)
    try:
        for found in client.images.list(name=image):
            places[f"labels of {found.tags}"] = json.dumps(found.labels).encode()
    finally:
        client.close()
    leaks = [
        (what, where) for what, secret in secrets.items() for where, data in places.items() if secret.encode() in data
    ]
    assert not leaks, leaks
    print(
        f"\nsearched {len(places)} outputs and files ({sum(map(len, places.values()))} bytes)"
        f" for {len(secrets)} secrets: no occurrence"
    )

    # remote URLs are recorded without their credentials
    sources = {
        json.loads(data).get("org.opencontainers.image.source")
        for where, data in places.items()
        if where.startswith("labels of")
    }
    assert sources == {"https://git.example.invalid/team/repo.git"}, sources
    # the search finds what is there: the user's own files still hold the secrets
    assert secrets["docker config auth token"].encode() in (docker_config / "config.json").read_bytes()
    assert TOKEN in pach_config.read_text()


def test_no_token_in_anything_the_api_backend_path_writes(tmp_path):
    """backend = "api" is the path that reads the pachctl config's token and sends it: a
    delivery against the pps_v2.API TEST DOUBLE, and one against a closed port, leave it
    nowhere but in the request that authenticates the call."""
    pytest.importorskip("pachyderm_sdk", reason="the API backend needs pachyderm-sdk: pip install 'pachhook[api]'")
    pytest.importorskip("grpc", reason="the pps_v2.API test double needs grpcio")
    from doubles import pps_server

    server, port, double = pps_server.start()
    transcript = Transcript()
    try:
        env = git_env(tmp_path / "home")
        pach_config = tmp_path / "pach-config.json"

        def point_at(address: str) -> None:
            pach_config.write_text(
                json.dumps(
                    {
                        "user_id": "u",
                        "v2": {
                            "active_context": "local",
                            "contexts": {"local": {"pachd_address": address, "session_token": TOKEN, "source": 2}},
                        },
                    }
                )
            )

        point_at(f"grpc://127.0.0.1:{port}")
        env.update({"PACH_CONFIG": str(pach_config), "PACHHOOK_PACHCTL_TIMEOUT": "5"})
        path = tmp_path / "repo"
        path.mkdir()
        run(["git", "init", "-q", "-b", "main", str(path)], tmp_path, env)
        repo = Repo(path, env)
        repo.write(".pachhook.toml", 'worker = "manual"\nbackend = "api"\n')
        fixed = json.loads(spec("edges", "registry.invalid/team/edges"))
        fixed["transform"]["image"] = "registry.invalid/team/edges:1"  # no build: the update is the point
        repo.write("edges/pipeline.json", json.dumps(fixed))
        first = repo.commit("edges")
        transcript.add(repo.pachhook("queue", "--no-worker"))
        delivered = transcript.add(repo.pachhook("run"))
        assert delivered.returncode == 0, delivered.stdout + delivered.stderr
        assert [request.token for request in double.received] == [TOKEN]  # it was used

        point_at("grpc://127.0.0.1:1")  # nothing listens there
        repo.write("edges/pipeline.json", json.dumps(dict(fixed, description="second")))
        repo.commit("second")
        transcript.add(repo.pachhook("queue", "--no-worker"))
        failed = transcript.add(repo.pachhook("run"))
        assert failed.returncode == 1, failed.stdout + failed.stderr
        for command in (
            ["status", "--all"],
            ["status", "--format", "json", "--all"],
            ["logs", "1"],
            ["logs", "2"],
            ["provenance", first],
            ["doctor", "--verbose"],
            ["doctor", "--format", "json"],
            ["run", "--commit", "HEAD", "--dry-run"],
        ):
            transcript.add(repo.pachhook(*command))
        jobs = json.loads(repo.pachhook("status", "--format", "json", "--all").stdout)["jobs"]
        errors = [s["error"] for j in jobs for s in j["steps"] if s["error"]]
        assert errors and all("\n" not in e for e in errors), errors
    finally:
        server.stop(grace=None)

    places = {f"output {n}": text.encode() for n, text in enumerate(transcript.outputs)}
    places.update({str(p): p.read_bytes() for p in (repo.common_dir / "pachhook").rglob("*") if p.is_file()})
    leaks = [where for where, data in places.items() if TOKEN.encode() in data]
    assert not leaks, leaks
    assert TOKEN in pach_config.read_text()

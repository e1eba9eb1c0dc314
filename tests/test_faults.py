"""Faults on purpose: killed workers, services down, a locked or corrupt queue, a full or
read-only git dir, and 200 commits from 4 worktrees at once.

Real git repositories with pachhook's plain hooks (`pachhook install --plain`), real
`pachhook run` worker processes, the real Docker engine for the build and push cases, the
pachctl TEST DOUBLE (tests/doubles/pachctl) for the cluster. Services that must go down
are this file's own: a registry started here on a free loopback port, a dead Docker
socket, the double's fault files. The shared services are never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import services as test_services
from gitutil import PACHCTL_DOUBLE, VENV_BIN, Repo, git_env, run

LEASE = 3.0  # seconds; workers here renew every LEASE/3
KILLED_LEASE = 6.0  # the lease of a worker about to be killed: time to see that nobody takes its job
WAIT = 120.0  # upper bound on any wait for a state; failing tests end sooner with a message
DRAIN_WAIT = 600.0  # a `pachhook run` that drains a queue others keep filling


# --------------------------------------------------------------------------- helpers


def spec(name: str, image: str, inputs: tuple = ("images",), note: str = "") -> str:
    pfs = [{"pfs": {"repo": repo, "glob": "/*"}} for repo in inputs]
    return (
        json.dumps(
            {
                "pipeline": {"name": name},
                "description": note or f"{name} pipeline",
                "transform": {"image": image, "cmd": ["/bin/sh", "-c", "true"]},
                "input": pfs[0] if len(pfs) == 1 else {"cross": pfs},
            },
            indent=2,
        )
        + "\n"
    )


FIXED_IMAGE = "registry.invalid/team/fixed:1"  # no placeholder: build and push are skipped


def make_repo(tmp_path: Path, pachctl: Optional[Path] = None, name: str = "repo") -> Repo:
    """A repository with pachhook's plain hooks, worker mode manual, the pachctl double."""
    env = git_env(tmp_path / "home")
    state = tmp_path / "pachctl-state"
    state.mkdir(exist_ok=True)
    env["PACHCTL_DOUBLE_DIR"] = str(state)
    env.pop("PACHCTL_DOUBLE_VERSION", None)
    env.pop("PACHHOOK_PACHCTL_TIMEOUT", None)
    path = tmp_path / name
    path.mkdir()
    run(["git", "init", "-q", "-b", "main", str(path)], tmp_path, env)
    repo = Repo(path, env)
    repo.write(".pachhook.toml", f'worker = "manual"\npachctl = {json.dumps(str(pachctl or PACHCTL_DOUBLE))}\n')
    repo.write("README.md", "faults\n")
    repo.commit("first")
    installed = repo.pachhook("install", "--plain")
    assert installed.returncode == 0, installed.stderr
    return repo


def state_dir(repo: Repo) -> Path:
    return Path(repo.env["PACHCTL_DOUBLE_DIR"])


def received(repo: Repo) -> List[dict]:
    """Every spec the pachctl double was given by an update that went through."""
    return [json.loads(p.read_text()) for p in sorted((state_dir(repo) / "received").glob("*.json"))]


def updates_for(repo: Repo, commit: str) -> int:
    return sum(1 for s in received(repo) if s["metadata"]["annotations"]["pachhook.io/commit"] == commit)


def status(repo: Repo) -> dict:
    proc = repo.pachhook("status", "--format", "json", "--all")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def job_of(repo: Repo, commit: str) -> dict:
    [job] = [job for job in status(repo)["jobs"] if job["commit"] == commit]
    return job


def step(job: dict, name: str) -> dict:
    return next(item for item in job["steps"] if item["name"] == name)


def db_path(repo: Repo) -> Path:
    return repo.common_dir / "pachhook" / "queue.db"


def query(repo: Repo, sql: str, *params) -> list:
    """Read the queue as a second process would (used to wait for a state, not to assert)."""
    db = sqlite3.connect(f"file:{db_path(repo)}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT, detail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{detail()}")


def log_has(repo: Repo, job_id: int, text: str) -> bool:
    return bool(query(repo, "SELECT 1 FROM logs WHERE job_id = ? AND instr(line, ?) > 0", job_id, text))


class Worker:
    """`pachhook run --lease KILLED_LEASE` in its own session, to be killed with its children."""

    def __init__(self, repo: Repo, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "pachhook"), "run", "--lease", str(KILLED_LEASE)],
            cwd=repo.path,
            env=env or repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and whatever it started
        self.proc.wait(timeout=30)

    def finish(self, timeout: float = WAIT) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        return out


def run_once(
    repo: Repo, env: Optional[Dict[str, str]] = None, lease: float = LEASE, timeout: float = WAIT
) -> subprocess.CompletedProcess:
    return run(
        [str(VENV_BIN / "pachhook"), "run", "--lease", str(lease)],
        repo.path,
        env or repo.env,
        check=False,
        timeout=timeout,
    )


def lease_left(repo: Repo, job_id: int) -> float:
    [(expires,)] = query(repo, "SELECT lease_expires FROM jobs WHERE id = ?", job_id)
    return (expires or 0) - time.time()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRegistry:
    """A registry of this test's own (Debian's docker-registry) on a loopback port."""

    def __init__(self, folder: Path, port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: {uuid.uuid4().hex}\n"
        )
        self.address = f"127.0.0.1:{port}"
        self.log = open(folder / "registry.log", "ab")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            assert self.proc.poll() is None, (folder / "registry.log").read_text()
            time.sleep(0.05)
        raise AssertionError("own registry did not start")

    def manifest_digest(self, repository: str, tag: str) -> str:
        request = urllib.request.Request(f"http://{self.address}/v2/{repository}/manifests/{tag}", method="HEAD")
        request.add_header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.headers["Docker-Content-Digest"]

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def own_registry_factory(tmp_path):
    started: List[OwnRegistry] = []

    def start(port: Optional[int] = None) -> OwnRegistry:
        registry = OwnRegistry(tmp_path / f"registry-{len(started)}", port or free_port())
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


def write_pausing_pachctl(tmp_path: Path) -> Path:
    """A TEST DOUBLE wrapper: the pachctl double, then, after an update went through and while
    the file `pause-after-update` exists in the double's state dir, an hour's sleep: a worker
    killed then has applied the update but not recorded it."""
    wrapper = tmp_path / "pachctl-pausing"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import os, subprocess, sys, time\n"
        f"code = subprocess.call([{str(PACHCTL_DOUBLE)!r}] + sys.argv[1:])\n"
        "state = os.environ['PACHCTL_DOUBLE_DIR']\n"
        "if sys.argv[1:3] == ['update', 'pipeline'] and os.path.exists(os.path.join(state, 'pause-after-update')):\n"
        "    open(os.path.join(state, 'applied'), 'w').close()\n"
        "    time.sleep(3600)\n"
        "sys.exit(code)\n"
    )
    wrapper.chmod(0o755)
    return wrapper


# --------------------------------------------------------------------------- kill -9 mid-step


def _resume_after_lease(repo: Repo, commit: str, job_id: int) -> None:
    """Before the dead worker's lease ends nobody takes the job; after it, the next worker
    finishes it."""
    assert lease_left(repo, job_id) > 2, "the lease ran out before the test could look"
    attempts = [item["attempts"] for item in job_of(repo, commit)["steps"]]
    early = run_once(repo)  # may run other jobs, never the one still leased
    assert early.returncode == 0, early.stdout + early.stderr
    assert f"job {job_id} " not in early.stdout, early.stdout
    assert job_of(repo, commit)["state"] == "running"
    assert [item["attempts"] for item in job_of(repo, commit)["steps"]] == attempts
    wait_for("the dead worker's lease to run out", lambda: lease_left(repo, job_id) < 0, timeout=KILLED_LEASE + 5)
    late = run_once(repo)
    assert late.returncode == 0, late.stdout + late.stderr
    assert f"job {job_id} " in late.stdout and "1 done" in late.stdout, late.stdout


@pytest.mark.parametrize("when", ["before the cluster applied it", "after the cluster applied it"])
def test_worker_killed_mid_update_resumes_and_updates_once(tmp_path, when):
    wrapper = write_pausing_pachctl(tmp_path)
    repo = make_repo(tmp_path, pachctl=wrapper)
    state = state_dir(repo)
    if when.startswith("before"):
        (state / "pachctl_double_hang").write_text("update")
    else:
        (state / "pause-after-update").write_text("")
    repo.write("edges/pipeline.json", spec("edges", FIXED_IMAGE))
    commit = repo.commit("edges")
    job_id = job_of(repo, commit)["id"]

    worker = Worker(repo)
    wait_for("the update step to start", lambda: log_has(repo, job_id, "update: started"))
    if when.startswith("before"):
        calls = state / "calls.jsonl"
        wait_for(
            "pachctl update to be called",
            lambda: calls.exists() and any(line.startswith('["update"') for line in calls.read_text().splitlines()),
        )
        time.sleep(0.3)
        assert received(repo) == []
    else:
        wait_for("the cluster to apply the spec", lambda: (state / "applied").exists())
        assert updates_for(repo, commit) == 1
    assert step(job_of(repo, commit), "update")["state"] == "running"
    worker.kill9()
    (state / "pachctl_double_hang").unlink(missing_ok=True)
    (state / "pause-after-update").unlink(missing_ok=True)
    # queued while the job's worker lies dead: must not be lost, nor wait for the lease
    repo.write("montage/pipeline.json", spec("montage", FIXED_IMAGE))
    other = repo.commit("montage")

    _resume_after_lease(repo, commit, job_id)
    job = job_of(repo, commit)
    assert job["state"] == "done"
    assert step(job, "update")["attempts"] == 2
    assert updates_for(repo, commit) == 1  # the pipeline was updated once for this job
    assert json.loads((state / "pipelines" / "edges.json").read_text())["version"] == 1
    assert job_of(repo, other)["state"] == "done" and updates_for(repo, other) == 1


def test_background_worker_killed_its_job_is_taken_up_by_the_next_one(tmp_path):
    """No `pachhook run` by hand: the worker the next commit starts waits out the dead
    worker's lease and delivers both jobs."""
    wrapper = write_pausing_pachctl(tmp_path)
    repo = make_repo(tmp_path, pachctl=wrapper)
    state = state_dir(repo)
    (state / "pause-after-update").write_text("")
    repo.write("edges/pipeline.json", spec("edges", FIXED_IMAGE))
    first = repo.commit("edges")
    first_id = job_of(repo, first)["id"]
    # the background worker as the hook starts it (`pachhook worker`), with a lease long
    # enough that the next commit's worker finds it still held
    dead = subprocess.Popen(
        [str(VENV_BIN / "pachhook"), "worker", "--repo", str(repo.path), "--lease", "20"],
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for("the cluster to apply the spec", lambda: (state / "applied").exists())
    os.killpg(dead.pid, signal.SIGKILL)
    dead.wait(timeout=30)
    (state / "pause-after-update").unlink()

    repo.write(".pachhook.toml", f"pachctl = {json.dumps(str(wrapper))}\n")  # background mode
    repo.write("montage/pipeline.json", spec("montage", FIXED_IMAGE, inputs=("edges",)))
    second = repo.commit("montage")  # its post-commit hook starts a new background worker
    assert lease_left(repo, first_id) > 3, "the dead worker's lease ran out too soon for this test"
    log = repo.common_dir / "pachhook" / "worker.log"
    wait_for("the new commit's job", lambda: job_of(repo, second)["state"] == "done", timeout=30, detail=log.read_text)
    # the worker now waits on the dead lease, holding the worker lock: a job queued
    # meanwhile (its hook starts no worker) is still delivered before that lease ends
    repo.write("third/pipeline.json", spec("third", FIXED_IMAGE))
    third = repo.commit("third")
    wait_for("the third commit's job", lambda: job_of(repo, third)["state"] == "done", timeout=30, detail=log.read_text)
    assert job_of(repo, first)["state"] == "running", "the test needs the dead lease to outlast this"
    wait_for(
        "the stranded job to be delivered by the background worker",
        lambda: job_of(repo, first)["state"] == "done",
        timeout=60,
        detail=log.read_text,
    )
    assert [updates_for(repo, sha) for sha in (first, second, third)] == [1, 1, 1]
    assert step(job_of(repo, first), "update")["attempts"] == 2


def _image_template(image: str) -> str:
    return spec("edges", image + ":{{ tag }}")


@pytest.mark.integration
def test_worker_killed_mid_build_resumes(tmp_path, docker_env):
    services = docker_env
    repository = f"faults/{uuid.uuid4().hex[:10]}/edges"
    image = f"{services.registry}/{repository}"
    repo = make_repo(tmp_path)
    repo.write("edges/pipeline.json", _image_template(image))
    # BuildKit RUN steps need the host network on the test engine (it has no bridge).
    config = (repo.path / ".pachhook.toml").read_text()
    repo.write(".pachhook.toml", config + f'[images."{image}"]\nnetwork = "host"\n')
    repo.write(
        "edges/Dockerfile",
        test_services.base_dockerfile(
            services, f"RUN sleep 3 && echo {uuid.uuid4().hex} > /stamp", "COPY run.sh /run.sh"
        ),
    )
    repo.write("edges/run.sh", "echo edges\n")
    commit = repo.commit("edges")
    job_id = job_of(repo, commit)["id"]

    worker = Worker(repo)
    wait_for("the build to run its slow step", lambda: log_has(repo, job_id, "RUN sleep 3"))
    assert step(job_of(repo, commit), "build")["state"] == "running"
    worker.kill9()

    _resume_after_lease(repo, commit, job_id)
    job = job_of(repo, commit)
    assert job["state"] == "done"
    assert step(job, "build")["attempts"] == 2 and step(job, "push")["attempts"] == 1
    digest, labels = _registry_image(services.registry, repository, commit)
    assert labels["org.opencontainers.image.revision"] == commit
    assert step(job, "push")["result"]["digest"] == digest
    assert updates_for(repo, commit) == 1


def _registry_image(registry: str, repository: str, tag: str) -> tuple:
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}")
    request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as answer:
        digest, manifest = answer.headers["Docker-Content-Digest"], json.load(answer)
    with urllib.request.urlopen(
        f"http://{registry}/v2/{repository}/blobs/{manifest['config']['digest']}", timeout=10
    ) as answer:
        config = json.load(answer)
    return digest, config["config"].get("Labels") or {}


@pytest.mark.integration
def test_worker_killed_mid_push_resumes(tmp_path, docker_env, own_registry_factory):
    services = docker_env
    registry = own_registry_factory()
    repository = f"faults/{uuid.uuid4().hex[:10]}/edges"
    repo = make_repo(tmp_path)
    repo.write("edges/pipeline.json", _image_template(f"{registry.address}/{repository}"))
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY run.sh /run.sh"))
    repo.write("edges/run.sh", f"echo {uuid.uuid4().hex}\n")
    commit = repo.commit("edges")
    job_id = job_of(repo, commit)["id"]

    worker = Worker(repo)
    try:
        # frozen as the build ends: the push that follows cannot finish before the freeze
        wait_for(
            "the build to end",
            lambda: log_has(repo, job_id, "build: done"),
            detail=lambda: "\n".join(r[0] for r in query(repo, "SELECT line FROM logs")),
        )
        registry.pause()  # the registry stops answering in the middle of the push
        wait_for("the push to start", lambda: log_has(repo, job_id, "push: started"))
        time.sleep(1.0)
        assert step(job_of(repo, commit), "push")["state"] == "running"
        worker.kill9()
    finally:
        registry.resume()

    _resume_after_lease(repo, commit, job_id)
    job = job_of(repo, commit)
    assert job["state"] == "done"
    assert step(job, "build")["attempts"] == 1 and step(job, "push")["attempts"] == 2
    assert step(job, "push")["result"]["digest"] == registry.manifest_digest(repository, commit)
    assert updates_for(repo, commit) == 1


# --------------------------------------------------------------------------- services down


def _failed_once(repo: Repo, commit: str, step_name: str, env: Optional[Dict[str, str]] = None) -> str:
    ran = run_once(repo, env)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    job = job_of(repo, commit)
    assert job["state"] == "failed"
    failed = step(job, step_name)
    assert failed["state"] == "failed"
    error = failed["error"]
    assert error and "\n" not in error
    shown = repo.pachhook("status")
    assert f"{step_name} failed: {error}" in shown.stdout  # the user sees the cause as recorded
    return error


def _retry_to_done(repo: Repo, commit: str, env: Optional[Dict[str, str]] = None) -> dict:
    job_id = job_of(repo, commit)["id"]
    retried = repo.pachhook("retry", str(job_id))
    assert retried.returncode == 0, retried.stderr
    ran = run_once(repo, env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    job = job_of(repo, commit)
    assert job["state"] == "done", job["steps"]
    return job


@pytest.mark.integration
def test_registry_down_at_push_then_back(tmp_path, docker_env, own_registry_factory):
    services = docker_env
    port = free_port()  # nothing listens there yet
    repository = f"faults/{uuid.uuid4().hex[:10]}/edges"
    repo = make_repo(tmp_path)
    repo.write("edges/pipeline.json", _image_template(f"127.0.0.1:{port}/{repository}"))
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY run.sh /run.sh"))
    repo.write("edges/run.sh", f"echo {uuid.uuid4().hex}\n")
    commit = repo.commit("edges")

    error = _failed_once(repo, commit, "push")
    assert f"registry 127.0.0.1:{port}" in error, error
    registry = own_registry_factory(port)
    job = _retry_to_done(repo, commit)
    assert step(job, "build")["attempts"] == 1  # the built image was kept, not rebuilt
    assert step(job, "push")["result"]["digest"] == registry.manifest_digest(repository, commit)
    assert updates_for(repo, commit) == 1


@pytest.mark.integration
def test_engine_down_at_build_then_back(tmp_path, docker_env):
    services = docker_env
    repository = f"faults/{uuid.uuid4().hex[:10]}/edges"
    repo = make_repo(tmp_path)
    repo.write("edges/pipeline.json", _image_template(f"{services.registry}/{repository}"))
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY run.sh /run.sh"))
    repo.write("edges/run.sh", f"echo {uuid.uuid4().hex}\n")
    commit = repo.commit("edges")

    dead = dict(repo.env, DOCKER_HOST=test_services.DEAD_DOCKER_HOST)
    error = _failed_once(repo, commit, "build", dead)
    assert "Docker engine" in error and test_services.DEAD_DOCKER_HOST in error, error
    alive = dict(repo.env, DOCKER_HOST=services.docker_host)
    job = _retry_to_done(repo, commit, alive)
    assert _registry_image(services.registry, repository, commit)[0] == step(job, "push")["result"]["digest"]
    assert updates_for(repo, commit) == 1


@pytest.mark.parametrize("command", ["update", "inspect", "version"])
def test_pachctl_failing_then_back(tmp_path, command):
    repo = make_repo(tmp_path)
    fault = state_dir(repo) / "pachctl_double_fail"
    fault.write_text(f"{command}:rpc error: code = Unavailable desc = connection error: dial tcp 10.0.0.7:30650")
    repo.write("edges/pipeline.json", spec("edges", FIXED_IMAGE))
    commit = repo.commit("edges")

    error = _failed_once(repo, commit, "update")
    assert "pachctl" in error and "code = Unavailable" in error, error
    fault.unlink()
    _retry_to_done(repo, commit)
    assert updates_for(repo, commit) == 1


def _processes_with(marker: str) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_pachctl_hanging_times_out_then_back(tmp_path):
    repo = make_repo(tmp_path)
    hang = state_dir(repo) / "pachctl_double_hang"
    hang.write_text("update")
    repo.write("edges/pipeline.json", spec("edges", FIXED_IMAGE))
    commit = repo.commit("edges")
    env = dict(repo.env, PACHHOOK_PACHCTL_TIMEOUT="2")

    started = time.monotonic()
    error = _failed_once(repo, commit, "update", env)
    assert time.monotonic() - started < 30
    assert "pachctl" in error and "timed out" in error, error
    # the hung pachctl was ended with the attempt, not left behind
    assert _processes_with(f"PACHCTL_DOUBLE_DIR={state_dir(repo)}") == []
    hang.unlink()
    _retry_to_done(repo, commit, env)
    assert updates_for(repo, commit) == 1


# --------------------------------------------------------------------------- the queue database


def _commit_with_hook(repo: Repo, message: str, folder: str = "edges") -> tuple:
    """Commit through git (the post-commit hook runs `pachhook queue`); (sha, hook output)."""
    repo.write(f"{folder}/pipeline.json", spec(folder, FIXED_IMAGE, note=message))
    repo.git("add", ".")
    proc = run(["git", "commit", "-q", "-m", message], repo.path, repo.env, check=False)
    assert proc.returncode == 0, proc.stderr  # post-commit never fails a commit
    assert "Traceback" not in proc.stdout + proc.stderr
    return repo.git("rev-parse", "HEAD"), proc.stdout + proc.stderr


def _lock_queue(repo: Repo, until: str) -> subprocess.Popen:
    """Another process holding the queue's write lock (BEGIN EXCLUSIVE) until the Python statement
    `until` returns; returned once it holds the lock."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time\n"
                f"db = sqlite3.connect({str(db_path(repo))!r}, isolation_level=None)\n"
                "db.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                f"{until}\n"
                "db.execute('COMMIT')\n"
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if holder.stdout.readline().strip() != "locked":
        holder.kill()
        raise AssertionError("the process meant to hold the queue's lock did not take it")
    return holder


def test_queue_locked_for_a_while_waits_and_loses_nothing(tmp_path):
    repo = make_repo(tmp_path)
    _commit_with_hook(repo, "one")
    holder = _lock_queue(repo, until="time.sleep(3)")
    try:
        started = time.monotonic()
        commit, said = _commit_with_hook(repo, "two")
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert waited >= 1.5, "the commit did not meet the lock"
    assert f"queued {commit[:12]}" in said, said
    assert job_of(repo, commit)["state"] == "queued"


def test_queue_locked_too_long_is_reported_and_requeued_later(tmp_path):
    from pachhook.commands.queue import HOOK_BUSY_TIMEOUT

    repo = make_repo(tmp_path)
    _commit_with_hook(repo, "one")
    holder = _lock_queue(repo, until="sys.stdin.readline()")
    try:
        started = time.monotonic()
        commit, said = _commit_with_hook(repo, "two")
        waited = time.monotonic() - started
    finally:
        holder.communicate("go\n", timeout=30)
    assert HOOK_BUSY_TIMEOUT <= waited < HOOK_BUSY_TIMEOUT + 10, waited
    [line] = [line for line in said.splitlines() if line.startswith("pachhook: nothing queued")]
    assert "database is locked" in line and str(db_path(repo).parent) in line, line
    assert repo.git("log", "-1", "--format=%s") == "two"  # the commit stands
    later = repo.pachhook("queue", "--commit", commit, "--no-worker")
    assert f"queued {commit[:12]}" in later.stdout, later.stdout + later.stderr


# One committer: at START + n * 60 ms it opens the queue in BASE/n (new each time) and
# records a commit there. Waiting in-process, not starting one process per try: a
# process's start-up varies by tens of milliseconds, which hides the race.
_COMMITTER = """
import os, sys, time
from pachhook.queue.store import Queue
base, start, tries, name = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for number in range(tries):
    at = start + number * 0.06
    time.sleep(max(at - time.time() - 0.003, 0))
    while time.time() < at:
        pass
    try:
        queue = Queue(os.path.join(base, str(number)), timeout=10.0)
        queue.enqueue(f"{name}-{number}", name, "edges", "edges/pipeline.json")
        queue.close()
        print(number, "recorded")
    except Exception as error:
        print(number, error)
"""


def test_two_committers_meeting_a_new_queue_both_record(tmp_path):
    """The first commits of two worktrees, no queue yet: both are recorded.

    SQLite answers the second of two processes switching a new file to WAL "database is
    locked" at once, whatever the busy timeout; in CI one of two worktrees' first commits
    went unrecorded. Before the fix, 2 to 16 of these 100 tries failed here.
    """
    tries = 100
    start = time.time() + 1.0  # once both processes have imported the queue
    committers = [
        subprocess.Popen(
            [sys.executable, "-c", _COMMITTER, str(tmp_path), repr(start), str(tries), name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("left", "right")
    ]
    said = [committer.communicate(timeout=120)[0] for committer in committers]
    for output in said:
        assert output.splitlines() == [f"{number} recorded" for number in range(tries)]
    for number in range(tries):
        database = tmp_path / str(number) / "pachhook" / "queue.db"
        recorded = sqlite3.connect(database).execute("SELECT commit_sha FROM jobs").fetchall()
        assert sorted(row[0] for row in recorded) == [f"left-{number}", f"right-{number}"]


def test_corrupt_queue_is_set_aside_and_a_fresh_one_started(tmp_path):
    repo = make_repo(tmp_path)
    first, _ = _commit_with_hook(repo, "one")
    database = db_path(repo)
    garbage = b"this is no SQLite database\x00" * 512
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    database.write_bytes(garbage)

    commit, said = _commit_with_hook(repo, "two")
    aside = [p for p in database.parent.iterdir() if p.name.startswith("queue.db.corrupt")]
    assert len(aside) == 1, sorted(p.name for p in database.parent.iterdir())
    assert aside[0].read_bytes() == garbage  # set aside, not deleted
    assert str(aside[0]) in said, said  # the message says where the old queue is
    assert f"queued {commit[:12]}" in said, said
    assert job_of(repo, commit)["state"] == "queued"
    # whichever command meets the damage says so: here `status`, on a second corruption
    database.write_bytes(garbage)
    shown = repo.pachhook("status")
    assert shown.returncode == 0, shown.stderr
    second = [p for p in database.parent.iterdir() if p.name.startswith("queue.db.corrupt") and p != aside[0]]
    assert len(second) == 1 and str(second[0]) in shown.stderr, shown.stdout + shown.stderr
    assert "no jobs" in shown.stdout


def test_queue_damaged_inside_gives_one_line_errors_then_the_hook_sets_it_aside(tmp_path):
    """Damage past the header shows only when a query reads it: commands say so in one line
    (no traceback); the next commit's hook moves the file aside and records its job afresh."""
    from pachhook.queue.store import NewJob, Queue

    repo = make_repo(tmp_path)
    _commit_with_hook(repo, "one")
    with Queue(repo.common_dir) as queue:  # a queue with some history, quickly
        for number in range(300):
            queue.enqueue_commit(f"{number:040x}", "main", [NewJob(f"p{number % 7}", "t/pipeline.json")])
    database = db_path(repo)
    checkpoint = sqlite3.connect(database)
    checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.close()
    data = bytearray(database.read_bytes())
    assert len(data) > 5 * 4096
    for offset in range(2 * 4096, len(data), 4096):  # every page after the schema's
        data[offset : offset + 64] = b"\xff" * 64
    database.write_bytes(bytes(data))

    reported = 0
    for command in (["status"], ["status", "--format", "json"], ["run"], ["logs", "1"]):
        proc = repo.pachhook(*command)
        assert "Traceback" not in proc.stdout + proc.stderr, (command, proc.stderr)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "malformed" in lines[0], (command, proc.stderr)
            reported += 1
    assert reported >= 2, "the damage was never read: the test proves nothing"

    commit, said = _commit_with_hook(repo, "after the damage")
    assert repo.git("log", "-1", "--format=%H") == commit  # the commit stands
    aside = [p for p in database.parent.iterdir() if p.name.startswith("queue.db.corrupt")]
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(data), sorted(p.name for p in database.parent.iterdir())
    assert str(aside[0]) in said and f"queued {commit[:12]}" in said, said
    assert job_of(repo, commit)["state"] == "queued"


def _mount_tmpfs(target: Path, size: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs as the git dir's pachhook folder: {done.stderr.strip()}")


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_enqueue_on_a_read_only_or_full_git_dir_is_reported_and_the_commit_stands(tmp_path, fault):
    repo = make_repo(tmp_path)
    folder = repo.common_dir / "pachhook"
    _mount_tmpfs(folder, "1m")
    try:
        if fault == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            with open(folder / "filler", "wb") as filler:
                try:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
                except OSError:
                    pass
        before = repo.git("rev-parse", "HEAD")
        commit, said = _commit_with_hook(repo, "under a fault")
        assert commit != before and repo.git("log", "-1", "--format=%s") == "under a fault"
        lines = [
            line
            for line in said.splitlines()  # the pre-commit hook's summary aside
            if line.startswith("pachhook:") and " warning" not in line
        ]
        assert len(lines) == 1, said
        words = ("read-only", "readonly") if fault == "read-only" else ("full", "no space")
        assert any(word in lines[0].lower() for word in words), lines[0]
        assert f"pachhook queue --commit {commit[:12]}" in lines[0]  # how to record it later
        assert str(folder) in lines[0], lines[0]  # where
    finally:
        _umount(folder)
    later = repo.pachhook("queue", "--commit", commit[:12], "--no-worker")
    assert f"queued {commit[:12]}" in later.stdout, later.stdout + later.stderr
    assert job_of(repo, commit)["state"] == "queued"


# --------------------------------------------------------------------------- concurrency


def test_200_commits_from_4_worktrees_with_workers_running(tmp_path):
    repo = make_repo(tmp_path)
    # Every worktree's branch delivers, each to pipelines of its own (the cluster refuses a
    # commit that does not descend from the one a pipeline runs, so four lines of history
    # cannot share one pipeline).
    config = repo.path / ".pachhook.toml"
    config.write_text(
        config.read_text() + '[environments.lines]\nbranches = ["line*"]\npipeline_suffix = "-{{ branch_slug }}"\n'
    )
    for index in range(4):
        repo.write(f"p{index}/pipeline.json", spec(f"p{index}", FIXED_IMAGE))
    repo.commit("four pipelines")
    trees = []
    for index in range(4):
        path = tmp_path / f"tree{index}"
        repo.git("worktree", "add", "-q", "-b", f"line{index}", str(path))
        trees.append(Repo(path, repo.env))

    commits: Dict[int, List[str]] = {index: [] for index in range(4)}
    errors: List[str] = []

    def committer(index: int) -> None:
        tree = trees[index]
        try:
            for number in range(50):
                # each worktree changes its own pipeline, and every 10th commit all four;
                # --no-verify skips only the pre-commit validation (post-commit still queues)
                folders = [f"p{k}" for k in range(4)] if number % 10 == 9 else [f"p{index}"]
                for folder in folders:
                    tree.write(f"{folder}/pipeline.json", spec(folder, FIXED_IMAGE, note=f"t{index} c{number}"))
                tree.git("add", ".")
                proc = run(
                    ["git", "commit", "-q", "--no-verify", "-m", f"tree {index} commit {number}"],
                    tree.path,
                    tree.env,
                    check=False,
                )
                if proc.returncode != 0 or "Traceback" in proc.stdout + proc.stderr:
                    errors.append(proc.stdout + proc.stderr)
                commits[index].append(tree.git("rev-parse", "HEAD"))
        except Exception as error:  # reported below, with the other threads' results
            errors.append(repr(error))

    stop = threading.Event()
    worker_runs: List[subprocess.CompletedProcess] = []

    # The lease renewals of these workers wait on the queue's write lock, which four committing
    # worktrees keep busy; with 3 s leases a loaded 2-core machine let a lease lapse mid-update
    # and a second worker ran the update again. The default lease is 60 s; 20 s keeps the test
    # about "nothing lost, nothing run twice" rather than about the machine's load.
    # `pachhook run` drains until the queue is empty, and the committers keep filling it: one
    # run may last as long as the committing does, so its deadline is that of the test.
    def worker_loop() -> None:
        while not stop.is_set():
            worker_runs.append(run_once(repo, lease=20.0, timeout=DRAIN_WAIT))
            time.sleep(0.05)
        worker_runs.append(run_once(repo, lease=20.0, timeout=DRAIN_WAIT))

    started = time.monotonic()
    committers = [threading.Thread(target=committer, args=(index,)) for index in range(4)]
    workers = [threading.Thread(target=worker_loop) for _ in range(2)]
    for thread in committers + workers:
        thread.start()
    for thread in committers:
        thread.join(timeout=600)
    stop.set()
    for thread in workers:
        thread.join(timeout=600)
    final = run_once(repo, timeout=DRAIN_WAIT)
    elapsed = time.monotonic() - started
    assert not errors, errors[:3]
    assert sum(len(shas) for shas in commits.values()) == 200
    assert all(run.returncode == 0 for run in worker_runs + [final]), [
        r.stdout + r.stderr for r in worker_runs if r.returncode != 0
    ][:2]

    jobs = status(repo)["jobs"]
    by_commit: Dict[str, List[dict]] = {}
    for job in jobs:
        by_commit.setdefault(job["commit"], []).append(job)
    every = [sha for shas in commits.values() for sha in shas]
    missing = [sha for sha in every if sha not in by_commit]
    assert not missing, f"{len(missing)} commits have no job"  # nothing lost
    states = {job["state"] for job in jobs}
    assert states <= {"done", "superseded"}, [
        (j["id"], j["state"], j["steps"]) for j in jobs if j["state"] not in ("done", "superseded")
    ][:3]
    done = [job for job in jobs if job["state"] == "done"]
    for job in done:  # no job ran twice
        assert [step(job, name)["attempts"] for name in ("build", "push", "update")] == [1, 1, 1], job
    # each branch's pipelines carry its suffix (p0-line2); a done job whose spec the cluster
    # already ran ends "unchanged" without an apply, so applies are at most the done jobs
    applied = [
        (s["metadata"]["annotations"]["pachhook.io/commit"], s["pipeline"]["name"].rsplit("-line", 1)[0])
        for s in received(repo)
    ]
    assert len(applied) == len(set(applied)) <= len(done)
    assert set(applied) <= {(job["commit"], job["pipeline"]) for job in done}
    # deliveries of one pipeline never overtake each other: job ids ascend per pipeline
    order: Dict[str, List[int]] = {}
    id_of = {(job["commit"], job["pipeline"]): job["id"] for job in done}
    for pair in applied:
        order.setdefault(pair[1], []).append(id_of[pair])
    assert all(ids == sorted(ids) for ids in order.values()), order
    superseded = [job for job in jobs if job["state"] == "superseded"]
    assert all(job["superseded_by"] for job in superseded)
    print(
        f"\n200 commits, 4 worktrees, 2 workers: {len(jobs)} jobs, {len(done)} done, "
        f"{len(superseded)} superseded, {len(worker_runs) + 1} worker runs, {elapsed:.1f}s"
    )

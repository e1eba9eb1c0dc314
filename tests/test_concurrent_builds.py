"""One commit, several images: built concurrently (bounded by `build_concurrency`), an image
shared by several pipelines built and pushed once, and every failure reported.

The real Docker engine, CLI (BuildKit) and registry; the pachctl TEST DOUBLE for the cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import List

import pytest
import services as test_services
from gitutil import pachhook_module
from test_update import double, git, received  # noqa: F401 (double is a fixture)

from pachhook.core.config import ConfigError, load_config
from pachhook.deliver.sharedimages import SharedImages
from pachhook.deliver.steps.base import StepError, StepResult
from pachhook.queue.store import Queue


def pipeline(name: str, image: str) -> str:
    spec = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "raw", "glob": "/*"}},
        "transform": {"image": image, "cmd": ["sh", "-c", "true"]},
    }
    return json.dumps(spec, indent=2)


def make_repo(tmp_path: Path, config: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    (repo / ".pachhook.toml").write_text(config)
    return repo


def run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "run", *args], cwd=repo, capture_output=True, text=True, timeout=600
    )


def engine_events(services, since: float, until: float, action: str) -> List[dict]:
    """The engine's own record of image events (`docker events`), e.g. one `tag` per build with -t."""
    client = test_services.docker_client(services)
    try:
        events = client.events(since=int(since), until=int(until) + 1, decode=True, filters={"type": "image"})
        return [event for event in events if event.get("Action") == action]
    finally:
        client.close()


def images_config(images: List[str], extra: str = "", concurrency: int = 2) -> str:
    text = f"build_concurrency = {concurrency}\n"
    for image in images:
        text += f'[images."{image}"]\nnetwork = "host"\n{extra}'
    return text


@pytest.mark.integration
def test_an_image_shared_by_three_pipelines_is_built_and_pushed_once(tmp_path, docker_env, double):  # noqa: F811
    services = docker_env
    repo, image, sha = shared_image_commit(tmp_path, services)

    started = time.time()
    out = run(repo, "--commit", "HEAD")
    ended = time.time()
    assert out.returncode == 0, out.stdout + out.stderr

    # The engine tagged IMAGE:SHA once: one build, no retag for the other two pipelines.
    assert len(tags_of(services, f"{image}:{sha}", started, ended)) == 1
    assert len(re.findall(rf"build: built {re.escape(image)}:{sha}", out.stdout)) == 1
    assert len(re.findall(r"build: reused: .* built once for (one|two|three), which shares the image", out.stdout)) == 2
    assert len(re.findall(r"push: registry \S+ serves", out.stdout)) == 1
    assert len(re.findall(r"push: reused: .* pushed once for (one|two|three), which shares the image", out.stdout)) == 2
    specs = {spec["pipeline"]["name"]: spec["transform"]["image"] for spec in received(double)}
    assert specs == {name: f"{image}:{sha}" for name in ("one", "two", "three")}


def tags_of(services, name: str, since: float, until: float) -> List[dict]:
    """The engine's `tag` events for image `name` between the two times."""
    return [e for e in engine_events(services, since, until, "tag") if e["Actor"]["Attributes"]["name"] == name]


def shared_image_commit(tmp_path: Path, services) -> "tuple[Path, str, str]":
    """A commit of three pipelines naming one image built from app/; the repo, image and commit."""
    repository = f"test-shared/{uuid.uuid4().hex[:10]}/app"
    image = f"{services.registry}/{repository}"
    repo = make_repo(tmp_path, 'worker = "manual"\n' + images_config([image], 'context = "app"\n', concurrency=3))
    (repo / "app").mkdir()
    (repo / "app" / "Dockerfile").write_text(
        test_services.base_dockerfile(services, f"RUN echo {repository} > /id && sleep 1")
    )
    for name in ("one", "two", "three"):
        (repo / name).mkdir()
        (repo / name / "pipeline.json").write_text(pipeline(name, image + ":{{ tag }}"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "three pipelines, one image")
    return repo, image, git(repo, "rev-parse", "HEAD")


@pytest.mark.integration
def test_one_image_name_built_from_two_contexts_is_refused(tmp_path, docker_env, double):  # noqa: F811
    """One tag cannot hold two images: the second pipeline fails instead of shipping the first's."""
    services = docker_env
    image = f"{services.registry}/test-shared/{uuid.uuid4().hex[:10]}/app"
    repo = make_repo(tmp_path, images_config([image], concurrency=1))
    for name in ("left", "right"):
        (repo / name).mkdir()
        (repo / name / "pipeline.json").write_text(pipeline(name, image + ":{{ tag }}"))
        (repo / name / "Dockerfile").write_text(test_services.base_dockerfile(services, f"RUN echo {name} > /side"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two contexts, one image name")
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 1
    assert "right: build: failed: build of " in out.stdout
    assert "pipelines left and right name the same image but build it from different inputs" in out.stdout
    assert received(double) == []


def distinct_images(tmp_path, services, concurrency: int, runs: List[str]) -> "tuple[Path, List[str]]":
    """A commit with one pipeline and one image per RUN line given."""
    prefix = f"{services.registry}/test-concurrent/{uuid.uuid4().hex[:10]}"
    images = [f"{prefix}/img{number}" for number in range(len(runs))]
    repo = make_repo(tmp_path, 'worker = "manual"\n' + images_config(images, concurrency=concurrency))
    for number, (image, line) in enumerate(zip(images, runs)):
        folder = repo / f"p{number}"
        folder.mkdir()
        (folder / "pipeline.json").write_text(pipeline(f"p{number}", image + ":{{ tag }}"))
        (folder / "Dockerfile").write_text(test_services.base_dockerfile(services, f"RUN echo {image} && {line}"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "several images")
    return repo, images


def two_slow_builds(tmp_path, services, concurrency: int, seconds: int) -> "tuple[str, dict]":
    """Deliver two images whose RUN sleeps; the output and, per pipeline, the index of the
    line saying its RUN is running and of the line saying it was built."""
    repo, _ = distinct_images(tmp_path, services, concurrency=concurrency, runs=[f"sleep {seconds}"] * 2)
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    at = {}
    for name in ("p0", "p1"):
        running = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: build:") and "… running" in line)
        built = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: build: built "))
        at[name] = (running, built)
    return out.stdout, at


@pytest.mark.integration
def test_images_of_one_commit_build_at_the_same_time(tmp_path, docker_env, double):  # noqa: F811
    stdout, at = two_slow_builds(tmp_path, docker_env, concurrency=2, seconds=4)
    # Each build's slow RUN was running before the other one's build ended.
    assert at["p0"][0] < at["p1"][1] and at["p1"][0] < at["p0"][1], stdout
    # Every line of a build names its pipeline: readable however the lines interleave.
    step_lines = [line for line in stdout.splitlines() if ": build: [" in line]
    assert step_lines and all(line.startswith(("p0: ", "p1: ")) for line in step_lines)


@pytest.mark.integration
def test_build_concurrency_1_builds_one_image_after_the_other(tmp_path, docker_env, double):  # noqa: F811
    stdout, at = two_slow_builds(tmp_path, docker_env, concurrency=1, seconds=2)
    assert at["p0"][1] < at["p1"][0], stdout


@pytest.mark.integration
def test_every_failed_build_is_reported_and_the_good_one_still_builds(tmp_path, docker_env, double):  # noqa: F811
    repo, images = distinct_images(tmp_path, docker_env, concurrency=2, runs=["exit 3", "true", "exit 4"])
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 1
    assert re.search(r"^p0: build: failed: .*exit code: 3", out.stdout, re.M), out.stdout
    assert re.search(r"^p2: build: failed: .*exit code: 4", out.stdout, re.M), out.stdout
    assert f"p1: build: built {images[1]}:" in out.stdout
    assert "p1: update: failed: not applied: p0, p2 failed" in out.stdout
    summary = out.stdout.rstrip().splitlines()[-1]
    assert summary.startswith("pachhook run: 3 of 3 pipelines failed: p0: build:"), summary
    assert "p2: build:" in summary
    assert received(double) == []


def test_shared_images_hand_one_result_to_every_pipeline_and_one_failure_too():
    shared = SharedImages()
    calls: List[str] = []
    gate = threading.Event()

    def build() -> StepResult:
        calls.append("build")
        gate.wait(5)
        return StepResult(data={"image_id": "sha256:abc", "image_ref": "r/app:1"}, message="built r/app:1")

    results: List[StepResult] = []
    waiters = [
        threading.Thread(target=lambda n=n: results.append(shared.once("build", "r/app:1", "k", n, build)))
        for n in ("a", "b", "c")
    ]
    for thread in waiters:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in waiters:
        thread.join(5)
    assert calls == ["build"]
    assert sorted(result.outcome for result in results) == ["done", "reused", "reused"]
    assert all(result.data["image_id"] == "sha256:abc" for result in results)

    def broken() -> StepResult:
        raise StepError("docker build of r/lib:1 failed: exit code: 2", retryable=False)

    with pytest.raises(StepError):
        shared.once("build", "r/lib:1", "k", "a", broken)
    with pytest.raises(StepError) as second:
        shared.once("build", "r/lib:1", "k", "b", broken)
    assert str(second.value) == (
        "build of r/lib:1 failed for a, which shares the image: docker build of r/lib:1 failed: exit code: 2"
    )
    assert second.value.retryable is False


@pytest.mark.parametrize(
    "value, shown",
    [
        ("0", "an integer (0)"),
        ("65", "an integer (65)"),
        ("true", "a boolean (True)"),
        ('"2"', "a string ('2')"),
        ("1.5", "a number (1.5)"),
    ],
)
def test_build_concurrency_must_be_a_small_whole_number(tmp_path, value, shown):
    (tmp_path / ".pachhook.toml").write_text(f"build_concurrency = {value}\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert error.value.problems == [
        f".pachhook.toml:1: build_concurrency: must be a whole number of builds from 1 to 64, not {shown}"
    ]


def test_build_concurrency_defaults_to_two(tmp_path):
    assert load_config(tmp_path).build_concurrency == 2


@pytest.mark.integration
def test_ctrl_c_during_concurrent_builds_ends_them_and_exits_130(tmp_path, docker_env, double):  # noqa: F811
    repo, images = distinct_images(tmp_path, docker_env, concurrency=2, runs=["sleep 60", "sleep 60"])
    process = subprocess.Popen(
        [sys.executable, "-m", "pachhook", "run", "--commit", "HEAD"],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    running = set()
    for line in process.stdout:  # until both builds' slow RUN is under way
        if "… running" in line:
            running.add(line.split(":", 1)[0])
        if running == {"p0", "p1"}:
            break
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err == "pachhook run: interrupted\n"
    assert time.monotonic() - interrupted < 30  # the 60 s RUNs were ended, not waited for
    # no docker CLI of this run is left building
    left = subprocess.run(["pgrep", "-f", f"docker build .*{images[0]}"], capture_output=True, text=True)
    assert left.stdout == ""
    assert received(double) == []


# -- the queue's worker (`pachhook run` draining the queue): the same concurrent builds -------


def queue_and_drain(repo: Path) -> "tuple[subprocess.CompletedProcess, float]":
    """`pachhook queue` (no background worker), then `pachhook run` draining the queue: its
    output and wall time."""
    queued = pachhook_module("queue", "--no-worker", cwd=repo, env=dict(os.environ), timeout=120)
    assert queued.returncode == 0, queued.stdout + queued.stderr
    began = time.monotonic()
    out = run(repo)
    return out, time.monotonic() - began


def job_logs(repo: Path) -> "dict[str, list[tuple[float, str]]]":
    """Each pipeline's job log as the queue stores it: (time, line), oldest first."""
    with Queue(repo / ".git") as queue:
        return {
            job.pipeline: [(row["at"], row["line"]) for row in queue.logs.entries(job.id)]
            for job in queue.list_jobs(all=True)
        }


def build_interval(log: "list[tuple[float, str]]") -> "tuple[float, float]":
    """When the job's build step started and when it ended, by its log."""
    started = next(at for at, line in log if line.startswith("build: started"))
    ended = next(at for at, line in log if re.match(r"build: (done|reused)\b", line))
    return started, ended


@pytest.mark.integration
def test_the_queue_builds_a_commits_images_at_the_same_time(tmp_path, docker_env, double):  # noqa: F811
    repo, images = distinct_images(tmp_path, docker_env, concurrency=2, runs=["sleep 3"] * 3)
    out, _ = queue_and_drain(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    logs = job_logs(repo)
    assert sorted(logs) == ["p0", "p1", "p2"]
    intervals = {name: build_interval(log) for name, log in logs.items()}
    # Two at a time: p0 and p1 build together; p2 starts when one of them has ended.
    (a0, b0), (a1, b1), (a2, _) = intervals["p0"], intervals["p1"], intervals["p2"]
    assert a0 < b1 and a1 < b0, intervals
    assert a2 >= min(b0, b1) - 0.5, intervals
    # each job's log still tells its own steps, in order, and every job is done
    for name, log in logs.items():
        started = [line.split(":", 1)[0] for _, line in log if re.match(r"\w+: started \(attempt 1\)$", line)]
        assert started == ["build", "push", "update"], (name, log)
    jobs = [line for line in out.stdout.splitlines() if line.endswith(": done") and line.startswith("job ")]
    assert len(jobs) == 3, out.stdout
    specs = {spec["pipeline"]["name"]: spec["transform"]["image"] for spec in received(double)}
    sha = git(repo, "rev-parse", "HEAD")
    assert specs == {f"p{number}": f"{image}:{sha}" for number, image in enumerate(images)}


@pytest.mark.integration
def test_the_queue_builds_and_pushes_an_image_three_pipelines_share_once(tmp_path, docker_env, double):  # noqa: F811
    repo, image, sha = shared_image_commit(tmp_path, docker_env)
    started = time.time()
    out, _ = queue_and_drain(repo)
    ended = time.time()
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(tags_of(docker_env, f"{image}:{sha}", started, ended)) == 1
    lines = [line for log in job_logs(repo).values() for _, line in log]
    assert len([line for line in lines if line.startswith(f"build: done: built {image}:{sha}")]) == 1, lines
    assert len([line for line in lines if re.match(r"build: reused: .* built once for (one|two|three),", line)]) == 2
    assert len([line for line in lines if re.match(r"push: reused: .* pushed once for (one|two|three),", line)]) == 2
    specs = {spec["pipeline"]["name"]: spec["transform"]["image"] for spec in received(double)}
    assert specs == {name: f"{image}:{sha}" for name in ("one", "two", "three")}

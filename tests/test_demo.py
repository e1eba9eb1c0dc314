"""`pachhook demo` as the README runs it: a subprocess, bounded, on whatever the machine has.

Three machines are played: no Docker engine and no pachctl; the test Docker engine (with
docker-registry installed) but no pachctl; and the test engine plus the pachctl test
double, where the real background worker delivers everything.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import services as test_services
from gitutil import with_pachctl_double

REPO = Path(__file__).resolve().parents[1]
LIMIT = 240  # seconds: the test fails rather than hang if the demo ever does


@pytest.fixture
def env(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    environment["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    )
    environment["NO_COLOR"] = "1"
    environment["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    environment["HOME"] = str(tmp_path / "home")  # no global git identity: the demo sets its own
    (tmp_path / "home").mkdir()
    return environment


def demo(tmp_path, env, *args):
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "pachhook", "demo", "--dir", str(folder), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    return result, folder


THROWAWAY_FIRST_LINE = (
    "pachhook demo: pachctl context pachhook-demo, a throwaway one of the demo's own (no cluster is touched:"
    " update runs as a dry run); --context NAME delivers to a cluster of yours"
)


def user_pachctl_config(tmp_path: Path) -> Path:
    """A user's pachctl configuration: `prod` active, `test-cluster` beside it."""
    path = tmp_path / "user-pachyderm" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"v2": {"active_context": "prod", "contexts": {"prod": {}, "test-cluster": {}}}}))
    return path


def processes_mentioning(text: str):
    """Pids of live processes whose command line mentions text (the demo's unique folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_without_docker_or_pachctl_it_names_the_skipped_steps_and_shows_the_rest(tmp_path, env):
    env["DOCKER_HOST"] = test_services.DEAD_DOCKER_HOST
    result, folder = demo(tmp_path, env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.splitlines()[0] == THROWAWAY_FIRST_LINE
    assert f"skip  build and push: Docker engine not reachable at DOCKER_HOST={test_services.DEAD_DOCKER_HOST}" in out
    assert "skip  update: no --context given: the demo touches no cluster" in out
    assert "ok    validate: pachhook: 0 errors, 0 warnings in 2 files" in out
    assert "2 job(s) queued (edges, montage)" in out
    commit = re.search(r"ok    commit ([0-9a-f]{12}):", out).group(1)
    # The queue, as `pachhook status` prints it: every step recorded as skipped.
    assert re.search(r"edges\s.*skipped.*skipped.*skipped", out)
    # The rendered spec and the command update would run; the spec is written where it says.
    assert f'"pachhook.io/commit": "{commit}' in out
    assert "8. what update would run (not run, see `skipped`" in out
    command = re.search(r"edges: (pachctl update pipeline -f (\S+))", out)
    spec = json.loads(Path(command.group(2)).read_text())
    assert spec["transform"]["image"].startswith(f"localhost:5000/pachhook-demo/edges:{commit}")
    assert "build: Docker engine not reachable" in out.split("skipped\n", 1)[1]
    assert "demo done, with the skipped steps run as dry runs" in out
    assert (folder / "repo" / ".git").is_dir()
    assert processes_mentioning(str(folder)) == []


def test_without_context_no_cluster_is_touched_even_with_pachctl_at_hand(tmp_path, env):
    """The demo's pipelines are Pachyderm's tutorial names: they must never land in the user's active context."""
    user_config = user_pachctl_config(tmp_path)
    before = user_config.read_bytes()
    env = with_pachctl_double(env, tmp_path)
    env.update(DOCKER_HOST=test_services.DEAD_DOCKER_HOST, PACH_CONFIG=str(user_config))
    result, folder = demo(tmp_path, env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.splitlines()[0] == THROWAWAY_FIRST_LINE
    assert "skip  update: no --context given: the demo touches no cluster" in out
    # Nothing reached the cluster pachctl points at, and the user's configuration is as it was.
    calls = tmp_path / "pachd" / "calls.jsonl"
    used = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    assert [call for call in used if call[:2] in (["update", "pipeline"], ["inspect", "pipeline"])] == []
    assert user_config.read_bytes() == before
    config = (folder / "repo" / ".pachhook.toml").read_text()
    assert '[environments.demo]\nbranches = ["main"]\ncontext = "pachhook-demo"\n' in config


def test_a_context_that_is_not_the_users_or_without_a_registry_is_refused_in_one_line(tmp_path, env):
    env["PACH_CONFIG"] = str(user_pachctl_config(tmp_path))
    result, folder = demo(tmp_path, env, "--context", "staging", "--registry", "127.0.0.1:5999")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("pachhook demo: --context staging: pachctl context 'staging'")
    assert "(contexts there: prod, test-cluster)" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not folder.exists()  # refused before anything was made
    result, _ = demo(tmp_path, env, "--context", "test-cluster")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pachhook demo: --context test-cluster needs --registry HOST:PORT, a registry that cluster can pull from"
        " (the registry the demo starts is stopped when the demo ends)"
    )


def test_json_format_lists_skips_for_scripts(tmp_path, env):
    env["DOCKER_HOST"] = test_services.DEAD_DOCKER_HOST
    result, _ = demo(tmp_path, env, "--format", "json")
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [item["step"] for item in report["skipped"]] == ["build", "push", "update"]
    assert sorted(job["pipeline"] for job in report["jobs"]) == ["edges", "montage"]
    assert set(report["rendered"]) == {"edges", "montage"}
    assert (report["context"], report["throwaway_context"]) == ("pachhook-demo", True)


def test_bad_dir_is_refused_in_one_line(tmp_path, env):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "keep-me").write_text("mine")
    result, _ = demo(tmp_path, env)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("exists and is not an empty folder; name a new one")
    assert len(result.stderr.strip().splitlines()) == 1
    assert (folder / "keep-me").read_text() == "mine"


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


@pytest.mark.integration
def test_with_docker_it_builds_and_pushes_to_a_registry_it_starts_and_stops(tmp_path, env, services):
    if not any(os.access(os.path.join(d, "docker-registry"), os.X_OK) for d in env["PATH"].split(os.pathsep)):
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    env["DOCKER_HOST"] = services.docker_host
    result, folder = demo(tmp_path, env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    registry = re.search(r"ok    registry (127\.0\.0\.1:\d+) \(started for the demo", out).group(1)
    assert "skip  update: no --context given" in out
    assert re.search(r"edges\s.*done \d+\.\ds\s+done \d+\.\ds\s+skipped", out)
    assert re.search(
        rf"edges <- commit [0-9a-f]{{12}} image {re.escape(registry)}/pachhook-demo/edges:[0-9a-f]{{40}}"
        r" digest sha256:[0-9a-f]{64}",
        out,
    )
    assert not _port_open(registry)  # the registry the demo started is stopped again
    assert processes_mentioning(str(folder)) == []


@pytest.mark.integration
def test_with_docker_and_pachctl_the_worker_delivers(tmp_path, env, services):
    env = with_pachctl_double(env, tmp_path)
    env.update(DOCKER_HOST=services.docker_host, PACH_CONFIG=str(user_pachctl_config(tmp_path)))
    result, folder = demo(tmp_path, env, "--registry", services.registry, "--context", "test-cluster")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.splitlines()[0] == (
        "pachhook demo: pachctl context test-cluster (given with --context): pipelines edges and montage there are"
        " updated"
    )
    assert f"ok    registry {services.registry} (given with --registry)" in out
    assert "the background worker builds, pushes and updates" in out
    assert re.search(r"edges\s.*done .*done .*done", out) and re.search(r"montage\s.*done .*done .*done", out)
    assert re.search(r"montage version 1 <- commit", out)
    assert "demo delivered" in out
    received = sorted(p.name for p in (tmp_path / "pachd" / "received").iterdir())
    assert [name.split("-", 1)[1] for name in received] == ["edges.json", "montage.json"]
    assert processes_mentioning(str(folder)) == []


@pytest.mark.integration
def test_a_hanging_step_is_cut_off_at_the_timeout_and_its_processes_stopped(tmp_path, env, services):
    env = with_pachctl_double(env, tmp_path)
    env.update(
        DOCKER_HOST=services.docker_host,
        PACHCTL_DOUBLE_HANG="update",
        PACH_CONFIG=str(user_pachctl_config(tmp_path)),
    )
    started = time.monotonic()
    result, folder = demo(
        tmp_path, env, "--registry", services.registry, "--timeout", "25", "--context", "test-cluster"
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    assert "the delivery did not finish within --timeout" in result.stdout
    assert "demo timed out" in result.stdout
    assert processes_mentioning(str(folder)) == []


def test_a_wheel_carries_the_examples_the_demo_copies(tmp_path):
    """The demo works from a wheel too: the examples travel as package data."""
    import zipfile

    source = tmp_path / "source"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        origin = REPO / name
        if not (origin.exists() or origin.is_symlink()):
            continue
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            target.symlink_to(os.readlink(origin))
        else:
            target.write_bytes(origin.read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0 and "No matching distribution found for setuptools" in built.stderr:
        pytest.skip("pip cannot fetch setuptools to build a wheel (no package index reachable)")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("pachhook-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for example in (
        "edges/Dockerfile",
        "edges/pipeline.json",
        "edges/edges.sh",
        "montage/Dockerfile",
        "montage/montage.pipeline.yaml",
        "montage/montage.sh",
    ):
        assert f"pachhook/data/examples/{example}" in names


def test_global_git_settings_stay_outside_the_demo(tmp_path, env):
    """A shared core.hooksPath is not written to, and commit signing does not stop the demo."""
    shared_hooks = tmp_path / "shared-hooks"
    shared_hooks.mkdir()
    global_config = tmp_path / "gitconfig"
    global_config.write_text(
        f"[core]\n\thooksPath = {shared_hooks}\n[commit]\n\tgpgsign = true\n[user]\n\tsigningkey = NO-SUCH-KEY\n"
    )
    env.update(DOCKER_HOST=test_services.DEAD_DOCKER_HOST, GIT_CONFIG_GLOBAL=str(global_config))
    result, folder = demo(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(shared_hooks.iterdir()) == []
    assert (folder / "repo" / ".git" / "hooks" / "post-commit").is_file()

"""Failures you can't miss: status, the post-commit line, pre-push, a desktop notification.

Real git repositories and the real queue; a delivery fails for real because the Docker
engine named by DOCKER_HOST is not there. `notify-send` is not installed on these
machines: a script of that name on PATH records what it was asked to show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from gitutil import examples_project, offline_env, run
from gitutil import pachhook_module as pachhook

from pachhook.queue.database import SCHEMA_VERSION


@pytest.fixture
def env(tmp_path):
    return offline_env(tmp_path)


@pytest.fixture
def project(tmp_path, env):
    folder = examples_project(tmp_path / "project", env)
    assert pachhook("install", "--plain", cwd=folder, env=env).returncode == 0
    run(["git", "add", "-A"], folder, env)
    run(["git", "commit", "-q", "-m", "examples"], folder, env)
    return folder


def test_status_names_the_failure_in_colour_and_exits_1(project, env):
    queued = pachhook("status", cwd=project, env=env)
    assert queued.returncode == 0
    assert queued.stdout.splitlines()[0].split()[-1] == "AGE"
    assert " ago" in queued.stdout.splitlines()[1]

    ran = pachhook("run", cwd=project, env=env)
    assert ran.returncode == 1
    status = pachhook("status", cwd=project, env=env)
    assert status.returncode == 1, status.stdout
    lines = status.stdout.splitlines()
    assert lines[-1] == "failed: the newest delivery of edges, montage; fix the cause, then `pachhook retry JOB`"
    assert any(line.startswith("    build failed: ") for line in lines)
    assert "\033[" not in status.stdout  # NO_COLOR

    coloured = pachhook(
        "status", cwd=project, env={**{k: v for k, v in env.items() if k != "NO_COLOR"}, "PACHHOOK_COLOR": "always"}
    )
    failed_rows = [line for line in coloured.stdout.splitlines() if " failed " in line and "build" not in line]
    assert failed_rows and all(row.startswith("\033[1;31m") for row in failed_rows)

    as_json = json.loads(pachhook("status", "--format", "json", cwd=project, env=env).stdout)
    assert as_json["failed_pipelines"] == ["edges", "montage"]


def test_reused_and_unchanged_steps_are_named(tmp_path):
    from pachhook.commands.status import format_jobs
    from pachhook.queue.jobs import Job, StepRecord

    steps = [
        StepRecord("build", "done", 1, 100.0, 100.5, {"outcome": "reused"}),
        StepRecord("push", "done", 1, 100.5, 100.6, {"outcome": "reused"}),
        StepRecord("update", "done", 1, 100.6, 100.9, {"outcome": "reused"}),
    ]
    job = Job(3, "a" * 40, "main", "edges", "edges/pipeline.json", "img", "done", 90.0, 101.0, None, steps)
    superseded = Job(
        2,
        "b" * 40,
        "main",
        "edges",
        "edges/pipeline.json",
        "img",
        "superseded",
        80.0,
        85.0,
        3,
        [StepRecord("build"), StepRecord("push"), StepRecord("update")],
    )
    text = format_jobs([job, superseded], now=161.0).splitlines()
    assert text[1].split()[6:] == ["reused", "0.5s", "reused", "0.1s", "unchanged", "0.3s", "1m00s", "ago"]
    assert text[2].split()[1] == "superseded" and text[3] == "    superseded by job 3"


def test_a_foreground_run_counts_as_a_worker(project, env):
    from pachhook.queue.store import Queue

    common = project / ".git"
    queue = Queue(str(common))
    try:
        assert queue.leases.take("ci-runner:1:0", 120.0) is not None
        status = pachhook("status", cwd=project, env=env)
        assert "worker: running (a `pachhook run` holds a job)" in status.stdout
    finally:
        queue.close()


def test_watch_repeats_until_interrupted(project, env):
    process = subprocess.Popen(
        [sys.executable, "-m", "pachhook", "status", "--watch", "0.2"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.count("pachhook status (every 0.2 s, Ctrl-C stops;") >= 2
    assert "Traceback" not in err


def test_hooks_say_what_failed_once_and_why_a_job_is_queued_again(project, env):
    assert pachhook("run", cwd=project, env=env).returncode == 1
    remote = project.parent / "remote.git"
    run(["git", "init", "-q", "--bare", str(remote)], project, env)
    run(["git", "remote", "add", "origin", str(remote)], project, env)
    pushed = run(["git", "push", "origin", "main"], project, env, check=False)
    assert pushed.returncode == 0, pushed.stderr
    told = [line for line in pushed.stderr.splitlines() if line.startswith("pachhook: delivery of")]
    assert len(told) == 2, pushed.stderr
    assert told[0].startswith("pachhook: delivery of edges at ")
    assert " (main) build failed: " in told[0] and told[0].endswith("; `pachhook logs 1`, then `pachhook retry 1`")

    (project / "README.md").write_text("docs only\n")
    run(["git", "add", "-A"], project, env)
    again = run(["git", "commit", "-m", "readme"], project, env, check=False)
    assert again.returncode == 0
    assert "for edges (again: its last delivery, job 1, failed), montage (again: its last delivery, job 2, failed)" in (
        again.stdout + again.stderr
    )
    second_push = run(["git", "push", "origin", "main"], project, env, check=False)
    assert "pachhook: delivery of" not in second_push.stderr  # told once


def test_a_background_failure_shows_a_desktop_notification(tmp_path, env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "notifications"
    (bin_dir / "notify-send").write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {record}\necho >> {record}\n')
    (bin_dir / "notify-send").chmod(0o755)
    env = dict(env, PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")
    for notify, expected in (("true", True), ("false", False)):
        folder = examples_project(tmp_path / f"project-{notify}", env, config=f"notify = {notify}\n")
        assert pachhook("install", "--plain", cwd=folder, env=env).returncode == 0
        run(["git", "add", "-A"], folder, env)
        record.unlink(missing_ok=True)
        run(["git", "commit", "-q", "-m", "examples"], folder, env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = json.loads(pachhook("status", "--format", "json", cwd=folder, env=env).stdout)
            if not status["worker_running"] and all(job["state"] == "failed" for job in status["jobs"]):
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"the background worker did not finish: {status}")
        shown = record.read_text() if record.exists() else ""
        if expected:
            assert (
                "--app-name=pachhook|--urgency=critical|pachhook: delivery of edges failed|delivery of edges" in shown
            )
            assert "montage" in shown
        else:
            assert shown == ""


def test_run_commit_quiet_shows_failures_and_the_summary_only(project, env):
    loud = pachhook("run", "--commit", "HEAD", cwd=project, env=env)
    quiet = pachhook("run", "--commit", "HEAD", "--quiet", cwd=project, env=env)
    assert loud.returncode == quiet.returncode == 1
    assert "edges: build: started" in loud.stdout or "edges: build:" in loud.stdout
    lines = quiet.stdout.splitlines()
    assert not any(line.startswith(("edges: build: started", "montage: build: started")) for line in lines)
    assert any(line.startswith("edges: build: failed") for line in lines), quiet.stdout
    assert lines[-1].startswith("pachhook run: ") and "failed" in lines[-1]


def test_a_dry_run_names_the_spec_file_as_where_a_real_run_writes_it(project, env):
    dry = pachhook("run", "--dry-run", cwd=project, env=env)
    assert "a real run writes it to " in dry.stdout, dry.stdout
    assert "\nedges: with `" not in dry.stdout


def test_a_closed_pipe_ends_the_hook_with_141_and_the_delivery_still_runs(tmp_path, env):
    """`git commit ... 2>&1 | head -1`: the reader is gone before the hook prints."""
    folder = examples_project(tmp_path / "piped", env, config=None)
    run(["git", "add", "-A"], folder, env)
    run(["git", "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "examples"], folder, env)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        hook = subprocess.run(
            [sys.executable, "-m", "pachhook", "queue"],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert hook.returncode == 141
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = json.loads(pachhook("status", "--format", "json", cwd=folder, env=env).stdout)["jobs"]
        if jobs and all(job["state"] == "failed" for job in jobs):
            break  # the background worker ran them (the engine is absent, so they fail)
        time.sleep(0.3)
    assert sorted(job["pipeline"] for job in jobs) == ["edges", "montage"]
    assert all(job["state"] == "failed" and "Docker engine not reachable" in job["steps"][0]["error"] for job in jobs)


def test_queue_files_pachhook_must_not_open_are_named(tmp_path, env):
    import sqlite3

    folder = tmp_path / "repo"
    folder.mkdir()
    run(["git", "init", "-q"], folder, env)
    queue_db = folder / ".git" / "pachhook" / "queue.db"
    queue_db.mkdir(parents=True)
    shown = pachhook("status", cwd=folder, env=env)
    assert shown.returncode == 2 and "internal error" not in shown.stderr
    assert (
        shown.stderr == f"pachhook status: {queue_db} is a folder, not pachhook's queue database: move it away"
        " and pachhook starts an empty queue\n"
    )
    queue_db.rmdir()
    assert pachhook("status", cwd=folder, env=env).returncode == 0
    db = sqlite3.connect(queue_db)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    newer = pachhook("status", cwd=folder, env=env)
    assert newer.returncode == 2
    assert (
        f"was written by a newer pachhook (queue schema version 99; this pachhook reads version {SCHEMA_VERSION})"
        in newer.stderr
    )
    check = sqlite3.connect(queue_db)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 99  # never marked back
    check.close()

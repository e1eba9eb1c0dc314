"""`pachhook logs --follow`: a job's log as the real worker (`pachhook run`) writes it, until
the job ends; the exit status is the job's outcome, and Ctrl-C stops following cleanly.

The cluster is the pachctl TEST DOUBLE (a fixed image: nothing to build or push)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from gitutil import VENV_BIN, Repo, live_jobs
from test_queue import fixed_image_repo


def start_following(repo: Repo, job_id: int) -> subprocess.Popen:
    """`pachhook logs --follow JOB`, running; returns once it said it follows."""
    follower = subprocess.Popen(
        [str(VENV_BIN / "pachhook"), "logs", "--follow", str(job_id)],
        cwd=repo.path,
        env=repo.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    first = follower.stdout.readline()
    assert first.startswith(f"following job {job_id} (fixed@") and "queued" in first, first
    return follower


def finish(follower: subprocess.Popen) -> "tuple[int, str, str]":
    out, err = follower.communicate(timeout=60)
    return follower.returncode, out, err


def queued_job(tmp_path: Path) -> "tuple[Repo, int]":
    repo = fixed_image_repo(tmp_path)
    repo.pachhook("queue", check=True)
    (job,) = live_jobs(repo)
    return repo, job["id"]


def test_follow_prints_the_workers_lines_as_they_come_and_exits_0_when_done(tmp_path: Path):
    repo, job_id = queued_job(tmp_path)
    follower = start_following(repo, job_id)
    time.sleep(0.5)
    assert follower.poll() is None  # a queued job: still following
    ran = repo.pachhook("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    status, out, err = finish(follower)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    # every line the worker wrote after the follower started, in order, then the outcome
    assert [line[9:] for line in lines[:2]] == [
        "build: started (attempt 1)",
        "build: skipped: the template names no image to build",
    ]
    assert any(line[9:].startswith("update: done") for line in lines)
    assert lines[-1] == f"job {job_id} done"


def test_follow_exits_1_with_the_cause_when_the_job_fails(tmp_path: Path):
    repo, job_id = queued_job(tmp_path)
    follower = start_following(repo, job_id)
    repo.env["PACHCTL_DOUBLE_FAIL"] = "update:cluster unreachable"
    assert repo.pachhook("run").returncode == 1
    status, out, err = finish(follower)
    assert status == 1, out + err
    assert "update: failed:" in out
    last = out.splitlines()[-1]
    assert last.startswith(f"job {job_id} failed: update: ") and "cluster unreachable" in last


def test_follow_of_a_finished_job_prints_its_log_and_its_outcome(tmp_path: Path):
    repo, job_id = queued_job(tmp_path)
    assert repo.pachhook("run").returncode == 0
    done = repo.pachhook("logs", "-f", str(job_id))
    assert done.returncode == 0
    assert not done.stdout.startswith("following")
    assert done.stdout.splitlines()[-1] == f"job {job_id} done"
    plain = repo.pachhook("logs", str(job_id))
    assert plain.stdout.splitlines() == done.stdout.splitlines()[:-1]


def test_ctrl_c_stops_following_with_130_and_no_traceback(tmp_path: Path):
    repo, job_id = queued_job(tmp_path)
    follower = start_following(repo, job_id)
    time.sleep(0.6)  # in its polling loop
    follower.send_signal(signal.SIGINT)
    status, out, err = finish(follower)
    assert status == 130
    assert err == "pachhook logs: interrupted\n"
    assert "Traceback" not in out + err


def test_following_a_job_that_does_not_exist_is_one_line_and_1(tmp_path: Path):
    repo, job_id = queued_job(tmp_path)
    missing = repo.pachhook("logs", "--follow", str(job_id + 40))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == f"pachhook logs: no job {job_id + 40}\n"

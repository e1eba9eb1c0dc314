"""Progress on a terminal: `pachhook run --commit` under a real pseudo-terminal (the pty
module) draws each image's BuildKit steps and its push layers in place; through a pipe the
same run prints the plain log lines only, with no control sequence.

The real Docker engine, CLI (BuildKit) and registry; the pachctl TEST DOUBLE for the cluster.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest
import services as test_services
from test_concurrent_builds import images_config, make_repo, pipeline, run
from test_update import double, git  # noqa: F401 (double is a fixture)

ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_on_a_terminal(repo: Path, *args: str, timeout: float = 600) -> "tuple[int, str]":
    """`pachhook ARGS` with a pseudo-terminal (120x40) as its standard output and error."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, TERM="xterm")
    process = subprocess.Popen(
        [sys.executable, "-m", "pachhook", *args],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError as error:  # EIO: the terminal's other side is closed (the process ended)
                if error.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    status = process.wait(timeout=60)
    return status, b"".join(chunks).decode("utf-8", "replace")


def one_image_repo(tmp_path: Path, services, config: str = "") -> "tuple[Path, str]":
    """One pipeline whose image has a slow RUN and a ~12 MB layer (so the push has progress)."""
    image = f"{services.registry}/test-tty/{uuid.uuid4().hex[:10]}/app"
    repo = make_repo(tmp_path, config + images_config([image], concurrency=2))
    (repo / "app").mkdir()
    (repo / "app" / "pipeline.json").write_text(pipeline("app", image + ":{{ tag }}"))
    (repo / "app" / "Dockerfile").write_text(
        test_services.base_dockerfile(
            services,
            f"RUN echo {image} && dd if=/dev/urandom of=/blob bs=1M count=12 2>/dev/null && echo made blob && sleep 3",
        )
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one image")
    return repo, image


@pytest.mark.integration
def test_a_terminal_shows_build_steps_and_push_layers_live(tmp_path, docker_env, double):  # noqa: F811
    repo, image = one_image_repo(tmp_path, docker_env)
    status, screen = run_on_a_terminal(repo, "run", "--commit", "HEAD")
    assert status == 0, screen
    # BuildKit's tty look, one block per image, redrawn in place (cursor up, clear below)
    assert re.search(r"app: \[\+\] Building \d+\.\ds \(\d+/\d+\)", screen), screen
    assert re.search(r" => \[2/2\] RUN echo \S+ && dd if=/dev/urandom .* \d+\.\ds", screen), screen
    assert " => => made blob" in screen
    assert "\x1b[J" in screen and re.search(r"\x1b\[\d+F", screen)
    # the push: a bar per layer with its bytes
    assert re.search(r"app: \[\+\] Pushing \d+\.\ds \(\d+/\d+ layers\)", screen), screen
    assert re.search(r" => [0-9a-f]{12} \[=*>? *\] \d+\.\d [kM]B/\d+\.\d MB", screen), screen
    # the log lines stay: with the live block erased, the screen ends on the summary table
    plain = ESCAPE.sub("", screen)
    assert f"app: build: built {image}:" in plain
    assert plain.rstrip().splitlines()[-1].split()[0] == "app"


@pytest.mark.integration
def test_draining_the_queue_on_a_terminal_shows_the_same_live_blocks(tmp_path, docker_env, double):  # noqa: F811
    repo, image = one_image_repo(tmp_path, docker_env, config='worker = "manual"\n')
    queued = subprocess.run([sys.executable, "-m", "pachhook", "queue"], cwd=repo, capture_output=True, text=True)
    assert queued.returncode == 0, queued.stdout + queued.stderr
    status, screen = run_on_a_terminal(repo, "run")
    assert status == 0, screen
    assert re.search(r"app: \[\+\] Building \d+\.\ds \(\d+/\d+\)", screen), screen
    assert re.search(r"app: \[\+\] Pushing \d+\.\ds", screen), screen
    plain = ESCAPE.sub("", screen)
    assert re.search(rf"job \d+ app@\w+: build: built {re.escape(image)}:", plain), plain
    assert plain.rstrip().splitlines()[-1] == "pachhook run: 1 done, 0 failed"


@pytest.mark.integration
def test_a_pipe_gets_plain_lines_only(tmp_path, docker_env, double):  # noqa: F811
    repo, image = one_image_repo(tmp_path, docker_env)
    out = run(repo, "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\x1b" not in out.stdout + out.stderr
    assert "[+] Building" not in out.stdout and "[+] Pushing" not in out.stdout
    assert f"app: build: [2/2] RUN echo {image} && dd if=/dev/urandom" in out.stdout
    assert f"app: build: built {image}:" in out.stdout

"""A commit that changes several images: `pachhook run --commit` with build_concurrency 1 (one
image after the other) against 2 and 3, wall time of the builds and pushes (from the start of
the run to its first update line).

    tests/services/up && python benchmarks/bench_concurrent_builds.py [--images 3] [--runs 3]

Each image's Dockerfile has one RUN: `--work wait` (the default) waits 4 s, as a build
fetching packages does, and leaves a 4 MB layer; `--work cpu` compresses 16 MB of random
data and leaves a 16 MB layer, all CPU. Every run is a fresh commit with a fresh nonce in each RUN,
so every image really builds and pushes (the base image's layers come from the cache). The
real engine, docker CLI (BuildKit) and open registry of tests/services/up; the pachctl test
double for the cluster. The settings alternate run by run so that each sees the same load.
Prints the medians as a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from bench_delivery import git  # noqa: E402 (this folder is on the path when run as a script)

WORK = {
    # CPU-bound: compressing 16 MB of random data, then a 16 MB layer to export and push
    "cpu": "dd if=/dev/urandom bs=1M count=16 2>/dev/null | gzip -1 > /blob.gz",
    # waiting-bound, as a build fetching packages is: 4 s of waiting, then a 4 MB layer
    "wait": "sleep 4 && dd if=/dev/urandom of=/blob bs=1M count=4 2>/dev/null",
}
DOCKERFILE = """FROM {base}
RUN echo {nonce} && {work}
"""


def commit_images(repo: Path, images: List[str], base: str, concurrency: int, work: str) -> None:
    config = f"build_concurrency = {concurrency}\n"
    for number, image in enumerate(images):
        config += f'[images."{image}"]\nnetwork = "host"\n'
        folder = repo / f"p{number}"
        folder.mkdir(exist_ok=True)
        spec = {"pipeline": {"name": f"p{number}"}, "input": {"pfs": {"repo": "raw", "glob": "/*"}}}
        spec["transform"] = {"image": image + ":{{ tag }}", "cmd": ["true"]}
        (folder / "pipeline.json").write_text(json.dumps(spec, indent=2))
        (folder / "Dockerfile").write_text(DOCKERFILE.format(base=base, nonce=uuid.uuid4().hex, work=WORK[work]))
    (repo / ".pachhook.toml").write_text(config)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"images at concurrency {concurrency}")


def build_and_push_seconds(repo: Path, env: Dict[str, str]) -> "float | None":
    """Wall time of `run --commit HEAD` from its start to its first update line: the images'
    builds and pushes (the update, one transaction for the commit, does not depend on them)."""
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "pachhook", "run", "--commit", "HEAD"],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    reached_update = None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if reached_update is None and re.match(r"^p\d+: (delivering to |update:)", line):
            reached_update = time.monotonic() - began
    if process.wait(timeout=900) != 0 or reached_update is None:
        print("".join(lines), file=sys.stderr)
        return None
    return reached_update


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_concurrent_builds.py")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settings", default="1,2,3", help="build_concurrency values to compare")
    parser.add_argument("--work", choices=sorted(WORK), default="wait", help="what each image's RUN does")
    args = parser.parse_args(argv)
    settings = [int(value) for value in args.settings.split(",")]

    import services as svc

    found, reason = svc.load_services()
    if found is None:
        print(f"bench_concurrent_builds: {reason}", file=sys.stderr)
        return 2
    seconds: Dict[int, List[float]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory(prefix="bench-concurrent-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        state = Path(tmp) / "pachctl-state"
        state.mkdir()
        env = dict(
            os.environ,
            DOCKER_HOST=found.docker_host,
            PACHCTL_DOUBLE_DIR=str(state),
            PATH=f"{REPO / 'tests' / 'doubles'}{os.pathsep}{os.environ['PATH']}",
            PYTHONPATH=str(REPO),
        )
        prefix = f"{found.registry}/bench-concurrent/{uuid.uuid4().hex[:8]}"
        images = [f"{prefix}/img{number}" for number in range(args.images)]
        for run in range(args.runs):
            for setting in settings if run % 2 == 0 else reversed(settings):
                commit_images(repo, images, found.base_image, setting, args.work)
                took = build_and_push_seconds(repo, env)
                if took is None:
                    return 1
                seconds[setting].append(took)
                print(f"run {run + 1}, build_concurrency {setting}: {took:.1f}s", file=sys.stderr)
    first = statistics.median(seconds[settings[0]])
    print(f"| {args.images} images ({args.work}), builds + pushes | median | vs concurrency {settings[0]} |")
    print("| --- | --- | --- |")
    for setting in settings:
        median = statistics.median(seconds[setting])
        print(f"| build_concurrency = {setting} | {median:.1f} s | {median / first:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

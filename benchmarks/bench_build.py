"""The build step on a large context, against `docker build` of a clean checkout.

    tests/services/up && python benchmarks/bench_build.py [--big 3 --big-mb 200 --small 5000 --small-kb 80] [--runs 3]

The repository holds BIG files of BIG_MB each and SMALL files of SMALL_KB each (random bytes,
so nothing compresses), by default ~1 GB, and `FROM scratch` + `COPY . /data`. Each round
makes a new commit (one small file changes), then, alternating which goes first:

- pachhook: the build step (reuse off) in a process of its own: clean checkout of the
  commit (the first round writes the image's kept checkout, later rounds bring it forward),
  then the docker CLI with BuildKit; measured: wall time,
  the peak RSS of pachhook's process and the largest peak RSS of its children (git, docker);
- docker: `git clone` of the commit (not timed: the user's checkout exists already), then
  `docker build` of it with the same CLI, timed, with the CLI's peak RSS.

Both images are removed after each round. Each round's context is new content in a new
folder, so every build sends and stores its whole context (no cache hit); the engine's build
cache is left alone (the test engine may be shared): `docker builder prune` frees it later.
Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

# Runs the build step in its own process and reports its own and its children's peak RSS.
STEP = """
import json, resource, sys, time
from pathlib import Path
from pachhook.deliver.steps.base import StepContext
from pachhook.deliver.steps import build
from pachhook.queue.jobs import Job
repo, commit, image = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
job = Job(id=1, commit=commit, branch="main", pipeline="big", template="big/pipeline.json", image=image)
log = []
start = time.perf_counter()
result = build.run(StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=log.append), reuse=False)
took = time.perf_counter() - start
assert result.outcome == "done", (result, log)
print(json.dumps({
    "seconds": took,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "image": result.data["image_ref"],
    "log": [line for line in log if "context" in line][:1],
}))
"""

# Runs a command and reports its wall time and its (largest) peak RSS.
TIMED = """
import json, resource, subprocess, sys, time, os
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, capture_output=True)
took = time.perf_counter() - start
if done.returncode != 0:
    sys.exit(done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:])
print(json.dumps({"seconds": took, "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            handle.write(chunk)
            left -= len(chunk)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_build.py")
    parser.add_argument("--big", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--small-kb", type=int, default=80)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    import services as svc

    from pachhook.deliver import dockerclient

    found, reason = svc.load_services()
    if found is None:
        print(f"bench_build: {reason}", file=sys.stderr)
        return 2
    os.environ["DOCKER_HOST"] = found.docker_host
    cli = dockerclient.find_cli()
    if cli is None:
        print("bench_build: no docker CLI installed", file=sys.stderr)
        return 2
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli_env = dict(env)
    if not cli.buildx:
        cli_env["DOCKER_BUILDKIT"] = "1"
    total_mb = args.big * args.big_mb + args.small * args.small_kb / 1000

    with tempfile.TemporaryDirectory(prefix="bench-build-", dir=os.environ.get("BENCH_TMP")) as tmp:
        repo = Path(tmp) / "repo"
        folder = repo / "big"
        (folder / "small").mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        print(f"making a {total_mb:.0f} MB context ...", file=sys.stderr)
        for i in range(args.big):
            write_random(folder / f"weights-{i}.bin", args.big_mb << 20)
        for i in range(args.small):
            sub = folder / "small" / f"{i // 500:02d}"
            sub.mkdir(exist_ok=True)
            write_random(sub / f"part-{i:05d}.dat", args.small_kb * 1000)
        (folder / "Dockerfile").write_text("FROM scratch\nCOPY . /data\n")
        (folder / "pipeline.json").write_text('{"pipeline": {"name": "big"}}\n')
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "big context")
        image = f"{found.registry}/bench/big-{uuid.uuid4().hex[:8]}"

        def client_cleanup(*refs: str) -> None:
            for ref in refs:
                subprocess.run([cli.path, "rmi", "-f", ref], env=env, capture_output=True, stdin=subprocess.DEVNULL)
            subprocess.run(
                [cli.path, "builder", "prune", "-af"], env=env, capture_output=True, stdin=subprocess.DEVNULL
            )

        def ours(commit: str) -> Dict[str, float]:
            done = subprocess.run(
                [sys.executable, "-c", STEP, str(repo), commit, image],
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            result = json.loads(done.stdout.strip().splitlines()[-1])
            client_cleanup(result["image"])
            return result

        def theirs(commit: str) -> Dict[str, float]:
            clone = Path(tmp) / f"clone-{commit[:8]}"
            subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, stdin=subprocess.DEVNULL)
            git(clone, "checkout", "-q", commit)
            ref = f"{image}-reference:{commit[:12]}"
            argv = cli.build_command() + ["-t", ref, str(clone / "big")]
            done = subprocess.run(
                [sys.executable, "-c", TIMED, *argv],
                env=cli_env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            shutil.rmtree(clone, ignore_errors=True)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            client_cleanup(ref)
            return json.loads(done.stdout)

        results: Dict[str, List[Dict[str, float]]] = {"pachhook build step": [], "docker build of a clean checkout": []}
        for n in range(args.runs):
            (folder / "nonce.txt").write_text(uuid.uuid4().hex)
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"round {n}")
            commit = git(repo, "rev-parse", "HEAD")
            order = [("pachhook build step", ours), ("docker build of a clean checkout", theirs)]
            if n % 2:
                order.reverse()
            for name, run in order:
                print(f"round {n + 1}: {name} ...", file=sys.stderr)
                results[name].append(run(commit))

    ours_time = statistics.median(r["seconds"] for r in results["pachhook build step"])
    theirs_time = statistics.median(r["seconds"] for r in results["docker build of a clean checkout"])
    print(
        f"{args.runs} rounds, alternating; context {total_mb:.0f} MB ({args.big} x {args.big_mb} MB, "
        f"{args.small} x {args.small_kb} kB); {cli.describe()}"
    )
    print()
    print("| case | median wall | min | max | peak RSS (process) | peak RSS (largest child) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        seconds = [row["seconds"] for row in rows]
        rss = max(row["rss_mb"] for row in rows)
        child = max(row.get("children_rss_mb", 0) for row in rows)
        print(
            f"| {name} | {statistics.median(seconds):.1f} s | {min(seconds):.1f} s | {max(seconds):.1f} s "
            f"| {rss:.0f} MB | {child:.0f} MB |"
            if name.startswith("pachhook")
            else f"| {name} | {statistics.median(seconds):.1f} s | {min(seconds):.1f} s | {max(seconds):.1f} s "
            f"| {rss:.0f} MB (the CLI) | - |"
        )
    print()
    for name, rows in results.items():
        print(f"{name}, round by round: " + ", ".join(f"{row['seconds']:.1f} s" for row in rows))
    print()
    print(f"time ratio pachhook / docker build: {ours_time / theirs_time:.2f} (goal <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

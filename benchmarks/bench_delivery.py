"""Build + push of a commit whose build context is unchanged, against a full cached rebuild.

    tests/services/up && python benchmarks/bench_delivery.py [--runs 10]

Both cases run pachhook's real build and push steps against the test engine and the open
registry that tests/services/up starts (DOCKER_HOST is taken from its env file):

- unchanged context: a new commit that changes only the template; the build step finds an
  image with the same context key and retags it, the push step sends only the manifest;
- cached rebuild: a new commit, the same context, but the build step is told not to reuse,
  so the engine rebuilds with every layer from its cache (what a CI job without pachhook's
  context key does), then the push step pushes the result.

Every run is a fresh commit (a fresh tag); the cases alternate so both see the same load.
Prints the medians and their ratio as a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

DOCKERFILE = """FROM {base}
RUN mkdir -p /opt/model && dd if=/dev/urandom of=/opt/model/weights.bin bs=1M count=16 2>/dev/null
RUN for i in $(seq 1 200); do echo "line $i" >> /opt/model/vocab.txt; done
COPY . /app
RUN sh -c 'cd /app && ls -R > /app/MANIFEST'
CMD ["sh", "/app/run.sh"]
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def new_commit(repo: Path, n: int) -> str:
    (repo / "edges" / "pipeline.json").write_text(
        '{"pipeline": {"name": "edges"}, "description": "run %d", "transform": {"image": "x"}}\n' % n
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"template change {n}")
    return git(repo, "rev-parse", "HEAD")


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_delivery.py")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)

    import services as svc

    from pachhook.deliver.steps import build, push
    from pachhook.deliver.steps.base import StepContext
    from pachhook.queue.jobs import Job

    found, reason = svc.load_services()
    if found is None:
        print(f"bench_delivery: {reason}", file=sys.stderr)
        return 2
    os.environ["DOCKER_HOST"] = found.docker_host

    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        repo = Path(tmp) / "repo"
        (repo / "edges").mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        (repo / "edges" / "Dockerfile").write_text(DOCKERFILE.format(base=found.base_image))
        (repo / "edges" / "run.sh").write_text("echo edges\n")
        for i in range(50):
            (repo / "edges" / f"module_{i}.py").write_text(f"# {uuid.uuid4().hex}\nVALUE = {i}\n" * 20)
        image = f"{found.registry}/bench/edges-{uuid.uuid4().hex[:8]}"
        # BuildKit RUN steps need the host network on the test engine (it has no bridge).
        (repo / ".pachhook.toml").write_text(f'[images."{image}"]\nnetwork = "host"\n')

        def deliver(commit: str, reuse: bool) -> Dict[str, str]:
            job = Job(id=1, commit=commit, branch="main", pipeline="edges", template="edges/pipeline.json", image=image)
            log: List[str] = []
            ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=log.append)
            built = build.run(ctx, reuse=reuse)
            ctx.results["build"] = built.data
            pushed = push.run(ctx)
            return {"build": built.outcome, "push": pushed.outcome, "digest": pushed.data["digest"]}

        # Warm up: the first build fills the engine's layer cache, the first push the registry.
        deliver(new_commit(repo, 0), reuse=False)
        cases: Dict[str, Callable[[str], Dict[str, str]]] = {
            "unchanged context (retag + manifest push)": lambda commit: deliver(commit, reuse=True),
            "full cached rebuild + push": lambda commit: deliver(commit, reuse=False),
        }
        times: Dict[str, List[float]] = {name: [] for name in cases}
        n = 1
        for _ in range(args.runs):
            for name, case in cases.items():
                commit = new_commit(repo, n)
                n += 1
                start = time.perf_counter()
                outcome = case(commit)
                times[name].append(time.perf_counter() - start)
                if name.startswith("unchanged"):
                    assert outcome["build"] == "reused", outcome
                else:
                    assert outcome["build"] == "done", outcome

    fast, slow = (statistics.median(times[name]) for name in cases)
    print(f"{args.runs} runs each, alternating; image of ~17 MB, 52 context files")
    print()
    print("| case | median | min | max |")
    print("| --- | --- | --- | --- |")
    for name in cases:
        values = times[name]
        print(
            f"| {name} | {statistics.median(values) * 1000:.0f} ms | {min(values) * 1000:.0f} ms "
            f"| {max(values) * 1000:.0f} ms |"
        )
    print()
    print(f"ratio unchanged / rebuild: {fast / slow:.3f} (goal <= 0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

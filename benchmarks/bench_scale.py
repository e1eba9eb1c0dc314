"""Does a commit pay for the change or for the repository? (issue 16)

    python benchmarks/bench_scale.py [--runs 7] [--sizes 1000,10000,100000]
        [--history 10,1000,100000] [--before REV] [--only queue,history,commit]

Three measurements, each side by side with its baseline in the same run, the variants
alternating run by run, medians of --runs timed runs after one untimed run:

- queue: `pachhook queue` on a commit changing one pipeline's code, in repositories of
  --sizes files (two pipelines; the other files are data in 100-file folders), for this
  checkout and for --before (default: the main commit before issue 16's queue change);
- history: the same with 10..100,000 past jobs in the queue (inserted as delivered jobs of
  the two pipelines), 1,000-file repository, this checkout and --before;
- commit: `git commit -a` of a code change with the plain hooks installed (`pachhook
  install`) against the same commit with no hooks, 1,000-file repository, this checkout
  and --before (whose pre-commit hook validated the whole work tree).

Each version runs as `python -m pachhook` with PYTHONPATH set to its source tree (an
exported copy for --before), in its own clone of each repository, so the two never share
a queue. Repositories are built with git fast-import (one blob for all data files).
Reported: wall-clock milliseconds and the ratio to the smallest size / the baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

CHECKOUT = Path(__file__).resolve().parent.parent
BEFORE = "0d3bee8"  # main before issue 16 (whole-tree listing, whole-work-tree pre-commit)

TEMPLATE = (
    '{\n  "pipeline": {"name": "%(name)s"},\n'
    '  "transform": {"image": "registry.invalid/demo/%(name)s:{{ tag }}", "cmd": ["/bin/sh", "/run.sh"]},\n'
    '  "input": {"pfs": {"repo": "images", "glob": "/*"}}\n}\n'
)


def git_env(base: Path) -> Dict[str, str]:
    home = base / "home"
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT", "PYTHONPATH"))}
    env.update({"HOME": str(home), "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"})
    return env


def run(args: Sequence[str], cwd: Path, env: Dict[str, str], input: bytes = b"") -> bytes:
    proc = subprocess.run(list(args), cwd=str(cwd), env=env, input=input, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout.decode()}{proc.stderr.decode()}")
    return proc.stdout


def make_repo(path: Path, files: int, env: Dict[str, str]) -> None:
    """A repository of `files` files: two pipelines (template, Dockerfile, run.sh) and data."""
    run(["git", "init", "-q", "-b", "main", str(path)], path.parent, env)
    out: List[bytes] = [b"blob\nmark :1\ndata 5\ndata\n"]
    entries = [f"M 100644 :1 data/{n // 100:04}/{n:06}.txt\n" for n in range(max(files - 8, 0))]
    small = {".pachhook.toml": 'worker = "manual"\n', "README.md": "demo\n"}
    for name in ("edges", "montage"):
        small[f"{name}/pipeline.json"] = TEMPLATE % {"name": name}
        small[f"{name}/Dockerfile"] = "FROM scratch\nCOPY run.sh /run.sh\n"
        small[f"{name}/run.sh"] = f"echo {name}\n"
    commit = ["commit refs/heads/main\ncommitter Bench <b@x> 0 +0000\ndata 5\nfirst\n"]
    commit += entries
    commit += [f"M 100644 inline {name}\ndata {len(text.encode())}\n{text}\n" for name, text in small.items()]
    out.append("".join(commit).encode())
    run(["git", "fast-import", "--quiet"], path, env, input=b"".join(out))
    # The queue reads git objects only, and the configuration from the work tree: only the
    # small files are checked out (the index still lists every file).
    run(["git", "read-tree", "HEAD"], path, env)
    run(["git", "checkout-index", "-f", "--", *small], path, env)


def change_code(path: Path, env: Dict[str, str], n: int) -> None:
    """Commit a change to edges/run.sh without hooks (plumbing; the work tree is not read)."""
    blob = run(["git", "hash-object", "-w", "--stdin"], path, env, input=f"echo edges {n}\n".encode()).decode().strip()
    index_env = dict(env, GIT_INDEX_FILE=str(path / ".git" / "bench-index"))
    run(["git", "read-tree", "HEAD"], path, index_env)
    run(["git", "update-index", "--cacheinfo", f"100644,{blob},edges/run.sh"], path, index_env)
    tree = run(["git", "write-tree"], path, index_env).decode().strip()
    commit = run(["git", "commit-tree", tree, "-p", "HEAD", "-m", f"change {n}"], path, env).decode().strip()
    run(["git", "update-ref", "refs/heads/main", commit], path, env)


def timed(args: Sequence[str], cwd: Path, env: Dict[str, str]) -> Tuple[float, float]:
    """Wall and CPU milliseconds of one command, its git children included.

    CPU time (user + system of the process and what it waited for) moves far less than
    wall time when other work shares the machine.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run(args, cwd, env)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def add_history(path: Path, jobs: int) -> None:
    """`jobs` delivered jobs of the two pipelines, as a long-used queue holds them."""
    db = sqlite3.connect(str(path / ".git" / "pachhook" / "queue.db"))
    with db:
        row = db.execute("SELECT commit_sha, branch, template, image, fingerprint FROM jobs LIMIT 1").fetchone()
        now = time.time()
        db.executemany(
            "INSERT INTO jobs (commit_sha, branch, pipeline, template, image, fingerprint, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?)",
            [(row[0], row[1], ("edges", "montage")[n % 2], row[2], row[3], f"old-{n}", now, now) for n in range(jobs)],
        )
    db.close()


def medians(samples: Dict[str, List[float]]) -> Dict[str, float]:
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--history", default="10,1000,100000")
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--only", default="queue,history,commit")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="pachhook-scale-") as folder:
        base = Path(folder)
        env = git_env(base)
        before = base / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(CHECKOUT), "archive", args.before, "pachhook"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        now = base / "now"  # a copy: editing the checkout while this runs changes nothing
        shutil.copytree(CHECKOUT / "pachhook", now / "pachhook", ignore=shutil.ignore_patterns("__pycache__"))
        versions = {"before": before, "now": now}
        version_env = {name: dict(env, PYTHONPATH=str(tree)) for name, tree in versions.items()}
        python = [sys.executable, "-m", "pachhook"]
        print(
            f"python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}, runs {args.runs}, before = {args.before}"
        )

        def queue_table(title: str, cases: Dict[str, int], prepare) -> None:
            repos: Dict[str, Path] = {}
            for label, size in cases.items():
                for name in versions:
                    repo = base / f"{title}-{label}-{name}"
                    prepare(repo, size, name)
                    repos[f"{label}/{name}"] = repo
            walls: Dict[str, List[float]] = {key: [] for key in repos}
            cpus: Dict[str, List[float]] = {key: [] for key in repos}
            for n in range(args.runs + 1):
                for key, repo in repos.items():  # alternating: every variant once per round
                    change_code(repo, env, n)
                    wall, cpu = timed([*python, "queue"], repo, version_env[key.split("/")[1]])
                    if n:
                        walls[key].append(wall)
                        cpus[key].append(cpu)
            first = next(iter(cases))
            for measure, got in (("wall", medians(walls)), ("CPU", medians(cpus))):
                print(f"\n{title}: `pachhook queue`, {measure} ms (median of {args.runs})")
                print(f"| {title} | before | now | now / before | before vs {first} | now vs {first} |")
                print("| --- | ---: | ---: | ---: | ---: | ---: |")
                for label in cases:
                    b, w = got[f"{label}/before"], got[f"{label}/now"]
                    print(
                        f"| {label} | {b:.0f} | {w:.0f} | {w / b:.2f} | {b / got[f'{first}/before']:.2f}"
                        f" | {w / got[f'{first}/now']:.2f} |"
                    )

        def sized(repo: Path, size: int, name: str) -> None:
            make_repo(repo, size, env)
            run([*python, "queue"], repo, version_env[name])

        def with_history(repo: Path, jobs: int, name: str) -> None:
            make_repo(repo, 1000, env)
            run([*python, "queue"], repo, version_env[name])
            add_history(repo, jobs)

        starts = [timed([sys.executable, "-c", "pass"], base, env) for _ in range(args.runs)]
        print(
            f"python -c pass: {statistics.median(w for w, _ in starts):.0f} ms wall,"
            f" {statistics.median(c for _, c in starts):.0f} ms CPU (the floor of any hook)"
        )
        if "queue" in only:
            queue_table("files", {f"{int(s):,}": int(s) for s in args.sizes.split(",")}, sized)
        if "history" in only:
            queue_table("jobs", {f"{int(s):,}": int(s) for s in args.history.split(",")}, with_history)
        if "commit" in only:
            commit_table(base, env, versions, args.runs)
    return 0


def commit_table(base: Path, env: Dict[str, str], versions: Dict[str, Path], runs: int) -> None:
    """`git commit -a` of a code change: no hooks, plain hooks of --before, plain hooks now."""
    repos: Dict[str, Path] = {}
    envs: Dict[str, Dict[str, str]] = {}
    for variant in ("no hooks", "before", "now"):
        repo = base / f"commit-{variant.replace(' ', '-')}"
        make_repo(repo, 1000, env)
        run(["git", "checkout-index", "-a", "-f"], repo, env)
        # 50 templates in the work tree, as a repository with many pipelines has
        for n in range(50):
            (repo / f"p{n:02}").mkdir()
            (repo / f"p{n:02}" / "pipeline.json").write_text(TEMPLATE % {"name": f"p{n:02}"})
        run(["git", "add", "-A"], repo, env)
        run(["git", "commit", "-qm", "pipelines"], repo, env)
        envs[variant] = dict(env)
        if variant != "no hooks":
            # `pachhook` on PATH runs that version, as the installed hooks expect
            bin_dir = base / f"bin-{variant}"
            bin_dir.mkdir()
            wrapper = bin_dir / "pachhook"
            wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={versions[variant]} exec {sys.executable} -m pachhook "$@"\n')
            wrapper.chmod(0o755)
            envs[variant]["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
            run(["pachhook", "install"], repo, envs[variant])
            run(["pachhook", "queue"], repo, envs[variant])
        repos[variant] = repo
    walls: Dict[str, List[float]] = {key: [] for key in repos}
    cpus: Dict[str, List[float]] = {key: [] for key in repos}
    for n in range(runs + 1):
        for variant, repo in repos.items():
            (repo / "edges" / "run.sh").write_text(f"echo edges {n}\n")
            wall, cpu = timed(["git", "commit", "-qam", f"change {n}"], repo, envs[variant])
            if n:
                walls[variant].append(wall)
                cpus[variant].append(cpu)
    wall_ms, cpu_ms = medians(walls), medians(cpus)
    print(f"\n`git commit -a` of a code change, 1,000 files + 50 templates (median of {runs})")
    print("| hooks | wall ms | vs no hooks | CPU ms | vs no hooks |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant in repos:
        print(
            f"| {variant} | {wall_ms[variant]:.0f} | {wall_ms[variant] / wall_ms['no hooks']:.2f}"
            f" | {cpu_ms[variant]:.0f} | {cpu_ms[variant] / cpu_ms['no hooks']:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())

"""The hook paths as pre-commit runs them, this checkout against an older commit (issue 16).

    python benchmarks/bench_hooks.py [--runs 10] [--before REV]

Times, alternating run by run between this checkout and --before (default: main), medians:

- `pachhook validate TEMPLATE` (the framework's pre-commit hook) on one JSON template;
- `pachhook validate --staged` (the plain pre-commit hook) with one template staged;
- `pachhook queue` (post-commit) on a commit changing one pipeline's code;
- `python -S -c pass`, the interpreter alone, for scale.

Every command runs as the hooks run it: through the `pachhook` console script (the three
lines pip writes for `pachhook = pachhook.cli:main`, so no `runpy` as `-m` would import),
with the arguments the hook gives (`pachhook queue` from post-commit takes none), under
`python -S` with PYTHONPATH set to the version's source (an exported copy for --before):
without `site`, so without the editable-install finder, which costs ~25 ms and imports
pathlib and re itself; pre-commit installs pachhook as a regular package. Bytecode is
cached (PYTHONDONTWRITEBYTECODE is dropped). Wall and CPU (user + system of the process and
its git children) are both printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

CHECKOUT = Path(__file__).resolve().parents[1]

TEMPLATE = (
    '{"pipeline": {"name": "%s"}, "transform": {"image": "registry.example.com/t/%s:{{ tag }}", "cmd": ["sh"]},'
    ' "input": {"pfs": {"repo": "images", "glob": "/*"}}}\n'
)


# What pip writes as the `pachhook` console script (setup.cfg's entry point); the hooks run it.
CONSOLE_SCRIPT = """import sys
from pachhook.cli import main
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(main())
"""


def run(args: Sequence[str], cwd: Path, env: Dict[str, str]) -> None:
    done = subprocess.run(list(args), cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")


def make_repo(path: Path, env: Dict[str, str]) -> None:
    run(["git", "init", "-q", "-b", "main", str(path)], path.parent, env)
    for name in ("edges", "other"):
        (path / name).mkdir()
        (path / name / "pipeline.json").write_text(TEMPLATE % (name, name))
        (path / name / "Dockerfile").write_text("FROM scratch\nCOPY run.sh /run.sh\n")
        (path / name / "run.sh").write_text(f"echo {name}\n")
    (path / ".pachhook.toml").write_text('worker = "manual"\n')
    run(["git", "add", "-A"], path, env)
    run(["git", "reset", "-q", "--", "other/pipeline.json"], path, env)
    run(["git", "commit", "-qm", "first"], path, env)
    run(["git", "add", "other/pipeline.json"], path, env)  # stays staged: `validate --staged` reads it


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="bench_hooks.py")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", default="main")
    args = parser.parse_args(argv or None)
    python = sys.executable
    times: Dict[Tuple[str, str], Tuple[List[float], List[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as tmp:
        work = Path(tmp)
        script = work / "pachhook"  # the console script, as pip writes it
        script.write_text(CONSOLE_SCRIPT)
        pachhook = [python, "-S", str(script)]
        commands = {
            "python -S -c pass": [python, "-S", "-c", "pass"],
            "validate, 1 template": [*pachhook, "validate", "edges/pipeline.json"],
            "validate --staged, 1 template staged": [*pachhook, "validate", "--staged"],
            # post-commit runs `pachhook queue` with no arguments; the worker is manual here
            "queue, a pipeline's code changed": [*pachhook, "queue"],
        }
        home = work / "home"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PYTHON"))}
        base.update({"HOME": str(home), "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"})
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(CHECKOUT), "archive", args.before, "pachhook"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        trees = {"before": before, "now": CHECKOUT}
        repos = {}
        for name in trees:
            repos[name] = work / f"repo-{name}"
            repos[name].mkdir()
            make_repo(repos[name], base)

        def once(tree: str, label: str, command: List[str], n: int) -> None:
            env = dict(base, PYTHONPATH=str(trees[tree]))
            repo = repos[tree]
            if label.startswith("queue"):
                (repo / "edges" / "run.sh").write_text(f"echo edges {n}\n")
                run(["git", "commit", "-qm", f"change {n}", "--", "edges/run.sh"], repo, env)
            before_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            run(command, repo, env)
            wall = (time.perf_counter() - start) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before_usage.ru_utime + after.ru_stime - before_usage.ru_stime) * 1000
            walls, cpus = times.setdefault((label, tree), ([], []))
            walls.append(wall)
            cpus.append(cpu)

        for tree in trees:  # untimed: bytecode written, the queue's caches filled
            for label, command in commands.items():
                once(tree, label, command, 0)
        times.clear()
        for n in range(1, args.runs + 1):
            for tree in list(trees) if n % 2 else list(reversed(list(trees))):
                for label, command in commands.items():
                    once(tree, label, command, n)
    print(f"{args.runs} runs each, alternating; before = {args.before}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| command | wall before | wall now | CPU before | CPU now |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label in commands:
        older, newer = times[(label, "before")], times[(label, "now")]
        print(
            f"| {label} | {statistics.median(older[0]):.0f} ms | {statistics.median(newer[0]):.0f} ms "
            f"| {statistics.median(older[1]):.0f} ms | {statistics.median(newer[1]):.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

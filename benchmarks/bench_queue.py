"""Time the post-commit path: `pachhook queue`, and `git commit` with pachhook's hooks.

    python benchmarks/bench_queue.py [--runs 15] [--skip-framework] [--keep]

Everything happens in a temporary folder: a virtual environment holding this checkout
installed the way users get it (a regular, non-editable install: an editable install
adds an import hook to every Python start), a demo repository with two pipelines, and
for the pre-commit framework a hook repository cloned from this checkout's HEAD (so
commit first) with its own PRE_COMMIT_HOME. Each figure is the median of --runs timed
runs after two untimed ones; every run that commits changes a pipeline's code, so
`pachhook queue` records a job each time (the worker mode is manual, so no worker runs).

The targets (docs/performance.md): `pachhook queue` <= 60 ms, `git commit` with the plain
post-commit hook <= 100 ms, and under the pre-commit framework pachhook's hooks add at
most 20 % to a commit with trivial hooks in the same stages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

CHECKOUT = Path(__file__).resolve().parent.parent

TEMPLATE = """{
  "pipeline": {"name": "%(name)s"},
  "transform": {"image": "registry.invalid/demo/%(name)s:{{ tag }}", "cmd": ["/bin/sh", "/run.sh"]},
  "input": {"pfs": {"repo": "images", "glob": "/*"}}
}
"""

FRAMEWORK_PACHHOOK = """repos:
- repo: %(clone)s
  rev: %(rev)s
  hooks:
  - id: pachhook-validate
  - id: pachhook-queue
"""

# A trivial hook repository for comparison: a Python package whose console script does
# nothing, with hooks in the same stages and with the same file filter as pachhook's, so the
# framework does the same work (clone, environment, manifest) for both.
TRIVIAL_MANIFEST = """- id: trivial-pre-commit
  name: trivial pre-commit stage hook
  entry: trivial-hook
  language: python
  files: '(^|/)(pipeline|[^/]+\\.pipeline)\\.(json|ya?ml)$'
  stages: [pre-commit]
- id: trivial-post-commit
  name: trivial post-commit stage hook
  entry: trivial-hook
  language: python
  always_run: true
  pass_filenames: false
  stages: [post-commit]
"""

TRIVIAL_SETUP = """[metadata]
name = trivial-hook
version = 1.0

[options]
py_modules = trivial_hook

[options.entry_points]
console_scripts =
    trivial-hook = trivial_hook:main
"""

FRAMEWORK_TRIVIAL = """repos:
- repo: %(clone)s
  rev: %(rev)s
  hooks:
  - id: trivial-pre-commit
  - id: trivial-post-commit
"""


class Bench:
    def __init__(self, base: Path, runs: int) -> None:
        self.base = base
        self.runs = runs
        home = base / "home"
        home.mkdir()
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Bench\n\temail = bench@example.invalid\n[init]\n\tdefaultBranch = main\n"
        )
        self.venv = base / "venv"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT", "VIRTUAL_ENV"))}
        self.env.update(
            {
                "HOME": str(home),
                "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "PRE_COMMIT_HOME": str(base / "pre-commit-home"),
            }
        )

    def run(self, args: Sequence[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            list(args), cwd=str(cwd), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def install(self) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        # --no-deps: the post-commit path needs none of them (JSON templates, no YAML).
        self.run(
            [str(self.venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(CHECKOUT)], self.base
        )

    def repo(self, name: str) -> Path:
        path = self.base / name
        self.run(["git", "init", "-q", "-b", "main", str(path)], self.base)
        (path / ".pachhook.toml").write_text('worker = "manual"\n')
        for pipeline in ("edges", "montage"):
            folder = path / pipeline
            folder.mkdir()
            (folder / "pipeline.json").write_text(TEMPLATE % {"name": pipeline})
            (folder / "Dockerfile").write_text("FROM scratch\nCOPY run.sh /run.sh\n")
            (folder / "run.sh").write_text(f"echo {pipeline}\n")
        self.run(["git", "add", "."], path)
        self.run(["git", "commit", "-q", "--no-verify", "-m", "first"], path)
        return path

    def median_ms(
        self, action: Callable[[int], Sequence[str]], cwd: Path, prepare: Optional[Callable[[int], None]] = None
    ) -> Tuple[float, float]:
        """Median wall-clock and CPU (user + system, the process and its children) times in ms.

        CPU time is reported too because the build machine is shared: under load the wall
        clock also counts time spent waiting for a CPU.
        """
        import resource

        times: List[float] = []
        cpu: List[float] = []
        for number in range(self.runs + 2):
            if prepare:
                prepare(number)
            command = action(number)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            self.run(command, cwd)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if number >= 2:
                times.append(elapsed * 1000)
                cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        return statistics.median(times), statistics.median(cpu)


def _median_pair_impl(
    bench: "Bench",
    actions: Dict[str, Callable[[int], Sequence[str]]],
    paths: Dict[str, Path],
    prepare: Callable[[Path, int], None],
) -> Dict[str, Tuple[float, float]]:
    import resource

    walls: Dict[str, List[float]] = {kind: [] for kind in actions}
    cpus: Dict[str, List[float]] = {kind: [] for kind in actions}
    for number in range(bench.runs + 2):
        for kind, action in actions.items():
            prepare(paths[kind], number)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            bench.run(action(number), paths[kind])
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if number >= 2:
                walls[kind].append(elapsed * 1000)
                cpus[kind].append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return {kind: (statistics.median(walls[kind]), statistics.median(cpus[kind])) for kind in actions}


Bench.median_pair = _median_pair_impl  # type: ignore[attr-defined]


def touch(path: Path) -> Callable[[int], None]:
    def change(number: int) -> None:
        (path / "edges" / "run.sh").write_text(f"echo edges {number} {time.time()}\n")

    return change


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per figure (default 15)")
    parser.add_argument("--skip-framework", action="store_true", help="leave out the pre-commit framework figures")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="pachhook-bench-"))
    results: Dict[str, Tuple[float, float]] = {}
    try:
        bench = Bench(base, args.runs)
        bench.install()
        python = str(bench.venv / "bin" / "python")
        pachhook = str(bench.venv / "bin" / "pachhook")

        results["python -c pass (interpreter start)"] = bench.median_ms(lambda n: [python, "-c", "pass"], base)

        repo = bench.repo("plain")
        bench.run([pachhook, "queue"], repo)  # fills the template cache

        def commit_then_time_queue(number: int) -> None:
            touch(repo)(number)
            bench.run(["git", "commit", "-q", "--no-verify", "-am", f"change {number}"], repo)

        results["pachhook queue, commit queues 1 job"] = bench.median_ms(
            lambda n: [pachhook, "queue"], repo, prepare=commit_then_time_queue
        )
        results["pachhook queue, commit touches no pipeline"] = bench.median_ms(lambda n: [pachhook, "queue"], repo)

        results["git commit, no hooks"] = bench.median_ms(
            lambda n: ["git", "commit", "-q", "-am", f"no hooks {n}"], repo, prepare=touch(repo)
        )
        bench.run([pachhook, "install"], repo)
        os.remove(repo / ".git" / "hooks" / "pre-commit")  # post-commit alone: the queue's cost
        results["git commit, plain post-commit hook"] = bench.median_ms(
            lambda n: ["git", "commit", "-q", "-am", f"plain hook {n}"], repo, prepare=touch(repo)
        )

        if not args.skip_framework:
            clone = base / "pachhook-clone"
            bench.run(["git", "clone", "-q", str(CHECKOUT), str(clone)], base)
            rev = bench.run(["git", "rev-parse", "HEAD"], clone).stdout.strip()
            trivial = base / "trivial-hook"
            trivial.mkdir()
            (trivial / ".pre-commit-hooks.yaml").write_text(TRIVIAL_MANIFEST)
            (trivial / "setup.cfg").write_text(TRIVIAL_SETUP)
            (trivial / "setup.py").write_text("from setuptools import setup\nsetup()\n")
            (trivial / "trivial_hook.py").write_text("def main():\n    return 0\n")
            bench.run(["git", "init", "-q", str(trivial)], base)
            bench.run(["git", "add", "."], trivial)
            bench.run(["git", "commit", "-q", "-m", "trivial hooks"], trivial)
            trivial_rev = bench.run(["git", "rev-parse", "HEAD"], trivial).stdout.strip()
            configs = {
                "trivial": FRAMEWORK_TRIVIAL % {"clone": trivial, "rev": trivial_rev},
                "pachhook": FRAMEWORK_PACHHOOK % {"clone": clone, "rev": rev},
            }
            # Two cases: a commit of code only (the post-commit stage is all that runs a hook),
            # and a commit staging a template (the pre-commit stage's hook runs too).
            for case, stages, stage_template in (
                ("post-commit stage", ["post-commit"], False),
                ("pre-commit + post-commit stages, template staged", ["pre-commit", "post-commit"], True),
            ):
                paths = {}
                for kind, config in configs.items():
                    path = paths[kind] = bench.repo(f"framework-{kind}-{len(stages)}")
                    (path / ".pre-commit-config.yaml").write_text(config)
                    bench.run(["git", "add", "."], path)
                    # The framework itself comes from the environment running this script.
                    install = [sys.executable, "-m", "pre_commit", "install"]
                    for stage in stages:
                        install += ["--hook-type", stage]
                    bench.run(install, path)
                    bench.run(["git", "commit", "-q", "-am", "warm the framework's environment"], path)

                def change(path: Path, number: int, stage_template: bool = stage_template) -> None:
                    if stage_template:
                        template = path / "edges" / "pipeline.json"
                        template.write_text(TEMPLATE % {"name": "edges"} + " " * (number % 7))
                    (path / "edges" / "run.sh").write_text(f"echo {number} {time.time()}\n")

                # The two kinds alternate run by run, so that a change in the machine's
                # load falls on both alike.
                pair = bench.median_pair(
                    {kind: (lambda n, kind=kind: ["git", "commit", "-q", "-am", f"{kind} {n}"]) for kind in paths},
                    paths,
                    change,
                )
                for kind, figures in pair.items():
                    results[f"framework, {case}: {kind} hooks"] = figures
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    width = max(len(name) for name in results)
    print(f"| {'measurement':<{width}} | wall median (ms) | CPU median (ms) |")
    print(f"| {'-' * width} | ---------------: | --------------: |")
    for name, (wall, cpu) in results.items():
        print(f"| {name:<{width}} | {wall:16.1f} | {cpu:15.1f} |")
    queue_ms = results["pachhook queue, commit queues 1 job"][0]
    commit_ms = results["git commit, plain post-commit hook"][0]
    print(f"\npachhook queue {queue_ms:.1f} ms (target <= 60): {'met' if queue_ms <= 60 else 'MISSED'}")
    print(
        f"git commit with the plain hook {commit_ms:.1f} ms (target <= 100): {'met' if commit_ms <= 100 else 'MISSED'}"
    )
    for case in ("post-commit stage", "pre-commit + post-commit stages, template staged"):
        trivial = results.get(f"framework, {case}: trivial hooks", (0.0,))[0]
        ours = results.get(f"framework, {case}: pachhook hooks", (0.0,))[0]
        if trivial and ours:
            added = (ours / trivial - 1) * 100
            print(
                f"pre-commit framework, {case}: pachhook's hooks add {added:.0f} % (target <= 20 %): "
                f"{'met' if added <= 20 else 'MISSED'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

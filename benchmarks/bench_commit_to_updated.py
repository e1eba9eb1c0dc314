"""From `git commit` to pipeline updated: pachhook against the hand script it replaces (issue 16).

    set -a; . /tmp/phk/env; set +a      # the services tests/services/up starts
    python benchmarks/bench_commit_to_updated.py [--runs N] [--cases code,template,shared,many]
        [--shared 10] [--images 20] [--parallel 4] [--json FILE]

Four cases, each a repository made twice (one per variant) and changed the same way every
run; the variants alternate run by run, so both see the same load; medians of --runs timed
runs (default 9 for the single-pipeline cases, 5 shared, 3 many) after one untimed run
(which fills the engine's cache and creates the pipelines):

- code:     one pipeline, one image; the commit changes the image's code;
- template: the same repository; the commit changes only the template (pachhook reuses the
            image it built; the hand script builds again, every layer from the cache);
- shared:   --shared pipelines (default 10) whose templates name one image; the commit
            changes that image's code;
- many:     --images pipelines (default 20), each with an image of its own; the commit
            changes every image's code.

The variants (--variants, default all three), timed as whole processes from the start of
`git commit` to the end of the delivery:

- pachhook: `git commit` with the plain hooks `pachhook install` writes (pre-commit
  `validate --staged`, post-commit `queue`), `worker = "manual"`, then `pachhook run
  --quiet`, which builds, pushes, updates, stamps and verifies as the background worker does
  (the background worker itself is not waited for here; its start costs the commit ~nothing);
- ci: `git commit` with no hooks, then `pachhook run --commit HEAD --quiet` (docs/ci.md):
  the commit's images built concurrently, a shared image once, the updates in one
  transaction;
- hand: `git commit` with no hooks, then a shell script: `docker build` and `docker push` of
  each image tagged with the commit's SHA (in the many case `xargs -P --parallel`, default
  4, builds and pushes at once), `sed` to put the tag into each template, and one `pachctl
  update pipeline -f` per pipeline; no stamp, no wait for the job the update started.

Both use the same Docker CLI (PACHHOOK_DOCKER_CLI, else `docker`, BuildKit on), the test
engine and open registry of tests/services (DOCKER_HOST and the registry from its env file)
and the pachctl TEST DOUBLE of tests/doubles (a Python script: every pachctl call costs a
Python start here, where the real pachctl is a Go binary), each variant with its own double
state. pachhook runs as an install (pip, pre-commit's hook environment) holds it: a copy
of this checkout's package with its bytecode compiled, in a fresh venv without this
checkout's editable-install finder, started through its `pachhook` console script as a
user or a hook starts it (not `python -m`, whose runpy a user does not pay). The Dockerfile is the same for
both: the offline base image and a COPY of the context. Every change holds the variant's
name and a fresh token, so neither variant's build is ever a cache hit of the other's.

Printed: a Markdown table of medians and ratios (each pachhook variant / hand), how long
`git commit` itself took (with the hooks for pachhook), when the last pipeline's new version
was stored (pachhook goes on to stamp and verify after it) and the ratio of those times
(pachhook / hand: "reaches pipeline updated"), and the pachctl calls each
variant made per run (counted from the double's calls.jsonl). Then the cluster double's
share apart, never instead of the raw ratio: after each variant's run, one call of the
double is timed (`version --client-only`, `inspect pipeline --raw`, on a copy of the hand
script's double state) and one start of a Go binary (`docker --version`, the Docker CLI
being a Go program as pachctl is). The double writes when its own work began and ended
(timeline.jsonl); an `inspect` call's whole time minus that part is its Python start. Each
run's "own time" is its time minus the wall time its calls covered, each call counted from
its process start to its end and calls made at once (pachhook overlaps some) counted once;
the second table gives the ratio of the medians of own time (pachhook's own time / the
hand script's own time, excluding the double's cost), and the same with the calls put back
starting as a Go binary does: an estimate for a real pachctl's process starts, with pachd's
work and the RPC behind each call not modelled. --json writes the raw timings and samples
too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

CHECKOUT = Path(__file__).resolve().parents[1]
DOUBLES = CHECKOUT / "tests" / "doubles"
sys.path.insert(0, str(CHECKOUT / "tests"))

CASES = ("code", "template", "shared", "many")
# pachhook: the hooks queue, `pachhook run` drains (what the background worker does);
# ci: no hooks, `pachhook run --commit HEAD` (docs/ci.md); hand: the hand script.
VARIANTS = ("pachhook", "ci", "hand")
# Timed runs per case unless --runs says: the single-pipeline cases are short and their
# runs spread widely on a shared machine, so they get the most; the default invocation
# takes about 5 minutes here (304 s at a load average of 1.5-3.5 on 2 cores).
DEFAULT_RUNS = {"code": 9, "template": 9, "shared": 5, "many": 3}


@dataclass
class Layout:
    """What a case's repository holds: pipelines, and the image (folder) each one uses."""

    pipelines: Dict[str, str]  # pipeline name -> image folder
    change: str  # "code" or "template"

    @property
    def folders(self) -> List[str]:
        return sorted(set(self.pipelines.values()))


def layout_of(case: str, shared: int, images: int) -> Layout:
    if case == "code":
        return Layout({"edges": "edges"}, "code")
    if case == "template":
        return Layout({"edges": "edges"}, "template")
    if case == "shared":
        return Layout({f"stage{n:02d}": "shared" for n in range(shared)}, "code")
    if case == "many":
        return Layout({f"model{n:02d}": f"model{n:02d}" for n in range(images)}, "code")
    raise SystemExit(f"unknown case {case!r} (known: {', '.join(CASES)})")


@dataclass
class Variant:
    """One variant's repository, pachctl double state and environment for one case."""

    name: str
    repo: Path
    state: Path
    env: Dict[str, str]
    image_prefix: str
    times: List[float] = field(default_factory=list)
    applied: List[float] = field(default_factory=list)  # seconds to the last pipeline's new version
    committed: List[float] = field(default_factory=list)  # seconds `git commit` took (hooks and all)
    calls: List[int] = field(default_factory=list)
    # per timed run: each double call's [start, end] as the double timed its own work
    # (timeline.jsonl, wall clock), its interpreter's start not included
    call_spans: List[List[Tuple[float, float]]] = field(default_factory=list)


def run(args: Sequence[str], cwd: Path, env: Dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        list(args), cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed ({done.returncode}) in {cwd}:\n{done.stdout}{done.stderr}")
    return done.stdout


def template_text(pipeline: str, image: str, run_note: str) -> str:
    spec = {
        "pipeline": {"name": pipeline},
        "description": f"{pipeline} ({run_note})",
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": {"image": image + ":{{ tag }}", "cmd": ["sh", "/app/run.sh"]},
    }
    return json.dumps(spec, indent=2) + "\n"


def template_path(layout: Layout, pipeline: str) -> str:
    folder = layout.pipelines[pipeline]
    # Pipelines sharing an image keep their templates in folders of their own.
    return f"{folder}/pipeline.json" if folder == pipeline else f"pipelines/{pipeline}/pipeline.json"


def hand_script(layout: Layout, variant: Variant, docker: str, parallel: int) -> str:
    """The script a user would keep next to the code: build, push, fill in the tag, update."""
    lines = [
        "#!/bin/sh",
        "# by hand: build and push each image tagged with the commit, then update each pipeline",
        "set -eu",
        "sha=$(git rev-parse HEAD)",
        f"docker={shlex.quote(docker)}",
        "build() {",
        f'  "$docker" build -q -t "{variant.image_prefix}/$1:$sha" "$1" >/dev/null',
        f'  "$docker" push -q "{variant.image_prefix}/$1:$sha" >/dev/null',
        "}",
    ]
    folders = layout.folders
    if len(folders) > 1:
        lines += [
            "export docker sha",
            f"printf '%s\\n' {' '.join(folders)} | xargs -P {parallel} -I{{}} sh -c "
            + shlex.quote(
                f'"$docker" build -q -t "{variant.image_prefix}/$1:$sha" "$1" >/dev/null'
                f' && "$docker" push -q "{variant.image_prefix}/$1:$sha" >/dev/null'
            )
            + " sh {}",
        ]
    else:
        lines.append(f"build {folders[0]}")
    for pipeline in layout.pipelines:
        path = template_path(layout, pipeline)
        lines += [
            f'sed "s/{{{{ tag }}}}/$sha/g" {path} > .spec-{pipeline}.json',
            f"pachctl update pipeline -f .spec-{pipeline}.json",
        ]
    return "\n".join(lines) + "\n"


def make_repo(layout: Layout, variant: Variant, base_image: str, docker: str, parallel: int) -> None:
    repo = variant.repo
    repo.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], repo, variant.env)
    ignore = [".spec-*.json"]
    for folder in layout.folders:
        (repo / folder).mkdir(parents=True, exist_ok=True)
        (repo / folder / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /app\n")
        (repo / folder / "run.sh").write_text(f"echo {folder} {variant.name} {uuid.uuid4().hex}\n")
    for pipeline, folder in layout.pipelines.items():
        path = repo / template_path(layout, pipeline)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template_text(pipeline, f"{variant.image_prefix}/{folder}", "first"))
    if variant.name != "hand":
        config = ['worker = "manual"']
        for folder in layout.folders:
            if folder not in layout.pipelines:  # a shared image: its own folder and Dockerfile
                config += [f'[images."{variant.image_prefix}/{folder}"]', f'context = "{folder}"']
                config += [f'dockerfile = "{folder}/Dockerfile"']
        (repo / ".pachhook.toml").write_text("\n".join(config) + "\n")
        if variant.name == "pachhook":
            run(["pachhook", "install"], repo, variant.env)
    else:
        (repo / "deliver.sh").write_text(hand_script(layout, variant, docker, parallel))
    (repo / ".gitignore").write_text("\n".join(ignore) + "\n")


def change(layout: Layout, variant: Variant, n: int) -> None:
    """The run's change: every image's code, or the templates only."""
    token = f"{variant.name} run {n} {uuid.uuid4().hex}"
    if layout.change == "code":
        for folder in layout.folders:
            (variant.repo / folder / "run.sh").write_text(f"echo {folder} {token}\n")
    else:
        for pipeline, folder in layout.pipelines.items():
            path = variant.repo / template_path(layout, pipeline)
            path.write_text(template_text(pipeline, f"{variant.image_prefix}/{folder}", token))


@dataclass
class Probe:
    """What one process start costs here, sampled between the variants' runs.

    The double is a Python script: a variant's share of time spent in it is about its call
    count times what one call costs, which is timed on a copy of the hand script's double
    state (so the variants' call counts stay theirs): `version --client-only` (a start and
    nothing else) and `inspect pipeline --raw` (a start and a read of the state, as most of
    pachhook's calls are). `docker --version` is a Go binary's start (the Docker CLI is
    written in Go, as pachctl is, and this asks no daemon): the stand-in for what the real
    pachctl's start costs; the RPC and pachd's work behind it are not modelled.
    """

    repo: Path
    env: Dict[str, str]
    pipeline: str
    docker: str
    version_ms: List[float] = field(default_factory=list)
    inspect_ms: List[float] = field(default_factory=list)
    go_start_ms: List[float] = field(default_factory=list)
    # an `inspect` call's whole time minus the part the double timed itself: the Python
    # start and imports before its work begins (and its exit after)
    start_ms: List[float] = field(default_factory=list)

    def sample(self) -> None:
        commands = (
            (self.version_ms, ["pachctl", "version", "--client-only"]),
            (self.inspect_ms, ["pachctl", "inspect", "pipeline", self.pipeline, "--raw"]),
            (self.go_start_ms, [self.docker, "--version"]),
        )
        for spent, command in commands:
            start = time.perf_counter()
            run(command, self.repo, self.env)
            spent.append((time.perf_counter() - start) * 1000)
        inner = call_spans(Path(self.env["PACHCTL_DOUBLE_DIR"]), 0.0)[-1]
        self.start_ms.append(max(0.0, self.inspect_ms[-1] - (inner[1] - inner[0]) * 1000))

    @property
    def call_ms(self) -> float:
        """The cost taken off per pachctl call: the median `inspect pipeline` of the double."""
        return statistics.median(self.inspect_ms)


def make_probe(hand: Variant, work: Path, docker: str) -> Probe:
    """A copy of the hand script's double state after its first delivery, for timing calls."""
    state = work / "probe-state"
    shutil.copytree(hand.state, state)
    env = dict(hand.env, PACHCTL_DOUBLE_DIR=str(state))
    pipeline = sorted((state / "pipelines").glob("*.json"))[0].stem
    return Probe(hand.repo, env, pipeline, docker)


def call_spans(state: Path, since: float) -> List[Tuple[float, float]]:
    """[start, end] of every double call that began after `since` (its timeline.jsonl)."""
    timeline = state / "timeline.jsonl"
    if not timeline.exists():
        return []
    spans = [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]
    return [(span["start"], span["end"]) for span in spans if span["start"] >= since]


def covered_ms(spans: Sequence[Tuple[float, float]], lead_ms: float) -> float:
    """Wall time (ms) during which at least one call ran, each call taken to begin `lead_ms`
    before the double's own start (its process start): calls made at once count once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((start - lead_ms / 1000, end) for start, end in spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total * 1000


def pachctl_calls(variant: Variant) -> int:
    calls = variant.state / "calls.jsonl"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def commit_and_deliver(variant: Variant, n: int) -> float:
    """Seconds from `git commit` to the end of the delivery, for one variant.

    Also records when the last pipeline's new version was stored (the double's record of
    it): pachhook goes on after that to stamp and verify, the hand script stops there.
    """
    repo, env = variant.repo, variant.env
    run(["git", "add", "-A"], repo, env)
    started_at = time.time()
    start = time.perf_counter()
    run(["git", "commit", "-q", "-m", f"change {n}"], repo, env)
    variant.committed.append(time.perf_counter() - start)
    if variant.name == "pachhook":
        run(["pachhook", "run", "--quiet"], repo, env)  # the console script, as a user types it
    elif variant.name == "ci":
        run(["pachhook", "run", "--commit", "HEAD", "--quiet"], repo, env)
    else:
        run(["sh", "deliver.sh"], repo, env)
    elapsed = time.perf_counter() - start
    variant.applied.append(last_applied(variant.state) - started_at)
    variant.call_spans.append(call_spans(variant.state, started_at))
    return elapsed


def last_applied(state: Path) -> float:
    """When the double stored the newest pipeline version (its `at`, protojson's UTC time)."""
    newest = 0.0
    for path in (state / "pipelines").glob("*.json"):
        at = json.loads(path.read_text())["history"][-1]["at"]
        moment = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        newest = max(newest, moment.timestamp())
    return newest


def check_delivered(layout: Layout, variant: Variant) -> None:
    """Every pipeline's live spec names the image tagged with HEAD (both variants, every run)."""
    head = run(["git", "rev-parse", "HEAD"], variant.repo, variant.env).strip()
    for pipeline, folder in layout.pipelines.items():
        record = json.loads((variant.state / "pipelines" / f"{pipeline}.json").read_text())
        image = record["spec"]["transform"]["image"]
        expected = f"{variant.image_prefix}/{folder}:{head}"
        if image != expected:
            raise SystemExit(f"{variant.name}: pipeline {pipeline} runs {image}, not {expected}")


def installed_copy(work: Path) -> Path:
    """This checkout's package as an install holds it, in an environment of its own; the
    environment's `bin` folder (its python and `pachhook` console script).

    pip compiles every module when it installs pachhook (pre-commit's hook environment, a
    CI job's `pip install`); run from the checkout with PYTHONDONTWRITEBYTECODE=1 (as on
    some machines), every pachhook process would compile its modules again, a cost no
    user pays (about 0.1 s per process here). And a development venv's editable install
    loads its import finder in every process (`site` runs its .pth file: ~20 ms here),
    which a regular install has no reason to: so the copy runs in a fresh venv whose
    site-packages holds only a .pth naming the copy and this interpreter's site-packages
    (for the packages pachhook imports). A folder a .pth names is put on sys.path, but its
    own .pth files are not run, so the editable finder stays out."""
    import sysconfig

    site = work / "site"
    shutil.copytree(CHECKOUT / "pachhook", site / "pachhook", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], check=True, stdin=subprocess.DEVNULL)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, stdin=subprocess.DEVNULL)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()
    Path(purelib, "pachhook-bench.pth").write_text(f"{site}\n{sysconfig.get_paths()['purelib']}\n")
    script = venv / "bin" / "pachhook"  # what pip writes for setup.cfg's console_scripts entry
    script.write_text(
        f"#!{python}\nimport sys\nfrom pachhook.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return venv / "bin"


def base_env(home: Path, services, bin_folder: Path) -> Dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "PRE_COMMIT", "PACHCTL_DOUBLE", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "DOCKER_HOST": services.docker_host,
            "DOCKER_BUILDKIT": "1",
            "DOCKER_CONFIG": str(home / ".docker"),
            # the hooks call `pachhook` by name: the installed copy's environment, then the
            # double (whose `python3` is that environment's too, for both variants)
            "PATH": os.pathsep.join([str(bin_folder), str(DOUBLES), os.environ.get("PATH", "")]),
        }
    )
    return env


def bench_case(
    case: str, args: argparse.Namespace, services, work: Path, docker: str, bin_folder: Path
) -> Dict[str, object]:
    layout = layout_of(case, args.shared, args.images)
    token = uuid.uuid4().hex[:8]
    variants: List[Variant] = []
    for name in args.variants:
        folder = work / case / name
        state = folder / "pachctl-state"
        state.mkdir(parents=True)
        env = base_env(folder / "home", services, bin_folder)
        env["PACHCTL_DOUBLE_DIR"] = str(state)
        prefix = f"{services.registry}/bench-c2u-{token}/{name}"
        variants.append(Variant(name, folder / "repo", state, env, prefix))
    for variant in variants:
        make_repo(layout, variant, services.base_image, docker, args.parallel)
        commit_and_deliver(variant, 0)  # untimed: the pipelines exist, the cache is warm
        check_delivered(layout, variant)
    probe = make_probe(next(v for v in variants if v.name == "hand"), work / case, docker)
    runs = args.runs or DEFAULT_RUNS[case]
    for n in range(1, runs + 1):
        order = variants if n % 2 else list(reversed(variants))
        for variant in order:
            change(layout, variant, n)
            before = pachctl_calls(variant)
            variant.times.append(commit_and_deliver(variant, n))
            variant.calls.append(pachctl_calls(variant) - before)
            check_delivered(layout, variant)
            probe.sample()  # between the variants, so the call cost sees the same load
        print(
            f"  {case} run {n}: "
            + ", ".join(f"{v.name} {v.times[-1] * 1000:.0f} ms ({v.calls[-1]} calls)" for v in variants)
            + f"; a double call {probe.inspect_ms[-1]:.0f} ms, a Go start {probe.go_start_ms[-1]:.0f} ms",
            file=sys.stderr,
            flush=True,
        )
    result: Dict[str, object] = {
        "case": case,
        "runs": runs,
        "pipelines": len(layout.pipelines),
        "images": len(layout.folders),
        "pachctl_version_ms": [round(t, 1) for t in probe.version_ms],
        "pachctl_inspect_ms": [round(t, 1) for t in probe.inspect_ms],
        "go_start_ms": [round(t, 1) for t in probe.go_start_ms],
        "pachctl_call_ms": probe.call_ms,
        "go_call_ms": statistics.median(probe.go_start_ms),
        "double_start_ms": [round(t, 1) for t in probe.start_ms],
    }
    lead = statistics.median(probe.start_ms)
    go_lead = statistics.median(probe.go_start_ms)
    for variant in variants:
        spans = variant.call_spans[1:]  # the untimed run left out
        result[variant.name] = {
            "ms": [round(t * 1000) for t in variant.times],
            "applied_ms": [round(t * 1000) for t in variant.applied[1:]],  # the untimed run left out
            "commit_ms": [round(t * 1000) for t in variant.committed[1:]],
            "calls": statistics.median(variant.calls),
            "calls_per_run": variant.calls,
            # each run's time without the wall time its double calls covered (calls made at
            # once counted once), then with those calls put back as Go binaries' starts plus
            # the double's own work (the RPC and pachd's work are not modelled)
            "own_ms": [round(t * 1000 - covered_ms(c, lead)) for t, c in zip(variant.times, spans)],
            "go_ms": [
                round(t * 1000 - covered_ms(c, lead) + covered_ms(c, go_lead)) for t, c in zip(variant.times, spans)
            ],
        }
    return result


DESCRIPTIONS = {
    "code": "code change, 1 pipeline",
    "template": "template-only change, 1 pipeline",
    "shared": "code change, {pipelines} pipelines sharing 1 image",
    "many": "code change, {images} images ({pipelines} pipelines)",
}


SHOWN = {"pachhook": "hooks + `pachhook run`", "ci": "`pachhook run --commit`"}


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.0f} ms ({min(values):.0f}-{max(values):.0f})"


def report(results: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    """Two tables: the raw times and ratio, then the same with the cluster double's share apart."""
    lines = [
        "Variants alternating run by run; medians (min-max); pachctl calls per run (median).",
        "",
        "| case | pachhook as | pachhook | hand script | pachhook / hand | `git commit` (pachhook / hand) "
        "| last update applied (pachhook / hand) | to the update applied, pachhook / hand "
        "| pachctl calls (pachhook / hand) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        name = (
            DESCRIPTIONS[str(result["case"])].format(**result)
            + f" ({result['runs']} run{'s' if result['runs'] != 1 else ''})"
        )
        hand = result["hand"]
        for variant in [v for v in args.variants if v != "hand"]:
            ours = result[variant]
            mine, theirs = statistics.median(ours["ms"]), statistics.median(hand["ms"])
            applied, applied_by_hand = statistics.median(ours["applied_ms"]), statistics.median(hand["applied_ms"])
            lines.append(
                f"| {name} | {SHOWN[variant]} | {spread(ours['ms'])} | {spread(hand['ms'])} "
                f"| **{mine / theirs:.2f}x** "
                f"| {statistics.median(ours['commit_ms']):.0f} / {statistics.median(hand['commit_ms']):.0f} ms "
                f"| {applied:.0f} / {applied_by_hand:.0f} ms | {applied / applied_by_hand:.2f}x "
                f"| {ours['calls']:g} / {hand['calls']:g} |"
            )
    lines += [
        "",
        "The cluster double's share apart: one call of the pachctl double (a Python start), timed"
        " between the runs, median (min-max): "
        + "; ".join(
            f"{r['case']}: `version --client-only` {spread(r['pachctl_version_ms'])}, "
            f"`inspect pipeline` {spread(r['pachctl_inspect_ms'])}, "
            f"a Go start (`docker --version`) {spread(r['go_start_ms'])}"
            for r in results
        )
        + "; the double's Python start (an `inspect` call's whole time minus the part it times"
        " itself) "
        + "; ".join(f"{r['case']} {spread(r['double_start_ms'])}" for r in results)
        + ". Own time = each run's time minus the wall time its pachctl calls covered, each call"
        " from its process start (the double's start before its own timeline) to its end, calls"
        ' made at once counted once; "Go start" puts the calls back with a Go start instead of'
        " the double's (pachd's work and the RPC are not modelled).",
        "",
        "| case | pachhook as | pachhook / hand (raw) | own time, excluding the double's calls (pachhook / hand) "
        "| pachhook / hand, excluding the double | with a Go start per call instead |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        name = DESCRIPTIONS[str(result["case"])].format(**result)
        hand = result["hand"]
        for variant in [v for v in args.variants if v != "hand"]:
            ours = result[variant]
            raw = statistics.median(ours["ms"]) / statistics.median(hand["ms"])
            own = statistics.median(ours["own_ms"]) / statistics.median(hand["own_ms"])
            go = statistics.median(ours["go_ms"]) / statistics.median(hand["go_ms"])
            lines.append(
                f"| {name} | {SHOWN[variant]} | {raw:.2f}x "
                f"| {statistics.median(ours['own_ms']):.0f} / {statistics.median(hand['own_ms']):.0f} ms "
                f"| **{own:.2f}x** | {go:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_commit_to_updated.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        help="timed runs per case (default: "
        + ", ".join(f"{case} {runs}" for case, runs in DEFAULT_RUNS.items())
        + ")",
    )
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--shared", type=int, default=10, help="pipelines sharing one image (case shared)")
    parser.add_argument("--images", type=int, default=20, help="images changed in one commit (case many)")
    parser.add_argument("--parallel", type=int, default=4, help="builds at once in the hand script (case many)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw timings as JSON")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, hand among them: " + ", ".join(VARIANTS)
    )
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    if "hand" not in args.variants or not set(args.variants) <= set(VARIANTS) or len(args.variants) < 2:
        parser.error(f"--variants: hand and at least one of {', '.join(VARIANTS[:-1])}")

    import services as test_services

    found, reason = test_services.load_services()
    if found is None:
        print(f"bench_commit_to_updated: {reason} (run tests/services/up)", file=sys.stderr)
        return 2
    docker = shutil.which(os.environ.get("PACHHOOK_DOCKER_CLI") or "docker")
    if docker is None:
        print("bench_commit_to_updated: no docker CLI (set PACHHOOK_DOCKER_CLI)", file=sys.stderr)
        return 2
    os.environ["PACHHOOK_DOCKER_CLI"] = docker
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-c2u-") as tmp:
        bin_folder = installed_copy(Path(tmp))
        for case in [name.strip() for name in args.cases.split(",") if name.strip()]:
            results.append(bench_case(case, args, found, Path(tmp), docker, bin_folder))
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whole-process timing: `pachhook validate` against `check-jsonschema` on the same files.

    python benchmarks/bench_validate.py [--runs 10]

Two cases: one template (examples/edges/pipeline.json), and 500 templates in one call
(generated into a temporary folder, half JSON, half YAML). The two commands run
alternately, so both see the same machine load; the medians and their ratio are printed
as a Markdown table for docs/performance.md. check-jsonschema checks the upstream
Pachyderm schema only (`../shared/corpus/upstream-schema/`); pachhook checks its own
schema plus the semantic rules, YAML 1.2 parsing, duplicate keys and placeholders.
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
from typing import Dict, List, Sequence

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_SCHEMA = REPO.parent / "shared" / "corpus" / "upstream-schema" / "CreatePipelineRequest.schema.json"
ONE_TEMPLATE = REPO / "examples" / "edges" / "pipeline.json"

JSON_TEMPLATE = """{{
  "pipeline": {{"name": "edges-{n}"}},
  "description": "generated template {n}",
  "transform": {{
    "image": "registry.example.com/team/edges-{n}:{{{{ tag }}}}",
    "cmd": ["python3", "/edges.py", "--level", "{n}"],
    "env": {{"SOURCE_COMMIT": "{{{{ commit }}}}"}}
  }},
  "input": {{
    "cross": [
      {{"pfs": {{"repo": "images", "glob": "/*"}}}},
      {{"pfs": {{"repo": "params-{n}", "glob": "/"}}}}
    ]
  }},
  "parallelismSpec": {{"constant": 2}},
  "resourceRequests": {{"cpu": 0.5, "memory": "256Mi"}},
  "datumTries": 3
}}
"""

YAML_TEMPLATE = """pipeline:
  name: montage-{n}
description: generated template {n}
transform:
  image: "registry.example.com/team/montage-{n}:{{{{ tag }}}}"
  cmd: [sh, -c, "montage /pfs/edges-{n}"]
  env:
    SOURCE_BRANCH: "{{{{ branch }}}}"
input:
  pfs:
    repo: edges-{n}
    glob: /
parallelismSpec:
  constant: 1
datumTimeout: 600s
"""


def _tool(name: str) -> List[str]:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"bench_validate: {name} is not installed (pip install -e '.[test]')")
    return [found]


def generate(folder: Path, count: int) -> List[Path]:
    paths = []
    for n in range(count):
        if n % 2:
            path = folder / f"t{n:03d}" / "montage.pipeline.yaml"
            text = YAML_TEMPLATE.format(n=n)
        else:
            path = folder / f"t{n:03d}" / "pipeline.json"
            text = JSON_TEMPLATE.format(n=n)
        path.parent.mkdir(parents=True)
        path.write_text(text)
        paths.append(path)
    return paths


# An installed package has its bytecode compiled by pip; this checkout is an editable
# install, so let Python cache bytecode (the untimed warm-up run writes it) instead of
# compiling every module on every run as PYTHONDONTWRITEBYTECODE=1 would make it do.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def time_once(command: Sequence[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bench_validate: {command[0]} failed:\n{result.stdout[-2000:]}")
    return elapsed


def compare(label: str, files: List[Path], runs: int) -> Dict[str, object]:
    names = [str(path) for path in files]
    pachhook = _tool("pachhook") + ["validate", *names]
    checker = _tool("check-jsonschema") + ["--schemafile", str(UPSTREAM_SCHEMA), *names]
    ours: List[float] = []
    theirs: List[float] = []
    time_once(pachhook)  # warm the page cache for both, untimed
    time_once(checker)
    for _ in range(runs):
        ours.append(time_once(pachhook))
        theirs.append(time_once(checker))
    mine, other = statistics.median(ours), statistics.median(theirs)
    return {"case": label, "pachhook": mine, "check-jsonschema": other, "ratio": mine / other}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (default 10)")
    parser.add_argument("--count", type=int, default=500, help="templates in the many-files case")
    args = parser.parse_args(argv)
    if not UPSTREAM_SCHEMA.exists():
        print(
            f"bench_validate: {UPSTREAM_SCHEMA} is missing (the shared corpus is not beside this checkout)",
            file=sys.stderr,
        )
        return 2
    rows = [compare("1 template", [ONE_TEMPLATE], args.runs)]
    with tempfile.TemporaryDirectory() as folder:
        rows.append(compare(f"{args.count} templates, one call", generate(Path(folder), args.count), args.runs))
    print(f"medians of {args.runs} alternating runs; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs\n")
    print("| case | pachhook validate | check-jsonschema | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['case']} | {row['pachhook'] * 1000:.0f} ms | {row['check-jsonschema'] * 1000:.0f} ms"
            f" | {row['ratio']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

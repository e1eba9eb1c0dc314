"""The commit-to-updated benchmark runs (two images, one timed run, the CI variant against the
hand script): the benchmark itself is run by hand, not here.

benchmarks/bench_commit_to_updated.py times pachhook against a hand script of `docker build`,
`docker push` and `pachctl update pipeline`; this only checks that both variants still deliver
every pipeline (the benchmark checks each run's live specs itself) and that it reports them:
the raw ratio, and beside it the ratio without the pachctl double's share.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_commit_to_updated.py"


@pytest.mark.integration
def test_the_commit_to_updated_benchmark_runs(services, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(BENCHMARK.parents[1]))
    env.setdefault("PACHHOOK_DOCKER_CLI", "docker")
    out = tmp_path / "timings.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "--runs",
            "1",
            "--cases",
            "many",
            "--variants",
            "ci,hand",
            "--images",
            "2",
            "--json",
            str(out),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tables = [block.splitlines() for block in done.stdout.split("\n\n") if block.startswith("| case |")]
    assert len(tables) == 2, done.stdout  # the raw times, then with the double's share apart
    raw_rows, apart_rows = (table[2:] for table in tables)
    assert [row.split(" | ")[:2] for row in raw_rows] == [
        ["| code change, 2 images (2 pipelines) (1 run)", "`pachhook run --commit`"]
    ]
    assert [row.split(" | ")[:2] for row in apart_rows] == [
        ["| code change, 2 images (2 pipelines)", "`pachhook run --commit`"]
    ]
    for row in raw_rows + apart_rows:
        assert re.search(r"\*\*\d+\.\d\dx\*\*", row), row
    assert re.search(r"`inspect pipeline` \d+ ms \(\d+-\d+\)", done.stdout), done.stdout
    assert out.exists()

"""The runnable shell blocks of docs/*.md and README.md run, and do what the page says.

A ```sh block is runnable when the line before its fence is the HTML comment

    <!-- pachhook-docs: run -->

(invisible on the rendered page; docs/index.md says so for writers). The runnable blocks of
one page run in page order in one scratch repository, each with `bash -e -o pipefail`, and
each must exit 0. A ```text block after a run block whose fence is preceded by

    <!-- pachhook-docs: output -->

is what that run block prints: each of its lines must appear in the output, in that order;
`…` in a line stands for any text (a SHA, a time, a path).

The scratch repository is what a reader has: a copy of examples/ (two pipelines), committed
once, with `.venv` pointing at the environment running these tests. pachhook and pre-commit
come from that environment; HOME, PRE_COMMIT_HOME and pachctl's configuration are the
test's own; Docker is the test engine and registry (tests/services); the cluster is the
pachctl test double (tests/doubles), first on PATH, with a context as `pachctl connect` leaves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import pytest
from gitutil import git_env, with_pachctl_double
from test_docs import code_blocks

CHECKOUT = Path(__file__).resolve().parents[1]
PAGES = sorted((CHECKOUT / "docs").glob("*.md")) + [CHECKOUT / "README.md"]
BLOCK_TIMEOUT = 300  # seconds: a block that delivers builds and pushes an image
MARKS = ("", "run", "output", "template", "invalid-template", "config", "not-parsed")


class Runnable(NamedTuple):
    line: int
    script: str
    output: Optional[str]  # the marked text block that follows, if any


def runnable(page: Path) -> List[Runnable]:
    found: List[Runnable] = []
    for block in code_blocks([page]):
        if block.mark == "run":
            assert block.lang == "sh", f"{page.name}:{block.line}: only ```sh blocks can be marked run"
            found.append(Runnable(block.line, block.text, None))
        elif block.mark == "output":
            assert found and found[-1].output is None, f"{page.name}:{block.line}: output follows no run block"
            found[-1] = found[-1]._replace(output=block.text)
    return found


def expected_in(expected: str, actual: str) -> Optional[str]:
    """The first expected line not found (in order) in actual, None when all are."""
    lines = actual.splitlines()
    position = 0
    for wanted in (line.rstrip() for line in expected.splitlines()):
        if not wanted.strip():
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in wanted.split("…")) + r"\s*$")
        while position < len(lines) and not pattern.match(lines[position].rstrip()):
            position += 1
        if position == len(lines):
            return wanted
        position += 1
    return None


PAGES_WITH_BLOCKS = [page for page in PAGES if runnable(page)]


def test_the_docs_have_runnable_blocks():
    # the marker is read: a typo in it would silently run nothing
    assert {page.name for page in PAGES_WITH_BLOCKS} >= {"getting-started.md", "README.md"}
    for block in code_blocks(PAGES):
        assert block.mark in MARKS, f"{block.file}:{block.line}: unknown mark {block.mark!r}"


def scratch_environment(root: Path, services) -> Dict[str, str]:
    env = git_env(root / "home")
    env = {k: v for k, v in env.items() if not k.startswith(("PACHHOOK_", "PACHCTL_", "VIRTUAL_ENV"))}
    env.update(
        GIT_AUTHOR_NAME="Docs Reader",
        GIT_AUTHOR_EMAIL="reader@example.invalid",
        GIT_COMMITTER_NAME="Docs Reader",
        GIT_COMMITTER_EMAIL="reader@example.invalid",
        PRE_COMMIT_HOME=str(root / "pre-commit-home"),
        PACH_CONFIG=str(root / "pachyderm" / "config.json"),
        DOCKER_HOST=services.docker_host,
        DOCKER_CONFIG=str(root / "docker-config"),
        NO_COLOR="1",
        TMPDIR=str(root / "tmp"),
    )
    env.pop("PACH_CONTEXT", None)
    for key in ("PACHHOOK_DOCKER_CLI",):  # the CLI the test services build with, as the suite does
        if os.environ.get(key):
            env[key] = os.environ[key]
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env = with_pachctl_double(env, root)
    for folder in ("pachd", "docker-config", "tmp", "pachyderm"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    # what `pachctl connect` leaves: one context, active
    (root / "pachyderm" / "config.json").write_text(
        json.dumps(
            {
                "user_id": "docs",
                "v2": {
                    "active_context": "local",
                    "contexts": {"local": {"pachd_address": "grpc://localhost:30650"}},
                },
            }
        )
    )
    return env


def scratch_repository(root: Path, env: Dict[str, str]) -> Path:
    project = root / "project"
    shutil.copytree(CHECKOUT / "examples", project)
    (project / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (project / ".gitignore").write_text(".venv\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "pipelines"]):
        subprocess.run(["git", *args], cwd=project, env=env, check=True, capture_output=True, timeout=60)
    return project


@pytest.mark.integration
@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=[page.name for page in PAGES_WITH_BLOCKS])
def test_runnable_blocks_succeed(page: Path, tmp_path: Path, services):
    env = scratch_environment(tmp_path, services)
    project = scratch_repository(tmp_path, env)
    for block in runnable(page):
        where = f"{page.relative_to(CHECKOUT)}:{block.line}"
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.script],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
        shown = f"{where}\n$ {block.script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        assert done.returncode == 0, shown
        if block.output is not None:
            missing = expected_in(block.output, done.stdout + done.stderr)
            assert missing is None, f"{where}: the page shows {missing!r}, which the block did not print\n{shown}"


def test_shown_output_is_checked_line_by_line_in_order():
    printed = "ok    docker: engine 20.10 at unix:///x\nwarn  other\nok    queue: empty\n"
    assert expected_in("ok    docker: engine … at unix:///…\nok    queue: empty\n", printed) is None
    assert expected_in("ok    queue: empty\nok    docker: engine …\n", printed) == "ok    docker: engine …"
    assert expected_in("ok    pachctl: …\n", printed) == "ok    pachctl: …"

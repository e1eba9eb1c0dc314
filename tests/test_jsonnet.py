"""Jsonnet pipeline templates: rendered locally with gojsonnet, validated, delivered as JSON.

Templates are written for the purpose: ones emitting several pipelines, ones taking the
commit's top-level arguments, ones with errors in the Jsonnet itself. Delivery is checked
against the pachctl TEST DOUBLE (tests/doubles/pachctl).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pachhook.deliver.steps.base import run_step
from pachhook.queue.affected import parse_template
from pachhook.queue.jobs import STEP_NAMES, Job, StepRecord
from pachhook.spec import jsonnet
from pachhook.validate.checks import validate_bytes

pytest.importorskip("_gojsonnet", reason="gojsonnet (pachhook[jsonnet]) is not installed")

from test_update import DIGEST, IMAGE, calls, context, double, git, received  # noqa: E402,F401

CHECKOUT = Path(__file__).resolve().parent.parent

TWO_PIPELINES = """\
// edges reads images; montage reads edges. Both come from one template.
function(tag, branch)
[
  {
    pipeline: { name: 'edges' },
    description: 'built from ' + branch,
    input: { pfs: { repo: 'images', glob: '/*' } },
    transform: {
      cmd: ['python3', '/edges.py'],
      image: 'registry.example.com/team/edges:' + tag,
    },
  },
  {
    pipeline: { name: 'montage' },
    input: { pfs: { repo: 'edges', glob: '/' } },
    transform: {
      cmd: ['sh', '-c', 'montage'],
      image: 'dpokidov/imagemagick:7.1.0-23',
    },
  },
]
"""


def pachhook(cwd: Path, *args: str, env: dict = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(CHECKOUT))
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pachhook", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- validation


def test_a_template_emitting_two_valid_pipelines_passes(tmp_path):
    write(tmp_path / "dag.pipeline.jsonnet", TWO_PIPELINES)
    out = pachhook(tmp_path, "validate", "dag.pipeline.jsonnet")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""
    assert out.stderr.strip() == "pachhook: 0 errors, 0 warnings in 1 file"


def test_problems_of_each_emitted_spec_point_at_its_own_lines(tmp_path):
    text = TWO_PIPELINES.replace("glob: '/' }", "glob: '/' }, bogus: true").replace(
        "cmd: ['python3', '/edges.py'],", "cmd: ['python3', '/edges.py'],\n      stdin: 'x',"
    )
    write(tmp_path / "dag.pipeline.jsonnet", text)
    out = pachhook(tmp_path, "validate", "dag.pipeline.jsonnet")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    source = text.splitlines()
    stdin_line = next(n for n, line in enumerate(source, 1) if "stdin:" in line)
    bogus_line = next(n for n, line in enumerate(source, 1) if "bogus" in line)
    assert lines[0].startswith(f"dag.pipeline.jsonnet:{stdin_line}:7: error: ")
    assert "transform.stdin" in lines[0]
    assert lines[1].startswith(f"dag.pipeline.jsonnet:{bogus_line}:")
    assert "bogus" in lines[1]


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("{\n  pipeline: { name: 'x' }\n  transform: {},\n}\n", "3:3", "Jsonnet: Expected a comma before next field"),
        ("{\n  pipeline: error 'no name yet',\n}\n", "2:13", "Jsonnet: no name yet"),
        ("{\n  pipeline: { name: nme },\n}\n", "2:21", "Jsonnet: Unknown variable: nme"),
        (
            "local lib = import 'lib.libsonnet';\n{ pipeline: lib.p }\n",
            "1:13",
            "local import 'lib.libsonnet' refused: pachd renders the template on the cluster",
        ),
        (
            "local lib = importstr 'cmd.sh';\n{ pipeline: lib }\n",
            "1:13",
            "local import 'cmd.sh' refused",
        ),
        (
            "local k = import 'https://example.com/k.libsonnet';\n{ pipeline: k }\n",
            "1:11",
            "import 'https://example.com/k.libsonnet' is not fetched",
        ),
        ("'just a string'\n", "1:1", "a pipeline spec must be a mapping of fields (a JSON object), found a string"),
    ],
)
def test_errors_in_the_jsonnet_itself_are_one_line_with_a_position(tmp_path, text, where, message):
    write(tmp_path / "bad.pipeline.jsonnet", text)
    out = pachhook(tmp_path, "validate", "bad.pipeline.jsonnet")
    assert out.returncode == 1
    [line] = out.stdout.splitlines()
    assert line.startswith(f"bad.pipeline.jsonnet:{where}: error: "), line
    assert message in line
    assert "Traceback" not in out.stderr


def test_top_level_arguments_are_strings_and_only_the_declared_ones_are_passed(tmp_path):
    # `commit` is a string: `+ 1` would be a Jsonnet error for a number; unused args are not passed
    template = "function(commit) { pipeline: { name: 'p' }, description: commit + 1,"
    template += " transform: { image: 'busybox:1.37', cmd: ['true'] }, input: { pfs: { repo: 'r', glob: '/' } } }\n"
    problems = validate_bytes("p.pipeline.jsonnet", template.encode())
    assert problems == []
    rendered = jsonnet.evaluate("p.jsonnet", template, {"commit": "abc", "tag": "abc", "branch": "main"})
    assert rendered["description"] == "abc1"


def test_an_argument_without_value_names_the_configuration_key(tmp_path):
    write(tmp_path / "p.pipeline.jsonnet", "function(tag, team) { pipeline: { name: team } }\n")
    out = pachhook(tmp_path, "validate", "p.pipeline.jsonnet")
    assert out.returncode == 1
    [line] = out.stdout.splitlines()
    assert line.startswith("p.pipeline.jsonnet:1:1: error: Jsonnet: top-level argument 'team' has no value")
    assert "jsonnet_args" in line


def test_configured_jsonnet_args_reach_the_template(tmp_path):
    git(tmp_path, "init", "-q")
    write(tmp_path / ".pachhook.toml", 'jsonnet_args = { team = "vision", replicas = 2 }\n')
    template = (
        "function(tag, team, replicas) { pipeline: { name: team + '-edges' },"
        " parallelism_spec: { constant: std.parseInt(replicas) },"
        " transform: { image: 'busybox:1.37', cmd: ['true'] }, input: { pfs: { repo: 'r', glob: '/' } } }\n"
    )
    write(tmp_path / "p.pipeline.jsonnet", template)
    out = pachhook(tmp_path, "validate")
    assert out.returncode == 0, out.stdout + out.stderr
    parsed = parse_template(template.encode(), "p.pipeline.jsonnet", {"team": "vision", "replicas": "2"})
    assert parsed["specs"][0]["pipeline"] == "vision-edges"


def test_a_configured_argument_cannot_shadow_a_commit_value(tmp_path):
    from pachhook.core.config import ConfigError, load_config

    write(tmp_path / ".pachhook.toml", 'jsonnet_args = { tag = "latest" }\n')
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert "'tag' is set from the commit" in raised.value.problems[0]


def test_a_template_that_never_ends_is_stopped_at_the_deadline(tmp_path):
    # 10^10 additions in little memory: minutes of work, stopped after one second
    busy = "local n = std.range(1, 100000);\n"
    busy += "{ pipeline: { name: '' + std.foldl(function(a, i) a + std.foldl(function(b, j) b + j, n, 0), n, 0) } }\n"
    write(tmp_path / "busy.pipeline.jsonnet", busy)
    started = time.monotonic()
    out = pachhook(tmp_path, "validate", "busy.pipeline.jsonnet", env={"PACHHOOK_JSONNET_TIMEOUT": "1"})
    assert time.monotonic() - started < 30
    assert out.returncode == 1
    [line] = out.stdout.splitlines()
    assert line.startswith("busy.pipeline.jsonnet:1:1: error: Jsonnet: the template did not finish rendering within 1s")


def test_endless_recursion_is_the_engines_error():
    [problem] = validate_bytes("r.pipeline.jsonnet", b"local f(x) = f(x + 1) + 0;\n{ pipeline: { name: '' + f(0) } }\n")
    assert (problem.line, problem.message) == (1, "Jsonnet: max stack frames exceeded.")


def test_rendering_keeps_the_go_runtime_out_of_the_hook_process(tmp_path):
    write(tmp_path / "dag.pipeline.jsonnet", TWO_PIPELINES)
    code = (
        "import sys; from pachhook.validate.checks import validate_paths;"
        "assert validate_paths(['dag.pipeline.jsonnet']) == [];"
        "print('_gojsonnet' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(CHECKOUT)),
    )
    assert out.stdout.strip() == "False", out.stderr


def test_precommit_hook_definition_matches_jsonnet_templates():
    import re

    import yaml

    hooks = yaml.safe_load((CHECKOUT / ".pre-commit-hooks.yaml").read_text())
    validate = next(hook for hook in hooks if hook["id"] == "pachhook-validate")
    assert "jsonnet" in validate["types_or"]
    pattern = re.compile(validate["files"])
    assert pattern.search("pipelines/edges.pipeline.jsonnet")
    assert not pattern.search("lib/common.libsonnet")
    assert not pattern.search("lib/common.jsonnet")


# --------------------------------------------------------------------------- queue and delivery


def test_the_queue_reads_names_images_and_inputs_from_the_rendered_template():
    parsed = parse_template(TWO_PIPELINES.encode(), "dag.pipeline.jsonnet")
    assert parsed == {
        "specs": [
            {"pipeline": "edges", "image": IMAGE, "inputs": ["images"]},
            {"pipeline": "montage", "image": "", "inputs": ["edges"]},
        ],
        "spec_like": True,  # rendered from a .jsonnet template: judged a spec by its kind
    }
    broken = parse_template(b"{ pipeline: ", "x.pipeline.jsonnet")
    assert broken["error"].startswith("line 1: Jsonnet: ")


def test_delivery_applies_the_rendered_json_with_the_pushed_tag(tmp_path, double):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    write(repo / "edges" / "dag.pipeline.jsonnet", TWO_PIPELINES)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dag")
    sha = git(repo, "rev-parse", "HEAD")
    ctx = context(repo)
    ctx.job = Job(
        id=9,
        commit=sha,
        branch="main",
        pipeline="edges",
        template="edges/dag.pipeline.jsonnet",
        image=IMAGE,
        steps=[StepRecord(name) for name in STEP_NAMES],
    )
    result = run_step("update", ctx)
    assert result.outcome == "done"
    [spec] = received(double)
    assert spec["transform"]["image"] == f"{IMAGE}:{sha}"
    assert spec["description"] == "built from main"
    assert spec["metadata"]["annotations"] == {
        "pachhook.io/commit": sha,
        "pachhook.io/template": "edges/dag.pipeline.jsonnet",
        "pachhook.io/image-digest": DIGEST,
        "pachhook.io/environment": "default",
        "pachhook.io/context": "default",
    }

    out = pachhook(repo, "render", "edges/dag.pipeline.jsonnet", "--no-annotations")
    assert out.returncode == 0, out.stderr
    specs = json.loads(out.stdout)
    assert [item["pipeline"]["name"] for item in specs] == ["edges", "montage"]
    assert specs[0]["transform"]["image"] == f"{IMAGE}:{sha}"


def test_a_jsonnet_template_goes_through_the_queue_to_the_cluster(tmp_path):
    from gitutil import PACHCTL_DOUBLE, make_repo

    repo = make_repo(tmp_path, pipelines=())
    fixed = TWO_PIPELINES.replace("'registry.example.com/team/edges:' + tag", "'busybox:1.36'")
    repo.write("dag/dag.pipeline.jsonnet", fixed)
    sha = repo.commit("a Jsonnet DAG")
    state = tmp_path / "pachctl-state"
    state.mkdir()
    repo.env["PACHCTL_DOUBLE_DIR"] = str(state)
    repo.env["PATH"] = f"{PACHCTL_DOUBLE.parent}{os.pathsep}{repo.env['PATH']}"
    queued = repo.pachhook("queue", "--no-worker")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert f"queued {sha[:12]} for edges, montage" in queued.stdout + queued.stderr
    ran = repo.pachhook("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    specs = {p.stem: json.loads(p.read_text())["spec"] for p in (state / "pipelines").glob("*.json")}
    assert specs["edges"]["description"] == "built from main"
    assert specs["montage"]["metadata"]["annotations"]["pachhook.io/template"] == "dag/dag.pipeline.jsonnet"

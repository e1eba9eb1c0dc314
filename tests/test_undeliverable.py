"""What can never deliver is refused by `pachhook validate`, and warnings show under pre-commit.

Delivery pushes REPOSITORY:TAG (TAG the full commit SHA, or 7 characters with `tag = "short"`)
and applies the spec rendered with that tag; an image the template names otherwise is an
image that does not exist. Each case runs the command as the user does and reads its output.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from gitutil import EXAMPLES, examples_project, pachhook_module, run, terminal_env


@pytest.fixture
def env(tmp_path):
    return terminal_env(tmp_path)


def write_template(folder: Path, image: str) -> Path:
    spec = json.loads((EXAMPLES / "edges" / "pipeline.json").read_text())
    spec["transform"]["image"] = image
    # shell, docker, Go and Helm template syntax stay allowed
    spec["transform"]["cmd"] = ["sh", "-c", "echo ${TAG} {{.Names}} {{ .Values.tag }} {{ $tag }} {}"]
    path = folder / "pipeline.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def validate(folder: Path, env: dict) -> subprocess.CompletedProcess:
    return pachhook_module("validate", "pipeline.json", cwd=folder, env=env, timeout=60)


@pytest.mark.parametrize(
    "image, message",
    [
        (
            "reg.example.com/t/edges:{ tag }",
            "'{ tag }' is not a placeholder: write {{ tag }} (two braces on each side)",
        ),
        ("reg.example.com/t/edges:${TAG}", "'${TAG}' is not a placeholder: write {{ tag }}"),
        ("reg.example.com/t/edges:{{ tag}", "'{{ tag}' is not a placeholder: write {{ tag }}"),
        ("reg.example.com/t/edges:{commit}", "'{commit}' is not a placeholder: write {{ commit }}"),
        (
            "reg.example.com/{{ branch }}/edges:{{ tag }}",
            "placeholder {{ branch }} in the image repository: pachhook builds and pushes one repository per"
            " image, so placeholders go in the tag only (REPOSITORY:{{ tag }})",
        ),
        ("reg.example.com/t/edges-{{ branch }}", "placeholder {{ branch }} in the image repository"),
        (
            "reg.example.com/t/edges:{{ short_commit }}",
            "the tag '{{ short_commit }}' can never be deployed: pachhook pushes the image tagged with the full"
            ' commit SHA, so write the tag as {{ tag }} (tag = "short" in the configuration for 7-character tags)',
        ),
        ("reg.example.com/t/edges:v1-{{ tag }}", "the tag 'v1-{{ tag }}' can never be deployed"),
        ("reg.example.com/t/edges:{{ branch }}", "the tag '{{ branch }}' can never be deployed"),
    ],
)
def test_an_image_that_can_never_deliver_is_an_error(tmp_path, env, image, message):
    write_template(tmp_path, image)
    result = validate(tmp_path, env)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("pipeline.json:") and ": error: image " in line and line.endswith("(transform.image)")
    assert message in line
    assert "pachhook: 1 error, 0 warnings in 1 file" in result.stderr


@pytest.mark.parametrize(
    "where, value, path, message",
    [
        (("description",), "built at {{ commit }", "description", "'{{ commit }' is not a placeholder"),
        (("transform", "cmd"), ["sh", "-c", "echo {{ branch"], "transform.cmd[2]", "'{{ branch' is not"),
        (
            ("metadata", "annotations"),
            {"built-from": "{ short_commit }}"},
            "metadata.annotations.built-from",
            "'{ short_commit }}' is not a placeholder and would reach the cluster as written: write {{ short_commit }}",
        ),
        (("transform", "env"), {"VERSION": "v-{{ TAG}"}, "transform.env.VERSION", "write {{ tag }}"),
    ],
)
def test_a_malformed_placeholder_anywhere_in_a_template_is_an_error(tmp_path, env, where, value, path, message):
    """Outside the image too: the text would reach the cluster unfilled, so it never delivers."""
    template = write_template(tmp_path, "reg.example.com/t/edges:{{ tag }}")
    spec = json.loads(template.read_text())
    parent = spec
    for key in where[:-1]:
        parent = parent.setdefault(key, {})
    parent[where[-1]] = value
    template.write_text(json.dumps(spec, indent=2))
    result = validate(tmp_path, env)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("pipeline.json:") and ": error: " in line and line.endswith(f"({path})"), line
    assert message in line
    assert "pachhook: 1 error, 0 warnings in 1 file" in result.stderr


@pytest.mark.parametrize(
    "image", ["reg.example.com/t/edges:{{ tag }}", "reg.example.com/t/edges:{{ commit }}", "localhost:5000/e:{{tag}}"]
)
def test_the_tags_delivery_pushes_pass(tmp_path, env, image):
    write_template(tmp_path, image)
    result = validate(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_short_commit_is_the_tag_when_the_configuration_says_short(tmp_path, env):
    run(["git", "init", "-q"], tmp_path, env)
    write_template(tmp_path, "reg.example.com/t/edges:{{ short_commit }}")
    (tmp_path / ".pachhook.toml").write_text('tag = "short"\n')
    assert validate(tmp_path, env).returncode == 0
    write_template(tmp_path, "reg.example.com/t/edges:{{ commit }}")
    refused = validate(tmp_path, env)
    assert refused.returncode == 1
    assert "the tag '{{ commit }}' can never be deployed: pachhook pushes the image tagged with its first 7" in (
        refused.stdout
    )


def test_warnings_are_shown_by_the_framework_and_errors_refuse_the_commit(tmp_path, env):
    project = examples_project(tmp_path / "project", env)
    init = pachhook_module("init", cwd=project, env=env, timeout=120)
    assert init.returncode == 0, init.stdout + init.stderr
    template = project / "edges" / "pipeline.json"
    good = template.read_text()
    # A fixed image without a tag delivers, but deserves a warning the user sees.
    template.write_text(good.replace("localhost:5000/pachhook-demo/edges:{{ tag }}", "python"))
    run(["git", "add", "-A"], project, env)
    made = run(["git", "commit", "-m", "fixed image"], project, env, check=False, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    shown = made.stdout + made.stderr
    assert "validate Pachyderm pipeline templates" in shown and "Passed" in shown
    assert 'warning: image "python" has no tag' in shown

    template.write_text(good.replace("{{ tag }}", "{ tag }"))
    run(["git", "add", "-A"], project, env)
    refused = run(["git", "commit", "-m", "typo"], project, env, check=False, timeout=300)
    assert refused.returncode == 1
    assert "'{ tag }' is not a placeholder: write {{ tag }}" in refused.stdout + refused.stderr

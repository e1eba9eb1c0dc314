"""pachhook.spec.template: placeholders in string values, rendered on the parsed document."""

from __future__ import annotations

import copy

import pytest

from pachhook.spec.template import PLACEHOLDERS, image_to_build, render, sample_values

VALUES = {"commit": "a" * 40, "short_commit": "a" * 7, "tag": "v-" + "a" * 40, "branch": "feature/x"}


def test_placeholders_are_the_documented_four():
    assert PLACEHOLDERS == ("commit", "short_commit", "tag", "branch")
    assert set(sample_values()) == set(PLACEHOLDERS)


def test_sample_values_look_like_a_commit():
    values = sample_values()
    assert len(values["commit"]) == 40 and int(values["commit"], 16) >= 0
    assert values["commit"].startswith(values["short_commit"])
    assert values["tag"] == values["commit"]  # the default tag is the full SHA


@pytest.mark.parametrize("text", ["{{tag}}", "{{ tag }}", "{{  tag\t}}"])
def test_spaces_inside_braces_are_optional(text):
    rendered, problems = render({"image": f"repo:{text}"}, VALUES)
    assert problems == []
    assert rendered == {"image": "repo:v-" + "a" * 40}


def test_renders_string_leaves_everywhere_and_leaves_the_input_alone():
    template = {
        "pipeline": {"name": "edges"},
        "transform": {
            "image": "registry.example.com/team/edges:{{ tag }}",
            "cmd": ["sh", "-c", "echo {{ short_commit }} on {{branch}}"],
            "env": {"COMMIT": "{{ commit }}"},
        },
        "parallelismSpec": {"constant": 2},
        "s3Out": True,
    }
    original = copy.deepcopy(template)
    rendered, problems = render(template, VALUES)
    assert problems == []
    assert template == original
    assert rendered["transform"]["image"] == "registry.example.com/team/edges:v-" + "a" * 40
    assert rendered["transform"]["cmd"][2] == "echo aaaaaaa on feature/x"
    assert rendered["transform"]["env"] == {"COMMIT": "a" * 40}
    assert rendered["parallelismSpec"] == {"constant": 2} and rendered["s3Out"] is True


def test_a_value_cannot_change_the_structure():
    hostile = {"commit": '", "injected": "x', "short_commit": "}", "tag": "\n- x", "branch": "{{ tag }}"}
    rendered, problems = render({"a": "{{ commit }}", "b": ["{{ branch }}"]}, hostile)
    assert problems == []
    assert rendered == {"a": '", "injected": "x', "b": ["{{ tag }}"]}  # no second pass either


def test_keys_are_not_rendered():
    rendered, _ = render({"{{ tag }}": "x"}, VALUES)
    assert rendered == {"{{ tag }}": "x"}


def test_unknown_placeholder_names_itself_and_its_path():
    _, problems = render({"transform": {"cmd": ["echo", "{{ sha }}"]}}, VALUES)
    [problem] = problems
    assert problem.path == ("transform", "cmd", 1)
    assert problem.rule == "unknown-placeholder"
    assert "{{ sha }}" in problem.message and "{{ short_commit }}" in problem.message


def test_non_identifier_braces_are_plain_text():
    command = "docker ps --format '{{.Names}}'"
    rendered, problems = render({"cmd": [command]}, VALUES)
    assert problems == [] and rendered == {"cmd": [command]}


def test_missing_value_is_reported():
    _, problems = render({"image": "x:{{ tag }}"}, {"commit": "c"})
    assert [p.message for p in problems] == ["no value for placeholder {{ tag }}"]


def test_render_is_iterative_for_deep_values():
    deep = value = {}
    for _ in range(5000):
        value["a"] = {}
        value = value["a"]
    value["s"] = "{{ branch }}"
    rendered, problems = render(deep, VALUES)
    assert problems == []
    for _ in range(5000):
        rendered = rendered["a"]
    assert rendered == {"s": "feature/x"}


@pytest.mark.parametrize(
    "image, expected",
    [
        ("registry.example.com/team/edges:{{ tag }}", "registry.example.com/team/edges"),
        ("localhost:5000/pachhook-demo/edges:{{tag}}", "localhost:5000/pachhook-demo/edges"),
        ("edges:{{ short_commit }}", "edges"),
        ("localhost:5000/edges@sha256:{{ commit }}", "localhost:5000/edges"),
        ("localhost:5000/edges", None),
        ("ubuntu:22.04", None),
    ],
)
def test_image_to_build(image, expected):
    assert image_to_build({"transform": {"image": image}}) == expected


def test_image_to_build_without_image_or_with_placeholder_in_repository():
    assert image_to_build({"pipeline": {"name": "x"}}) is None
    assert image_to_build({"transform": {"cmd": ["x"]}}) is None
    assert image_to_build("not a spec") is None
    spec = {"transform": {"image": "registry/{{ branch }}-edges:{{ tag }}"}}
    assert image_to_build(spec) == "registry/{{ branch }}-edges"
    assert image_to_build(spec, {"branch": "main"}) == "registry/main-edges"

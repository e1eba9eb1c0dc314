"""pachhook.spec.loader: reading spec files as pachctl 2.x does, with positions, safely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pachhook.spec.loader import MAX_DEPTH, MAX_FILE_BYTES, load_bytes, load_path


def rules_of(loaded):
    return [item.rule for item in loaded.diagnostics]


def only_diagnostic(loaded):
    assert len(loaded.diagnostics) == 1, loaded.diagnostics
    return loaded.diagnostics[0]


# --------------------------------------------------------------------------- JSON


def test_json_spec_with_positions_of_keys_and_items():
    text = b'{\n  "pipeline": {"name": "edges"},\n  "transform": {\n    "cmd": ["sh", "-c"]\n  }\n}\n'
    loaded = load_bytes("p.json", text)
    assert loaded.diagnostics == []
    [document] = loaded.documents
    assert document.value == {"pipeline": {"name": "edges"}, "transform": {"cmd": ["sh", "-c"]}}
    assert document.index == 1
    assert document.locate(("pipeline", "name")) == (2, 16)
    assert document.locate(("transform", "cmd", 1)) == (4, 19)
    # a path that does not exist points at its closest existing parent
    assert document.locate(("transform", "image")) == (3, 3)
    assert document.locate(()) == (1, 1)


def test_json_documents_separated_by_dashes_and_their_lines():
    text = b'{"pipeline": {"name": "a"}}\n---\n\n{"pipeline": {"name": "b"}}\n'
    loaded = load_bytes("two.json", text)
    assert loaded.diagnostics == []
    assert [d.value["pipeline"]["name"] for d in loaded.documents] == ["a", "b"]
    assert [d.index for d in loaded.documents] == [1, 2]
    assert loaded.documents[1].locate(("pipeline",)) == (4, 2)


def test_top_level_list_is_several_specs():
    text = b'[\n {"pipeline": {"name": "a"}},\n {"pipeline": {"name": "b"}}\n]'
    loaded = load_bytes("list.json", text)
    assert [d.value["pipeline"]["name"] for d in loaded.documents] == ["a", "b"]
    assert loaded.documents[1].locate(("pipeline", "name")) == (3, 16)


def test_concatenated_json_objects_say_to_add_dashes():
    text = b'{"pipeline": {"name": "a"}}\n{"pipeline": {"name": "b"}}\n'
    loaded = load_bytes("stream.json", text)
    diagnostic = only_diagnostic(loaded)
    assert diagnostic.rule == "concatenated-json"
    assert (diagnostic.line, diagnostic.column) == (2, 1)
    assert "`---`" in diagnostic.message
    # both specs are still checked, so the user sees every problem at once
    assert len(loaded.documents) == 2


def test_json_duplicate_key_is_located_at_the_second_occurrence():
    text = b'{"pipeline": {"name": "a"},\n "transform": {"image": "x", "image": "y"}}'
    diagnostic = only_diagnostic(load_bytes("dup.json", text))
    assert diagnostic.rule == "duplicate-key"
    assert (diagnostic.line, diagnostic.column) == (2, 30)
    assert diagnostic.json_path == "transform.image"
    assert "first at 2:16" in diagnostic.message


def test_same_key_in_sibling_objects_is_not_a_duplicate():
    text = b'{"input": {"cross": [{"pfs": {"repo": "a"}}, {"pfs": {"repo": "b"}}]}}'
    assert load_bytes("ok.json", text).diagnostics == []


def test_json_syntax_error_has_line_and_column():
    text = b'{\n  "pipeline": {"name": "a"}\n  "transform": {}\n}'
    diagnostic = only_diagnostic(load_bytes("bad.json", text))
    assert diagnostic.rule == "syntax"
    assert (diagnostic.line, diagnostic.column) == (3, 3)
    assert diagnostic.message.startswith("invalid JSON: Expecting ','")


def test_json_with_comments_and_tabs_is_read_as_yaml_flow_like_pachctl():
    text = b'{\n\t"pipeline": {"name": "a",},  # trailing comma and a comment\n}'
    loaded = load_bytes("lenient.json", text)
    assert loaded.diagnostics == []
    assert loaded.documents[0].value == {"pipeline": {"name": "a"}}


def test_tabs_inside_strict_json_are_fine():
    loaded = load_bytes("tabs.json", b'{\n\t"pipeline":\t{"name": "a"}\n}')
    assert loaded.diagnostics == [] and len(loaded.documents) == 1


def test_json_file_does_not_import_yaml():
    code = (
        "import sys; from pachhook.spec.loader import load_bytes;"
        'r = load_bytes(\'a.json\', b\'{"pipeline": {"name": "a"}}\');'
        "assert r.documents and not r.diagnostics;"
        "print('yaml' in sys.modules)"
    )
    checkout = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=checkout)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- YAML


def test_yaml_spec_with_positions():
    text = b"pipeline:\n  name: edges\ntransform:\n  cmd:\n    - sh\n    - -c\n"
    [document] = load_bytes("p.yaml", text).documents
    assert document.value == {"pipeline": {"name": "edges"}, "transform": {"cmd": ["sh", "-c"]}}
    assert document.locate(("pipeline", "name")) == (2, 3)
    assert document.locate(("transform", "cmd", 1)) == (6, 7)


def test_yaml_multi_document_and_empty_documents():
    text = b"---\npipeline: {name: a}\n---\n---\npipeline: {name: b}\n---\n"
    loaded = load_bytes("multi.yaml", text)
    assert loaded.diagnostics == []
    assert [d.value["pipeline"]["name"] for d in loaded.documents] == ["a", "b"]
    assert loaded.documents[1].locate(("pipeline", "name")) == (5, 12)


def test_yaml_documents_after_a_json_document():
    text = b'{"pipeline": {"name": "a"}}\n---\npipeline:\n  name: b\n'
    loaded = load_bytes("mixed.yaml", text)
    assert [d.value["pipeline"]["name"] for d in loaded.documents] == ["a", "b"]
    assert loaded.documents[1].locate(("pipeline", "name")) == (4, 3)


@pytest.mark.parametrize(
    "scalar, expected",
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("'0755'", "0755"),
        ('"2021-01-01"', "2021-01-01"),
        ("3600s", "3600s"),
        ("512Mi", "512Mi"),
        ("!!str 12", "12"),
        ("!!int 12", 12),
        ("2021-01-01T10:00:00", "2021-01-01T10:00:00"),  # no zone: no yaml.v3 layout fits
        ("2021-01-01 10:00:00 +1", "2021-01-01 10:00:00 +1"),
        ("20210101", 20210101),
    ],
)
def test_yaml_scalars_follow_yaml_1_2_core(scalar, expected):
    loaded = load_bytes("s.yaml", f"pipeline:\n  name: a\nvalue: {scalar}\n".encode())
    assert loaded.diagnostics == []
    assert loaded.documents[0].value["value"] == expected
    assert type(loaded.documents[0].value["value"]) is type(expected)


@pytest.mark.parametrize(
    "scalar, rule, words",
    [
        ("0755", "yaml-scalar", "0755"),
        ("0x1F", "yaml-scalar", "0x1F"),
        ("1_000", "yaml-scalar", "1_000"),
        ("+1", "yaml-scalar", "+1"),
        ("2021-01-01", "yaml-scalar", "timestamp"),
        ("2021-01-01T10:00:00Z", "yaml-scalar", "timestamp"),
        ("2021-1-2t10:00:00.5+01:00", "yaml-scalar", "timestamp"),
        ("2021-01-01 10:00:00", "yaml-scalar", "timestamp"),
        (".inf", "yaml-scalar", ".inf"),
        ("!!binary aGk=", "yaml-tag", "binary"),
        ("!custom x", "yaml-tag", "custom"),
    ],
)
def test_yaml_scalars_pachctl_refuses(scalar, rule, words):
    diagnostic = only_diagnostic(load_bytes("s.yaml", f"pipeline:\n  name: a\nvalue: {scalar}\n".encode()))
    assert diagnostic.rule == rule
    assert (diagnostic.line, diagnostic.column) == (3, 8)
    assert words in diagnostic.message


def test_yaml_keys_stay_as_written():
    text = b"pipeline:\n  name: a\ntransform:\n  env:\n    on: x\n    0755: y\n    2021-01-01: z\n    1: w\n"
    loaded = load_bytes("keys.yaml", text)
    assert loaded.diagnostics == []
    assert loaded.documents[0].value["transform"]["env"] == {"on": "x", "0755": "y", "2021-01-01": "z", "1": "w"}


def test_yaml_anchor_is_refused_where_it_appears():
    text = b"pipeline:\n  name: a\nenv: &common {A: b}\nother: *common\n"
    diagnostic = only_diagnostic(load_bytes("a.yaml", text))
    assert diagnostic.rule == "yaml-alias"
    assert (diagnostic.line, diagnostic.column) == (3, 6)


def test_yaml_duplicate_key():
    diagnostic = only_diagnostic(load_bytes("d.yaml", b"pipeline:\n  name: a\n  name: b\n"))
    assert diagnostic.rule == "duplicate-key"
    assert (diagnostic.line, diagnostic.column) == (3, 3)
    assert diagnostic.json_path == "pipeline.name"


def test_yaml_syntax_error_position():
    diagnostic = only_diagnostic(load_bytes("bad.yaml", b"pipeline:\n  name: a\n  - b\n"))
    assert diagnostic.rule == "syntax"
    assert diagnostic.line == 3
    assert diagnostic.message.startswith("invalid YAML:")


@pytest.mark.parametrize(
    "data",
    [
        b"pipeline:\n  name: a\ntransform:\n  image: {{ tag }}\n",
        b'{"pipeline": {"name": "a"},\n "datumTries": {{ n }}}',
    ],
)
def test_unquoted_placeholder_gets_advice(data):
    diagnostic = only_diagnostic(load_bytes("p", data))
    assert "placeholders only go in string values: quote it" in diagnostic.message
    assert diagnostic.line == data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def test_yaml_complex_key_is_refused():
    diagnostic = only_diagnostic(load_bytes("k.yaml", b"? [a, b]\n: c\n"))
    assert diagnostic.rule == "yaml-key"


# --------------------------------------------------------------------------- hostile input


def test_empty_and_comment_only_files_hold_no_spec():
    for data in (b"", b"   \n\n", b"# nothing here\n", b"---\n"):
        diagnostic = only_diagnostic(load_bytes("e.yaml", data))
        assert diagnostic.rule == "empty-file", data
        assert diagnostic.message == "file holds no pipeline spec"


def test_non_utf8_bytes_are_located():
    diagnostic = only_diagnostic(load_bytes("b.yaml", b"pipeline:\n  name: caf\xe9\n"))
    assert diagnostic.rule == "encoding"
    assert (diagnostic.line, diagnostic.column) == (2, 12)
    assert "UTF-8" in diagnostic.message


@pytest.mark.parametrize(
    "data, kind", [(b'"just text"', "a string"), (b"42", "a number"), (b"[1, 2]", "a number"), (b"- x\n", "a string")]
)
def test_top_level_scalars_are_not_specs(data, kind):
    loaded = load_bytes("s.yaml", data)
    assert loaded.documents == []
    assert set(rules_of(loaded)) == {"not-a-mapping"}
    assert kind in loaded.diagnostics[0].message


def test_alias_bomb_is_refused_at_the_first_anchor():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    diagnostic = only_diagnostic(load_bytes("bomb.yaml", "\n".join(lines).encode()))
    assert diagnostic.rule == "yaml-alias"
    assert (diagnostic.line, diagnostic.column) == (1, 5)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"- " * 100_000 + b"x\n",
        b"{a: " * 100_000 + b"1" + b"}" * 100_000,
    ],
)
def test_deep_nesting_is_refused(data):
    diagnostic = only_diagnostic(load_bytes("deep", data))
    assert diagnostic.rule == "too-deep"
    assert f"more than {MAX_DEPTH} levels" in diagnostic.message


def test_nesting_just_above_the_limit_is_refused_and_below_is_read():
    # the spec's own mapping is level 1, so MAX_DEPTH - 1 nested lists reach the limit
    inside = b'{"pipeline": {"name": "a"}, "x": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert (
        only_diagnostic(load_bytes("deep.json", inside.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1))).rule
        == "too-deep"
    )
    assert load_bytes("ok.json", inside).diagnostics == []


def test_huge_file_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "pipeline.json"
    with open(huge, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB of size, nothing written
    diagnostic = only_diagnostic(load_path(huge))
    assert diagnostic.rule == "file-too-large"
    assert "50.0 MB" in diagnostic.message and f"{MAX_FILE_BYTES // 1048576} MB limit" in diagnostic.message
    assert load_bytes("big", b" " * (MAX_FILE_BYTES + 1)).diagnostics[0].rule == "file-too-large"


def test_missing_file_and_directory(tmp_path):
    assert "cannot read file" in only_diagnostic(load_path(tmp_path / "nope.json")).message
    assert "is a directory" in only_diagnostic(load_path(tmp_path)).message


def test_tabs_inside_yaml_flow_collections_are_whitespace():
    import yaml

    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml refuses tabs in flow collections (documented)")
    text = b'pipeline: {\n\t"name": "a",\n\t"project":\t{"name": "p"}\n}\n'
    loaded = load_bytes("tabs.yaml", text)
    assert loaded.diagnostics == []
    assert loaded.documents[0].value == {"pipeline": {"name": "a", "project": {"name": "p"}}}
    assert loaded.documents[0].locate(("pipeline", "project")) == (3, 2)


def test_tab_indentation_is_refused_as_in_yaml_v3():
    diagnostic = only_diagnostic(load_bytes("tabs.yaml", b"pipeline:\n\tname: a\n"))
    assert diagnostic.rule == "syntax" and diagnostic.line == 2

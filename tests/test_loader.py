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
    assert loaded.documents[0].value == {"pipeline": {"name": "a"}}
    # pachctl takes it; JSON tools do not: a warning naming the line (issue 14)
    [warning] = loaded.diagnostics
    assert (warning.severity, warning.rule, warning.line) == ("warning", "not-strict-json", 2)
    assert "pachctl reads it as YAML" in warning.message and "JSON tools will not" in warning.message
    # the same text in a .yaml file is plain YAML flow: nothing to say
    assert load_bytes("lenient.yaml", text).diagnostics == []


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
    text = b"---\npipeline: {name: a}\n---\npipeline: {name: b}\n"
    loaded = load_bytes("multi.yaml", text)
    assert loaded.diagnostics == []
    assert [d.value["pipeline"]["name"] for d in loaded.documents] == ["a", "b"]
    assert loaded.documents[1].locate(("pipeline", "name")) == (4, 12)


@pytest.mark.parametrize(
    "name, text, line",
    [
        # yaml.v3 reads an empty document after a `---`; pachctl's SpecReader then fails
        # ("expected a mapping or a sequence") after it has applied the specs before it
        ("trailing.yaml", b"pipeline: {name: a}\n---\n", 2),
        ("comment.yaml", b"pipeline: {name: a}\n---\n# pipeline b comes later\n", 2),
        ("middle.yaml", b"pipeline: {name: a}\n---\n---\npipeline: {name: b}\n", 2),
        ("null.yaml", b"pipeline: {name: a}\n---\nnull\n", 2),
        ("trailing.json", b'{"pipeline": {"name": "a"}}\n---\n', 2),
        ("comment.json", b'{"pipeline": {"name": "a"}}\n---\n# later\n', 2),
    ],
)
def test_an_empty_document_is_an_error(name, text, line):
    loaded = load_bytes(name, text)
    [diagnostic] = loaded.diagnostics
    assert (diagnostic.rule, diagnostic.line) == ("empty-document", line)
    assert "pachctl 2.x fails on it after applying the specs before it" in diagnostic.message
    assert [d.value["pipeline"]["name"] for d in loaded.documents][:1] == ["a"]


def test_a_leading_dashes_line_is_no_empty_document():
    for name, text in (("a.yaml", b"---\npipeline: {name: a}\n"), ("a.json", b'---\n{"pipeline": {"name": "a"}}\n')):
        loaded = load_bytes(name, text)
        assert loaded.diagnostics == [] and len(loaded.documents) == 1, name


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
    for data in (b"", b"   \n\n", b"# nothing here\n"):
        diagnostic = only_diagnostic(load_bytes("e.yaml", data))
        assert diagnostic.rule == "empty-file", data
        assert diagnostic.message == "file holds no pipeline spec"
    # an explicit document with nothing in it is what pachctl fails on
    assert only_diagnostic(load_bytes("e.yaml", b"---\n")).rule == "empty-document"


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


# --------------------------------------------------------------------------- issue 14: as yaml.v3 reads


@pytest.mark.parametrize(
    "name, text, expected",
    [
        # yaml.v3's double-quoted scalars know no `\/` (JSON does); pachctl reads JSON as YAML
        ("slash.json", b'{"pipeline": {"name": "a"}, "description": "a\\/b"}', "does not know the escape \\/"),
        ("slash.yaml", b'pipeline: {name: a}\ndescription: "a\\/b"\n', "does not know the escape \\/"),
        # a surrogate pair is valid JSON for an emoji; yaml.v3 refuses each half
        ("pair.json", b'{"pipeline": {"name": "a"}, "description": "\\ud83d\\ude00"}', "write the character itself"),
        ("half.json", b'{"pipeline": {"name": "a"}, "description": "\\ud800"}', "half of a UTF-16 surrogate pair"),
    ],
)
def test_escapes_yaml_v3_refuses(name, text, expected):
    diagnostic = only_diagnostic(load_bytes(name, text))
    assert diagnostic.rule == "escape" and expected in diagnostic.message
    assert diagnostic.line == (2 if name.endswith(".yaml") else 1)


def test_escaped_backslashes_and_plain_slashes_are_fine():
    for name, text in (
        ("ok.json", b'{"pipeline": {"name": "a"}, "description": "a\\\\/b \\u00e9 \\ud7ff /"}'),
        ("ok.yaml", b"pipeline: {name: a}\ndescription: 'a\\/b'\nsalt: a\\/b\n"),
    ):
        loaded = load_bytes(name, text)
        assert loaded.diagnostics == [] and len(loaded.documents) == 1, name


def test_yaml_directive_other_than_1_1_is_refused_as_yaml_v3_does():
    diagnostic = only_diagnostic(load_bytes("d.yaml", b"%YAML 1.2\n---\npipeline: {name: a}\n"))
    assert diagnostic.rule == "yaml-directive" and "%YAML 1.2" in diagnostic.message
    loaded = load_bytes("d.yaml", b"%YAML 1.1\n---\npipeline: {name: a}\n")
    assert loaded.diagnostics == [] and len(loaded.documents) == 1


@pytest.mark.parametrize("text, suggestion", [("1.", "1.0"), ("+1.5", "1.5"), ("-.5", "-0.5"), ("01.5", "1.5")])
def test_yaml_floats_that_are_not_json_numbers_are_refused(text, suggestion):
    # pachctl's yamlToJSON passes a float's text on as a json.Number, which must be JSON
    diagnostic = only_diagnostic(load_bytes("f.yaml", f"pipeline: {{name: a}}\nx: {text}\n".encode()))
    assert diagnostic.rule == "yaml-scalar" and f"write {suggestion}" in diagnostic.message


def test_yaml_floats_that_are_json_numbers_are_read():
    loaded = load_bytes("f.yaml", b"pipeline: {name: a}\na: .5\nb: 1.5e3\nc: -2.25\nd: 1e400\n")
    assert loaded.diagnostics == []
    assert loaded.documents[0].value == {"pipeline": {"name": "a"}, "a": 0.5, "b": 1500.0, "c": -2.25, "d": "1e400"}


def test_keys_over_1024_characters_are_refused_in_json_as_in_yaml():
    key = "k" * 1100
    json_diagnostic = only_diagnostic(load_bytes("k.json", f'{{"pipeline": {{"name": "a"}}, "{key}": 1}}'.encode()))
    assert json_diagnostic.rule == "long-key" and "1024" in json_diagnostic.message
    assert load_bytes("k.yaml", f"pipeline: {{name: a}}\n{key}: 1\n".encode()).diagnostics[0].severity == "error"
    # 1000 characters are fine in both
    ok = "k" * 1000
    assert load_bytes("k.json", f'{{"pipeline": {{"name": "a"}}, "{ok}": 1}}'.encode()).diagnostics == []


def test_impossible_dates_stay_strings_as_in_yaml_v3():
    # yaml.v3 tags a scalar !!timestamp only when Go's time.Parse takes it
    loaded = load_bytes("t.yaml", b"pipeline: {name: a}\nsalt: 2024-02-30\ndescription: 2023-13-01\n")
    assert loaded.diagnostics == []
    assert loaded.documents[0].value["salt"] == "2024-02-30"
    assert only_diagnostic(load_bytes("t.yaml", b"pipeline: {name: a}\nsalt: 2024-02-29\n")).rule == "yaml-scalar"


def _many_pipelines(count: int, yaml_form: bool) -> bytes:
    specs = []
    for n in range(count):
        spec = {
            "pipeline": {"name": f"p{n}", "project": {"name": "team"}},
            "description": f"pipeline {n} of a large file",
            "transform": {"image": f"registry.example.com/p{n}:1.0", "cmd": ["python3", "/app.py", str(n)]},
            "input": {"cross": [{"pfs": {"repo": f"in{n}", "glob": "/*"}}, {"pfs": {"repo": "common", "glob": "/"}}]},
            "resourceRequests": {"cpu": 0.5, "memory": "256Mi"},
        }
        specs.append(spec)
    if yaml_form:
        import yaml

        return yaml.safe_dump_all(specs, explicit_start=True).encode()
    return ("\n---\n".join(__import__("json").dumps(spec) for spec in specs)).encode()


@pytest.mark.parametrize("yaml_form", [False, True])
def test_files_with_hundreds_of_pipelines_are_read(yaml_form):
    # the old cap of 10,000 values refused a 480-pipeline file pachctl reads (issue 14)
    data = _many_pipelines(480, yaml_form)
    loaded = load_bytes("many.yaml" if yaml_form else "many.json", data)
    assert loaded.diagnostics == []
    assert len(loaded.documents) == 480


def test_too_many_specs_is_refused_naming_the_limit():
    from pachhook.spec.loader import MAX_SPECS

    data = b"[" + b",".join([b"{}"] * (MAX_SPECS + 1)) + b"]"
    diagnostic = only_diagnostic(load_bytes("many.json", data))
    assert diagnostic.rule == "too-many-specs" and f"more than {MAX_SPECS} pipeline specs" in diagnostic.message


def test_every_rule_id_of_reading_and_rendering_is_documented():
    """Every rule id the loader, schema and template modules can print is in docs/spec-rules.md."""
    import re

    root = Path(__file__).resolve().parents[1]
    documented = set(re.findall(r"`([a-z0-9-]+)`", (root / "docs" / "spec-rules.md").read_text(encoding="utf-8")))
    emitted = set()
    for module in ("loader", "schema", "template"):
        source = (root / "pachhook" / "spec" / f"{module}.py").read_text(encoding="utf-8")
        # rule ids are the last argument of Diagnostic(...), Problem(...), _Refused(...) and report(...)
        emitted |= set(re.findall(r'(?:ERROR|WARNING|rule|path), "([a-z0-9]+(?:-[a-z0-9]+)*)"\)', source))
        emitted |= set(re.findall(r'(?:ERROR|WARNING),\s*[^,()]*,\s*"([a-z0-9-]+)",?\s*\)', source))
        emitted |= set(re.findall(r'_Refused\([^)]*?, "([a-z0-9-]+)"\)', source, re.DOTALL))
        # the last argument on a line of its own, before the closing parenthesis
        emitted |= set(re.findall(r'^\s*"([a-z0-9]+(?:-[a-z0-9]+)*)",?\s*\n\s*\)', source, re.MULTILINE))
    emitted -= {"rb", "exclusive"}  # a file mode and a slot name the patterns also catch
    assert {"empty-document", "escape", "long-key", "yaml-directive", "not-strict-json"} <= emitted
    assert emitted <= documented, sorted(emitted - documented)

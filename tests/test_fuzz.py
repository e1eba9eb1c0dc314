"""Hostile input against the spec loader, the validator and templates.

Two halves:
- hypothesis, in process: arbitrary bytes, odd encodings, mutated templates, random nesting,
  random values in both JSON and YAML form, random template values. The library must never
  raise; every problem it reports is one located line.
- the worst cases found (or feared), through `pachhook validate` as a separate process under
  an address-space limit and a timeout: each must end with exit status 1 and a diagnostic
  naming the file, no traceback, within the time and memory bounds.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pachhook.core.diagnostics import Diagnostic
from pachhook.spec import template
from pachhook.spec.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_SPECS, MAX_YAML_BYTES
from pachhook.validate import reporters as report
from pachhook.validate.checks import has_errors, validate_bytes

# Time and memory allowed to one `pachhook validate` of a worst-case file. Generous: CI shares
# two cores with everything else; the measured figures are in docs/reliability.md.
TIME_BOUND_S = 10.0
MEMORY_BOUND_MB = 512

# 200 examples per property in CI; PACHHOOK_FUZZ_EXAMPLES=5000 (say) for a longer hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("PACHHOOK_FUZZ_EXAMPLES", "200")),
    deadline=None,  # time is bounded by the subprocess cases below, not per example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

GOOD_SPEC: Dict[str, Any] = {
    "pipeline": {"name": "edges"},
    "description": "find edges",
    "transform": {
        "image": "registry.example.com/team/edges:{{ tag }}",
        "cmd": ["python3", "/edges.py"],
        "env": {"BRANCH": "{{ branch }}"},
    },
    "input": {"pfs": {"repo": "images", "glob": "/*"}},
    "parallelism_spec": {"constant": 2},
}
GOOD_JSON = json.dumps(GOOD_SPEC, indent=2).encode()
GOOD_YAML = b"""pipeline:
  name: edges
description: find edges
transform:
  image: "registry.example.com/team/edges:{{ tag }}"
  cmd: [python3, /edges.py]
  env:
    BRANCH: "{{ branch }}"
input:
  pfs:
    repo: images
    glob: /*
parallelism_spec:
  constant: 2
"""

_LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def assert_well_formed(diagnostics: List[Diagnostic], data: bytes, name: str = "fuzz.json") -> None:
    """What every result must look like, whatever the input: located, one line each."""
    assert isinstance(diagnostics, list)
    text = data.decode("utf-8", "replace")
    lines = len(_LINE_BREAKS.findall(text)) + 1
    for item in diagnostics:
        assert isinstance(item, Diagnostic)
        assert item.file == name
        assert item.severity in ("error", "warning")
        assert item.message.strip(), item
        assert 1 <= item.line <= lines, (item, lines)
        assert item.column >= 1, item
    printed = report.format_text(diagnostics)
    assert len(printed.splitlines()) == len(diagnostics), printed
    assert isinstance(json.loads(report.format_json(diagnostics)), list)


# --------------------------------------------------------------------------- hypothesis

PREFIXES = [b"", b"{", b"[", b"---\n", b"pipeline:\n  ", b"%YAML 1.2\n---\n", b"\xef\xbb\xbf"]


@FUZZ
@given(st.sampled_from(PREFIXES), st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(prefix, data):
    data = prefix + data
    assert_well_formed(validate_bytes("fuzz.json", data), data)


ENCODINGS = [
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "latin-1",
    "cp1252",
    "shift_jis",
    "koi8-r",
]


@FUZZ
@given(st.text(max_size=400), st.sampled_from(ENCODINGS), st.booleans())
def test_text_in_odd_encodings(text, encoding, as_template):
    source = (GOOD_YAML.decode() + "description: " + json.dumps(text) + "\n") if as_template else text
    data = source.encode(encoding, errors="replace")
    diagnostics = validate_bytes("fuzz.json", data)
    assert_well_formed(diagnostics, data)
    if encoding.startswith(("utf-16", "utf-32")) and source:
        # NUL bytes or a byte-order mark: never a valid spec, and said so
        assert has_errors(diagnostics)


@FUZZ
@given(
    st.sampled_from([GOOD_JSON, GOOD_YAML]),
    st.lists(
        st.tuples(st.floats(0, 1), st.sampled_from(["insert", "delete", "replace"]), st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_templates(original, mutations):
    data = bytearray(original)
    for where, operation, chunk in mutations:
        at = int(where * len(data))
        if operation == "insert":
            data[at:at] = chunk
        elif operation == "delete":
            del data[at : at + len(chunk)]
        else:
            data[at : at + len(chunk)] = chunk
    data = bytes(data)
    assert_well_formed(validate_bytes("fuzz.json", data), data)


YAML_TOKENS = st.sampled_from(
    [
        "a",
        "pipeline",
        "name",
        ":",
        ": ",
        "- ",
        "-",
        "? ",
        "&x ",
        "*x",
        "!!str ",
        "!!int ",
        "!!map ",
        "!!seq ",
        "!!binary ",
        "!custom ",
        "!!python/object ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "|",
        "|-",
        ">",
        ">+",
        "%YAML 1.1",
        "%TAG ! tag:x,2000:",
        "---",
        "...",
        "'",
        '"',
        "#",
        "\t",
        "  ",
        "\n",
        "0o17",
        "0x1F",
        "1_000",
        "1e3",
        ".inf",
        ".NaN",
        "~",
        "null",
        "yes",
        "2001-12-14t21:59:43.10-05:00",
        "<<",
        "=",
        "\\",
        "\u2028",
        "\x85",
    ]
)


@FUZZ
@given(st.lists(st.lists(YAML_TOKENS, max_size=8).map("".join), max_size=12))
def test_yaml_shaped_text_never_raises(lines):
    """Arbitrary bytes seldom look like YAML: lines of YAML's own tokens reach the corners
    (complex keys, tags on collections, block scalars, directives, merge keys)."""
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    assert_well_formed(validate_bytes("fuzz.json", data), data)


OPENERS = {
    "json-list": ("[", "]"),
    "json-object": ('{"a": ', "}"),
    "yaml-flow": ("{a: ", "}"),
    "yaml-mixed": ("[{a: ", "}]"),
}


@FUZZ
@given(st.integers(1, 3 * MAX_DEPTH), st.sampled_from(sorted(OPENERS) + ["yaml-block"]))
def test_nesting_at_any_depth(depth, form):
    if form == "yaml-block":
        data = "".join("  " * level + "a:\n" for level in range(depth)).encode() + b"  " * depth + b"x\n"
        levels = depth + 1  # the root mapping, then one per key
    else:
        opener, closer = OPENERS[form]
        data = ('{"pipeline": {"name": "a"}, "x": ' + opener * depth + "1" + closer * depth + "}").encode()
        levels = 1 + depth * (2 if form == "yaml-mixed" else 1)
    diagnostics = validate_bytes("fuzz.json", data)
    assert_well_formed(diagnostics, data)
    too_deep = [item for item in diagnostics if item.rule == "too-deep"]
    if levels > MAX_DEPTH + 2:
        assert too_deep, diagnostics
    if levels < MAX_DEPTH - 2:
        assert not too_deep, diagnostics


# Values as JSON can hold them; floats finite (YAML has no NaN form pachctl takes) and
# integers within 64 bits (beyond, pachctl's YAML reader turns them into floats).
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
KEYS = st.sampled_from(
    sorted(GOOD_SPEC)
    + ["transform", "cmd", "stdin", "glob", "repo", "name", "cross", "union", "pfs", "constant", "env"]
) | st.text(max_size=10)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)


def _problems(diagnostics: List[Diagnostic]) -> List[tuple]:
    return sorted((item.json_path, item.message, item.rule, item.severity) for item in diagnostics)


@FUZZ
@given(
    st.lists(st.sampled_from(["transform", "input", "pfs", "cmd", "x", 0, 1]), max_size=3),
    KEYS,
    JSON_VALUES,
    st.booleans(),
)
def test_json_and_yaml_forms_of_one_value_get_the_same_verdict(where, key, value, flow):
    """pachctl reads JSON and YAML alike, so must the validator: same problems, same paths."""
    import yaml

    spec = json.loads(json.dumps(GOOD_SPEC))
    target: Any = spec
    for step in where:  # walk as far as the path exists, then set key there
        if isinstance(target, dict) and isinstance(step, str) and isinstance(target.get(step), (dict, list)):
            target = target[step]
        elif isinstance(target, list) and isinstance(step, int) and step < len(target):
            if isinstance(target[step], (dict, list)):
                target = target[step]
    if isinstance(target, dict):
        target[key] = value
    else:
        target.append(value)
    as_json = json.dumps(spec, ensure_ascii=False).encode()  # escaped, astral characters are surrogate pairs
    # every scalar double-quoted with an explicit tag where it is not a string: the
    # YAML 1.1 dumper's plain scalars would otherwise read differently under YAML 1.2
    as_yaml = yaml.safe_dump(spec, default_style='"', default_flow_style=flow, allow_unicode=True, width=10**6).encode()
    from_json = validate_bytes("fuzz.json", as_json)
    from_yaml = validate_bytes("fuzz.yaml", as_yaml)
    assert_well_formed(from_json, as_json)
    assert_well_formed(from_yaml, as_yaml, "fuzz.yaml")
    assert _problems(from_json) == _problems(from_yaml)


TEMPLATE_TEXT = st.lists(
    st.sampled_from(
        [
            "{{ commit }}",
            "{{short_commit}}",
            "{{ tag }}",
            "{{  branch  }}",
            "{{ nope }}",
            "{{",
            "}}",
            "{{.Names}}",
            "$(touch x)",
            '"',
            "\n",
        ]
    )
    | st.text(max_size=8),
    max_size=8,
).map("".join)
HOSTILE_VALUE = st.text(max_size=20) | st.sampled_from(
    ['"}, "evil": {"', "{{ commit }}", "$(rm -rf /)", "main\nx: 1", "-rf", "\u202egnp.exe"]
)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_shape(child) for child in value]
    return type(value).__name__ if isinstance(value, str) else value


@FUZZ
@given(
    st.recursive(
        JSON_SCALARS | TEMPLATE_TEXT,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
        max_leaves=15,
    ),
    st.fixed_dictionaries({name: HOSTILE_VALUE for name in template.PLACEHOLDERS}),
)
def test_rendering_fills_leaves_once_and_never_changes_the_structure(value, values):
    rendered, problems = template.render(value, values)
    assert _shape(rendered) == _shape(value)

    def expected(text: str) -> str:
        # one pass: a value that itself looks like a placeholder stays as it is
        return template.PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), text)

    def leaves(a: Any, b: Any) -> None:
        if isinstance(a, dict):
            for key in a:
                leaves(a[key], b[key])
        elif isinstance(a, list):
            for x, y in zip(a, b):
                leaves(x, y)
        elif isinstance(a, str):
            assert b == expected(a)
        else:
            assert a == b

    leaves(value, rendered)
    for problem in problems:
        assert "\n" not in problem.message and "nope" in problem.message


@FUZZ
@given(st.text(max_size=200))
def test_image_to_build_takes_any_string(image):
    found = template.image_to_build({"transform": {"image": image}}, template.sample_values())
    assert found is None or isinstance(found, str)


# --------------------------------------------------------------------------- worst cases, as a process

_BIG = MAX_FILE_BYTES - 4096  # just under the size limit, so every case is actually read
_BIG_YAML = MAX_YAML_BYTES - 4096  # YAML has its own, lower limit


def _repeat(unit: bytes, head: bytes = b"", tail: bytes = b"", size: int = _BIG) -> bytes:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def _alias_bomb() -> bytes:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 20)]
    return ("\n".join(lines) + "\n").encode()


# name -> (file content, what the first line of the diagnostics must say)
WORST = {
    # integers past Python's 4300-digit conversion limit (crashed before the fix)
    "bigint.yaml": (
        _repeat(b"9", b"pipeline: {name: a}\nparallelism_spec: {constant: ", b"}\n", size=_BIG_YAML),
        "'constant' must be a non-negative integer",
    ),
    "bigint.json": (
        _repeat(b"9", b'{"pipeline": {"name": "a"}, "parallelism_spec": {"constant": ', b"}}"),
        "'constant' must be a non-negative integer",
    ),
    "hexint.yaml": (
        _repeat(b"f", b"pipeline: {name: a}\nparallelism_spec: {constant: 0x", b"}\n", size=_BIG_YAML),
        "'constant' must be a non-negative integer",
    ),
    # half a UTF-16 surrogate pair, which no encoder can print (crashed before the fix)
    "surrogate.json": (b'{"pipeline": {"name": "a"}, "\\ud800": 1}', "half of a UTF-16 surrogate pair"),
    # a hundred thousand tiny values, each cheap to read and ~1 ms to check (minutes before the
    # fix); no value cap since issue 14 (it refused real files): bytes bound the time
    "wide.json": (
        b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(100_000)) + b"}",
        "unknown field 'k0'",
    ),
    "duplicates.json": (_repeat(b'"a": 1, ', b"{", b'"a": 1}'), "more duplicate keys in this document"),
    "duplicates.yaml": (_repeat(b"a: 1\n", size=_BIG_YAML), "more duplicate keys in this document"),
    "documents.yaml": (_repeat(b"---\n", size=_BIG_YAML), "empty document"),
    "big.yaml": (_repeat(b"a: 1\n", size=_BIG), f"over the {MAX_YAML_BYTES // 1024} kB limit for YAML"),
    "documents.json": (_repeat(b"{}\n---\n"), f"more than {MAX_SPECS} pipeline specs"),
    "list.json": (
        _repeat(b"1,", b'{"pipeline": {"name": "a"}, "transform": {"cmd": [', b"1]}}"),
        "more problems in this spec are not listed",
    ),
    "flowlist.yaml": (
        _repeat(b"1,", b"pipeline: {name: a}\ntransform: {cmd: [", b"1]}\n", size=_BIG_YAML),
        "more problems in this spec are not listed",
    ),
    "specs.json": (_repeat(b'{"pipeline": {"name": "a b"}},', b"[", b"{}]"), f"more than {MAX_SPECS} pipeline specs"),
    # one 5 MB string full of unknown placeholders (1.5 GB of problems before the fix)
    "placeholders.json": (
        _repeat(b"{{ x }}", b'{"pipeline": {"name": "a"}, "description": "', b'"}'),
        "unknown placeholder {{ x }}",
    ),
    # long strings and keys
    "escapes.yaml": (
        _repeat(b"\\x41", b'pipeline: {name: a}\ndescription: "', b'"\nx: 1\n', size=_BIG_YAML),
        "unknown field",
    ),
    "longkey.json": (_repeat(b"k", b'{"pipeline": {"name": "a"}, "', b'": 1}'), "key longer than 1024 characters"),
    "nestedstring.json": (
        _repeat(b"[", b'{"pipeline": {"name": "a"}, "description": "', b'", "x": 1}'),
        "unknown field",
    ),
    # nesting without end, and deep flow YAML
    "unclosed.json": (_repeat(b'{"a": '), "nested more than"),
    "deepflow.yaml": (_repeat(b"{a: ", b"a: ", size=_BIG_YAML), "nested more than"),
    "deepblock.yaml": (b"".join(b"  " * i + b"a:\n" for i in range(700)), "nested more than"),
    # aliases: a billion laughs, in block and in JSON-looking flow form, and merge keys
    "bomb.yaml": (_alias_bomb(), "anchors and aliases"),
    "bomb.json": (b'{"a": &a ["x", "x"], "b": [*a, *a, *a, *a]}', "anchors and aliases"),
    "merge.yaml": (b"base: &b {image: a}\ntransform:\n  <<: *b\n", "anchors and aliases"),
    # encodings
    "utf16.json": (b"\xff\xfe" + '{"pipeline": {"name": "a"}}'.encode("utf-16-le"), "not UTF-8"),
    "utf16-no-bom.json": ('{"pipeline": {"name": "a"}}'.encode("utf-16-be"), "U+0000"),
    "utf32.yaml": ("pipeline:\n  name: a\n".encode("utf-32"), "not UTF-8"),
    "latin1.yaml": ("pipeline:\n  name: café\n".encode("latin-1"), "not UTF-8"),
    "cesu.json": (b'{"pipeline": {"name": "\xed\xa0\x80"}}', "not UTF-8"),
    "binary.yaml": (bytes(range(256)) * 4000, "not UTF-8"),
    "nul.yaml": (b"pipeline:\n  name: a\x00\n", "U+0000"),
}


def run_validate(path: Path, *args: str) -> tuple:
    def limit() -> None:
        size = MEMORY_BOUND_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pachhook", "validate", *args, str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIME_BOUND_S * 3,
        preexec_fn=limit,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize("name", sorted(WORST))
def test_worst_case_gets_a_diagnostic_within_bounds(tmp_path, name):
    data, expected = WORST[name]
    assert len(data) <= MAX_FILE_BYTES
    path = tmp_path / name
    path.write_bytes(data)
    result, elapsed = run_validate(path)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1, result.stderr[-2000:]
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{path}:") and ": error: " in first, first[:300]
    assert expected in result.stdout, result.stdout[:500]
    assert elapsed < TIME_BOUND_S, f"{name} took {elapsed:.1f} s"


def test_memory_bound_is_real(tmp_path):
    """The limit the worst cases run under does bite: a process needing more is stopped."""

    def limit() -> None:
        size = MEMORY_BOUND_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    result = subprocess.run(
        [sys.executable, "-c", f"x = bytearray({MEMORY_BOUND_MB} * 1024 * 1024)"],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=30,
    )
    assert result.returncode != 0 and "MemoryError" in result.stderr


def test_forged_lines_stay_inside_their_problem(tmp_path):
    """A key holding a newline and a fake diagnostic cannot add a line to the output."""
    path = tmp_path / "pipeline.json"
    spec = {"pipeline": {"name": "a"}, "transform": {"image": "busybox"}, "x\npipeline.json:1:1: error: forged": 1}
    path.write_text(json.dumps(spec))
    result, _ = run_validate(path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert not any(line.startswith("pipeline.json:1:1: error: forged") for line in lines)
    assert any("unknown field 'x\\npipeline.json:1:1: error: forged'" in line for line in lines)


@pytest.mark.parametrize("fmt", ["json", "github"])
def test_other_formats_survive_the_worst_strings(tmp_path, fmt):
    path = tmp_path / "pipeline.json"
    path.write_bytes(
        b'{"pipeline": {"name": "a\\u0000\\n%0A::error::x"}, "transform": {}, "k\\r\\n\\u2028": "\\ud83d\\ude00"}'
    )
    result, _ = run_validate(path, "--format", fmt)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    if fmt == "json":
        records = json.loads(result.stdout)
        # the surrogate pair is refused as pachctl's yaml.v3 refuses it (issue 14)
        assert {record["rule"] for record in records} >= {"escape"}
    else:
        # the runner splits workflow commands on \n only
        assert all(line.startswith("::error ") for line in result.stdout.rstrip("\n").split("\n"))


# --------------------------------------------------------------------------- the configuration file

CONFIG_KEYS = st.sampled_from(
    [
        "templates",
        "images",
        "branches",
        "tag",
        "pin_digest",
        "reprocess",
        "worker",
        "pachctl",
        "backend",
        "dockerfile",
        "context",
        "build_args",
    ]
)
TOML_VALUES = st.recursive(
    st.none().map(lambda _: '""')
    | st.booleans().map(str).map(str.lower)
    | st.integers().map(str)
    | st.text(max_size=20).map(json.dumps)
    | st.sampled_from(['"../x"', '"/etc"', '"full"', '"manual"', "1979-05-27"]),
    lambda children: st.lists(children, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    max_leaves=6,
)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", '[images."r/x"]\n', "[images]\n", "[tool.pachhook]\n"]),
            CONFIG_KEYS | st.text(max_size=8),
            TOML_VALUES,
        ),
        max_size=6,
    ),
    st.binary(max_size=60),
    st.booleans(),
)
def test_any_configuration_file_is_read_or_refused_in_lines(tmp_path_factory, entries, noise, as_pyproject):
    """The post-commit hook reads this file on every commit: whatever it holds, a Config or a
    ConfigError with one line per problem, never another exception."""
    from pachhook.core.config import Config, ConfigError, load_config

    root = tmp_path_factory.mktemp("config")
    text = "".join(f"{header}{json.dumps(key)} = {value}\n" for header, key, value in entries).encode() + noise
    if as_pyproject:
        (root / "pyproject.toml").write_bytes(b"[tool.pachhook]\n" + text)
    else:
        (root / ".pachhook.toml").write_bytes(text)
    try:
        config = load_config(root, cache_dir=root)
    except ConfigError as error:
        assert error.problems and all(p.strip() and "\n" not in p for p in error.problems), error.problems
    else:
        assert isinstance(config, Config)

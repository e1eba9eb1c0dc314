"""pachhook.spec.schema: the in-house evaluator agrees with the real jsonschema library, and says
what is wrong in words a person can act on."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pachhook.spec import schema, wording

SCHEMA_FILE = Path(schema.SCHEMA_PATH)
SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus" / "upstream"

RAW_SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(RAW_SCHEMA)

# Valid specs written for this project, in both spellings and with the value forms
# protojson accepts (string integers, nulls, "$schema" keys).
EDGES = {
    "pipeline": {"name": "edges", "project": {"name": "vision"}},
    "description": "Detect edges in images.",
    "transform": {
        "image": "registry.example.com/team/edges:1.4.2",
        "cmd": ["python3", "/edges.py"],
        "env": {"LOG_LEVEL": "info"},
        "secrets": [{"name": "s3-creds", "key": "token", "env_var": "TOKEN"}],
        "accept_return_code": [1, "2"],
    },
    "input": {"pfs": {"repo": "images", "branch": "master", "glob": "/*"}},
    "parallelism_spec": {"constant": "2"},
    "resource_requests": {"memory": "512Mi", "cpu": 0.5, "disk": "1Gi"},
    "resource_limits": {"cpu": "1", "gpu": {"type": "nvidia.com/gpu", "number": 1}},
    "datum_timeout": "3600s",
    "job_timeout": "1.5s",
    "datum_tries": 3,
    "metadata": {"labels": {"team": "vision"}, "annotations": {"example.com/owner": "ops"}},
    "tolerations": [
        {"key": "gpu", "operator": "EQUAL", "value": "yes", "effect": "NO_SCHEDULE", "toleration_seconds": "30"}
    ],
}
MONTAGE = {
    "$schema": "https://example.com/whatever.json",
    "pipeline": {"name": "montage"},
    "transform": {
        "image": "dpokidov/imagemagick:7.1.0-62",
        "cmd": ["sh"],
        "stdin": ["montage ..."],
        "datumBatching": False,
        "$schema": None,
    },
    "input": {
        "cross": [
            {"pfs": {"repo": "images", "glob": "/", "name": "img"}},
            {
                "union": [
                    {"pfs": {"repo": "edges", "glob": "/*", "joinOn": "$1"}},
                    {"cron": {"name": "tick", "spec": "@every 1h", "start": "2024-01-31T12:00:00Z"}},
                ]
            },
        ]
    },
    "parallelismSpec": None,
    "datumSetSpec": {"number": 10, "sizeBytes": "1000000"},
    "schedulingSpec": {"nodeSelector": {"disk": "ssd"}, "priorityClassName": "high"},
    "egress": {"URL": "s3://bucket/dir", "objectStorage": {"url": "s3://bucket/out"}},
    "maximumExpectedUptime": "-5s",
    "reprocessSpec": "every_job",
    "autoscaling": True,
    "update": True,
    "sidecarResourceRequests": {"cpu": 1e-1},
    "determined": {"workspaces": ["a"]},
}
SERVICE = {
    "pipeline": {"name": "jupyter"},
    "transform": {"image": "jupyter/base-notebook:2024-01-01"},
    "service": {"internal_port": 8888, "external_port": "30888", "type": "NodePort"},
    "input": {"pfs": {"repo": "notebooks", "glob": "/", "s3": True}},
    "spec_commit": {
        "id": "abc",
        "branch": {"repo": {"name": "jupyter", "type": "spec", "project": {"name": "default"}}, "name": "master"},
    },
    "pod_patch": "[]",
    "s3_out": False,
    "egress": {
        "sql_database": {
            "url": "snowflake://x",
            "file_format": {"type": "CSV", "columns": ["a"]},
            "secret": {"name": "db", "key": "pw"},
        }
    },
}
VALID_SPECS = [EDGES, MONTAGE, SERVICE]


SCHEMA_RULES = wording.SCHEMA_RULE_IDS | {"not-a-mapping", "too-deep"}


def jsonschema_valid(document) -> bool:
    return next(VALIDATOR.iter_errors(document), None) is None


def messages(document):
    return [p.message for p in schema.check(document)]


def only(document):
    problems = schema.check(document)
    assert len(problems) == 1, problems
    return problems[0]


# -- the schema file itself ----------------------------------------------------------------


def test_schema_file_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(RAW_SCHEMA)
    assert RAW_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_definition_compiles_and_every_ref_resolves():
    # the evaluator compiles definitions lazily; this makes it compile them all now
    schema._load().compile_all()


def test_schema_covers_every_field_of_the_create_pipeline_request():
    props = set(RAW_SCHEMA["$defs"]["CreatePipelineRequest"]["properties"])
    sdk_fields = (
        "pipeline tf_job transform parallelism_spec egress update output_branch s3_out resource_requests "
        "resource_limits sidecar_resource_limits input description reprocess service spout datum_set_spec "
        "datum_timeout job_timeout salt datum_tries scheduling_spec pod_spec pod_patch spec_commit metadata "
        "reprocess_spec autoscaling tolerations sidecar_resource_requests dry_run determined "
        "maximum_expected_uptime"
    ).split()
    for field in sdk_fields:
        camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), field)
        assert field in props and camel in props, field
    assert "$schema" in props


@pytest.mark.parametrize("spec", VALID_SPECS, ids=["edges", "montage", "service"])
def test_valid_specs_pass_both_checkers(spec):
    assert schema.check(spec) == []
    assert jsonschema_valid(spec)


# -- agreement with jsonschema -------------------------------------------------------------


def _corpus_documents():
    if not CORPUS.is_dir():
        return []
    out = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix not in (".json", ".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8")
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError:
            try:  # JSON documents separated by '---' with tabs, which PyYAML refuses
                docs = [json.loads(part) for part in re.split(r"(?m)^---\s*$", text) if part.strip()]
            except ValueError:
                continue  # unparseable: the loader's business, not the schema's
        for doc in docs:
            for item in doc if isinstance(doc, list) else [doc]:
                out.append((path.name, item))
    return out


CORPUS_DOCS = _corpus_documents()


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the upstream corpus is not beside this checkout ({CORPUS} is absent)")
def test_agrees_with_jsonschema_on_every_corpus_document():
    assert len(CORPUS_DOCS) > 150
    disagreements = []
    for name, doc in CORPUS_DOCS:
        ours = schema.check(doc)
        theirs = jsonschema_valid(doc)
        if (ours == []) != theirs:
            disagreements.append((name, ours))
    assert disagreements == []
    # and the corpus is not trivially valid: the 2.x-era failures are found
    assert sum(1 for _, doc in CORPUS_DOCS if schema.check(doc)) >= 7


KEY_POOL = sorted(
    {k for d in RAW_SCHEMA["$defs"].values() for k in d.get("properties", {})}
    | {"standby", "imagee", "Image", "url", "coefficient", "git", "build", "hashtree_spec"}
)
INTERESTING = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**31,
    2**63,
    2**64,
    1.5,
    5.0,
    -0.0,
    "",
    "1",
    "-1",
    "01",
    "1.5",
    "3600s",
    "1h",
    "-5s",
    "1.1234567891s",
    ".s",
    "0.5",
    "500m",
    "NaN",
    "EXISTS",
    "Exists",
    "CSV",
    "yes",
    "2024-01-31T12:00:00Z",
    "2024-01-31",
    [],
    [1],
    ["a"],
    [{}],
    {},
    {"name": "x"},
    {"repo": "r", "glob": "/*"},
    {"$schema": 1},
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(INTERESTING).map(copy.deepcopy),  # copies: mutations must not change the pool
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEY_POOL) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)


def _containers(value, path=()):
    """Every (path, container) inside value, the value itself included."""
    if isinstance(value, (dict, list)):
        yield path, value
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            yield from _containers(child, path + (key,))


@st.composite
def mutated_specs(draw):
    doc = copy.deepcopy(draw(st.sampled_from(VALID_SPECS)))
    for _ in range(draw(st.integers(1, 3))):
        spots = list(_containers(doc))
        _, target = draw(st.sampled_from(spots))
        if isinstance(target, list):
            if target and draw(st.booleans()):
                target[draw(st.integers(0, len(target) - 1))] = draw(json_values)
            else:
                target.append(draw(json_values))
            continue
        action = draw(st.sampled_from(["replace", "delete", "add", "respell"]))
        keys = [k for k in target]
        if action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "delete" and keys:
            del target[draw(st.sampled_from(keys))]
        elif action == "respell" and keys:
            key = draw(st.sampled_from(keys))
            other = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key)
            if other == key:
                other = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)
            target[other] = copy.deepcopy(target[key])
            if draw(st.booleans()):
                del target[key]
        else:
            target[draw(st.sampled_from(KEY_POOL))] = draw(json_values)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_agrees_with_jsonschema_on_mutated_specs(doc):
    problems = schema.check(doc)
    assert (problems == []) == jsonschema_valid(doc), problems
    for problem in problems:
        assert isinstance(problem.path, tuple) and problem.message and "\n" not in problem.message
        assert problem.rule in SCHEMA_RULES  # each documented in docs/spec-rules.md


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_never_raises_and_agrees_on_arbitrary_json(value):
    problems = schema.check(value)
    assert (problems == []) == jsonschema_valid(value)
    if not isinstance(value, dict):
        assert len(problems) == 1 and problems[0].path == ()


# -- messages ------------------------------------------------------------------------------


def test_unknown_field_suggests_the_closest_name():
    problem = only({"pipeline": {"name": "x"}, "transform": {"imagee": "a:1"}})
    assert problem.path == ("transform", "imagee")
    assert problem.message == "unknown field 'imagee' in transform; did you mean 'image'?"
    assert problem.rule == "unknown-field"


def test_unknown_field_suggests_the_other_spelling_family():
    assert "did you mean 'datumTries'?" in only({"datumTrie": 1}).message
    assert "did you mean 'URL'?" in only({"egress": {"url": "s3://b"}}).message


def test_field_written_one_level_too_high_is_pointed_to_its_home():
    problem = only({"pipeline": {"name": "x"}, "image": "a:1"})
    assert problem.message == ("unknown field 'image' at the top level; it belongs under 'transform' (transform.image)")


@pytest.mark.parametrize(
    "doc, path, word",
    [
        ({"standby": True}, ("standby",), "standby"),
        ({"enableStats": True}, ("enableStats",), "enableStats"),
        ({"chunk_spec": {"number": 1}}, ("chunk_spec",), "chunk_spec"),
        ({"transform": {"build": {"language": "go"}}}, ("transform", "build"), "build"),
        ({"spout": {"overwrite": True}}, ("spout", "overwrite"), "overwrite"),
        ({"parallelism_spec": {"coefficient": 0.5}}, ("parallelism_spec", "coefficient"), "coefficient"),
        ({"input": {"git": {"url": "https://x"}}}, ("input", "git"), "git"),
    ],
)
def test_fields_removed_in_2_0_say_so(doc, path, word):
    problem = only(doc)
    assert problem.path == path
    assert problem.message.startswith(f"'{word}' was removed in Pachyderm 2.0; delete it")
    assert problem.rule == "removed-field"


def test_both_spellings_of_one_field_are_refused():
    problem = only({"datum_tries": 3, "datumTries": 3})
    assert problem.message == "both 'datum_tries' and 'datumTries' are set at the top level; keep one"
    nested = only({"input": {"pfs": {"repo": "a", "glob": "/", "join_on": "$1", "joinOn": "$1"}}})
    assert nested.path == ("input", "pfs", "joinOn")


@pytest.mark.parametrize(
    "value, suggestion",
    [
        ("1h", "3600s"),
        ("1h30m", "5400s"),
        ("300ms", "0.3s"),
        ("90", "90s"),
        (60, "60s"),
        ("-2m", "-120s"),
    ],
)
def test_durations_in_go_form_get_the_seconds_form_suggested(value, suggestion):
    problem = only({"datum_timeout": value})
    assert problem.rule == "duration"
    assert problem.message.endswith(f'write "{suggestion}"'), problem.message


@pytest.mark.parametrize("value", ["60s", "1.5s", ".5s", "-5s", "+5s", "0s", "1.123456789s"])
def test_durations_in_seconds_form_pass(value):
    assert schema.check({"job_timeout": value}) == []


@pytest.mark.parametrize("value", ["1.1234567891s", "01s", "s", "5 s", "1e3s"])
def test_malformed_second_durations_fail(value):
    assert only({"job_timeout": value}).rule == "duration"


def test_integers_accept_decimal_strings_but_not_other_strings():
    assert schema.check({"datum_tries": "3", "parallelism_spec": {"constant": 2.0}}) == []
    problem = only({"datum_tries": "three"})
    assert (
        problem.message == "'datum_tries' must be an integer (or a decimal string such as \"3\"), "
        'got the string "three"'
    )
    assert "non-negative" in only({"parallelism_spec": {"constant": -1}}).message


def test_booleans_must_be_json_booleans():
    problem = only({"input": {"pfs": {"repo": "a", "glob": "/", "s3": "yes"}}})
    assert problem.path == ("input", "pfs", "s3")
    assert problem.message == (
        "'s3' must be a boolean (true or false), got the string \"yes\"; write true or false without quotes"
    )


def test_cpu_in_kubernetes_millicores_suggests_cores():
    problem = only({"resource_limits": {"cpu": "500m"}})
    assert problem.message.endswith("write 0.5 (a number of CPU cores)")


def test_string_maps_need_string_values_and_are_located_per_key():
    problem = only({"transform": {"env": {"DEBUG": True, "$schema": 7}}})
    assert problem.path == ("transform", "env", "DEBUG")
    assert problem.message == "'DEBUG' must be a string, got the boolean true; quote it: \"true\""


def test_schema_key_is_allowed_at_every_level():
    doc = {
        "$schema": "x",
        "pipeline": {"name": "a", "$schema": "x", "project": {"$schema": 1, "name": "p"}},
        "input": {"$schema": "x", "pfs": {"$schema": "x", "repo": "r", "glob": "/"}},
    }
    assert schema.check(doc) == []


def test_nulls_mean_unset_but_not_inside_lists():
    assert schema.check({"transform": None, "input": {"pfs": None, "cross": None}, "salt": None}) == []
    problem = only({"transform": {"cmd": ["sh", None]}})
    assert problem.path == ("transform", "cmd", 1)


def test_enums_accept_names_and_numbers():
    assert schema.check({"tolerations": [{"operator": "EXISTS", "effect": 2}]}) == []
    problem = only({"tolerations": [{"operator": "Exists"}]})
    assert problem.path == ("tolerations", 0, "operator")
    assert '"EMPTY", "EXISTS", "EQUAL"' in problem.message


def test_egress_takes_one_target():
    problem = only({"egress": {"object_storage": {"url": "s3://a"}, "sqlDatabase": {"url": "x"}}})
    assert problem.path == ("egress",)
    assert problem.message == "egress sets both object_storage and sql_database; keep one"
    assert schema.check({"egress": {"object_storage": {"url": "s3://a"}, "sql_database": None}}) == []


def test_wrong_container_type_names_what_is_expected():
    problem = only({"pipeline": "edges"})
    assert problem.message == ("'pipeline' must be a mapping (with fields such as 'name'), got the string \"edges\"")
    assert only({"transform": {"cmd": "python x.py"}}).message == "'cmd' must be a list, got the string \"python x.py\""


def test_non_mapping_document_is_one_problem():
    for value in ([], "spec", 3, None):
        problem = only(value)
        assert problem.path == () and problem.rule == "not-a-mapping"


def test_very_deep_input_nesting_is_a_problem_not_a_crash():
    node = {"pfs": {"repo": "a", "glob": "/"}}
    for _ in range(2000):
        node = {"cross": [node]}
    problems = schema.check({"input": node})
    assert problems and problems[0].rule == "too-deep"


# -- cost ----------------------------------------------------------------------------------


def test_importing_schema_pulls_in_no_heavy_library():
    code = (
        "import sys, pachhook.spec.schema as s; s.check({'pipeline': {'name': 'x'}}); "
        "print(' '.join(m for m in ('jsonschema', 'yaml', 'docker', 'git') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_values_python_cannot_print_do_not_crash_the_messages():
    huge = 10**5000  # beyond Python's int-to-str limit; a YAML file can hold such a literal
    problems = schema.check({"datum_tries": huge, "parallelism_spec": {"constant": -huge}, 7: "x"})
    assert [p.path for p in problems] == [("datum_tries",), ("parallelism_spec", "constant"), (7,)]
    assert "more than 4000 digits" in problems[0].message
    assert problems[2].message == "field names are strings, but the number 7 is used as a key at the top level"


# --------------------------------------------------------------------------- issue 14: messages


def _validate(name, text):
    from pachhook.validate.checks import validate_bytes

    return validate_bytes(name, text.encode())


@pytest.mark.parametrize(
    "name, text",
    [
        ("q.json", '{"pipeline": {"name": "a"}, "transform": {"env": {"LEVEL": 4}}}'),
        ("q.yaml", "pipeline: {name: a}\ntransform:\n  env:\n    LEVEL: 4\n"),
    ],
)
def test_a_number_where_a_string_belongs_says_quote_it(name, text):
    [problem] = _validate(name, text)
    assert problem.message == "'LEVEL' must be a string, got the number 4; quote it: \"4\""


@pytest.mark.parametrize(
    "name, text",
    [
        ("m.json", '{"pipeline": {"name": "a"}, "resource_limits": {"memory": 512}}'),
        ("m.yaml", "pipeline: {name: a}\nresourceLimits:\n  memory: 512\n"),
    ],
)
def test_a_bare_memory_number_suggests_a_unit(name, text):
    [problem] = _validate(name, text)
    assert 'write "512Mi" (mebibytes) or "512M"' in problem.message


def test_integer_strings_protojson_accepts():
    # protojson reads "3.0" (a decimal string with a zero fraction) as the integer 3
    for value in ("3", "3.0", "3.00", "-0"):
        assert schema.check({"pipeline": {"name": "a"}, "datum_tries": value}) == [], value
    [problem] = schema.check({"pipeline": {"name": "a"}, "datum_tries": "3.5"})
    assert problem.path == ("datum_tries",)


def test_paths_with_dots_and_slashes_are_bracketed():
    [problem] = _validate("p.json", '{"pipeline": {"name": "a"}, "transform": {"env": {"a.b/c": 1}}}')
    assert problem.json_path == 'transform.env["a.b/c"]'
    [label] = _validate("p.yaml", "pipeline: {name: a}\nmetadata:\n  labels:\n    example.com/team: data science\n")
    assert label.json_path == 'metadata.labels["example.com/team"]'


def test_paths_in_a_top_level_list_are_relative_to_the_spec():
    problems = _validate("l.yaml", "- pipeline: {name: a}\n- pipeline: {name: b}\n  transfrom: {}\n")
    [problem] = problems
    assert (problem.json_path, problem.document, problem.line) == ("transfrom", 2, 3)


@pytest.mark.parametrize(
    "name, text",
    [
        ("k.json", '{"pipeline": {"name": "a"}, "transform": {"env": {"SHA_{{ short_commit }}": "1"}}}'),
        ("k.yaml", 'pipeline: {name: a}\ntransform:\n  env:\n    "SHA_{{ short_commit }}": "1"\n'),
    ],
)
def test_a_placeholder_in_a_mapping_key_is_an_error(name, text):
    [problem] = _validate(name, text)
    assert problem.rule == "placeholder-in-key" and problem.severity == "error"
    assert "not in keys: {{ short_commit }}" in problem.message
    assert problem.line == (1 if name.endswith(".json") else 4)


def test_evaluation_yields_failures_and_wording_is_separate():
    """Issue 9: the evaluator says what failed; pachhook.spec.wording says it to a person."""
    from pachhook.spec import evaluate, wording

    evaluation = evaluate.evaluate({"pipeline": {"name": "a"}, "transfrom": {}, "datumTries": "x"})
    assert [(f.kind, f.path) for f in evaluation.failures] == [
        ("unknown-field", ("transfrom",)),
        ("described", ("datumTries",)),
    ]
    assert all(isinstance(f, evaluate.Failure) for f in evaluation.failures)
    unknown = wording.word(evaluation.failures[0], evaluation.defs)
    assert unknown.message == "unknown field 'transfrom' at the top level; did you mean 'transform'?"
    assert unknown.rule == "unknown-field"
    assert [p.message for p in schema.check({"pipeline": {"name": "a"}, "transfrom": {}})] == [unknown.message]

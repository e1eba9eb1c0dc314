"""Issue 14, class by class: templates written for the purpose, each in JSON and in YAML.

Each case is a spec pachctl 2.x and pachd accept ("ok") or refuse (a rule id pachhook must
report as an error), with the reason from upstream in a comment. Both written forms of a
case must get the same verdict: pachctl reads JSON and YAML alike.
"""

from __future__ import annotations

import json

import pytest
import yaml

from pachhook.validate.checks import validate_bytes

BASE = {"pipeline": {"name": "edges"}, "transform": {"image": "registry.example.com/edges:1.0", "cmd": ["sh"]}}


def with_(**fields):
    spec = json.loads(json.dumps(BASE))
    spec.update(fields)
    return spec


S3 = {"repo": "images", "s3": True}
SQL = {"url": "snowflake://user@host/db", "fileFormat": {"type": "CSV"}}

CASES = {
    # Kubernetes lower-cases annotation keys before validating them; label keys stay as written
    "annotation-upper-prefix": (with_(metadata={"annotations": {"MyCompany.com/team": "data"}}), "ok"),
    "label-upper-prefix": (with_(metadata={"labels": {"MyCompany.com/team": "data"}}), "metadata"),
    # pachd cleans the glob of an s3 input, and requires "/"
    "s3-glob-double-slash": (with_(input={"pfs": dict(S3, glob="//")}), "ok"),
    "s3-glob-unset": (with_(input={"pfs": dict(S3)}), "s3-input"),
    "s3-glob-star": (with_(input={"pfs": dict(S3, glob="/*")}), "s3-input"),
    # protojson reads a decimal string with a zero fraction as an integer
    "integer-string-3.0": (with_(datumTries="3.0"), "ok"),
    "integer-string-3.5": (with_(datumTries="3.5"), "type"),
    # pachd's ValidateSQLDatabaseEgress
    "sql-egress-no-secret": (with_(egress={"sqlDatabase": dict(SQL)}), "egress"),
    "sql-egress-no-key": (with_(egress={"sqlDatabase": dict(SQL, secret={"name": "db"})}), "egress"),
    "sql-egress-complete": (with_(egress={"sqlDatabase": dict(SQL, secret={"name": "db", "key": "pw"})}), "ok"),
    # pachd takes both, but the workers never start
    "spout-and-service": (with_(spout={}, service={"internalPort": 80, "externalPort": 31800}), "spout"),
    "spout-with-service": (with_(spout={"service": {"internalPort": 80, "externalPort": 31800}}), "ok"),
    # nulls pachctl or pachd refuse
    "transform-null": (with_(transform=None), "null"),
    "project-null": (with_(pipeline={"name": "edges", "project": None}), "null"),
    "update-null": (with_(update=None), "null"),
    "description-null": (with_(description=None), "ok"),
    # protobuf's Duration range
    "duration-out-of-range": (with_(datumTimeout="315576000001s"), "duration"),
    "duration-in-range": (with_(datumTimeout="315576000000s"), "ok"),
    # messages
    "number-for-string": (with_(transform={"image": "registry.example.com/edges:1.0", "env": {"A": 4}}), "type"),
    "placeholder-in-key": (
        with_(transform={"image": "r.example.com/e:1.0", "env": {"A_{{ branch }}": "1"}}),
        "placeholder-in-key",
    ),
    # many pipelines in one file read like one
    "many": ([with_(pipeline={"name": f"p{n}"}) for n in range(500)], "ok"),
}


def forms(value):
    as_json = json.dumps(value, ensure_ascii=False, indent=1).encode()
    as_yaml = yaml.safe_dump(value, sort_keys=False, allow_unicode=True).encode()
    return {"pipeline.json": as_json, "pipeline.yaml": as_yaml}


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_in_json_and_yaml(case):
    value, expected = CASES[case]
    verdicts = {}
    for name, data in forms(value).items():
        errors = [d for d in validate_bytes(name, data) if d.severity == "error"]
        verdicts[name] = sorted({d.rule for d in errors}) or ["ok"]
        if expected == "ok":
            assert errors == [], (name, [d.message for d in errors])
        else:
            assert expected in verdicts[name], (name, [d.message for d in errors])
    assert verdicts["pipeline.json"] == verdicts["pipeline.yaml"]


# What yaml.v3 reads differently, as text (the forms matter here).
TEXT_CASES = {
    "trailing-dashes.yaml": (b"pipeline: {name: a}\n---\n", "empty-document"),
    "trailing-dashes.json": (b'{"pipeline": {"name": "a"}}\n---\n', "empty-document"),
    "comment-last.yaml": (b"pipeline: {name: a}\n---\n# b later\n", "empty-document"),
    "slash-escape.json": (b'{"pipeline": {"name": "a"}, "description": "a\\/b"}', "escape"),
    "slash-escape.yaml": (b'pipeline: {name: a}\ndescription: "a\\/b"\n', "escape"),
    "surrogates.json": (b'{"pipeline": {"name": "a"}, "description": "\\ud83d\\ude80"}', "escape"),
    "emoji.json": ('{"pipeline": {"name": "a"}, "description": "🚀"}'.encode(), "ok"),
    "yaml-directive.yaml": (b"%YAML 1.2\n---\npipeline: {name: a}\n", "yaml-directive"),
    "float-dot.yaml": (b"pipeline: {name: a}\nparallelismSpec: {constant: 1.}\n", "yaml-scalar"),
    "float-plus.yaml": (b"pipeline: {name: a}\nresourceRequests: {cpu: +1.5}\n", "yaml-scalar"),
    "float-ok.yaml": (b"pipeline: {name: a}\nresourceRequests: {cpu: 1.5}\n", "ok"),
    "long-key.json": (b'{"pipeline": {"name": "a"}, "' + b"k" * 1100 + b'": 1}', "long-key"),
    "impossible-date.yaml": (b"pipeline: {name: a}\ndescription: 2024-02-30\n", "ok"),
    "real-date.yaml": (b"pipeline: {name: a}\ndescription: 2024-02-29\n", "yaml-scalar"),
}


@pytest.mark.parametrize("name", sorted(TEXT_CASES))
def test_text_case(name):
    data, expected = TEXT_CASES[name]
    errors = [d for d in validate_bytes(name, data) if d.severity == "error"]
    if expected == "ok":
        assert errors == [], [d.message for d in errors]
    else:
        assert expected in {d.rule for d in errors}, [d.message for d in errors]

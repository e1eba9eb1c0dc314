"""pachhook.spec.rules: each rule the schema cannot say, with a template it accepts and one it refuses."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pachhook.core.diagnostics import ERROR, WARNING
from pachhook.spec import rules, schema, wording

DOCS = Path(__file__).resolve().parents[1] / "docs" / "spec-rules.md"

# The base template every case starts from: valid under every rule.
BASE_YAML = """
pipeline:
  name: edges
transform:
  image: registry.example.com/team/edges:{{ tag }}
  cmd: [python3, /edges.py]
input:
  pfs:
    repo: images
    glob: /*
"""


def base(tag: str = "0c1d2e3") -> dict:
    return yaml.safe_load(BASE_YAML.replace("{{ tag }}", tag))


def spec(**changes) -> dict:
    """The base template with top-level fields replaced (None deletes one)."""
    doc = base()
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def found(doc, strict=False, rule=None):
    problems = rules.check(doc, strict=strict)
    return [p for p in problems if rule is None or p.rule == rule]


def errors(doc, strict=False):
    return [p for p in rules.check(doc, strict=strict) if p.severity == ERROR]


def one(doc, rule, strict=False):
    problems = found(doc, strict)
    assert [p.rule for p in problems] == [rule], problems
    return problems[0]


def test_the_base_template_is_clean():
    assert rules.check(base()) == []
    assert schema.check(base()) == []


# -- pipeline, project, repo and branch names ------------------------------------------------


@pytest.mark.parametrize(
    "doc, path",
    [
        (spec(pipeline=None), ()),
        (spec(pipeline={}), ("pipeline",)),
        (spec(pipeline={"name": ""}), ("pipeline", "name")),
    ],
)
def test_pipeline_name_is_required(doc, path):
    problem = one(doc, "pipeline-name")
    assert problem.path == path
    assert problem.message == "no pipeline name specified: set pipeline.name"


@pytest.mark.parametrize(
    "name, words",
    [
        ("my pipe", "may only use letters, digits, '_' and '-' (found ' ')"),
        ("$PIPELINE_NAME", "(found '$')"),
        ("-edges", "must start with a letter or digit"),
        ("e" * 52, "is 52 characters long; Pachyderm allows at most 51"),
    ],
)
def test_pipeline_name_syntax_and_length(name, words):
    problem = one(spec(pipeline={"name": name}), "pipeline-name")
    assert problem.path == ("pipeline", "name")
    assert words in problem.message


def test_pipeline_name_limits_pass_at_the_boundary():
    assert found(spec(pipeline={"name": "e" * 51})) == []
    assert found(spec(pipeline={"name": "_x"[1:] + "_edges-2"})) == []


def test_project_name_and_combined_length():
    assert found(spec(pipeline={"name": "edges", "project": {"name": "vision_2"}})) == []
    bad = one(spec(pipeline={"name": "edges", "project": {"name": "vision.team"}}), "project-name")
    assert bad.path == ("pipeline", "project", "name")
    long = one(spec(pipeline={"name": "e" * 40, "project": {"name": "p" * 20}}), "pipeline-name")
    assert "are 60 characters together; Pachyderm allows at most 58" in long.message
    # "default" is always a valid project, and counts 7 characters
    assert found(spec(pipeline={"name": "e" * 51, "project": {"name": "default"}})) == []


def test_repo_and_branch_names():
    ok = spec(input={"pfs": {"repo": "raw_images-2", "branch": "dev", "glob": "/"}}, output_branch="release")
    assert found(ok) == []
    bad = spec(input={"pfs": {"repo": "raw images", "branch": "feature/x", "glob": "/"}}, output_branch="a.b")
    assert [(p.rule, p.path) for p in found(bad)] == [
        ("repo-name", ("input", "pfs", "repo")),
        ("branch-name", ("input", "pfs", "branch")),
        ("branch-name", ("output_branch",)),
    ]


# -- inputs ----------------------------------------------------------------------------------


def test_exactly_one_input_kind_per_node():
    both = spec(input={"pfs": {"repo": "a", "glob": "/"}, "cron": {"name": "t", "spec": "@daily"}})
    problem = one(both, "input-kind")
    assert problem.path == ("input",)
    assert "sets 'pfs' and 'cron'" in problem.message
    none = one(spec(input={}), "input-kind")
    assert "sets no input" in none.message


def test_an_empty_combinator_list_counts_as_unset():
    problem = one(spec(input={"cross": []}), "input-kind")
    assert "('cross' is an empty list, which counts as unset)" in problem.message
    # ... so an empty list beside a real kind is fine
    assert found(spec(input={"union": [], "pfs": {"repo": "a", "glob": "/"}})) == []


def test_nested_input_nodes_are_checked_with_their_path():
    doc = spec(input={"cross": [{"pfs": {"repo": "a", "glob": "/"}}, {"join": []}]})
    problem = one(doc, "input-kind")
    assert problem.path == ("input", "cross", 1)


def test_pfs_input_needs_repo_and_glob():
    assert (
        one(spec(input={"pfs": {"glob": "/"}}), "pfs-input").message
        == "pfs input needs a 'repo': the repository to read"
    )
    problem = one(spec(input={"pfs": {"repo": "data"}}), "pfs-input")
    assert problem.message.startswith("pfs input from repo 'data' needs a 'glob'")


def test_pfs_input_cannot_pin_a_commit():
    problem = one(spec(input={"pfs": {"repo": "a", "glob": "/", "commit": "abc123"}}), "pfs-input")
    assert problem.path == ("input", "pfs", "commit")


def test_s3_inputs():
    # pachd requires the glob "/" of an s3 input (issue 14: it was accepted unset)
    unset = one(spec(input={"pfs": {"repo": "a", "s3": True}}), "s3-input")
    assert unset.path == ("input", "pfs") and "needs 'glob': \"/\"" in unset.message
    assert found(spec(input={"pfs": {"repo": "a", "s3": True, "glob": "/"}})) == []
    # pachd cleans the glob first: "//" and "/./" are "/"
    for glob in ("//", "/./", "///"):
        assert found(spec(input={"pfs": {"repo": "a", "s3": True, "glob": glob}})) == [], glob
    assert one(spec(input={"pfs": {"repo": "a", "s3": True, "glob": "/*"}}), "s3-input").path == (
        "input",
        "pfs",
        "glob",
    )
    assert one(spec(input={"pfs": {"repo": "a", "s3": True, "glob": "/", "lazy": True}}), "s3-input").path == (
        "input",
        "pfs",
        "lazy",
    )
    joined = spec(
        input={
            "join": [
                {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}},
                {"cross": [{"pfs": {"repo": "b", "s3": True, "glob": "/"}}]},
            ]
        }
    )
    problem = one(joined, "s3-input")
    assert problem.path == ("input", "join", 1, "cross", 0, "pfs", "s3")
    assert "not supported inside a 'join'" in problem.message
    crossed = spec(
        input={"cross": [{"pfs": {"repo": "a", "glob": "/"}}, {"pfs": {"repo": "b", "s3": True, "glob": "/"}}]}
    )
    assert found(crossed) == []


def test_input_names_are_unique_except_across_union_alternatives():
    crossed = spec(input={"cross": [{"pfs": {"repo": "a", "glob": "/"}}, {"pfs": {"repo": "a", "glob": "/*"}}]})
    problem = one(crossed, "input-name")
    assert problem.path == ("input", "cross", 1, "pfs", "repo")
    assert problem.message == (
        "input name 'a' is already used by input.cross[0].pfs; give one of them a distinct 'name'"
    )
    renamed = copy.deepcopy(crossed)
    renamed["input"]["cross"][1]["pfs"]["name"] = "a_again"
    assert found(renamed) == []
    union = spec(input={"union": [{"pfs": {"repo": "a", "glob": "/"}}, {"pfs": {"repo": "a", "glob": "/*"}}]})
    assert found(union) == []
    # ... but a union's names still clash with what it is crossed with
    mixed = spec(input={"cross": [union["input"], {"pfs": {"repo": "b", "glob": "/", "name": "a"}}]})
    assert one(mixed, "input-name").path == ("input", "cross", 1, "pfs", "name")


@pytest.mark.parametrize("name", ["out", ".env"])
def test_reserved_input_names(name):
    doc = spec(input={"pfs": {"repo": "data", "name": name, "glob": "/"}})
    assert "is reserved" in one(doc, "input-name").message
    out_repo = spec(input={"pfs": {"repo": "out", "glob": "/"}})
    assert one(out_repo, "input-name").path == ("input", "pfs", "repo")


def test_cron_input_needs_a_name_and_a_spec():
    assert found(spec(input={"cron": {"name": "tick", "spec": "*/10 * * * *"}})) == []
    assert one(spec(input={"cron": {"spec": "@hourly"}}), "cron-input").message == "cron input needs a 'name'"
    assert "needs a 'spec'" in one(spec(input={"cron": {"name": "t"}}), "cron-spec").message


@pytest.mark.parametrize(
    "cron",
    [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@never",
        "@every 1h30m",
        "@every 90s",
        "@every 1.5h",
        "0 0 * * *",
        "*/15 9-17 * * mon-fri",
        "0 12 1,15 jan,JUL *",
        "5/10 * ? * SUN",
        "0 0 31 12 6",
    ],
)
def test_cron_specs_that_parse(cron):
    assert rules.cron_spec_problem(cron) is None


@pytest.mark.parametrize(
    "cron, words",
    [
        ("* * * * * *", "has 6 fields; it needs exactly 5"),
        ("@every 1d", "'1d' is not a Go duration"),
        ("@every", "is not a known descriptor"),
        ("@reboot", "is not a known descriptor"),
        ("60 * * * *", "minute field '60': 60 is above the maximum 59"),
        ("0 0 0 * *", "day of month field '0': 0 is below the minimum 1"),
        ("0 0 * * 7", "day of week field '7': 7 is above the maximum 6"),
        ("0 0 * foo *", "'foo' is not a number or a name"),
        ("0 5-2 * * *", "the range starts (5) after it ends (2)"),
        ("*/0 * * * *", "the step must be a positive number"),
        ("1/2/3 * * * *", "too many slashes"),
    ],
)
def test_cron_specs_that_do_not(cron, words):
    problem = one(spec(input={"cron": {"name": "t", "spec": cron}}), "cron-spec")
    assert problem.path == ("input", "cron", "spec")
    assert words in problem.message


# -- resources -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["512Mi", "1Gi", "500M", "0.5", "1e3", "2E6", "100k", "1.5Gi", "+1Ki", ".5G"])
def test_kubernetes_quantities_pass(value):
    assert found(spec(resource_limits={"memory": value, "disk": value})) == []


def test_invalid_quantity_explains_that_pachd_drops_it():
    problem = one(spec(resource_requests={"memory": "256MB"}), "resource-quantity")
    assert problem.path == ("resource_requests", "memory")
    assert problem.severity == ERROR
    assert problem.message == (
        'memory "256MB" is not a Kubernetes quantity, and pachd silently drops it; '
        'write "256M" (powers of 1000) or "256Mi" (powers of 1024)'
    )
    assert '"2Gi"' in one(spec(resource_limits={"disk": "2GiB"}), "resource-quantity").message
    assert one(spec(sidecarResourceLimits={"memory": "lots"}), "resource-quantity").path == (
        "sidecarResourceLimits",
        "memory",
    )


def test_milli_memory_is_a_warning_and_negative_an_error():
    milli = one(spec(resource_limits={"memory": "512m"}), "resource-quantity")
    assert milli.severity == WARNING and "thousandths of a byte" in milli.message
    assert one(spec(resource_limits={"memory": "512m"}), "resource-quantity", strict=True).severity == ERROR
    assert "negative" in one(spec(resource_limits={"memory": "-1Gi"}), "resource-quantity").message


def test_cpu_must_be_a_non_negative_number():
    assert found(spec(resource_limits={"cpu": 2, "gpu": {"type": "nvidia.com/gpu", "number": 1}})) == []
    assert found(spec(resource_limits={"cpu": "0.25"})) == []
    assert one(spec(resource_limits={"cpu": -1}), "resource-quantity").path == ("resource_limits", "cpu")
    assert one(spec(resource_limits={"cpu": "NaN"}), "resource-quantity")


# -- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/team/edges:0c1d2e3",
        "localhost:5000/edges:1",
        "ubuntu:22.04",
        "a/b/c:v1.2_3",
        "127.0.0.1:5000/x:y",
        "[::1]:5000/img:t",
        "docker.io/library/ubuntu@sha256:" + "a" * 64,
        "edges:1@sha256:" + "0" * 64,
        "my__name/x-y.z:t",
    ],
)
def test_valid_tagged_image_references(image):
    assert found(spec(transform={"image": image})) == []


@pytest.mark.parametrize(
    "image, words",
    [
        ("Registry/Team/Edges:1", "repository name must be lowercase ('Team')"),
        ("edges:-bad", "tag '-bad'"),
        ("edges:" + "t" * 129, "at most 128 characters"),
        ("<yourregistry>/edges:1", "path component '<yourregistry>'"),
        ("my image:1", "contains whitespace"),
        ("edges@sha256:abc", "digest 'sha256:abc'"),
        ("bad_host.com:port/x:1", "registry host 'bad_host.com:port'"),
        ("team//edges:1", "path component ''"),
    ],
)
def test_invalid_image_references(image, words):
    problem = one(spec(transform={"image": image}), "image-reference")
    assert problem.path == ("transform", "image")
    assert words in problem.message
    assert problem.severity == WARNING  # pachd accepts any string; only the pull fails
    assert one(spec(transform={"image": image}), "image-reference", strict=True).severity == ERROR


@pytest.mark.parametrize("image", ["edges", "registry.example.com:5000/edges", "edges:latest"])
def test_untagged_or_latest_image_is_a_warning_and_strict_makes_it_an_error(image):
    problem = one(spec(transform={"image": image}), "image-tag")
    assert problem.severity == WARNING
    assert "pin a tag" in problem.message
    assert one(spec(transform={"image": image}), "image-tag", strict=True).severity == ERROR


def test_empty_image_is_fine_pachd_uses_its_default():
    assert found(spec(transform={"image": "", "cmd": ["sh"]})) == []
    assert found(spec(transform={"cmd": ["sh"]})) == []


# -- request flags, services, spouts ---------------------------------------------------------


@pytest.mark.parametrize("key", ["dry_run", "dryRun"])
def test_spec_embedded_dry_run_is_refused(key):
    problem = one(spec(**{key: True}), "dry-run")
    assert problem.path == (key,)
    assert "read by pachctl as 'reprocess'" in problem.message
    assert found(spec(update=True, reprocess=False)) == []


def test_tf_job_is_refused():
    assert one(spec(tf_job={"tf_job": "{}"}), "tf-job").path == ("tf_job",)
    assert one(spec(tfJob={"tfJob": "{}"}), "tf-job").path == ("tfJob",)


def test_service_runs_with_one_worker():
    service = {"internal_port": 8888, "external_port": 30888}
    assert found(spec(service=service)) == []
    assert found(spec(service=service, parallelism_spec={"constant": "1"})) == []
    problem = one(spec(service=service, parallelismSpec={"constant": 3}), "service")
    assert problem.path == ("parallelismSpec", "constant")
    assert "got 3" in problem.message
    assert found(spec(parallelism_spec={"constant": 3})) == []  # no service, no rule


def test_service_type():
    assert found(spec(service={"internal_port": 1, "type": "LoadBalancer"})) == []
    problem = one(spec(service={"internal_port": 1, "type": "Ingress"}), "service")
    assert problem.path == ("service", "type")


def test_spout_without_service_takes_no_input():
    assert found(spec(spout={}, input=None)) == []
    assert one(spec(spout={}), "spout").path == ("input",)
    assert found(spec(spout={"service": {"internal_port": 80}})) == []


def test_s3_out_and_autoscaling_conflicts():
    assert found(spec(s3_out=True)) == []
    assert one(spec(s3Out=True, service={"internal_port": 80}), "s3-out").path == ("s3Out",)
    assert one(spec(s3_out=True, spout={}, input=None), "s3-out")
    assert found(spec(autoscaling=True)) == []
    assert one(spec(autoscaling=True, spout={}, input=None), "autoscaling")


# -- transform secrets, pod JSON, metadata, tolerations, reprocess_spec ----------------------


def test_secret_env_var_needs_a_key():
    ok = {
        "image": "a:1",
        "secrets": [{"name": "creds", "key": "token", "env_var": "TOKEN"}, {"name": "files", "mount_path": "/secrets"}],
    }
    assert found(spec(transform=ok)) == []
    problem = one(spec(transform={"image": "a:1", "secrets": [{"name": "creds", "envVar": "TOKEN"}]}), "secret")
    assert problem.path == ("transform", "secrets", 0)
    assert "sets env_var 'TOKEN' but no 'key'" in problem.message
    assert one(spec(transform={"image": "a:1", "secrets": [{"mount_path": "/s"}]}), "secret")


def test_pod_spec_and_patch_hold_json():
    good = spec(
        pod_spec='{"serviceAccountName": "worker"}', pod_patch='[{"op": "add", "path": "/hostNetwork", "value": true}]'
    )
    assert found(good) == []
    broken = one(spec(pod_spec="{serviceAccountName: worker}"), "pod-json")
    assert broken.message.startswith("pod_spec must hold valid JSON:")
    assert "JSON array" in one(spec(podPatch='{"op": "add"}'), "pod-json").message


def test_metadata_keys_and_label_values():
    ok = {
        "labels": {"app.kubernetes.io/name": "edges", "tier": ""},
        "annotations": {"example.com/note": "any text at all, even spaces"},
    }
    assert found(spec(metadata=ok)) == []
    assert one(spec(metadata={"labels": {"team": "data science"}}), "metadata").path == ("metadata", "labels", "team")
    assert "prefix 'Example.com'" in one(spec(metadata={"labels": {"Example.com/x": "1"}}), "metadata").message
    # Kubernetes lower-cases an annotation key before checking it (issue 14)
    assert found(spec(metadata={"annotations": {"MyCompany.com/team": "data"}})) == []
    assert (
        "prefix 'my_company.com'" in one(spec(metadata={"annotations": {"My_Company.com/x": "1"}}), "metadata").message
    )
    assert "longer than 63" in one(spec(metadata={"labels": {"k" * 64: "v"}}), "metadata").message


def test_tolerations_need_a_usable_operator():
    assert (
        found(spec(tolerations=[{"key": "gpu", "operator": "EXISTS"}, {"key": "zone", "operator": 2, "value": "a"}]))
        == []
    )
    assert one(spec(tolerations=[{"key": "gpu"}]), "toleration").path == ("tolerations", 0)
    assert one(spec(tolerations=[{"key": "gpu", "operator": "EMPTY"}]), "toleration")
    assert one(spec(tolerations=[{"key": "g", "operator": "EXISTS", "value": "x"}]), "toleration").path == (
        "tolerations",
        0,
        "value",
    )
    assert one(spec(tolerations=[{"operator": "EQUAL", "value": "x"}]), "toleration")


def test_reprocess_spec_values():
    assert found(spec(reprocess_spec="every_job")) == []
    problem = one(spec(reprocessSpec="always"), "reprocess-spec")
    assert problem.path == ("reprocessSpec",)


# -- robustness and documentation ------------------------------------------------------------


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(
        [
            "pfs",
            "cron",
            "cross",
            "union",
            "join",
            "group",
            "s3",
            "@every 1h",
            "* * * * *",
            "256MB",
            "a:latest",
            "out",
            "",
            "1",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "pipeline",
                    "name",
                    "input",
                    "pfs",
                    "cron",
                    "cross",
                    "union",
                    "join",
                    "group",
                    "repo",
                    "glob",
                    "s3",
                    "spec",
                    "transform",
                    "image",
                    "service",
                    "spout",
                    "parallelism_spec",
                    "resource_limits",
                    "memory",
                    "cpu",
                    "metadata",
                    "labels",
                    "tolerations",
                    "operator",
                    "secrets",
                    "env_var",
                    "pod_spec",
                    "dry_run",
                    "project",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values, st.booleans())
def test_never_raises_on_arbitrary_json(value, strict):
    problems = rules.check(value, strict=strict)
    assert all(p.rule != "internal-error" for p in problems), problems
    for p in problems:
        assert isinstance(p.path, tuple) and p.message and "\n" not in p.message
        assert p.severity in (ERROR, WARNING)
        assert p.rule in set(rules.rule_ids())
        if strict:
            assert p.severity == ERROR


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_never_raises_inside_a_valid_skeleton(value):
    for field in ("input", "transform", "metadata", "service", "resource_limits", "tolerations", "pipeline"):
        doc = base()
        doc[field] = value
        problems = rules.check(doc)
        assert all(p.rule != "internal-error" for p in problems), problems


def test_non_mapping_document_matches_the_schema_problem():
    assert rules.check(["a"]) == schema.check(["a"])


def test_every_rule_id_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `([a-z0-9-]+)`", text, re.MULTILINE))
    assert set(rules.rule_ids()) | wording.SCHEMA_RULE_IDS <= documented


def _doc_examples():
    """(rule id, parsed example) for every rule section of docs/spec-rules.md with an example."""
    text = DOCS.read_text(encoding="utf-8")
    out = []
    for section in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        rule = re.match(r"`([a-z0-9-]+)`", section).group(1)
        block = re.search(r"```(json|yaml)\n(.*?)```", section, re.DOTALL)
        if not block:
            continue
        body = block.group(2)
        if block.group(1) == "json":
            body = re.sub(r"\s+//.*$", "", body, flags=re.MULTILINE)
            out.append((rule, json.loads(body)))
        else:
            out.append((rule, yaml.safe_load(body)))
    return out


@pytest.mark.parametrize("rule, example", _doc_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_documented_example_triggers_its_rule(rule, example):
    reported = {p.rule for p in schema.check(example) + rules.check(example)}
    assert rule in reported, reported


def test_huge_numbers_and_odd_keys_do_not_crash():
    huge = 10**5000
    doc = spec(
        service={"internal_port": 80},
        parallelism_spec={"constant": huge},
        resource_limits={"cpu": huge, "memory": "1Gi"},
        metadata={"labels": {5: "x"}},
    )
    problems = rules.check(doc)
    assert [(p.rule, p.path) for p in problems] == [
        ("service", ("parallelism_spec", "constant")),
        ("resource-quantity", ("resource_limits", "cpu")),
    ]
    assert "got a huge number" in problems[0].message


# --------------------------------------------------------------------------- issue 14


def test_sql_egress_needs_a_secret_with_name_and_key():
    sql = {"url": "snowflake://user@host/db", "fileFormat": {"type": "CSV"}}
    missing = one(spec(egress={"sqlDatabase": dict(sql)}), "egress")
    assert missing.path == ("egress", "sqlDatabase") and "needs a 'secret'" in missing.message
    no_key = one(spec(egress={"sql_database": dict(sql, secret={"name": "db"})}), "egress")
    assert no_key.path == ("egress", "sql_database", "secret") and "needs a 'key'" in no_key.message
    assert found(spec(egress={"sqlDatabase": dict(sql, secret={"name": "db", "key": "password"})})) == []
    assert found(spec(egress={"objectStorage": {"url": "s3://bucket/dir"}})) == []


def test_spout_and_service_together_are_an_error():
    problem = one(spec(input=None, spout={}, service={"internal_port": 80, "external_port": 31800}), "spout")
    assert problem.path == ("service",) and "workers never start" in problem.message
    assert found(spec(input=None, spout={"service": {"internal_port": 80, "external_port": 31800}})) == []


@pytest.mark.parametrize(
    "changes, path",
    [
        ({"transform": None}, ("transform",)),
        ({"update": None}, ("update",)),
        ({"reprocess": None}, ("reprocess",)),
        ({"pipeline": {"name": "edges", "project": None}}, ("pipeline", "project")),
    ],
)
def test_nulls_pachctl_or_pachd_refuse(changes, path):
    doc = base()
    doc.update(changes)  # update, not spec(): None means null here
    problem = one(doc, "null")
    assert problem.path == path and "is null, which fails" in problem.message


def test_durations_beyond_protobuf_range():
    problem = one(spec(datum_timeout="315576000001s"), "duration")
    assert "beyond the range of a protobuf duration" in problem.message
    assert found(spec(datum_timeout="315576000000s", job_timeout="-3600.5s")) == []


def test_impossible_cron_start_times():
    cron = {"name": "tick", "spec": "@hourly", "start": "2024-02-30T00:00:00Z"}
    problem = one(spec(input={"cron": cron}), "timestamp")
    assert problem.path == ("input", "cron", "start") and "not a real date" in problem.message
    assert found(spec(input={"cron": dict(cron, start="2024-02-29T23:59:59Z")})) == []


def test_integer_strings_with_a_zero_fraction_count_as_integers():
    # protojson reads "3.0" as 3 for an integer field
    problem = one(
        spec(service={"internal_port": 80, "external_port": 31800}, parallelism_spec={"constant": "3.0"}), "service"
    )
    assert "(got 3)" in problem.message


# --------------------------------------------------------------------------- target version


def test_fields_newer_than_the_target_version_are_errors():
    from pachhook.spec import versions

    doc = spec(
        maximumExpectedUptime="3600s",
        input={"pfs": {"repo": "images", "glob": "/*", "propagationSpec": {"never": True}, "reference": True}},
    )
    doc["pipeline"]["project"] = {"name": "team"}
    at_2_8 = versions.check(doc, (2, 8))
    assert {(p.path, p.rule) for p in at_2_8} == {
        (("maximumExpectedUptime",), "newer-field"),
        (("input", "pfs", "propagationSpec"), "newer-field"),
        (("input", "pfs", "reference"), "newer-field"),
    }
    assert all("pachyderm_version is 2.8" in p.message for p in at_2_8)
    assert "needs Pachyderm 2.9" in at_2_8[0].message
    assert {p.path[-1] for p in versions.check(doc, (2, 11))} == {"propagationSpec", "reference"}
    assert versions.check(doc, (2, 12)) == [] and versions.check(doc, None) == []
    # project came with 2.5, also inside a cross
    crossed = spec(input={"cross": [{"pfs": {"repo": "a", "glob": "/", "project": "p"}}, {"cron": {"name": "t"}}]})
    assert [p.path for p in versions.check(crossed, (2, 4))] == [("input", "cross", 0, "pfs", "project")]


def test_target_version_from_the_configuration_reaches_validate(tmp_path, monkeypatch):
    import subprocess
    import sys

    (tmp_path / ".git").mkdir()
    (tmp_path / ".pachhook.toml").write_text('pachyderm_version = "2.8"\n')
    template = tmp_path / "pipeline.yaml"
    template.write_text("pipeline: {name: a}\ntransform: {image: busybox}\nmaximum_expected_uptime: 60s\n")
    run = [sys.executable, "-m", "pachhook", "validate", "pipeline.yaml"]
    result = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1 and "needs Pachyderm 2.9, and pachyderm_version is 2.8" in result.stdout
    newer = subprocess.run(
        run + ["--pachyderm-version", "2.9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert newer.returncode == 0, newer.stdout
    (tmp_path / ".pachhook.toml").write_text('pachyderm_version = "1.13"\n')
    bad = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert bad.returncode == 1 and "pachyderm_version" in bad.stderr and "2.x" in bad.stderr

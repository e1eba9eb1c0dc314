"""`pachhook plan`, `run --dry-run`'s plan and the pre-push summary, against real git
repositories and the pachctl TEST DOUBLE (tests/doubles/pachctl: user and effective specs,
`list datum -f`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gitutil import PACHCTL_DOUBLE, PROD_AND_DEV, Repo, make_repo, template

from pachhook.deliver.preview import diff_specs

FIXED = "busybox:1.36"  # a fixed image: delivering it needs no Docker engine


@pytest.fixture
def repo(tmp_path) -> Repo:
    repo = make_repo(tmp_path, pipelines=())
    repo.write("edges/pipeline.json", template("edges", image=FIXED))
    repo.write("montage/pipeline.json", template("montage", image=FIXED, inputs=["edges"]))
    repo.commit("two pipelines")
    state = tmp_path / "pachctl-state"
    (state / "repos").mkdir(parents=True)
    (state / "repos" / "images.json").write_text(json.dumps(["/a.png", "/b.png", "/c/d.png"]))
    (state / "repos" / "edges.json").write_text(json.dumps(["/a.png"]))
    repo.env["PACHCTL_DOUBLE_DIR"] = str(state)
    repo.env["PATH"] = f"{PACHCTL_DOUBLE.parent}{os.pathsep}{repo.env['PATH']}"
    return repo


def deliver(repo: Repo) -> None:
    out = repo.pachhook("run", "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr


def test_new_pipelines_are_created_with_their_datum_counts(repo):
    out = repo.pachhook("plan")
    assert out.returncode == 0, out.stderr
    sha = repo.git("rev-parse", "HEAD")
    assert out.stdout.splitlines() == [
        f"plan for {sha[:12]} (main) to env default (the active pachctl context) against pachctl 2.11.6",
        "edges: create, 3 datum(s)",
        "  applying: creates the pipeline (version 1); its first job processes every datum",
        "  datums: 3 (pachctl list datum -f)",
        "montage: create, 1 datum(s)",
        "  applying: creates the pipeline (version 1); its first job processes every datum",
        "  datums: 1 (pachctl list datum -f)",
    ]


def test_a_changed_template_is_a_field_by_field_difference_with_the_user_spec(repo):
    deliver(repo)
    first = repo.git("rev-parse", "HEAD")
    spec = json.loads(template("edges", image="busybox:1.37"))
    spec["parallelism_spec"] = {"constant": 4}
    spec["transform"]["cmd"] = ["/bin/sh", "-c", "edges"]
    repo.write("edges/pipeline.json", json.dumps(spec))
    second = repo.commit("edges: new image, 4 workers")

    out = repo.pachhook("plan")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert (
        lines[0] == f"plan for {second[:12]} (main) to env default (the active pachctl context) against pachctl 2.11.6"
    )
    assert lines[1] == (
        "edges: update v1 -> v2 (3 field(s): parallelism_spec.constant, transform.cmd[2], transform.image), 3 datum(s)"
    )
    assert lines[2] == f"  live: v1, from commit {first[:12]}"
    assert lines[3:6] == [
        "  + parallelism_spec.constant: 4",
        '  ~ transform.cmd[2]: "true" -> "edges"',
        '  ~ transform.image: "busybox:1.36" -> "busybox:1.37"',
    ]
    assert lines[6] == (
        "  applying: a new version v2; unfinished jobs of v1 are killed (pachd kills them on every update);"
        " datums processed before with the same input are not processed again (no --reprocess)"
    )
    # The live effective spec carries the cluster's default datum_tries: compared with the
    # user spec, montage (unchanged) is no change, and datum_tries is no removal.
    assert lines[8] == "montage: no change (v1 runs this spec)"
    assert "datum_tries" not in out.stdout
    # pachhook's own annotations change with every commit and are not a difference
    assert "pachhook.io" not in out.stdout


def test_reprocess_is_said_when_configured(repo):
    deliver(repo)
    repo.write(".pachhook.toml", 'worker = "manual"\nreprocess = true\n')
    repo.write("edges/pipeline.json", template("edges", image="busybox:1.37"))
    repo.commit("new image")
    out = repo.pachhook("plan", "--no-datums")
    assert "every datum is processed again (--reprocess)" in out.stdout
    assert "datums:" not in out.stdout


def test_without_a_cluster_it_says_so_and_shows_the_rendered_specs(repo):
    repo.write(".pachhook.toml", 'worker = "manual"\npachctl = "pachctl-not-installed"\n')
    sha = repo.commit("no pachctl")
    out = repo.pachhook("plan")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"plan for {sha[:12]} (main) to env default (the active pachctl context)"
    assert lines[1].startswith("no cluster to compare with (pachctl not found (looked for 'pachctl-not-installed')")
    assert lines[1].endswith("the specs that would be applied:")
    assert lines[2] == "edges (edges/pipeline.json):"
    assert any(line.strip() == '"image": "busybox:1.36",' for line in lines)


def test_a_cluster_that_stops_answering_is_asked_once(repo):
    repo.env["PACHCTL_DOUBLE_FAIL"] = "inspect:rpc error: code = Unavailable desc = connection refused"
    out = repo.pachhook("plan")
    assert out.returncode == 0, out.stderr
    assert "no cluster to compare with (pachctl inspect pipeline edges failed: rpc error" in out.stdout
    calls = [
        json.loads(line) for line in (Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "calls.jsonl").read_text().splitlines()
    ]
    assert sum(call[:2] == ["inspect", "pipeline"] for call in calls) == 1


def test_datums_the_cluster_cannot_count_are_said_unknown(repo):
    os.unlink(Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "repos" / "images.json")
    out = repo.pachhook("plan")
    assert "  datums: not known (pachctl list datum -f failed: repo images not found)" in out.stdout


def test_json_output_and_templates_that_do_not_render(repo):
    data = json.loads(repo.pachhook("plan", "--format", "json").stdout)
    assert [(p["pipeline"], p["action"], p["datums"]) for p in data["pipelines"]] == [
        ("edges", "create", 3),
        ("montage", "create", 1),
    ]
    broken = json.loads(template("edges", image=FIXED))
    broken["description"] = "{{ nope }}"
    repo.write("edges/pipeline.json", json.dumps(broken))
    repo.commit("broken")
    out = repo.pachhook("plan")
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("pachhook plan: edges/pipeline.json:")
    assert "unknown placeholder {{ nope }}" in out.stderr


def test_dry_run_starts_with_the_plan_and_applies_nothing(repo):
    deliver(repo)
    repo.write("edges/pipeline.json", template("edges", image="busybox:1.37"))
    repo.commit("new image")
    out = repo.pachhook("run", "--commit", "HEAD", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "edges: update v1 -> v2 (1 field(s): transform.image), 3 datum(s)" in out.stdout
    assert '  ~ transform.image: "busybox:1.36" -> "busybox:1.37"' in out.stdout
    record = json.loads((Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "pipelines" / "edges.json").read_text())
    assert record["version"] == 1


def test_pre_push_prints_one_line_per_pipeline_when_configured(repo):
    deliver(repo)
    repo.write("edges/pipeline.json", template("edges", image="busybox:1.37"))
    sha = repo.commit("new image")
    quiet = repo.pachhook("check-push")
    assert quiet.returncode == 0, quiet.stderr
    assert "pachhook plan" not in quiet.stdout
    repo.write(".pachhook.toml", 'worker = "manual"\nplan_on_push = true\n')
    sha = repo.commit("plan on push")
    out = repo.pachhook("check-push")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == [
        f"pachhook plan: {sha[:12]}: edges: update v1 -> v2 (1 field(s): transform.image), 3 datum(s)",
        f"pachhook plan: {sha[:12]}: montage: no change (v1 runs this spec)",
    ]
    repo.env["PACHCTL_DOUBLE_FAIL"] = "inspect:connection refused"
    out = repo.pachhook("check-push")
    assert out.returncode == 0  # the plan informs; it never refuses a push
    assert out.stdout.splitlines()[-1].startswith(f"pachhook plan: {sha[:12]}: no cluster to compare with (")


def test_diff_specs_fields_added_removed_changed_and_bounded():
    live = {
        "transform": {"image": "a:1", "cmd": ["x"], "env": {"A": "1"}},
        "datum_tries": 3,
        "metadata": {"annotations": {"pachhook.io/commit": "old", "team": "a"}},
    }
    wanted = {
        "transform": {"image": "a:2", "cmd": ["x", "y"]},
        "metadata": {"annotations": {"pachhook.io/commit": "new", "team": "b\x1b[31m" + "z" * 200}},
    }
    lines = [change.describe() for change in diff_specs(live, wanted)]
    assert lines[0] == "- datum_tries: 3"
    assert lines[1].startswith('~ metadata.annotations.team: "a" -> "b\\u001b[31mzzz')  # escaped, never raw
    assert "\x1b" not in lines[1]
    assert lines[1].endswith("...") and len(lines[1]) < 200
    assert lines[2:] == ['+ transform.cmd[1]: "y"', '- transform.env.A: "1"', '~ transform.image: "a:1" -> "a:2"']
    assert [c.kind for c in diff_specs({"a": 1}, {"a": True})] == ["changed"]


def test_the_plan_is_for_the_branchs_environment_or_the_one_named(repo, tmp_path):
    user_file = tmp_path / "pach-config.json"
    user_file.write_text(json.dumps({"v2": {"active_context": "prod", "contexts": {"prod": {}, "dev": {}}}}))
    before = user_file.read_bytes()
    repo.env["PACH_CONFIG"] = str(user_file)
    repo.write(".pachhook.toml", PROD_AND_DEV)
    repo.git("checkout", "-q", "-b", "feature/Sobel")
    sha = repo.commit("prod and dev")
    state = Path(repo.env["PACHCTL_DOUBLE_DIR"])
    (state / "repos" / "edges-feature-sobel.json").write_text(json.dumps(["/a.png", "/b.png"]))

    out = repo.pachhook("plan")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [
        f"plan for {sha[:12]} (feature/Sobel) to env dev (context dev, project dev) against pachctl 2.11.6",
        "edges-feature-sobel: create, 3 datum(s)",
    ]
    # montage reads the branch's own copy of edges, as the update step would apply it
    assert "montage-feature-sobel: create, 2 datum(s)" in out.stdout
    used = [json.loads(line) for line in (state / "envs.jsonl").read_text().splitlines()]
    assert {entry["PACH_CONTEXT"] for entry in used} == {"dev"}
    assert str(user_file) not in {entry["PACH_CONFIG"] for entry in used}  # a private session
    assert user_file.read_bytes() == before

    out = repo.pachhook("plan", "--env", "prod", "--no-datums")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [
        f"plan for {sha[:12]} (feature/Sobel) to env prod (context prod) against pachctl 2.11.6",
        "edges: create",
    ]
    out = repo.pachhook("plan", "--env", "staging")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "pachhook plan: no environment named 'staging' (environments: prod, dev)\n"

    repo.git("checkout", "-q", "-b", "scratch")
    out = repo.pachhook("plan")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1] == (
        "not compared: branch scratch delivers to no environment (`pachhook plan --env NAME` compares with one);"
        " the specs as rendered:"
    )

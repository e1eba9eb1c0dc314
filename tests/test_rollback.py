"""`pachhook rollback` and `pachhook release`, against real git repositories and the pachctl
TEST DOUBLE (tests/doubles/pachctl: pipeline versions, user specs, `list pipeline --history`).

The runbook of docs/plan-and-rollback.md, step by step: a new image misbehaves, roll back
to the commit before, the queue does not roll forward, release, deliver again.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from gitutil import PACHCTL_DOUBLE, PROD_AND_DEV, Repo, make_repo, template

from pachhook.deliver.reapply import RollbackError, from_history, parse_target, pinned_image

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def repo(tmp_path) -> Repo:
    repo = make_repo(tmp_path, pipelines=())
    repo.write("edges/pipeline.json", template("edges", image="busybox:1.36"))
    repo.commit("edges on busybox 1.36")
    state = tmp_path / "pachctl-state"
    state.mkdir()
    repo.env["PACHCTL_DOUBLE_DIR"] = str(state)
    repo.env["PATH"] = f"{PACHCTL_DOUBLE.parent}{os.pathsep}{repo.env['PATH']}"
    return repo


def live(repo: Repo, name: str = "edges") -> dict:
    return json.loads((Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "pipelines" / f"{name}.json").read_text())


def deliver_through_the_queue(repo: Repo) -> str:
    queued = repo.pachhook("queue", "--no-worker")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    return repo.pachhook("run").stdout


def new_image(repo: Repo, tag: str) -> str:
    repo.write("edges/pipeline.json", template("edges", image=f"busybox:{tag}"))
    return repo.commit(f"edges on busybox {tag}")


def test_the_runbook_roll_back_hold_release(repo):
    good = repo.git("rev-parse", "HEAD")
    deliver_through_the_queue(repo)
    bad = new_image(repo, "1.37")
    deliver_through_the_queue(repo)
    assert live(repo)["version"] == 2

    # the new image misbehaves: back to the commit before, from the local ledger
    out = repo.pachhook("rollback", "edges", "--to", good[:8])
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"rollback edges in env default (context default, project default): from v2 (commit {bad[:12]})"
    assert lines[1] == f"  to the user spec of v1 (commit {good[:12]}), from the local ledger"
    assert lines[2] == "  going back along the branch: the forward-only order is overridden for this rollback"
    assert '  ~ transform.image: "busybox:1.37" -> "busybox:1.36"' in lines
    assert "  applied: edges is at v3, running busybox:1.36" in lines
    assert lines[-1] == (
        "  held: the queue will not update edges in env default until `pachhook release edges --env default`"
        " (or an explicit `pachhook run --commit REV`)"
    )
    record = live(repo)
    assert record["version"] == 3
    assert record["spec"]["transform"]["image"] == "busybox:1.36"
    annotations = record["spec"]["metadata"]["annotations"]
    assert annotations["pachhook.io/commit"] == good  # what runs is the good commit's code
    assert annotations["pachhook.io/rollback-from-version"] == "2"
    # the same provenance stamp as a delivery: pipeline metadata of the new version (2.11+)
    assert record["metadata"] == {
        "pachhook.io/commit": good,
        "pachhook.io/template": "edges/pipeline.json",
    }
    assert "  provenance stamped as annotations, pipeline-metadata, commit-metadata" in lines

    # a fix is committed: the queue builds it but does not roll the pipeline forward
    fixed = new_image(repo, "1.38")
    ran = deliver_through_the_queue(repo)
    assert live(repo)["version"] == 3
    assert "update: failed: held: edges in env default is held at v3" in ran
    status = repo.pachhook("status").stdout
    assert "held: edges in env default at v3 (rollback to v1 (commit " in status
    assert "rollback at " in status and "rollback of edges in env default from v2 to the spec of v1" in status
    provenance = repo.pachhook("provenance", "edges")
    assert "rollback " in provenance.stdout and "applied as v3" in provenance.stdout

    # release: the job the hold stopped is queued again and delivers the fix
    released = repo.pachhook("release", "edges")
    assert released.returncode == 0, released.stderr
    assert released.stdout.splitlines()[0].startswith(
        "released edges in env default (held at v3 since the rollback to v1"
    )
    assert f"(commit {fixed[:12]}) queued again" in released.stdout
    repo.pachhook("run")
    assert live(repo)["version"] == 4
    assert live(repo)["spec"]["transform"]["image"] == "busybox:1.38"
    again = repo.pachhook("release", "edges")
    assert again.returncode == 1
    assert again.stderr == "pachhook release: edges is not held in env default\n"


def test_from_the_cluster_history_with_the_recorded_digest_in_a_fresh_clone(repo, tmp_path):
    # Another clone delivered v1 with a pushed image and its digest: this clone has no ledger.
    first = repo.git("rev-parse", "HEAD")
    spec = json.loads(template("edges", image="registry.example.com/team/edges:" + first))
    spec["metadata"] = {"annotations": {"pachhook.io/commit": first, "pachhook.io/image-digest": DIGEST}}
    (tmp_path / "v1.json").write_text(json.dumps(spec))
    subprocess.run(
        ["pachctl", "update", "pipeline", "-f", str(tmp_path / "v1.json")], env=repo.env, check=True, timeout=60
    )
    new_image(repo, "1.37")
    out = repo.pachhook("run", "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr
    assert live(repo)["version"] == 2

    out = repo.pachhook("rollback", "edges", "--to", "v1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "  to the user spec of v1 (commit " + first[:12] + "), from the cluster history" in out.stdout
    pinned = f"registry.example.com/team/edges:{first}@{DIGEST}"
    assert f"  image pinned to the recorded digest: {pinned}" in out.stdout
    assert live(repo)["spec"]["transform"]["image"] == pinned
    # an explicit delivery of a commit ends the hold
    out = repo.pachhook("run", "--commit", "HEAD")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "edges: hold released (it was held at v3 since the rollback to v1" in out.stdout
    assert live(repo)["version"] == 4
    assert "held:" not in repo.pachhook("status").stdout


def test_dry_run_applies_and_holds_nothing(repo):
    first = repo.git("rev-parse", "HEAD")
    deliver_through_the_queue(repo)
    second = new_image(repo, "1.37")
    deliver_through_the_queue(repo)
    out = repo.pachhook("rollback", "edges", "--to", first, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == [
        "  dry run: nothing applied, no hold placed",
        f"  to apply it only while v2 (commit {second[:12]}) runs: pachhook rollback edges --to {first} --from v2",
    ]
    assert live(repo)["version"] == 2
    assert "held:" not in repo.pachhook("status").stdout


def test_what_cannot_be_rolled_back_is_one_line(repo):
    out = repo.pachhook("rollback", "edges", "--to", "v1")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        "pachhook rollback: pipeline edges does not exist in env default (context default, project default):"
        " nothing to roll back\n"
    )
    deliver_through_the_queue(repo)
    out = repo.pachhook("rollback", "edges", "--to", "v7")
    assert out.returncode == 1
    assert out.stderr.startswith("pachhook rollback: no recorded spec of edges for v7: neither the local ledger")
    assert "Traceback" not in out.stderr
    usage = repo.pachhook("rollback", "edges")
    assert usage.returncode == 2


def test_targets_pins_and_a_cluster_without_user_specs():
    assert parse_target("v3") == {"version": "3"}
    assert parse_target("12") == {"version": "12"}
    assert parse_target("0a1b2c3") == {"commit": "0a1b2c3"}
    assert pinned_image("busybox:1.36", DIGEST) == f"busybox:1.36@{DIGEST}"
    assert pinned_image(f"busybox@{DIGEST}", DIGEST) == f"busybox@{DIGEST}"
    assert pinned_image("busybox:1.36", "") == "busybox:1.36"
    effective_only = [{"version": "2", "details": {"transform": {"image": "a:1"}}}]
    with pytest.raises(RollbackError, match=r"^the cluster records no user spec for v2 \(pachd before 2\.8"):
        from_history(effective_only, {"version": "2"})
    assert from_history(effective_only, {"version": "1"}) is None


# -- the order guard ---------------------------------------------------------------------


def apply_by_hand(repo: Repo, tmp_path: Path, commit: str, image: str) -> None:
    """Another deliverer (another clone, a person with pachctl) applies a spec annotated with `commit`."""
    spec = json.loads(template("edges", image=image))
    spec["metadata"] = {"annotations": {"pachhook.io/commit": commit}}
    path = tmp_path / f"by-hand-{commit[:8]}.json"
    path.write_text(json.dumps(spec))
    subprocess.run(["pachctl", "update", "pipeline", "-f", str(path)], env=repo.env, check=True, timeout=60)


def test_a_live_pipeline_other_than_from_names_is_refused_unless_forced(repo):
    good = repo.git("rev-parse", "HEAD")
    deliver_through_the_queue(repo)
    bad = new_image(repo, "1.37")
    deliver_through_the_queue(repo)
    # the user looked while v1 ran; since then v2 was delivered
    out = repo.pachhook("rollback", "edges", "--to", good, "--from", "v1")
    assert out.returncode == 1
    assert out.stderr == (
        f"pachhook rollback: refused: the live pipeline is v2 (commit {bad[:12]}), not v1 as --from says:"
        " it changed since you looked; `pachhook rollback --force` overrides\n"
    )
    assert live(repo)["version"] == 2
    assert "held:" not in repo.pachhook("status").stdout
    out = repo.pachhook("rollback", "edges", "--to", good, "--from", "main~1")  # a commit, resolved by git
    assert out.returncode == 1
    assert f"not {good[:12]} as --from says" in out.stderr
    # what the user saw, as git names it (here main's tip), matches what runs
    assert repo.pachhook("rollback", "edges", "--to", good, "--from", "main").returncode == 0
    assert live(repo)["version"] == 3


def test_a_live_commit_this_clone_never_saw_is_refused_unless_forced(repo, tmp_path):
    good = repo.git("rev-parse", "HEAD")
    deliver_through_the_queue(repo)
    elsewhere = "5" * 40  # delivered from another clone, not fetched here
    apply_by_hand(repo, tmp_path, elsewhere, "busybox:1.39")
    out = repo.pachhook("rollback", "edges", "--to", good)
    assert out.returncode == 1
    assert out.stderr.startswith(
        "pachhook rollback: refused: the live pipeline runs commit 555555555555, which this clone has never seen:"
    )
    assert out.stderr.endswith("`pachhook rollback --force` overrides\n")
    assert live(repo)["version"] == 2
    forced = repo.pachhook("rollback", "edges", "--to", good, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "  forced: the live pipeline runs commit 555555555555, which this clone has never seen:" in forced.stdout
    assert live(repo)["spec"]["transform"]["image"] == "busybox:1.36"


def test_a_live_commit_off_the_targets_line_is_refused(repo, tmp_path):
    good = repo.git("rev-parse", "HEAD")
    deliver_through_the_queue(repo)
    bad = new_image(repo, "1.37")
    deliver_through_the_queue(repo)
    repo.git("checkout", "-q", "-b", "other", good)
    repo.write("edges/pipeline.json", template("edges", image="busybox:1.40"))
    other = repo.commit("another line")
    repo.git("checkout", "-q", "main")
    apply_by_hand(repo, tmp_path, other, "busybox:1.40")
    out = repo.pachhook("rollback", "edges", "--to", bad)
    assert out.returncode == 1
    assert out.stderr == (
        f"pachhook rollback: refused: the live pipeline runs commit {other[:12]}, which is not on the line of"
        f" {bad[:12]} (another branch, or a force push, delivered it); `pachhook rollback --force` overrides\n"
    )


# -- environments ------------------------------------------------------------------------

USER_CONFIG = {
    "user_id": "u1",
    "v2": {
        "active_context": "prod",
        "contexts": {"prod": {"pachd_address": "grpc://prod.example:30650"}, "dev": {"project": "dev"}},
    },
}


def envs_used(repo: Repo) -> list:
    path = Path(repo.env["PACHCTL_DOUBLE_DIR"]) / "envs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def two_environments(repo, tmp_path) -> Repo:
    user_file = tmp_path / "pach-config.json"
    user_file.write_text(json.dumps(USER_CONFIG))
    repo.env["PACH_CONFIG"] = str(user_file)
    subprocess.run(
        [str(PACHCTL_DOUBLE), "create", "project", "dev"],
        env=repo.env,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    repo.write(".pachhook.toml", PROD_AND_DEV)
    repo.commit("prod and dev")
    return repo


def test_rollback_and_release_act_on_one_environment_in_a_private_session(two_environments, tmp_path):
    repo = two_environments
    user_file = Path(repo.env["PACH_CONFIG"])
    before = user_file.read_bytes()
    prod_good = repo.git("rev-parse", "HEAD")
    deliver_through_the_queue(repo)
    new_image(repo, "1.37")
    deliver_through_the_queue(repo)
    repo.git("checkout", "-q", "-b", "feature/Sobel")
    dev_good = new_image(repo, "1.38")
    deliver_through_the_queue(repo)
    new_image(repo, "1.39")
    deliver_through_the_queue(repo)
    assert live(repo)["version"] == 2
    assert live(repo, "dev/edges-feature-sobel")["version"] == 2

    # on the feature branch: its own copy, in dev's context and project
    out = repo.pachhook("rollback", "edges", "--to", dev_good)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].startswith(
        "rollback edges-feature-sobel in env dev (context dev, project dev): from v2 (commit "
    )
    assert out.stdout.splitlines()[-1] == (
        "  held: the queue will not update edges-feature-sobel in env dev until"
        " `pachhook release edges --env dev --branch feature/Sobel`"
        " (or an explicit `pachhook run --commit REV`)"
    )
    dev = live(repo, "dev/edges-feature-sobel")
    assert (dev["version"], dev["spec"]["transform"]["image"]) == (3, "busybox:1.38")
    assert live(repo)["version"] == 2  # prod untouched
    used = envs_used(repo)[-1]
    assert used["PACH_CONTEXT"] == "dev" and used["PACH_CONFIG"] != str(user_file)
    assert user_file.read_bytes() == before  # the user's active context and file are left alone

    # the hold on dev stops dev's queue, not prod's
    new_image(repo, "1.40")
    assert "update: failed: held: edges-feature-sobel in env dev (project dev) is held at v3" in (
        deliver_through_the_queue(repo)
    )
    repo.git("checkout", "-q", "main")
    new_image(repo, "1.41")
    ran = deliver_through_the_queue(repo)
    assert "held" not in ran
    assert live(repo)["spec"]["transform"]["image"] == "busybox:1.41"

    # from main, --env names dev; its suffix needs the branch
    out = repo.pachhook("release", "edges", "--env", "dev")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.startswith("pachhook release: environment dev names its pipelines after their branch")
    out = repo.pachhook("release", "edges", "--env", "prod")
    assert out.returncode == 1
    assert out.stderr == (
        "pachhook release: edges is not held in env prod (held: edges-feature-sobel in env dev (project dev))\n"
    )
    out = repo.pachhook("release", "edges", "--env", "dev", "--branch", "feature/Sobel")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("released edges-feature-sobel in env dev (project dev) (held at v3")

    # --env prod from any branch rolls back prod's pipeline, in prod's context
    out = repo.pachhook("rollback", "edges", "--to", prod_good, "--env", "prod", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("rollback edges in env prod (context prod, project default): from v3")
    out = repo.pachhook("rollback", "edges", "--to", "v1", "--env", "staging")
    assert (out.returncode, out.stderr) == (
        2,
        "pachhook rollback: no environment named 'staging' (environments: prod, dev)\n",
    )


def test_holds_of_the_old_format_hold_everywhere_until_released(repo):
    from pachhook.deliver.holds import Holds, PipelineKey

    folder = repo.common_dir / "pachhook"
    folder.mkdir(parents=True, exist_ok=True)
    old = {"holds": {"edges": {"pipeline": "edges", "since": 1.0, "reason": "rollback to v1", "version": "3"}}}
    (folder / "holds.json").write_text(json.dumps(old))
    holds = Holds(folder)
    for environment in ("default", "prod", "dev"):
        assert holds.held(PipelineKey(environment, "", "edges")) is not None
    assert holds.held(PipelineKey("prod", "other", "edges")) is None
    status = repo.pachhook("status").stdout
    assert "held: edges in every environment at v3 (rollback to v1, " in status
    assert "`pachhook release edges` to deliver it again" in status
    out = repo.pachhook("release", "edges")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("released edges in every environment (held at v3 since the rollback to v1)")
    data = json.loads((folder / "holds.json").read_text())
    assert (data["format"], data["holds"]) == (2, [])


def test_how_the_guard_places_a_target_against_what_runs(repo):
    from pachhook.deliver.reapply import guard

    good = repo.git("rev-parse", "HEAD")
    bad = new_image(repo, "1.37")
    back = "going back along the branch: the forward-only order is overridden for this rollback"
    assert guard(good, bad, repo.path, force=False) == back
    assert guard(bad, good, repo.path, force=False) == (
        f"{bad[:12]} is newer than the live commit {good[:12]}: this moves the pipeline forward"
    )
    assert guard("6" * 40, bad, repo.path, force=False) == (
        "commit 666666666666 is not in this clone: its place in the branch's history is not checked"
    )
    # nothing to compare: the same commit, or a live pipeline pachhook did not deliver
    assert guard(good, good, repo.path, force=False) == ""
    assert guard(good, "", repo.path, force=False) == ""
    with pytest.raises(RollbackError, match=r"^refused: the live pipeline runs commit 777777777777, which this clone"):
        guard(good, "7" * 40, repo.path, force=False)

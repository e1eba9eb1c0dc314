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
from gitutil import PACHCTL_DOUBLE, Repo, make_repo, template

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
    assert lines[0] == f"rollback edges: from v2 (commit {bad[:12]})"
    assert lines[1] == f"  to the user spec of v1 (commit {good[:12]}), from the local ledger"
    assert lines[2] == "  going back along the branch: the forward-only order is overridden for this rollback"
    assert '  ~ transform.image: "busybox:1.37" -> "busybox:1.36"' in lines
    assert "  applied: edges is at v3, running busybox:1.36" in lines
    assert lines[-1].startswith("  held: the queue will not update edges until `pachhook release edges`")
    record = live(repo)
    assert record["version"] == 3
    assert record["spec"]["transform"]["image"] == "busybox:1.36"
    annotations = record["spec"]["metadata"]["annotations"]
    assert annotations["pachhook.io/commit"] == good  # what runs is the good commit's code
    assert annotations["pachhook.io/rollback-from-version"] == "2"

    # a fix is committed: the queue builds it but does not roll the pipeline forward
    fixed = new_image(repo, "1.38")
    ran = deliver_through_the_queue(repo)
    assert live(repo)["version"] == 3
    assert "update: failed: held: edges is held at v3" in ran
    status = repo.pachhook("status").stdout
    assert "held: edges at v3 (rollback to v1 (commit " in status
    assert "rollback at " in status and "rollback of edges from v2 to the spec of v1" in status
    provenance = repo.pachhook("provenance", "edges")
    assert "rollback " in provenance.stdout and "applied as v3" in provenance.stdout

    # release: the job the hold stopped is queued again and delivers the fix
    released = repo.pachhook("release", "edges")
    assert released.returncode == 0, released.stderr
    assert released.stdout.splitlines()[0].startswith("released edges (held at v3 since the rollback to v1")
    assert f"(commit {fixed[:12]}) queued again" in released.stdout
    repo.pachhook("run")
    assert live(repo)["version"] == 4
    assert live(repo)["spec"]["transform"]["image"] == "busybox:1.38"
    again = repo.pachhook("release", "edges")
    assert again.returncode == 1
    assert again.stderr == "pachhook release: edges is not held\n"


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
    new_image(repo, "1.37")
    deliver_through_the_queue(repo)
    out = repo.pachhook("rollback", "edges", "--to", first, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "  dry run: nothing applied, no hold placed"
    assert live(repo)["version"] == 2
    assert "held:" not in repo.pachhook("status").stdout


def test_what_cannot_be_rolled_back_is_one_line(repo):
    out = repo.pachhook("rollback", "edges", "--to", "v1")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == "pachhook rollback: pipeline edges does not exist on the cluster: nothing to roll back\n"
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

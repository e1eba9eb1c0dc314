"""The API backend over real gRPC against the pps_v2.API TEST DOUBLE (tests/doubles/pps_server.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pachyderm_sdk", reason="the API backend needs pachyderm-sdk: pip install 'pachhook[api]'")
pytest.importorskip("grpc", reason="the pps_v2.API test double needs grpcio")

from doubles import pps_server  # noqa: E402
from test_update import DIGEST, IMAGE, context, git, make_repo  # noqa: E402

from pachhook.deliver.backends.api import ApiBackend  # noqa: E402
from pachhook.deliver.backends.pachctl import Apply, BackendError  # noqa: E402
from pachhook.deliver.steps.base import StepError, run_step  # noqa: E402

TOKEN = "s3cr3t-session-token-for-tests"


def write_config(path: Path, address: str, **extra) -> Path:
    context_body = {"pachd_address": address, "session_token": TOKEN, "source": 2}
    context_body.update(extra)
    path.write_text(
        json.dumps({"user_id": "u", "v2": {"active_context": "local", "contexts": {"local": context_body}}})
    )
    return path


@pytest.fixture
def pachd(tmp_path, monkeypatch):
    server, port, double = pps_server.start()
    config = write_config(tmp_path / "pach-config.json", f"grpc://127.0.0.1:{port}")
    monkeypatch.setenv("PACH_CONFIG", str(config))
    monkeypatch.delenv("PACHHOOK_PACHCTL_TIMEOUT", raising=False)
    yield double
    double.released.set()
    server.stop(grace=None)


def spec(image: str = "a/b:1") -> str:
    return json.dumps(
        {
            "pipeline": {"name": "edges"},
            "transform": {"image": image},
            "metadata": {"annotations": {"pachhook.io/commit": "c1"}},
        }
    )


def test_update_then_inspect_round_trip(pachd):
    backend = ApiBackend()
    assert backend.inspect("edges") is None
    backend.update("unused.json", spec(), reprocess=True)
    state = backend.inspect("edges")
    assert (state.version, state.image, state.annotations) == ("1", "a/b:1", {"pachhook.io/commit": "c1"})
    [request] = pachd.received
    assert request.update is True and request.reprocess is True
    assert json.loads(request.spec_json)["transform"]["image"] == "a/b:1"
    assert request.token == TOKEN  # the session token of the pachctl config authenticates the call


def test_update_step_with_the_api_backend(tmp_path, pachd):
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'backend = "api"\n'})
    sha = git(repo, "rev-parse", "HEAD")
    logs: list = []
    result = run_step("update", context(repo, logs=logs))
    assert result.outcome == "done"
    assert result.data["pipeline_version"] == "1"
    assert result.data["backend"] == "api"
    [request] = pachd.received
    sent = json.loads(request.spec_json)
    assert sent["transform"]["image"] == f"{IMAGE}:{sha}"
    assert sent["metadata"]["annotations"]["pachhook.io/image-digest"] == DIGEST
    assert request.reprocess is False
    # Idempotent here too: the second run finds the pipeline in place.
    again = run_step("update", context(repo))
    assert again.outcome == "reused" and len(pachd.received) == 1
    # The token is never written where pachhook writes.
    written = "\n".join(logs) + json.dumps(result.data) + Path(result.data["spec_path"]).read_text()
    assert TOKEN not in written


def test_cluster_keeping_another_image_fails_the_job(tmp_path, pachd):
    pachd.image_override = "ubuntu:20.04"
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'backend = "api"\n'})
    with pytest.raises(StepError, match="runs ubuntu:20.04"):
        run_step("update", context(repo))


def test_unknown_context_keys_are_named_without_values(tmp_path, monkeypatch):
    config = write_config(tmp_path / "c.json", "grpc://127.0.0.1:1", future_setting="x-value")
    monkeypatch.setenv("PACH_CONFIG", str(config))
    with pytest.raises(BackendError) as caught:
        ApiBackend().update("s.json", spec(), False)
    message = str(caught.value)
    assert "unknown keys future_setting" in message
    assert "x-value" not in message and TOKEN not in message
    assert caught.value.retryable is False


def test_missing_configuration_says_how_to_connect(tmp_path, monkeypatch):
    monkeypatch.setenv("PACH_CONFIG", str(tmp_path / "absent.json"))
    with pytest.raises(BackendError, match="no pachctl configuration at .*pachctl connect"):
        ApiBackend().inspect("edges")


def test_unreachable_pachd_is_a_retryable_one_line_error(tmp_path, monkeypatch):
    server, port, _ = pps_server.start()
    server.stop(grace=None)  # the port is now closed
    monkeypatch.setenv("PACH_CONFIG", str(write_config(tmp_path / "c.json", f"grpc://127.0.0.1:{port}")))
    with pytest.raises(BackendError) as caught:
        ApiBackend(timeout=5).update("s.json", spec(), False)
    assert "cannot connect" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.retryable is True


def test_a_pachd_that_does_not_answer_times_out(pachd):
    pachd.hang = "CreatePipelineV2"
    started = time.monotonic()
    with pytest.raises(BackendError, match="timed out"):
        ApiBackend(timeout=1).update("s.json", spec(), False)
    assert time.monotonic() - started < 10


def test_importing_the_update_step_does_not_import_the_sdk():
    code = (
        "import sys, pachhook.deliver.steps.update, pachhook.deliver.backends.pachctl; "
        "print('pachyderm_sdk' in sys.modules, 'grpc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- transactions: a commit's pipelines applied at FinishTransaction, all or none ----------------


def live(pachd) -> dict:
    """name -> (version, spec commit) of every pipeline the double's cluster has."""
    return {
        name: (record["version"], record["spec_commit"])
        for name in pps_server.cluster.all_pipelines(pachd.state)
        for record in [pps_server.cluster.pipeline_record(pachd.state, name)]
    }


def open_transactions(pachd) -> list:
    return sorted(path.stem for path in (pachd.state / "transactions").glob("*.json"))


def applies(tmp_path: Path, *names: str, image: str = "a/b:1") -> list:
    found = []
    for name in names:
        text = json.dumps({"pipeline": {"name": name}, "transform": {"image": image}})
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        found.append(Apply(name, str(path), text))
    return found


def test_apply_all_applies_every_spec_in_one_transaction(tmp_path, pachd):
    logs: list = []
    ApiBackend().apply_all(applies(tmp_path, "edges", "montage"), logs.append)
    # Each request joined the one transaction, then FinishTransaction applied both with its ID
    # as their commit set, so both new versions share one spec commit (one global ID).
    joined = {request.transaction for request in pachd.received}
    assert len(joined) == 1 and None not in joined
    (transaction,) = joined
    assert logs == [f"transaction {transaction}: edges, montage"]
    assert live(pachd) == {"edges": (1, transaction), "montage": (1, transaction)}
    assert open_transactions(pachd) == []
    # The client leaves the transaction behind: the next update runs directly.
    backend = ApiBackend()
    backend.apply_all(applies(tmp_path, "edges", "montage"), logs.append)
    backend.update("edges.json", spec("a/b:2"), False)
    assert pachd.received[-1].transaction is None
    record = pps_server.cluster.pipeline_record(pachd.state, "edges")
    assert record["version"] == 3 and record["spec"]["transform"]["image"] == "a/b:2"


def test_a_request_pachd_refuses_ends_the_transaction_with_nothing_applied(tmp_path, pachd):
    (pachd.state / "pachctl_double_refuse").write_text("montage")  # the double's fault: pachd refuses it
    with pytest.raises(BackendError) as caught:
        ApiBackend().apply_all(applies(tmp_path, "edges", "montage", "stats"))
    assert str(caught.value).startswith("montage: CreatePipelineV2 failed: unknown: error running request 2 of 2")
    assert "stats" not in [json.loads(request.spec_json)["pipeline"]["name"] for request in pachd.received]
    assert live(pachd) == {} and open_transactions(pachd) == []  # deleted, never finished


def test_a_transaction_that_fails_at_finish_applies_nothing_and_is_deleted(tmp_path, pachd):
    # accepted when added, refused when run: the cluster changed meanwhile (the double's fault)
    (pachd.state / "pachctl_double_refuse_at_finish").write_text("montage")
    with pytest.raises(BackendError) as caught:
        ApiBackend().apply_all(applies(tmp_path, "edges", "montage"))
    message = str(caught.value)
    assert message.startswith("transaction ") and "failed, nothing applied" in message
    assert "error running request 2 of 2: pipeline montage: invalid spec" in message
    assert caught.value.retryable is True
    assert live(pachd) == {}
    assert open_transactions(pachd) == []  # pachd keeps a failed transaction; pachhook deletes it


def test_the_update_step_applies_a_commits_pipelines_in_one_api_transaction(tmp_path, pachd):
    """run_together through the API backend: render, check, one transaction, read back."""
    from pachhook.deliver.steps.update import run_together

    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'backend = "api"\n'})
    (repo / "stats").mkdir()
    (repo / "stats" / "pipeline.json").write_text(
        json.dumps(
            {
                "pipeline": {"name": "stats"},
                "input": {"pfs": {"repo": "edges", "glob": "/*"}},
                "transform": {"image": "busybox:1.36", "cmd": ["true"]},
            }
        )
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "stats reads edges")
    first = context(repo, job_id=1)
    second = context(repo, job_id=2)
    second.job.pipeline, second.job.template, second.job.image = "stats", "stats/pipeline.json", ""
    second.results = {"build": {"outcome": "skipped"}, "push": {"outcome": "skipped"}}
    results = run_together([first, second])
    assert [result.outcome for result in results] == ["done", "done"]
    (transaction,) = {request.transaction for request in pachd.received}
    assert transaction is not None
    assert [json.loads(request.spec_json)["pipeline"]["name"] for request in pachd.received] == ["edges", "stats"]
    assert {commit for _, commit in live(pachd).values()} == {transaction}

"""The update step against real git repositories and the pachctl TEST DOUBLE (tests/doubles/pachctl).

The build and push steps' results are given as the dicts those steps record (an image
reference and a digest): the update step's contract is what it does with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from pachhook.deliver import toolfacts
from pachhook.deliver.backends import pachctl as pachctl_module
from pachhook.deliver.backends.pachctl import PachctlBackend, parse_version, state_from_inspect, update_argv
from pachhook.deliver.steps.base import StepContext, StepError, run_step
from pachhook.queue.jobs import Job, StepRecord
from pachhook.queue.states import STEP_NAMES

DOUBLES = Path(__file__).parent / "doubles"
IMAGE = "registry.example.com/team/edges"
DIGEST = "sha256:" + "ab" * 32

TEMPLATE = {
    "pipeline": {"name": "edges"},
    "description": "built from {{ branch }} at {{ short_commit }}",
    "input": {"pfs": {"repo": "images", "glob": "/*"}},
    "transform": {"image": IMAGE + ":{{ tag }}", "cmd": ["python3", "/edges.py"]},
    "metadata": {"annotations": {"team": "vision"}, "labels": {"tier": "gold"}},
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, template: dict = TEMPLATE, extra: dict = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "Test")
    (path / "edges").mkdir()
    (path / "edges" / "pipeline.json").write_text(json.dumps(template, indent=2, ensure_ascii=False), encoding="utf-8")
    for name, text in (extra or {}).items():
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "edges pipeline")
    return path


@pytest.fixture
def double(tmp_path, monkeypatch) -> Path:
    """The pachctl test double first on PATH, its state in a fresh folder."""
    state = tmp_path / "pachctl-state"
    state.mkdir()
    monkeypatch.setenv("PACHCTL_DOUBLE_DIR", str(state))
    monkeypatch.setenv("PATH", f"{DOUBLES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("PACHCTL_DOUBLE_VERSION", raising=False)
    monkeypatch.delenv("PACHHOOK_PACHCTL_TIMEOUT", raising=False)
    # pachhook remembers a pachctl file's version for the process; the double's version
    # is set per test by environment, so each test starts with nothing remembered.
    monkeypatch.setattr(toolfacts, "_IN_PROCESS", {})
    return state


def calls(state: Path) -> List[List[str]]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def received(state: Path) -> List[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "received").glob("*.json"))]


def context(
    repo: Path, commit: str = None, with_image: bool = True, dry_run: bool = False, job_id: int = 7, logs: list = None
) -> StepContext:
    commit = commit or git(repo, "rev-parse", "HEAD")
    job = Job(
        id=job_id,
        commit=commit,
        branch="main",
        pipeline="edges",
        template="edges/pipeline.json",
        image=IMAGE if with_image else "",
        steps=[StepRecord(name) for name in STEP_NAMES],
    )
    results = {}
    if with_image:
        results = {
            "build": {
                "image_id": "sha256:" + "cd" * 32,
                "image_ref": f"{IMAGE}:{commit}",
                "context_key": "k",
                "reused": "false",
            },
            "push": {"digest": DIGEST, "image_ref": f"{IMAGE}:{commit}", "repo_digest": f"{IMAGE}@{DIGEST}"},
        }
    log = logs if logs is not None else []
    return StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=log.append, results=results, dry_run=dry_run)


def test_update_applies_the_rendered_spec_and_records_the_version(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    result = run_step("update", context(repo))

    assert result.outcome == "done"
    assert result.data["pipeline_version"] == "1"
    assert result.data["image"] == f"{IMAGE}:{sha}"
    spec_path = Path(result.data["spec_path"])
    assert spec_path == repo / ".git" / "pachhook" / "specs" / "7-edges.json"
    assert ["update", "pipeline", "-f", str(spec_path)] in calls(double)
    assert ["inspect", "pipeline", "edges", "--raw"] in calls(double)
    [spec] = received(double)
    assert spec == json.loads(spec_path.read_text())
    assert spec["transform"]["image"] == f"{IMAGE}:{sha}"
    assert spec["description"] == f"built from main at {sha[:7]}"
    # pachhook's annotations join the template's own, which are kept, as are labels.
    assert spec["metadata"]["annotations"] == {
        "team": "vision",
        "pachhook.io/commit": sha,
        "pachhook.io/template": "edges/pipeline.json",
        "pachhook.io/image-digest": DIGEST,
        "pachhook.io/environment": "default",
        "pachhook.io/context": "default",
    }
    assert spec["metadata"]["labels"] == {"tier": "gold"}


def test_template_is_read_from_the_commit_not_the_working_tree(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    dirty = dict(TEMPLATE, description="uncommitted edit")
    (repo / "edges" / "pipeline.json").write_text(json.dumps(dirty))
    run_step("update", context(repo, sha))
    [spec] = received(double)
    assert spec["description"] == f"built from main at {sha[:7]}"


def test_second_run_for_the_same_commit_does_not_update_again(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    first = run_step("update", context(repo))
    logs: list = []
    second = run_step("update", context(repo, logs=logs))
    assert first.outcome == "done"
    assert second.outcome == "reused"
    assert second.data["pipeline_version"] == "1"
    assert len(received(double)) == 1
    assert any("not updating again" in line for line in logs)


def test_a_new_commit_updates_to_the_next_version(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    run_step("update", context(repo))
    (repo / "edges" / "pipeline.json").write_text(json.dumps(dict(TEMPLATE, description="v2")))
    git(repo, "commit", "-q", "-am", "describe")
    result = run_step("update", context(repo, job_id=8))
    assert result.outcome == "done"
    assert result.data["pipeline_version"] == "2"
    assert received(double)[-1]["metadata"]["annotations"]["pachhook.io/commit"] == git(repo, "rev-parse", "HEAD")


def test_pachctl_before_1_9_uses_the_hyphenated_command(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_VERSION", "1.8.7")
    repo = make_repo(tmp_path / "repo")
    result = run_step("update", context(repo))
    assert result.data["pipeline_version"] == "1"
    assert ["update-pipeline", "-f", result.data["spec_path"]] in calls(double)
    assert not any(call[:2] == ["update", "pipeline"] for call in calls(double))


def test_reprocess_and_digest_pinning_come_from_the_configuration(tmp_path, double):
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": "reprocess = true\npin_digest = true\n"})
    sha = git(repo, "rev-parse", "HEAD")
    result = run_step("update", context(repo))
    assert ["update", "pipeline", "-f", result.data["spec_path"], "--reprocess"] in calls(double)
    [spec] = received(double)
    assert spec["transform"]["image"] == f"{IMAGE}:{sha}@{DIGEST}"
    assert result.data["image"] == f"{IMAGE}:{sha}@{DIGEST}"


def test_short_tags_follow_the_image_the_build_pushed(tmp_path, double):
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'tag = "short"\n'})
    sha = git(repo, "rev-parse", "HEAD")
    ctx = context(repo)
    ctx.results["build"]["image_ref"] = ctx.results["push"]["image_ref"] = f"{IMAGE}:{sha[:7]}"
    run_step("update", ctx)
    assert received(double)[0]["transform"]["image"] == f"{IMAGE}:{sha[:7]}"


def test_missing_pachctl_names_the_fix(tmp_path, double, monkeypatch):
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": 'pachctl = "no-such-pachctl"\n'})
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo))
    message = str(caught.value)
    assert "pachctl not found" in message and "install pachctl" in message
    assert "`pachctl =" in message
    assert caught.value.retryable is False


def test_configured_pachctl_path_is_used(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the double is no longer found by name
    config = f'pachctl = "{DOUBLES / "pachctl"}"\n'
    repo = make_repo(tmp_path / "repo", extra={".pachhook.toml": config})
    assert run_step("update", context(repo)).data["pipeline_version"] == "1"


def test_failing_pachctl_gives_its_last_stderr_line(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_FAIL", "update:rpc error: code = Unavailable desc = connection refused")
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo))
    assert str(caught.value) == (
        "pachctl update pipeline failed: rpc error: code = Unavailable desc = connection refused"
    )
    assert caught.value.retryable is True
    assert "\n" not in str(caught.value)


# A title change, colours, a carriage return rewriting the line and a bell: what a hostile or
# confused cluster could put in a message, which pachhook logs, stores and prints.
HOSTILE = "\x1b]0;owned\x07\x1b[31mdenied\x1b[0m by \x9b2Jpachd\x07"


def test_pachctl_messages_with_control_sequences_are_stored_clean_and_bounded(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_FAIL", "update:rpc error: " + HOSTILE + " " + "x" * 20000)
    repo = make_repo(tmp_path / "repo")
    logs: list = []
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo, logs=logs))
    message = str(caught.value)
    assert message.startswith("pachctl update pipeline failed: rpc error: denied by pachd x")
    assert len(message) <= 2000
    for text in [message, *logs]:
        assert not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in text), repr(text)


def test_cluster_text_in_the_pipeline_read_back_is_logged_clean(tmp_path, double, monkeypatch):
    # the cluster reports another image, holding control sequences: the failure names it, cleaned
    monkeypatch.setenv("PACHCTL_DOUBLE_IMAGE", "ubuntu:20.04" + HOSTILE)
    repo = make_repo(tmp_path / "repo")
    logs: list = []
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo, logs=logs))
    assert "runs ubuntu:20.04denied by pachd, not " in str(caught.value)
    for text in [str(caught.value), *logs]:
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text, repr(text)


def test_hanging_pachctl_is_stopped_by_the_timeout(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_HANG", "update")
    monkeypatch.setenv("PACHHOOK_PACHCTL_TIMEOUT", "1.5")
    repo = make_repo(tmp_path / "repo")
    started = time.monotonic()
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo))
    assert time.monotonic() - started < 10
    assert "timed out" in str(caught.value)
    assert "update pipeline" in str(caught.value)


def test_cluster_running_another_image_fails_the_job(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_IMAGE", "ubuntu:20.04")
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo))
    assert "runs ubuntu:20.04" in str(caught.value)
    assert IMAGE in str(caught.value)


def test_invalid_rendered_spec_is_not_applied(tmp_path, double):
    bad = dict(TEMPLATE, description="{{ commit_sha }}", datum_timeout="1h")
    repo = make_repo(tmp_path / "repo", template=bad)
    logs: list = []
    with pytest.raises(StepError) as caught:
        run_step("update", context(repo, logs=logs))
    assert "unknown placeholder {{ commit_sha }}" in str(caught.value)
    assert caught.value.retryable is False
    assert received(double) == []
    assert any("edges/pipeline.json:" in line for line in logs)


def test_template_without_placeholder_image_is_applied_as_is(tmp_path, double):
    fixed = dict(TEMPLATE, transform={"image": "python:3.12-slim", "cmd": ["python3"]})
    repo = make_repo(tmp_path / "repo", template=fixed)
    result = run_step("update", context(repo, with_image=False))
    assert result.data["image"] == "python:3.12-slim"
    annotations = received(double)[0]["metadata"]["annotations"]
    assert "pachhook.io/image-digest" not in annotations


def test_dry_run_applies_and_writes_nothing(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    logs: list = []
    result = run_step("update", context(repo, dry_run=True, with_image=False, logs=logs))
    assert result.outcome == "skipped"
    assert not any(call[0] in ("update", "update-pipeline", "inspect") for call in calls(double))
    assert not (repo / ".git" / "pachhook" / "specs").exists()
    text = "\n".join(logs)
    assert "pachctl update pipeline -f" in text
    assert '"pachhook.io/commit"' in text


def test_pipeline_missing_from_the_template_is_reported(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    ctx = context(repo)
    ctx.job.pipeline = "other"
    with pytest.raises(StepError, match="has no pipeline named 'other'"):
        run_step("update", ctx)


# -- the pachctl backend's parsing, on the shapes the real client prints -----------------


def test_version_numbers_and_command_forms():
    assert parse_version("2.11.6\n") == (2, 11, 6)
    assert parse_version("v1.8.0") == (1, 8, 0)
    assert update_argv("pachctl", (1, 8, 9), "s.json", False) == ["pachctl", "update-pipeline", "-f", "s.json"]
    assert update_argv("pachctl", (1, 9, 0), "s.json", True) == [
        "pachctl",
        "update",
        "pipeline",
        "-f",
        "s.json",
        "--reprocess",
    ]
    with pytest.raises(ValueError):
        parse_version("pachctl: command not found")


def test_inspect_output_of_both_eras():
    two = {
        "pipeline": {"name": "edges", "project": {"name": "default"}},
        "version": "3",
        "details": {"transform": {"image": "a:1"}, "metadata": {"annotations": {"pachhook.io/commit": "c"}}},
    }
    state = state_from_inspect(two, "edges")
    assert (state.version, state.image, state.annotations, state.project) == (
        "3",
        "a:1",
        {"pachhook.io/commit": "c"},
        "default",
    )
    one = {"pipeline": {"name": "edges"}, "version": 2, "transform": {"image": "b:2"}}
    state = state_from_inspect(one, "edges")
    assert (state.version, state.image, state.annotations) == ("2", "b:2", {})


def test_version_is_asked_once_per_pachctl_file(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    run_step("update", context(repo))
    (repo / "edges" / "pipeline.json").write_text(json.dumps(dict(TEMPLATE, description="v2")))
    git(repo, "commit", "-q", "-am", "v2")
    run_step("update", context(repo, job_id=8))
    # (the client's version; the cluster's, asked by `pachctl version`, is deliver/stamp.py's)
    assert [call for call in calls(double) if call[:2] == ["version", "--client-only"]] == [
        ["version", "--client-only"]
    ]
    assert len(received(double)) == 2


ASK_VERSION = (
    "import sys; from pachhook.deliver.backends.pachctl import PachctlBackend;"
    " print(PachctlBackend(sys.argv[1], cache_dir=sys.argv[2]).version())"
)


def version_in_a_new_process(executable: Path, cache: Path) -> str:
    asked = subprocess.run(
        [sys.executable, "-c", ASK_VERSION, str(executable), str(cache)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert asked.returncode == 0, asked.stderr
    return asked.stdout.strip()


def test_the_client_version_is_remembered_across_processes_per_executable_file(tmp_path, double):
    executable = tmp_path / "bin" / "pachctl"
    executable.parent.mkdir()
    shutil.copy2(DOUBLES / "pachctl", executable)
    cache = tmp_path / "queue"
    asked = lambda: [call for call in calls(double) if call == ["version", "--client-only"]]  # noqa: E731
    assert version_in_a_new_process(executable, cache) == "(2, 11, 6)"
    assert version_in_a_new_process(executable, cache) == "(2, 11, 6)"
    assert len(asked()) == 1
    # Another pachctl at the same path (upgraded: new mtime and size) is asked again.
    executable.write_text(executable.read_text() + "\n")
    assert version_in_a_new_process(executable, cache) == "(2, 11, 6)"
    assert len(asked()) == 2
    # A symlink to it is the same file: remembered.
    (tmp_path / "bin" / "pachctl-link").symlink_to(executable)
    assert version_in_a_new_process(tmp_path / "bin" / "pachctl-link", cache) == "(2, 11, 6)"
    assert len(asked()) == 2


@pytest.mark.parametrize("damage", ["not json {", '{"x": [1, "a", 3]}', "[]", "\udcff"])
def test_a_damaged_version_cache_is_a_miss_and_is_written_again(tmp_path, double, damage):
    cache = tmp_path / "queue"
    cache.mkdir()
    (cache / "pachctl-version.json").write_text(damage, errors="surrogateescape")
    assert PachctlBackend(cache_dir=str(cache)).version() == (2, 11, 6)
    toolfacts._IN_PROCESS.clear()
    assert PachctlBackend(cache_dir=str(cache)).version() == (2, 11, 6)
    assert calls(double).count(["version", "--client-only"]) == 1


def test_an_unwritable_version_cache_is_a_miss(tmp_path, double):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    for _ in range(2):
        toolfacts._IN_PROCESS.clear()
        assert PachctlBackend(cache_dir=str(blocked / "queue")).version() == (2, 11, 6)
    assert calls(double).count(["version", "--client-only"]) == 2
    assert blocked.read_text() == "not a folder"


def test_inspect_of_an_absent_pipeline_is_none(double):
    assert PachctlBackend().inspect("nothing-here") is None


def apply_to_double(tmp_path: Path, name: str, project: str = "") -> None:
    spec = {"pipeline": {"name": name}, "transform": {"image": f"{IMAGE}:{name}"}}
    path = tmp_path / f"{name}-{project or 'default'}.json"
    path.write_text(json.dumps(spec))
    PachctlBackend().update(str(path), path.read_text(), False, project)


def test_several_live_pipelines_are_read_with_one_list_pipeline(tmp_path, double):
    """One `list pipeline --raw` for a transaction's pipelines; each reads as `inspect` reads it,
    and one that does not exist is None, as `inspect` says "not found"."""
    for name in ("edges", "counts"):
        apply_to_double(tmp_path, name)
    apply_to_double(tmp_path, "edges", "")
    subprocess.run(
        [str(DOUBLES / "pachctl"), "create", "project", "elsewhere"], check=True, timeout=60, stdin=subprocess.DEVNULL
    )
    apply_to_double(tmp_path, "other", "elsewhere")  # another project: not this list's
    backend = PachctlBackend()
    before = len(calls(double))
    found = backend.inspect_all(["edges", "counts", "missing", "other"])
    assert calls(double)[before:] == [["list", "pipeline", "--raw"]]
    assert found == {
        "edges": backend.inspect("edges"),
        "counts": backend.inspect("counts"),
        "missing": None,
        "other": None,
    }
    assert (found["edges"].version, found["edges"].image) == ("2", f"{IMAGE}:edges")
    assert found["edges"].spec_commit  # the read-back names the job the update started
    other = backend.inspect_all(["other", "edges"], "elsewhere")
    assert calls(double)[-1] == ["list", "pipeline", "--raw", "--project", "elsewhere"]
    assert other["edges"] is None and other["other"] == backend.inspect("other", "elsewhere")


def test_one_live_pipeline_is_read_with_inspect(tmp_path, double):
    apply_to_double(tmp_path, "edges")
    before = len(calls(double))
    assert PachctlBackend().inspect_all(["edges"])["edges"].version == "1"
    assert calls(double)[before:] == [["inspect", "pipeline", "edges", "--raw"]]


def test_a_failing_list_pipeline_fails_the_read_in_one_line(tmp_path, double, monkeypatch):
    monkeypatch.setenv("PACHCTL_DOUBLE_FAIL", "list-pipeline:rpc error: code = Unavailable desc = gone")
    with pytest.raises(pachctl_module.BackendError) as raised:
        PachctlBackend().inspect_all(["edges", "counts"])
    assert str(raised.value) == "pachctl list pipeline failed: rpc error: code = Unavailable desc = gone"
    assert raised.value.retryable


def test_a_spec_with_characters_outside_the_basic_plane_is_applied_as_utf8(tmp_path, double):
    """Issue 14: json.dumps' ASCII escaping made an emoji a surrogate pair (\\ud83d\\ude80),
    which pachctl's yaml.v3 refuses at `pachctl update pipeline`; the double refuses it too."""
    from pachhook.validate.checks import validate_paths

    template = dict(TEMPLATE, description="edges 🚀 from {{ branch }}")
    repo = make_repo(tmp_path / "repo", template)
    assert [d for d in validate_paths([repo / "edges" / "pipeline.json"]) if d.severity == "error"] == []
    result = run_step("update", context(repo))
    assert result.outcome == "done"
    raw = Path(result.data["spec_path"]).read_bytes()
    assert "🚀".encode() in raw and b"\\ud83d" not in raw
    [spec] = received(double)
    assert spec["description"] == "edges 🚀 from main"


def test_the_double_refuses_what_yaml_v3_refuses(tmp_path, double):
    spec = tmp_path / "escaped.json"
    spec.write_text('{"pipeline": {"name": "a"}, "description": "\\ud83d\\ude80"}')
    result = subprocess.run(
        ["pachctl", "update", "pipeline", "-f", str(spec)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert result.returncode == 1 and "found invalid Unicode character escape code" in result.stderr


def test_a_newer_commit_applied_between_the_check_and_the_apply_is_put_back(tmp_path, double, monkeypatch):
    """The race the order check leaves open, made to happen: another deliverer applies a newer
    commit right before this job's apply. The job restores it and ends superseded."""
    repo = make_repo(tmp_path / "repo")
    assert run_step("update", context(repo, job_id=1)).outcome == "done"  # v1: the first commit
    (repo / "edges" / "pipeline.json").write_text(json.dumps({**TEMPLATE, "description": "second"}))
    git(repo, "commit", "-q", "-am", "second")
    job_commit = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "third")
    newer = git(repo, "rev-parse", "HEAD")
    newer_spec = dict(received(double)[0], description="third")
    newer_spec["metadata"]["annotations"]["pachhook.io/commit"] = newer
    newer_path = tmp_path / "newer.json"
    newer_path.write_text(json.dumps(newer_spec))
    original = PachctlBackend.update

    def another_deliverer_first(self, spec_path, spec_json, reprocess, project=""):
        monkeypatch.setattr(PachctlBackend, "update", original)
        original(self, str(newer_path), newer_path.read_text(), False)  # v2: the newer commit
        original(self, spec_path, spec_json, reprocess, project)  # v3: this job's, on top

    monkeypatch.setattr(PachctlBackend, "update", another_deliverer_first)
    result = run_step("update", context(repo, commit=job_commit, job_id=2))

    assert result.outcome == "superseded"
    assert result.data["live_commit"] == newer
    record = json.loads((double / "pipelines" / "edges.json").read_text())
    assert record["version"] == 4
    assert record["spec"]["metadata"]["annotations"]["pachhook.io/commit"] == newer
    assert ["inspect", "pipeline", "edges^1", "--raw"] in calls(double)


def test_with_nothing_applied_in_between_the_version_below_is_not_read_again(tmp_path, double):
    repo = make_repo(tmp_path / "repo")
    assert run_step("update", context(repo, job_id=1)).outcome == "done"
    (repo / "edges" / "pipeline.json").write_text(json.dumps({**TEMPLATE, "description": "second"}))
    git(repo, "commit", "-q", "-am", "second")
    result = run_step("update", context(repo, job_id=2))
    assert (result.outcome, result.data["pipeline_version"]) == ("done", "2")
    # v2 follows v1, which the order check read: nothing came in between to undo.
    assert [call for call in calls(double) if "^" in " ".join(call)] == []

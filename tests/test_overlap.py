"""The delivery's critical path (issue 16): cluster calls off it (deliver/earlyread.py), as the
cluster sees them; git asked each question once; the program's end.

The pachctl TEST DOUBLE (tests/doubles/pachctl) keeps each call's wall-clock start and end in
its state folder's timeline.jsonl; `pachhook run --commit` prints each step's outcome as it
happens (flushed per line), so a line's arrival says when that step ended.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import List, Tuple

import pytest
import services as test_services
from test_update import calls, context, double, git, make_repo  # noqa: F401 (double is a fixture)

from pachhook.deliver import earlyread
from pachhook.deliver.backends import clusterview
from pachhook.deliver.steps.base import StepResult, run_step
from pachhook.deliver.steps.update import run_together


def timeline(state: Path) -> List[dict]:
    path = state / "timeline.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def calls_named(state: Path, *argv: str) -> List[dict]:
    return [call for call in timeline(state) if call["argv"][: len(argv)] == list(argv)]


def run_timed(repo: Path, *args: str) -> Tuple[int, List[Tuple[float, str]], str]:
    """`pachhook run ARGS` with each line of its output and when it arrived (time.time())."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pachhook", "run", *args],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: List[Tuple[float, str]] = []
    errors: List[str] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
    reader.start()
    for line in process.stdout:
        lines.append((time.time(), line.rstrip("\n")))
    status = process.wait(timeout=300)
    reader.join(timeout=60)
    return status, lines, "".join(errors)


def run_ok(repo: Path, *args: str) -> Tuple[List[Tuple[float, str]], str]:
    """run_timed, which must succeed: (its lines with their times, its output)."""
    status, lines, errors = run_timed(repo, *args)
    output = "\n".join(line for _, line in lines)
    assert status == 0, output + errors
    return lines, output


def arrived(lines: List[Tuple[float, str]], start: str) -> float:
    found = [when for when, line in lines if line.startswith(start)]
    assert found, f"no line starting {start!r} in:\n" + "\n".join(line for _, line in lines)
    return found[0]


@pytest.fixture
def slow_build(tmp_path, docker_env):
    """One pipeline whose image takes a couple of seconds to build (a RUN sleep after a COPY
    of a file no other test builds)."""
    services = docker_env
    repository = f"test-overlap/{uuid.uuid4().hex[:10]}/edges"
    template = {
        "pipeline": {"name": "edges"},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": {"image": f"{services.registry}/{repository}:{{{{ tag }}}}", "cmd": ["sh", "/run.sh"]},
    }
    dockerfile = test_services.base_dockerfile(services, "COPY run.sh /run.sh", "RUN sleep 2")
    extra = {"Dockerfile": dockerfile, "run.sh": f"echo {repository}\n"}
    # RUN needs a network; the test engine has no bridge (as in test_build)
    config = f'[images."{services.registry}/{repository}"]\nnetwork = "host"\n'

    repo = make_repo(tmp_path / "repo", template)
    for name, text in extra.items():
        (repo / "edges" / name).write_text(text)
    (repo / ".pachhook.toml").write_text(config)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a slow build")
    return repo


@pytest.mark.integration
def test_the_live_read_and_pachds_version_are_asked_while_the_image_builds(slow_build, double):
    status, lines, errors = run_timed(slow_build, "--commit", "HEAD")
    output = "\n".join(line for _, line in lines)
    assert status == 0, output + errors
    built = arrived(lines, "edges: build: done")
    update = calls_named(double, "update", "pipeline")[0]
    # The order check's read of the live pipeline and pachd's version, each once before the
    # apply, both made before the build had ended (not after the push, as one chain).
    (read,) = [call for call in calls_named(double, "inspect", "pipeline", "edges") if call["end"] <= update["start"]]
    (version,) = [call for call in calls_named(double, "version") if call["argv"] == ["version"]]
    assert read["end"] < built, output
    assert version["end"] < built, output
    assert version["end"] <= update["start"]
    # The order check still judged, and the run stamped with the version asked early.
    assert "edges: update: done: edges v1" in output
    assert [call["argv"][:3] for call in timeline(double)].count(["edit", "metadata", "pipeline"]) == 1


@pytest.mark.integration
def test_the_worker_reads_the_live_pipeline_while_the_image_builds(slow_build, double):
    """The queue's path (`pachhook queue`, then `pachhook run` as the worker drains it)."""
    config = slow_build / ".pachhook.toml"
    config.write_text('worker = "manual"\n' + config.read_text())
    git(slow_build, "commit", "-q", "-am", "the worker is run by hand")
    queued = subprocess.run(
        [sys.executable, "-m", "pachhook", "queue"], cwd=slow_build, capture_output=True, text=True, timeout=120
    )
    assert queued.returncode == 0, queued.stdout + queued.stderr
    status, lines, errors = run_timed(slow_build)
    output = "\n".join(line for _, line in lines)
    assert status == 0, output + errors
    built = [when for when, line in lines if line.startswith("job ") and ": build: done" in line]
    assert built, output
    update = calls_named(double, "update", "pipeline")[0]
    (read,) = [call for call in calls_named(double, "inspect", "pipeline", "edges") if call["end"] <= update["start"]]
    (version,) = [call for call in calls_named(double, "version") if call["argv"] == ["version"]]
    assert read["end"] < built[0] and version["end"] < built[0], output
    assert "edges@" in output and ": done" in output


def test_the_stamp_and_the_first_look_at_the_job_overlap(tmp_path, double, monkeypatch):
    # Each call takes a while to answer, as from a cluster far away, so calls made at once
    # show as overlapping (a call of the double alone is a few milliseconds past its start).
    monkeypatch.setenv("PACHCTL_DOUBLE_LATENCY", "0.3")
    repo = make_repo(tmp_path / "repo")
    result = run_step("update", context(repo))
    assert result.outcome == "done", result
    assert result.data["stamped"] == "annotations,pipeline-metadata,commit-metadata"
    assert result.data["verify"] == "finished"
    (stamp,) = calls_named(double, "edit", "metadata")
    (look,) = calls_named(double, "list", "job")
    # Running at once: each started before the other ended (one after the other before).
    assert look["start"] < stamp["end"] and stamp["start"] < look["end"], (stamp, look)


@pytest.mark.integration
def test_a_failing_early_read_fails_the_update_with_the_line_a_read_at_the_check_gives(slow_build, double):
    message = "rpc error: code = Unavailable desc = connection error"
    (double / "pachctl_double_fail").write_text(f"inspect:{message}")
    status, lines, errors = run_timed(slow_build, "--commit", "HEAD")
    output = "\n".join(line for _, line in lines)
    assert status == 1, output + errors
    # The update step's line, as when the read at the check fails (test_update): reported at
    # the update, after the image was built and pushed; not earlier, not lost.
    failed = f"edges: update: failed: pachctl inspect pipeline edges failed: {message}"
    assert failed in output.splitlines(), output
    pushed = arrived(lines, "edges: push: done")
    assert not [line for when, line in lines if message in line and when < pushed], output
    assert "Traceback" not in output + errors
    # The early read failed, so the check read again (and failed as before); nothing applied.
    assert len(calls_named(double, "inspect", "pipeline", "edges")) == 2
    assert not calls_named(double, "update", "pipeline")


@pytest.mark.parametrize("bound, reads_at_the_check", [(10.0, 0), (0.0, 1)])
def test_an_early_read_is_used_while_fresh_and_made_again_once_older_than_the_bound(
    tmp_path, double, monkeypatch, bound, reads_at_the_check
):
    monkeypatch.setattr(earlyread, "FRESH_SECONDS", bound)
    monkeypatch.setattr(clusterview, "_SERVER_VERSIONS", {})  # pachd's version, asked anew
    repo = make_repo(tmp_path / "repo")
    ctx = context(repo)
    ahead = earlyread.read_ahead(repo, repo / ".git", [ctx.job])
    assert ahead is not None
    try:
        (result,) = run_together([ctx], ahead)
    finally:
        ahead.close()
    assert isinstance(result, StepResult) and result.outcome == "done", result
    reads = [call for call in calls(double) if call[:3] == ["inspect", "pipeline", "edges"]]
    # the early read, the check's own when the early one is too old, the read-back
    assert len(reads) == 1 + reads_at_the_check + 1
    assert [call for call in calls(double) if call == ["version"]] == [["version"]]


@pytest.mark.integration
def test_a_dry_run_reads_nothing_early(slow_build, double):
    status, lines, errors = run_timed(slow_build, "--commit", "HEAD", "--dry-run")
    assert status == 0, "\n".join(line for _, line in lines) + errors
    # What the plan and the update step's preview read, as before: no read ahead, no version.
    assert [call["argv"][:2] for call in timeline(double)] == [
        ["version", "--client-only"],
        ["inspect", "pipeline"],
        ["list", "datum"],
    ]


def git_shim(folder: Path, log: Path) -> str:
    """A `git` first on PATH that writes each call (time.time(), then its arguments) to
    `log` and runs the real git; the PATH to use. Each call is one line written at once:
    pachhook starts several git processes together."""
    real = shutil.which("git")
    assert real is not None
    folder.mkdir()
    shim = folder / "git"
    shim.write_text(
        "#!/bin/sh\n"
        'line=$(date +%s.%N); sep=$(printf "\\037")\n'
        'for arg in "$@"; do line="$line$sep$arg"; done\n'
        f'printf "%s\\n" "$line" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    shim.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def git_calls(log: Path) -> List[Tuple[float, List[str]]]:
    found = []
    for line in log.read_text().splitlines():
        when, *args = line.split("\x1f")
        found.append((float(when), args))
    return found


@pytest.mark.integration
def test_a_delivery_asks_git_each_question_once_and_the_order_checks_while_the_image_builds(
    slow_build, double, tmp_path, monkeypatch
):
    run_ok(slow_build, "--commit", "HEAD")
    live = git(slow_build, "rev-parse", "HEAD")
    (slow_build / "edges" / "run.sh").write_text("echo changed\n")
    git(slow_build, "commit", "-q", "-am", "a code change")
    head = git(slow_build, "rev-parse", "HEAD")
    log = tmp_path / "git-calls"
    monkeypatch.setenv("PATH", git_shim(tmp_path / "shim", log))

    lines, output = run_ok(slow_build, "--commit", "HEAD")
    assert "edges: update: done: edges v2" in output
    asked = git_calls(log)
    # Each question once: the same arguments never twice (`cat-file --batch` reads its
    # questions from stdin, and its calls ask different ones).
    repeated = [args for args in {tuple(a) for _, a in asked} if [a for _, a in asked].count(list(args)) > 1]
    assert [args for args in repeated if args[-2:] != ("cat-file", "--batch")] == [], asked
    # The order check's questions of the live commit (does this clone have it, is it an
    # ancestor of HEAD) were asked while the image built, not after the push.
    built = arrived(lines, "edges: build: done")
    order = [when for when, args in asked if live in " ".join(args) and ("cat-file" in args or "merge-base" in args)]
    assert order and max(order) < built, asked
    assert any(args[-4:] == ["merge-base", "--is-ancestor", live, head] for _, args in asked), asked


@pytest.mark.integration
def test_the_builds_git_questions_start_before_the_commit_is_planned(slow_build, double, tmp_path, monkeypatch):
    """The build step's questions about git's configuration are started as the delivery
    begins (gitrepo.ask_ahead), beside the commit's planning. A git shim makes every tree
    listing wait (up to 10 s) until the checkout settings' `config --get-regexp` has started:
    asked ahead, it has; asked when the build step comes to it (after its context's listing),
    the listing waits the 10 s out and says so."""
    run_ok(slow_build, "--commit", "HEAD")
    (slow_build / "edges" / "run.sh").write_text("echo changed\n")
    git(slow_build, "commit", "-q", "-am", "a code change")
    real = shutil.which("git")
    assert real is not None
    started, waited = tmp_path / "settings-asked", tmp_path / "listing-waited"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "git").write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        f'  *" --get-regexp "*) : > {shlex.quote(str(started))} ;;\n'
        '  *" ls-tree "*)\n'
        "    i=0\n"
        f"    while [ ! -e {shlex.quote(str(started))} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done\n"
        f"    [ -e {shlex.quote(str(started))} ] || : > {shlex.quote(str(waited))} ;;\n"
        "esac\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    lines, output = run_ok(slow_build, "--commit", "HEAD")
    assert "edges: update: done: edges v2" in output
    assert started.exists() and not waited.exists()


@pytest.mark.integration
def test_the_program_ends_without_teardown_yet_runs_its_exit_callbacks_and_says_everything(
    slow_build, double, tmp_path, monkeypatch
):
    # `pachhook run` as a program ends with os._exit once the command has returned
    # (core/processend.py): its output, exit status and atexit callbacks (the credential
    # guards' folder the build made is removed) are what an ordinary exit gives.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    # A credential helper the docker config names (for another registry), so the build's
    # docker CLI runs with a guard for it, in a folder of this process's own.
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    helper = helpers / "docker-credential-phktest"
    helper.write_text("#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helpers}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {"registry.example.invalid": "phktest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    lines, output = run_ok(slow_build, "--commit", "HEAD")
    assert "edges: update: done: edges v1" in output
    assert output.splitlines()[-1].startswith("edges "), output  # the summary table's last row
    assert sorted(path.name for path in scratch.iterdir()) == [], output
    # A failing command's status comes through the same way.
    status, lines, errors = run_timed(slow_build, "--commit", "no-such-revision")
    assert status == 2 and "unknown revision 'no-such-revision'" in errors, errors


def registry_heads_of_unknown_tag(tag: str) -> List[float]:
    """When the open test registry answered a HEAD for `tag` with "manifest unknown" (its
    log: one line per failed request, with the request's time)."""
    found = []
    for line in (test_services.services_dir() / "registry-open.log").read_text(errors="replace").splitlines():
        if f"unknown tag={tag}" in line and "http.request.method=HEAD" in line:
            stamp = line.split('time="', 1)[1].split('"', 1)[0]  # RFC 3339 with nanoseconds, UTC
            moment = datetime.datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f")
            found.append(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
    return found


@pytest.mark.integration
def test_the_push_asks_the_registry_about_its_tag_while_the_image_builds(slow_build, double):
    lines, output = run_ok(slow_build, "--commit", "HEAD")
    assert "edges: push: done" in output
    # The push's first question (does the registry serve this commit's tag already? it
    # must never push over one) was asked once, before the build had ended, not after it.
    asked = registry_heads_of_unknown_tag(git(slow_build, "rev-parse", "HEAD"))
    assert len(asked) == 1, asked
    assert asked[0] < arrived(lines, "edges: build: done"), output


@pytest.mark.integration
def test_the_apply_does_not_wait_for_pachds_version_which_only_the_stamp_needs(slow_build, double, monkeypatch):
    run_ok(slow_build, "--commit", "HEAD")
    # A template-only change: the image is reused, so the push is done at once, long before
    # pachd's version (slow here, as from a cluster far away) has answered.
    template = slow_build / "edges" / "pipeline.json"
    spec = json.loads(template.read_text())
    spec["description"] = "template only"
    template.write_text(json.dumps(spec, indent=2))
    git(slow_build, "commit", "-q", "-am", "a template-only change")
    monkeypatch.setenv("PACHCTL_DOUBLE_SLOW", "version:2")
    lines, output = run_ok(slow_build, "--commit", "HEAD")
    (update,) = calls_named(double, "update", "pipeline")[1:]
    (version,) = [call for call in timeline(double) if call["argv"] == ["version"]][1:]
    # The apply started while pachd's version was still being asked; the stamp still had it.
    assert update["start"] < version["end"], (update, version)
    assert "provenance stamped as annotations, pipeline-metadata, commit-metadata" in output, output

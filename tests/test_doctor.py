"""`pachhook doctor` as a user runs it: one line per check, what to do, exit status.

Real git repositories, the real queue, the real Docker engine and registries of
tests/services (where a test needs them); pachctl is absent, or the pachctl test double.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import services as test_services
from gitutil import examples_project, offline_env, pachhook_module, run, with_pachctl_double


@pytest.fixture
def env(tmp_path):
    return offline_env(tmp_path)


@pytest.fixture
def project(tmp_path, env):
    return examples_project(tmp_path / "project", env, config=None)


def doctor(cwd, env, *args):
    return pachhook_module("doctor", *args, cwd=cwd, env=env, timeout=120)


def lines_of(result):
    return {
        line.split(":", 1)[0]: line for line in result.stdout.splitlines() if line[:5].strip() in ("ok", "warn", "fail")
    }


def test_outside_a_repository_says_where_to_run_it(tmp_path, env):
    result = doctor(tmp_path, env)
    assert result.returncode == 1
    assert "fail  repository: not a git repository" in result.stdout
    assert "-> run pachhook doctor inside your pipeline repository" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_fresh_repository_names_each_missing_part_and_what_to_do(project, env):
    result = doctor(project, env)
    assert result.returncode == 1
    out = result.stdout
    for hook_type in ("pre-commit", "pre-push", "post-commit"):
        assert f"fail  {hook_type} hook: not installed" in out
    assert "-> run `pachhook init` (pre-commit framework) or `pachhook install` (plain hooks)" in out
    assert "ok    configuration: valid (no configuration file: conventions apply)" in out
    assert "ok    templates: 2 template(s) valid" in out
    assert f"fail  docker: Docker engine not reachable at DOCKER_HOST={test_services.DEAD_DOCKER_HOST}" in out
    assert "fail  pachctl: 'pachctl' not found on PATH" in out
    assert "ok    queue: empty (no commit queued yet)" in out
    assert "ok    worker: idle (background mode)" in out
    assert "checks failed" in out.splitlines()[-1]
    assert "\033[" not in out

    as_json = json.loads(doctor(project, env, "--format", "json").stdout)
    assert as_json["ok"] is False
    names = [check["name"] for check in as_json["checks"]]
    assert names[:4] == ["repository", "pre-commit hook", "pre-push hook", "post-commit hook"]
    docker = next(check for check in as_json["checks"] if check["name"] == "docker")
    assert docker["status"] == "fail" and "DOCKER_HOST" in docker["fix"]


def test_quiet_prints_only_problems(project, env):
    result = doctor(project, env, "--quiet")
    assert "ok    templates" not in result.stdout
    assert "fail  docker" in result.stdout


def test_bad_configuration_and_bad_template_are_located(project, env):
    (project / ".pachhook.toml").write_text('tag = "long"\n')
    result = doctor(project, env)
    assert 'fail  configuration: .pachhook.toml:1: tag: must be "full" or "short"' in result.stdout
    (project / ".pachhook.toml").unlink()
    template = project / "edges" / "pipeline.json"
    template.write_text(template.read_text().replace("{{ tag }}", "{{ sha }}"))
    result = doctor(project, env)
    assert "fail  templates: 1 error(s) in 2 template(s); first: edges/pipeline.json:" in result.stdout
    assert "unknown placeholder {{ sha }}" in result.stdout
    assert "-> run `pachhook validate` for the full list" in result.stdout


def test_plain_hooks_queue_and_worker_state(project, env):
    assert pachhook_module("install", "--plain", cwd=project, env=env).returncode == 0
    (project / ".pachhook.toml").write_text('worker = "manual"\n')
    run(["git", "add", "-A"], project, env)
    env = dict(env, PATH=env["PATH"])  # the hooks find pachhook beside this python
    run(["git", "commit", "-q", "-m", "examples"], project, env)
    out = doctor(project, env).stdout
    for hook_type in ("pre-commit", "pre-push", "post-commit"):
        assert f"ok    {hook_type} hook: pachhook hook installed" in out
    assert "ok    queue: 2 queued" in out
    assert 'warn  worker: worker = "manual" and 2 job(s) queued' in out
    assert "-> run `pachhook run`" in out

    queue_db = Path(run(["git", "rev-parse", "--git-common-dir"], project, env).stdout.strip())
    queue_db = (project / queue_db if not queue_db.is_absolute() else queue_db) / "pachhook" / "queue.db"
    for suffix in ("-wal", "-shm"):
        Path(str(queue_db) + suffix).unlink(missing_ok=True)
    queue_db.write_bytes(b"this is not a sqlite database" * 100)
    out = doctor(project, env).stdout
    assert "fail  queue: the queue database cannot be read" in out
    assert "-> run `pachhook status`: it moves the damaged file aside" in out
    assert queue_db.read_bytes().startswith(b"this is not a sqlite database")  # doctor changed nothing

    status = pachhook_module("status", cwd=project, env=env)
    assert status.returncode == 0, status.stderr
    out = doctor(project, env).stdout
    assert "ok    queue: no jobs" in out
    assert "warn  queue history: a damaged queue was set aside as " in out


def test_pachctl_double_is_found_with_its_version_and_context(project, env, tmp_path):
    env = with_pachctl_double(env, tmp_path)
    # A first pachctl run writes a configuration whose active context is `default`.
    out = doctor(project, env).stdout
    assert f"ok    pachctl: pachctl 2.11.6 ({tmp_path / 'bin' / 'pachctl'}), active context default" in out
    # A configuration naming a context it does not hold: `config get active-context` fails.
    config = tmp_path / "broken-pach-config.json"
    config.write_text(json.dumps({"v2": {"active_context": "gone", "contexts": {}}}))
    out = doctor(project, dict(env, PACH_CONFIG=str(config))).stdout
    assert "fail  pachctl: pachctl 2.11.6, but no active context" in out
    assert "pachctl connect" in out


@pytest.mark.integration
def test_docker_and_registry_credentials(project, env, services, tmp_path):
    env = dict(env, DOCKER_HOST=services.docker_host)
    template = project / "edges" / "pipeline.json"
    template.write_text(template.read_text().replace("localhost:5000", services.auth_registry))
    montage = project / "montage" / "montage.pipeline.yaml"
    montage.write_text(montage.read_text().replace("localhost:5000", services.registry))

    out = doctor(project, env).stdout
    assert "ok    docker: engine " in out and services.docker_host in out
    assert f"ok    registry {services.registry}: no credentials, none needed" in out
    assert f"fail  registry {services.auth_registry}: no credentials and the registry asks for a login" in out
    assert f"-> run `docker login {services.auth_registry}`" in out

    config = test_services.write_docker_config(
        tmp_path / "docker-login", services.auth_registry, services.auth_user, services.auth_password()
    )
    result = doctor(project, dict(env, DOCKER_CONFIG=str(config)), "--verbose")
    assert f"ok    registry {services.auth_registry}: credentials present in the docker config" in result.stdout
    assert services.auth_password() not in result.stdout + result.stderr


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    from pachhook.core import output

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("PACHHOOK_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal, pipe = Terminal(), io.StringIO()
    output.Printer(stream=terminal).status("ok", "docker", "fine")
    output.Printer(stream=pipe).status("ok", "docker", "fine")
    assert "\033[32m" in terminal.getvalue()
    assert pipe.getvalue() == "ok    docker: fine\n"

    monkeypatch.setenv("NO_COLOR", "")  # set, even empty, means no colour
    plain = Terminal()
    output.Printer(stream=plain).status("fail", "docker", "down")
    assert plain.getvalue() == "fail  docker: down\n"
    monkeypatch.setenv("PACHHOOK_COLOR", "always")
    assert not output.color_enabled(Terminal())


def test_api_backend_connection_against_the_pps_double(project, env, tmp_path):
    pytest.importorskip("pachyderm_sdk", reason="the API backend needs pachyderm-sdk: pip install 'pachhook[api]'")
    pytest.importorskip("grpc", reason="the pps_v2.API test double needs grpcio")
    from doubles import pps_server

    token = "doctor-secret-session-token"
    server, port, double = pps_server.start()
    config = tmp_path / "pach-config.json"
    config.write_text(
        json.dumps(
            {
                "v2": {
                    "active_context": "local",
                    "contexts": {"local": {"pachd_address": f"grpc://127.0.0.1:{port}", "session_token": token}},
                }
            }
        )
    )
    (project / ".pachhook.toml").write_text('backend = "api"\n')
    env = dict(env, PACH_CONFIG=str(config))
    try:
        result = doctor(project, env)
    finally:
        double.released.set()
        server.stop(grace=None)
    assert "ok    pachyderm API: connected" in result.stdout, result.stdout + result.stderr
    assert token not in result.stdout + result.stderr

    down = doctor(project, env)  # the server is gone now
    line = next(line for line in down.stdout.splitlines() if line.startswith("fail  pachyderm API:"))
    assert "cannot connect" in line and token not in down.stdout


def test_an_open_pachctl_transaction_is_a_warning_and_the_users_file_stays_as_it_is(project, env, tmp_path):
    """pachctl routes the user's own updates into their active transaction; doctor says so,
    asking the cluster (`pachctl inspect transaction ID --raw`, the pachctl TEST DOUBLE)."""
    user_config = tmp_path / "pachyderm" / "config.json"
    user_config.parent.mkdir()
    user_config.write_text(json.dumps({"v2": {"active_context": "dev", "contexts": {"dev": {}, "prod": {}}}}))
    env = dict(with_pachctl_double(env, tmp_path), PACH_CONFIG=str(user_config))
    bin_dir = tmp_path / "bin"
    assert "pachctl transaction" not in doctor(project, env).stdout  # none open: no line

    started = run([str(bin_dir / "pachctl"), "start", "transaction"], project, env)
    transaction = started.stdout.split('"')[1]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"pipeline": {"name": "edges"}, "transform": {"image": "busybox:1.36"}}))
    joined = run([str(bin_dir / "pachctl"), "update", "pipeline", "-f", str(spec)], project, env)
    assert joined.stdout.strip() == f"Added to transaction: {transaction}"
    before = user_config.read_bytes()
    out = doctor(project, env).stdout
    line = lines_of_all(out, "pachctl transaction")
    assert line == [
        f"warn  pachctl transaction: context dev has transaction {transaction} open ({user_config}), 1 request in it:"
        " your own `pachctl update pipeline` there joins it and applies nothing until it is finished (pachhook's"
        " deliveries do not join it)"
    ]
    assert "-> `pachctl finish transaction` to apply it, or `pachctl delete transaction` to drop it" in out
    assert user_config.read_bytes() == before  # asked through a private configuration

    # Deleted elsewhere (another machine's configuration): the user's file still names it.
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"v2": {"active_context": "dev", "contexts": {"dev": {}}}}))
    deleted = run(
        [str(bin_dir / "pachctl"), "delete", "transaction", transaction], project, dict(env, PACH_CONFIG=str(elsewhere))
    )
    assert deleted.returncode == 0, deleted.stderr
    out = doctor(project, env).stdout
    assert lines_of_all(out, "pachctl transaction") == [
        f"warn  pachctl transaction: context dev names transaction {transaction} as active ({user_config}), which"
        " the cluster no longer has: your own `pachctl update pipeline` there fails until it is cleared"
    ]
    assert "-> run `pachctl stop transaction` with that context active" in out


def lines_of_all(out: str, name: str) -> list:
    return [line for line in out.splitlines() if line[6:].startswith(f"{name}:")]

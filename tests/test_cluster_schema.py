"""`pachhook validate --cluster`: the schema pachd serves, fetched from a local HTTP server.

The server stands in for pachd's HTTP endpoint (`/jsonschema/`, served since 2.8 by
`src/server/http/http.go`) on 127.0.0.1 and serves the upstream schema kept in
`../shared/corpus/upstream-schema/` (the newest, camelCase-only one). `pachctl version`
comes from the pachctl TEST DOUBLE (tests/doubles/pachctl).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SHARED_SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "upstream-schema"
UPSTREAM = SHARED_SCHEMA / "CreatePipelineRequest.schema.json"
DOUBLES = Path(__file__).parent / "doubles"

pytestmark = pytest.mark.skipif(
    not UPSTREAM.exists(), reason=f"the upstream schema is not beside this checkout ({UPSTREAM})"
)


@pytest.fixture
def pachd(tmp_path):
    """A local HTTP server answering like pachd's /jsonschema/ file server; counts requests."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            hits.append(self.path)
            if self.path == "/jsonschema/pps_v2/CreatePipelineRequest.schema.json":
                body = UPSTREAM.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "pachctl-config.json"
    address = f"grpc://127.0.0.1:{server.server_address[1]}"
    config.write_text(
        json.dumps({"v2": {"active_context": "local", "contexts": {"local": {"pachd_address": address}}}})
    )
    yield server, hits, config
    server.shutdown()
    server.server_close()


def run(tmp_path, config, *args, env_extra=None):
    state = tmp_path / "pachctl-state"
    state.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "PACH_CONFIG": str(config),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "PATH": f"{DOUBLES}{os.pathsep}{env['PATH']}",
            "PACHCTL_DOUBLE_DIR": str(state),
            "PACHCTL_DOUBLE_SERVER_VERSION": "2.11.6",
        }
    )
    env.pop("PACHD_ADDRESS", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "validate", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


CAMEL = '{"pipeline": {"name": "edges"}, "transform": {"image": "reg.example.com/edges:{{ tag }}"}, "parallelismSpec": {"constant": 2}}'
SNAKE = "pipeline: {name: edges}\ntransform: {image: 'reg.example.com/edges:1.0'}\nparallelism_spec: {constant: 2}\n"


def test_agreeing_schemas_say_nothing_and_the_schema_is_cached_per_pachd_version(tmp_path, pachd):
    server, hits, config = pachd
    (tmp_path / "pipeline.json").write_text(CAMEL)
    first = run(tmp_path, config, "--cluster", "pipeline.json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert "cluster schema fetched from http://127.0.0.1:" in first.stderr and "(pachd 2.11.6)" in first.stderr
    second = run(tmp_path, config, "--cluster", "pipeline.json")
    assert second.returncode == 0 and "cluster schema cached from" in second.stderr
    assert hits == ["/jsonschema/pps_v2/CreatePipelineRequest.schema.json"]  # asked once
    assert (tmp_path / "cache" / "pachhook" / "cluster-schema" / "2.11.6.json").is_file()


def test_a_disagreement_is_reported_where_it_is(tmp_path, pachd):
    _, _, config = pachd
    # pachctl reads snake_case names, the schema pachd 2.8+ serves knows only camelCase
    (tmp_path / "pipeline.yaml").write_text(SNAKE)
    result = run(tmp_path, config, "--cluster", "--format", "json", "pipeline.yaml")
    assert result.returncode == 0, result.stderr  # warnings only
    [record] = json.loads(result.stdout)
    assert record["rule"] == "cluster-schema" and record["severity"] == "warning"
    assert record["line"] == 3 and "the schema pachd 2.11.6 serves refuses this" in record["message"]
    assert "parallelism_spec" in record["message"]


def test_an_unreachable_cluster_is_one_clear_line(tmp_path, pachd):
    server, _, config = pachd
    (tmp_path / "pipeline.json").write_text(CAMEL)
    missing = run(
        tmp_path,
        config,
        "--cluster",
        "--cluster-url",
        f"http://127.0.0.1:{server.server_address[1]}/nothing",
        "pipeline.json",
    )
    assert missing.returncode == 1 and "HTTP 404 (pachd older than 2.8 serves no schema)" in missing.stderr
    assert "Traceback" not in missing.stderr
    nothing = run(tmp_path, config, "--cluster", "pipeline.json", env_extra={"PACHD_ADDRESS": "127.0.0.1:9"})
    assert (
        nothing.returncode == 1
        and "pachhook: cluster schema: cannot reach http://127.0.0.1:9/jsonschema/" in nothing.stderr
    )


def test_without_cluster_jsonschema_is_not_imported(tmp_path):
    (tmp_path / "pipeline.json").write_text(CAMEL)
    code = "import sys, runpy; sys.argv = ['pachhook', 'validate', 'pipeline.json']\n"
    code += "from pachhook.commands import validate\ntry:\n    validate.main(['pipeline.json'])\nfinally:\n"
    code += "    print('jsonschema' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("False"), result.stdout + result.stderr


def test_pre_push_compares_when_the_configuration_asks(tmp_path, pachd):
    _, hits, config = pachd
    (tmp_path / ".git").mkdir()
    (tmp_path / ".pachhook.toml").write_text("schema_from_cluster = true\n")
    (tmp_path / "pipeline.yaml").write_text(SNAKE)
    # pre-commit's pre-push stage sets PRE_COMMIT_REMOTE_NAME
    pushed = run(tmp_path, config, "pipeline.yaml", env_extra={"PRE_COMMIT_REMOTE_NAME": "origin"})
    assert pushed.returncode == 0 and "cluster-schema" not in pushed.stdout  # text output: the message
    assert "the schema pachd 2.11.6 serves refuses this" in pushed.stdout and ": warning: " in pushed.stdout
    assert len(hits) == 1
    # at pre-commit (no remote) it is not asked
    committed = run(tmp_path, config, "pipeline.yaml")
    assert committed.returncode == 0 and committed.stdout == "" and len(hits) == 1
    # an unreachable cluster is said but stops no push
    offline = run(
        tmp_path,
        config,
        "pipeline.yaml",
        env_extra={
            "PRE_COMMIT_REMOTE_NAME": "origin",
            "PACHD_ADDRESS": "127.0.0.1:9",
            "XDG_CACHE_HOME": str(tmp_path / "c2"),
        },
    )
    assert offline.returncode == 0 and "pachhook: cluster schema: cannot reach" in offline.stderr

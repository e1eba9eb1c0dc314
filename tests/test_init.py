"""`pachhook init` in real git repositories, with the real pre-commit framework.

The command runs as a subprocess, as a user types it; the last test lets pre-commit
install pachhook from a local clone of this checkout (its working tree committed there)
and checks that the set-up init wrote refuses a bad template and queues a good commit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

IDENTITY = {
    "GIT_AUTHOR_NAME": "pachhook test",
    "GIT_AUTHOR_EMAIL": "test@pachhook.invalid",
    "GIT_COMMITTER_NAME": "pachhook test",
    "GIT_COMMITTER_EMAIL": "test@pachhook.invalid",
}


@pytest.fixture
def env(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    environment.update(IDENTITY)
    environment["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    environment["NO_COLOR"] = "1"
    # pachhook installed where git runs: its console script beside this python, first on PATH
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "/usr/bin:/bin")])
    return environment


def git(*args: str, cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check)


def pachhook(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def make_project(tmp_path: Path, env: dict) -> Path:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES, project)
    git("init", "-q", "-b", "main", cwd=project, env=env)
    return project


def snapshot(tree: Path) -> dict:
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and ".git/objects" not in str(p) and "pre-commit-home" not in str(p)
    }


def test_init_sets_up_a_conventional_repository_and_a_second_run_changes_nothing(tmp_path, env):
    project = make_project(tmp_path, env)
    first = pachhook("init", "--repo", "https://example.invalid/pachhook.git", "--rev", "v9.9.9", cwd=project, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (
        "found edges/pipeline.json: pipeline edges, builds localhost:5000/pachhook-demo/edges"
        " from edges/Dockerfile" in first.stdout
    )
    assert "found montage/montage.pipeline.yaml: pipeline montage" in first.stdout
    assert "wrote     .pre-commit-config.yaml" in first.stdout
    assert "installed" in first.stdout and "pre-commit, pre-push, post-commit" in first.stdout
    assert "\033[" not in first.stdout  # NO_COLOR

    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    (entry,) = config["repos"]
    assert entry["repo"] == "https://example.invalid/pachhook.git" and entry["rev"] == "v9.9.9"
    assert [hook["id"] for hook in entry["hooks"]] == ["pachhook-validate", "pachhook-queue", "pachhook-check-push"]
    assert config["default_install_hook_types"] == [
        "pre-commit",
        "pre-push",
        "post-commit",
        "post-merge",
        "post-rewrite",
    ]
    # Conventions cover the examples' templates and Dockerfiles; the file written says where
    # commits deliver: the implicit environment, spelt out, delivering the same.
    assert "wrote     .pachhook.toml: branch main delivers to env default (the active pachctl context)" in first.stdout
    written = (project / ".pachhook.toml").read_text()
    assert '[environments.default]\nbranches = ["main"]\n' in written
    from pachhook.core.config import load_config
    from pachhook.core.environments import environment_for

    configured = load_config(project)
    assert [(env.name, env.branches, env.context, env.implicit) for env in configured.environments.values()] == [
        ("default", ["main"], "", False)
    ]
    assert environment_for(configured, "main", project).name == "default"
    assert environment_for(configured, "feature/x", project) is None
    for hook_type in ("pre-commit", "pre-push", "post-commit"):
        hook = project / ".git" / "hooks" / hook_type
        assert os.access(hook, os.X_OK) and f"--hook-type={hook_type}" in hook.read_text()

    before = snapshot(project)
    second = pachhook("init", "--repo", "https://example.invalid/pachhook.git", "--rev", "v9.9.9", cwd=project, env=env)
    assert second.returncode == 0
    assert "already set up: nothing changed" in second.stdout
    assert snapshot(project) == before


def test_existing_config_keeps_its_comments_and_hooks(tmp_path, env):
    project = make_project(tmp_path, env)
    original = (
        "# team hooks: keep this comment\n"
        "repos:\n"
        "-   repo: https://github.com/pre-commit/pre-commit-hooks\n"
        "    rev: v4.6.0  # pinned on purpose\n"
        "    hooks:\n"
        "    -   id: check-json\n"
    )
    (project / ".pre-commit-config.yaml").write_text(original)
    result = pachhook("init", "--no-install", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert "extended  .pre-commit-config.yaml: appended pachhook's hooks" in result.stdout
    text = (project / ".pre-commit-config.yaml").read_text()
    assert text.startswith(original)  # every byte of the user's file is still there
    repos = yaml.safe_load(text)["repos"]
    assert [r["repo"] for r in repos] == ["https://github.com/pre-commit/pre-commit-hooks", "local"]
    assert all(hook["language"] == "system" for hook in repos[1]["hooks"])
    assert "hooks not installed (--no-install)" in result.stdout
    assert not (project / ".git" / "hooks" / "post-commit").exists()


def test_flow_style_config_is_rewritten_with_its_content_and_says_so(tmp_path, env):
    project = make_project(tmp_path, env)
    (project / ".pre-commit-config.yaml").write_text(
        "# a comment that cannot survive\nrepos: [{repo: local, hooks: [{id: mine, name: mine, "
        "entry: 'true', language: system}]}]\nfail_fast: true\n"
    )
    result = pachhook("init", "--no-install", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert "its comments could not be kept" in result.stdout
    data = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    assert data["fail_fast"] is True
    assert data["repos"][0]["hooks"][0]["id"] == "mine"
    assert data["repos"][1]["hooks"][0]["id"] == "pachhook-validate"


def test_unconventional_layout_gets_only_the_configuration_it_needs(tmp_path, env):
    project = tmp_path / "project"
    (project / "deploy").mkdir(parents=True)
    (project / "src").mkdir()
    (project / "src" / "Dockerfile").write_text("FROM scratch\n")
    spec = json.loads((EXAMPLES / "edges" / "pipeline.json").read_text())
    spec["transform"]["image"] = "registry.example.com/team/edges:{{ tag }}"
    (project / "deploy" / "edges-spec.json").write_text(json.dumps(spec, indent=2))
    (project / "deploy" / "other.json").write_text('{"not": "a pipeline"}')
    git("init", "-q", "-b", "main", cwd=project, env=env)
    result = pachhook("init", "--no-install", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert "found deploy/edges-spec.json: pipeline edges" in result.stdout
    assert "other.json" not in result.stdout

    from pachhook.core.config import load_config

    config = load_config(project)
    assert "deploy/edges-spec.json" in config.templates
    assert config.image_config("registry.example.com/team/edges").dockerfile == "src/Dockerfile"
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    files = hooks[0]["files"]
    assert hooks[0]["entry"] == "pachhook validate"
    assert re.search(files, "deploy/edges-spec.json") and re.search(files, "a/pipeline.yaml")
    assert not re.search(files, "deploy/other.json")

    validated = pachhook("validate", cwd=project, env=env)
    assert "1 file" in validated.stdout + validated.stderr  # the configured glob finds it
    second = pachhook("init", "--no-install", cwd=project, env=env)
    assert "already set up: nothing changed" in second.stdout


def test_dry_run_changes_nothing_and_json_reports_the_plan(tmp_path, env):
    project = make_project(tmp_path, env)
    before = snapshot(project)
    result = pachhook("init", "--dry-run", "--format", "json", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["changed"] is False
    assert {a["what"] for a in report["actions"]} >= {"write", "install"}
    assert all(not action["done"] for action in report["actions"])
    assert snapshot(project) == before


def test_bad_input_is_one_line_without_traceback(tmp_path, env):
    outside = tmp_path / "plain-folder"
    outside.mkdir()
    result = pachhook("init", cwd=outside, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("pachhook init: not a git repository")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    project = make_project(tmp_path, env)
    (project / ".pre-commit-config.yaml").write_text("repos:\n  - repo: x\n   bad: [\n")
    broken = pachhook("init", cwd=project, env=env)
    assert broken.returncode == 1
    assert re.match(r"pachhook init: \.pre-commit-config\.yaml:\d+: not valid YAML", broken.stderr)
    assert "Traceback" not in broken.stderr
    assert (project / ".pre-commit-config.yaml").read_text() == "repos:\n  - repo: x\n   bad: [\n"

    empty = pachhook("init", "--rev", "", cwd=project, env=env)
    assert empty.returncode == 2 and "must not be empty" in empty.stderr


def test_default_set_up_works_offline_with_the_real_pre_commit(tmp_path, env):
    """No hook repository: `repo: local` hooks run the installed pachhook (PRE_COMMIT_HOME is empty, no network)."""
    project = make_project(tmp_path, env)
    env = dict(env, PIP_NO_INDEX="1", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    result = pachhook("init", cwd=project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote     .pre-commit-config.yaml: pachhook's three hooks: local hooks running the installed" in (
        result.stdout
    )
    (project / ".pachhook.toml").write_text('worker = "manual"\n')  # queue only: no build here

    template = project / "edges" / "pipeline.json"
    good = template.read_text()
    template.write_text(good.replace("{{ tag }}", "{{ sha }}"))
    git("add", "-A", cwd=project, env=env)
    refused = subprocess.run(
        ["git", "commit", "-m", "bad"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "unknown placeholder {{ sha }}" in refused.stdout + refused.stderr

    template.write_text(good)
    git("add", "-A", cwd=project, env=env)
    made = subprocess.run(
        ["git", "commit", "-m", "good"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stdout + made.stderr
    status = pachhook("status", "--format", "json", cwd=project, env=env)
    jobs = json.loads(status.stdout)["jobs"]
    assert sorted(job["pipeline"] for job in jobs) == ["edges", "montage"]
    assert all(job["state"] == "queued" for job in jobs)

    doctor = pachhook("doctor", "--format", "json", cwd=project, env=env)
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    for hook_type, hook_id in (
        ("pre-commit", "pachhook-validate"),
        ("pre-push", "pachhook-check-push"),
        ("post-commit", "pachhook-queue"),
    ):
        assert checks[f"{hook_type} hook"]["status"] == "ok"
        assert hook_id in checks[f"{hook_type} hook"]["message"]
    assert checks["hooks run"]["status"] == "ok", checks["hooks run"]
    assert "pachhook-validate` passed on 2 template(s)" in checks["hooks run"]["message"]
    assert checks["worker"]["status"] == "warn" and "2 job(s) queued" in checks["worker"]["message"]

    # A teammate without pachhook where git runs: doctor says the hooks cannot run.
    no_pachhook = dict(env, PATH=os.pathsep.join(["/usr/bin", "/bin"]))
    broken = subprocess.run(
        [sys.executable, "-m", "pachhook", "doctor"], cwd=project, env=no_pachhook, capture_output=True, text=True
    )
    assert broken.returncode == 1
    assert (
        "fail  hooks run: `pre-commit run --hook-stage manual pachhook-validate` failed, so commits are not checked:"
        " Executable `pachhook` not found" in broken.stdout
    )
    assert "-> install pachhook where `git commit` runs" in broken.stdout


def test_local_hooks_are_the_published_hooks(tmp_path, env):
    """The hooks init writes as `repo: local` say what .pre-commit-hooks.yaml says, so the two forms agree."""
    from pachhook.setup.scaffold import HookSource, hook_entry

    published = {hook["id"]: hook for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    from pachhook.setup.scaffold import DEFAULT_FILES

    (local,) = yaml.safe_load(hook_entry(HookSource(), DEFAULT_FILES))
    assert local["repo"] == "local"
    assert [hook["id"] for hook in local["hooks"]] == list(published)
    for hook in local["hooks"]:
        expected = dict(published[hook["id"]])
        expected.pop("description")
        expected.pop("minimum_pre_commit_version")
        assert expected.pop("language") == "python" and hook.pop("language") == "system"
        assert hook == expected


def test_init_repo_and_rev_rewrite_what_init_wrote(tmp_path, env):
    project = make_project(tmp_path, env)
    (project / ".pre-commit-config.yaml").write_text(
        "# team comment\nrepos:\n  - repo: https://github.com/pre-commit/pre-commit-hooks\n    rev: v4.6.0\n"
        "    hooks:\n      - id: check-json\n"
    )
    assert pachhook("init", "--no-install", cwd=project, env=env).returncode == 0
    pinned = pachhook(
        "init",
        "--no-install",
        "--repo",
        "https://example.invalid/pachhook.git",
        "--rev",
        "v1.2.3",
        cwd=project,
        env=env,
    )
    assert pinned.returncode == 0, pinned.stderr
    assert (
        "rewrote   .pre-commit-config.yaml: rewrote pachhook's entry (was local hooks running the installed"
        " `pachhook`): now repo https://example.invalid/pachhook.git at v1.2.3" in pinned.stdout
    )
    text = (project / ".pre-commit-config.yaml").read_text()
    assert text.startswith("# team comment\nrepos:\n  - repo: https://github.com/pre-commit/pre-commit-hooks\n")
    repos = yaml.safe_load(text)["repos"]
    assert repos[1] == {
        "repo": "https://example.invalid/pachhook.git",
        "rev": "v1.2.3",
        "hooks": [{"id": "pachhook-validate"}, {"id": "pachhook-queue"}, {"id": "pachhook-check-push"}],
    }
    again = pachhook("init", "--no-install", cwd=project, env=env)  # no --repo: the pinned source stays
    assert "already set up: nothing changed" in again.stdout
    back = pachhook("init", "--no-install", "--repo", "local", cwd=project, env=env)
    assert "now local hooks running the installed `pachhook`" in back.stdout
    assert yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"][1]["repo"] == "local"

    usage = pachhook("init", "--repo", "https://example.invalid/x.git", cwd=project, env=env)
    assert usage.returncode == 2 and "give --repo URL and --rev REV together" in usage.stderr


def test_the_unpublished_default_of_earlier_versions_becomes_local_hooks(tmp_path, env):
    project = make_project(tmp_path, env)
    (project / ".pre-commit-config.yaml").write_text(
        "repos:\n- repo: 'https://github.com/pachhook/pachhook'\n  rev: 'v0.1.0'\n  hooks:\n"
        "    - id: pachhook-validate\n    - id: pachhook-queue\n    - id: pachhook-check-push\n"
        "# trailing comment kept\n"
    )
    result = pachhook("init", "--no-install", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert "https://github.com/pachhook/pachhook has no release to install from" in result.stdout
    text = (project / ".pre-commit-config.yaml").read_text()
    assert text.endswith("# trailing comment kept\n")
    assert yaml.safe_load(text)["repos"][0]["repo"] == "local"


def test_a_template_listed_by_hand_is_in_the_hooks_files_pattern(tmp_path, env):
    project = make_project(tmp_path, env)
    spec = (EXAMPLES / "edges" / "pipeline.json").read_text()
    (project / "deploy").mkdir()
    (project / "deploy" / "edges-prod.json").write_text(spec.replace('"edges"', '"edges-prod"'))
    (project / ".pachhook.toml").write_text('templates = ["**/pipeline.json", "**/*.pipeline.yaml", "deploy/*.json"]\n')
    (project / ".pre-commit-config.yaml").write_text(
        "repos:\n- repo: local\n  hooks:\n  - id: pachhook-validate\n    name: v\n    entry: pachhook validate\n"
        "    language: system\n    files: '(^|/)pipeline\\.json$'\n"
    )
    result = pachhook("init", "--no-install", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert "its `files` pattern left out deploy/edges-prod.json" in result.stdout
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    files = hooks[0]["files"]
    for path in ("deploy/edges-prod.json", "edges/pipeline.json", "montage/montage.pipeline.yaml"):
        assert re.search(files, path), path
    assert not re.search(files, "deploy/sub/other.json")
    assert "already set up" in pachhook("init", "--no-install", cwd=project, env=env).stdout


def test_init_replaces_pachhooks_plain_hooks_keeps_foreign_ones_and_uninstall_undoes_it(tmp_path, env):
    project = make_project(tmp_path, env)
    hooks = project / ".git" / "hooks"
    assert pachhook("install", "--plain", cwd=project, env=env).returncode == 0
    (hooks / "pre-push").write_text("#!/bin/sh\necho team pre-push\n")  # someone else's hook
    (hooks / "pre-push").chmod(0o755)
    result = pachhook("init", cwd=project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replacing pachhook's plain pre-commit, post-commit, post-merge, post-rewrite hook" in result.stdout
    assert "existing hooks kept" in result.stdout
    assert (hooks / "pre-push.legacy").read_text() == "#!/bin/sh\necho team pre-push\n"
    assert not (hooks / "pre-commit.legacy").exists() and not (hooks / "post-commit.legacy").exists()
    removed = pachhook("uninstall", cwd=project, env=env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (hooks / "post-commit").exists()


def test_an_existing_configuration_without_environments_is_told_what_delivers_where(tmp_path, env):
    project = make_project(tmp_path, env)
    (project / ".pachhook.toml").write_text('branches = ["main", "release"]\n')
    result = pachhook("init", "--no-install", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert (
        "note      .pachhook.toml: not changing your configuration; it may need: [environments.default] branches ="
        " ['main', 'release'] in place of the top-level `branches` (now branches main, release deliver to env"
        " default (the active pachctl context))"
    ) in result.stdout
    assert (project / ".pachhook.toml").read_text() == 'branches = ["main", "release"]\n'

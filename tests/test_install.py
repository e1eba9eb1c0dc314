"""`pachhook install` / `uninstall`: plain hooks or the pre-commit framework; foreign hooks are safe."""

from __future__ import annotations

from pathlib import Path

from gitutil import Repo, make_repo

from pachhook.setup.hookscripts import HOOK_NAMES, script

FOREIGN = "#!/bin/sh\necho my own hook\n"


def hooks(repo: Repo) -> Path:
    return repo.path / ".git" / "hooks"


def installed(repo: Repo) -> list:
    return sorted(p.name for p in hooks(repo).iterdir() if not p.name.endswith(".sample"))


def test_install_writes_executable_plain_hooks_and_uninstall_removes_them(tmp_path: Path):
    repo = make_repo(tmp_path)
    proc = repo.pachhook("install")
    assert proc.returncode == 0
    assert (
        proc.stdout
        == f"pachhook install: installed pre-commit, post-commit, pre-push, post-merge, post-rewrite hooks in {hooks(repo)}\n"
    )
    assert installed(repo) == sorted(HOOK_NAMES)
    for name in HOOK_NAMES:
        assert (hooks(repo) / name).read_text() == script(name)
        assert (hooks(repo) / name).stat().st_mode & 0o111
    assert repo.pachhook("install").returncode == 0  # installing again is fine
    proc = repo.pachhook("uninstall")
    assert proc.returncode == 0
    assert installed(repo) == []
    assert (
        repo.pachhook("uninstall").stdout == "pachhook uninstall: pachhook installed no hooks here; nothing to remove\n"
    )


def test_a_foreign_hook_is_never_overwritten_without_force(tmp_path: Path):
    repo = make_repo(tmp_path)
    hooks(repo).mkdir(exist_ok=True)
    (hooks(repo) / "pre-push").write_text(FOREIGN)
    proc = repo.pachhook("install")
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        f"pachhook install: {hooks(repo) / 'pre-push'} exists and was not installed by pachhook;"
    )
    assert installed(repo) == ["pre-push"]  # nothing was installed
    assert (hooks(repo) / "pre-push").read_text() == FOREIGN


def test_force_keeps_the_foreign_hook_aside_and_uninstall_restores_it(tmp_path: Path):
    repo = make_repo(tmp_path)
    hooks(repo).mkdir(exist_ok=True)
    (hooks(repo) / "pre-push").write_text(FOREIGN)
    assert repo.pachhook("install", "--force").returncode == 0
    assert (hooks(repo) / "pre-push").read_text() == script("pre-push")
    assert (hooks(repo) / "pre-push.pachhook-saved").read_text() == FOREIGN
    proc = repo.pachhook("uninstall")
    assert "removed pre-push, restored the hook it had replaced" in proc.stdout
    assert installed(repo) == ["pre-push"]
    assert (hooks(repo) / "pre-push").read_text() == FOREIGN


def test_uninstall_leaves_a_hook_replaced_since_by_someone_else(tmp_path: Path):
    repo = make_repo(tmp_path)
    assert repo.pachhook("install").returncode == 0
    (hooks(repo) / "post-commit").write_text(FOREIGN)
    proc = repo.pachhook("uninstall")
    assert proc.returncode == 1
    assert "post-commit no longer carries pachhook's marker; leaving it" in proc.stderr
    assert installed(repo) == ["post-commit"]


def test_core_hooks_path_is_honoured(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.git("config", "core.hooksPath", ".githooks")
    assert repo.pachhook("install").returncode == 0
    assert sorted(p.name for p in (repo.path / ".githooks").iterdir()) == sorted(HOOK_NAMES)


def test_with_a_pre_commit_config_install_runs_pre_commit_install(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.write(".pre-commit-config.yaml", "repos: []\n")
    repo.env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    proc = repo.pachhook("install")
    assert proc.returncode == 0, proc.stderr
    assert "pre-commit installed at .git/hooks/post-commit" in proc.stdout
    assert "does not list pachhook-validate, pachhook-queue, pachhook-check-push" in proc.stdout
    for name in HOOK_NAMES:
        assert "pre-commit" in (hooks(repo) / name).read_text()  # the framework's script
    proc = repo.pachhook("uninstall")
    assert proc.returncode == 0, proc.stderr
    assert installed(repo) == []


def test_outside_a_repository(tmp_path: Path):
    from gitutil import VENV_BIN, git_env, run

    proc = run([str(VENV_BIN / "pachhook"), "install"], tmp_path, git_env(tmp_path / "home"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("pachhook install: not a git repository")

"""A build that would read outside the repository is refused, as the user sees it.

Configured escapes (a Dockerfile or context `../`, absolute, or `a/../../`) are caught when
the configuration is read: `pachhook queue` (post-commit) says so in one line naming the file,
the line and the key, records nothing and leaves the commit; `pachhook validate` and
`pachhook run --commit` refuse. Symlinks committed in the tree that point out of it (a file,
a folder, the Dockerfile, .dockerignore, the context itself, a chain) fail the job at build
with a one-line cause naming the link, before anything reaches the engine's build; nothing is
tagged, nothing pushed, and a file outside the repository never ends up in an image. A
Dockerfile that COPYs `../` is refused by the engine itself, and the job says so.

Real git, the real Docker engine and registry of tests/services for the build cases.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import services as test_services
from gitutil import PACHCTL_DOUBLE, Repo, git_env, run

SECRET = "OUTSIDE-SECRET-" + uuid.uuid4().hex


def make_repo(tmp_path: Path, image: str, config: str = "") -> Repo:
    env = git_env(tmp_path / "home")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "Dockerfile").write_text("FROM scratch\nCOPY secret.txt /secret.txt\n")
    path = tmp_path / "repo"
    path.mkdir()
    run(["git", "init", "-q", "-b", "main", str(path)], tmp_path, env)
    env["PACHCTL_DOUBLE_DIR"] = str(tmp_path / "pachctl-state")
    repo = Repo(path, env)
    repo.write(".pachhook.toml", f'worker = "manual"\npachctl = {json.dumps(str(PACHCTL_DOUBLE))}\n' + config)
    repo.write(
        "edges/pipeline.json",
        json.dumps(
            {
                "pipeline": {"name": "edges"},
                "transform": {"image": image + ":{{ tag }}", "cmd": ["/bin/sh", "-c", "true"]},
                "input": {"pfs": {"repo": "images", "glob": "/*"}},
            },
            indent=2,
        )
        + "\n",
    )
    repo.write("edges/run.sh", "echo edges\n")
    return repo


def queue_output(repo: Repo) -> str:
    proc = repo.pachhook("queue", "--no-worker")
    assert proc.returncode == 0, proc.stderr  # post-commit never fails the commit
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def jobs(repo: Repo) -> list:
    proc = repo.pachhook("status", "--format", "json", "--all")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["jobs"]


CONFIGURED = [
    ("context", "../outside"),
    ("context", "/tmp"),
    ("context", "edges/../../outside"),
    ("context", "..\\\\outside"),
    ("dockerfile", "../outside/Dockerfile"),
    ("dockerfile", "/etc/passwd"),
    ("dockerfile", "edges/../../outside/Dockerfile"),
]


@pytest.mark.parametrize("key,value", CONFIGURED)
def test_configured_escape_is_refused_when_the_configuration_is_read(tmp_path, key, value):
    image = "registry.invalid/team/edges"
    repo = make_repo(tmp_path, image, f'\n[images."{image}"]\n{key} = "{value}"\n')
    repo.write("edges/Dockerfile", "FROM scratch\nCOPY run.sh /run.sh\n")
    commit = repo.commit("escape")
    said = queue_output(repo)
    [line] = said.splitlines()
    assert ".pachhook.toml:5" in line and key in line and "inside the repository" in line, line
    assert jobs(repo) == []
    assert repo.git("rev-parse", "HEAD") == commit  # the commit stands
    checked = repo.pachhook("validate")
    assert checked.returncode == 1 and ".pachhook.toml:5" in checked.stderr, checked.stderr
    direct = repo.pachhook("run", "--commit", "HEAD")
    assert direct.returncode != 0 and "Traceback" not in direct.stderr
    assert "inside the repository" in direct.stdout + direct.stderr


def _symlink(repo: Repo, link: str, target: str) -> None:
    path = repo.path / link
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


# case -> (links to commit, extra configuration, words the failure must hold)
SYMLINKS = {
    "absolute folder": ({"edges/etc": "/etc"}, "", ["edges/etc", "outside the repository"]),
    "relative file": (
        {"edges/secret.txt": "../../outside/secret.txt"},
        "",
        ["edges/secret.txt", "outside the repository"],
    ),
    "absolute file": ({"edges/passwd": "/etc/passwd"}, "", ["edges/passwd", "outside the repository"]),
    "dockerignore": ({"edges/.dockerignore": "/etc/hostname"}, "", ["edges/.dockerignore", "outside the repository"]),
    "chain": (
        {"edges/a.txt": "b.txt", "edges/b.txt": "../../outside/secret.txt"},
        "",
        ["edges/b.txt", "outside the repository"],
    ),
    "dockerfile": ({"edges/Dockerfile": "../../outside/Dockerfile"}, "", ["Dockerfile", "symlink"]),
    "context": ({"ctx": "../outside"}, 'context = "ctx"\n', ["ctx", "not a directory"]),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(SYMLINKS))
def test_committed_symlink_out_of_the_repository_fails_the_build(tmp_path, docker_env, case):
    services = docker_env
    image = f"{services.registry}/pachhook-escape/{uuid.uuid4().hex[:10]}"
    links, extra, words = SYMLINKS[case]
    config = f'\n[images."{image}"]\n{extra}' if extra else ""
    repo = make_repo(tmp_path, image, config)
    if "edges/Dockerfile" not in links:
        repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY . /app/"))
    for link, target in links.items():
        _symlink(repo, link, target)
    commit = repo.commit("a link out")
    assert "queued" in queue_output(repo)
    ran = repo.pachhook("run")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    [job] = jobs(repo)
    assert job["state"] == "failed"
    build = next(step for step in job["steps"] if step["name"] == "build")
    assert build["state"] == "failed" and "\n" not in build["error"]
    for word in words:
        assert word in build["error"], build["error"]
    assert all(step["state"] == "pending" for step in job["steps"] if step["name"] != "build")
    client = test_services.docker_client(services)
    try:
        assert not client.images.list(name=image), "an image was tagged for a refused context"
    finally:
        client.close()
    # retried, it is refused again the same way: nothing about it is transient
    assert repo.pachhook("retry", str(job["id"])).returncode == 0
    again = repo.pachhook("run")
    assert again.returncode == 1
    [job] = jobs(repo)
    assert job["state"] == "failed" and words[-1] in job["steps"][0]["error"]
    assert repo.git("rev-parse", "HEAD") == commit


@pytest.mark.parametrize("case", sorted(SYMLINKS))
def test_committed_symlink_is_refused_without_the_engine_and_in_a_dry_run(tmp_path, case):
    """The refusal does not wait for the engine: with it down the job still fails for the
    link (not retryable bad luck), and a dry run's plan says so instead of "would build"."""
    image = "registry.invalid/pachhook-escape/edges"
    links, extra, words = SYMLINKS[case]
    repo = make_repo(tmp_path, image, f'\n[images."{image}"]\n{extra}' if extra else "")
    repo.env["DOCKER_HOST"] = test_services.DEAD_DOCKER_HOST
    if "edges/Dockerfile" not in links:
        repo.write("edges/Dockerfile", "FROM scratch\nCOPY . /app/\n")
    for link, target in links.items():
        _symlink(repo, link, target)
    repo.commit("a link out")
    planned = repo.pachhook("run", "--commit", "HEAD", "--dry-run")
    assert "Traceback" not in planned.stderr
    assert all(word in planned.stdout + planned.stderr for word in words), planned.stdout + planned.stderr
    assert "would build" not in planned.stdout
    queue_output(repo)
    ran = repo.pachhook("run")
    assert ran.returncode == 1
    [job] = jobs(repo)
    error = job["steps"][0]["error"]
    assert all(word in error for word in words) and "Docker engine" not in error, error


@pytest.mark.integration
def test_symlink_inside_the_repository_is_kept_as_a_link(tmp_path, docker_env):
    """The control case: a link to a file of the context builds, as a link, not a copy."""
    services = docker_env
    image = f"{services.registry}/pachhook-escape/{uuid.uuid4().hex[:10]}"
    repo = make_repo(tmp_path, image)
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY . /app/"))
    _symlink(repo, "edges/also-run.sh", "run.sh")
    _symlink(repo, "edges/up", "..")  # the repository root: inside, though not in the context
    repo.commit("inside links")
    queue_output(repo)
    ran = repo.pachhook("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [job] = jobs(repo)
    assert job["state"] == "done", job["steps"]


@pytest.mark.integration
def test_dockerfile_copying_from_outside_the_context_is_refused_by_the_engine(tmp_path, docker_env):
    services = docker_env
    image = f"{services.registry}/pachhook-escape/{uuid.uuid4().hex[:10]}"
    repo = make_repo(tmp_path, image)
    repo.write("edges/Dockerfile", test_services.base_dockerfile(services, "COPY ../outside/secret.txt /secret.txt"))
    repo.commit("copy from outside")
    queue_output(repo)
    ran = repo.pachhook("run")
    assert ran.returncode == 1
    [job] = jobs(repo)
    build = job["steps"][0]
    assert job["state"] == "failed" and build["state"] == "failed"
    assert "\n" not in build["error"] and "secret.txt" in build["error"], build["error"]
    assert SECRET not in ran.stdout + ran.stderr

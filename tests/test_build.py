"""The build step against the real test engine, and its git-side context export."""

from __future__ import annotations

import datetime
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import services as svc

from pachhook.deliver import buildcontext
from pachhook.deliver.buildcontext import BuildInputs, ContextError, DockerIgnore
from pachhook.deliver.steps import StepContext, StepError, run_step
from pachhook.deliver.steps.build import strip_credentials
from pachhook.queue.jobs import Job


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repo(tmp_path: Path, files: Dict[str, str], symlinks: Optional[Dict[str, str]] = None) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, target in (symlinks or {}).items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_job(repo: Path, image: str, template: str = "edges/pipeline.json", commit: str = "") -> Job:
    return Job(
        id=1,
        commit=commit or git(repo, "rev-parse", "HEAD"),
        branch="main",
        pipeline="edges",
        template=template,
        image=image,
    )


def run_build(repo: Path, job: Job, lines: Optional[List[str]] = None):
    lines = [] if lines is None else lines
    ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append)
    return run_step("build", ctx), lines


def unique_image(services: svc.Services) -> str:
    return f"{services.registry}/test-build/{uuid.uuid4().hex[:10]}"


def in_image(services: svc.Services, image_ref: str, command: str) -> str:
    client = svc.docker_client(services)
    try:
        out = client.containers.run(image_ref, ["sh", "-c", command], remove=True, network_mode="none")
    finally:
        client.close()
    return out.decode()


def edges_files(services: svc.Services, **extra: str) -> Dict[str, str]:
    files = {
        "edges/Dockerfile": svc.base_dockerfile(services, "COPY . /app"),
        "edges/pipeline.json": '{"pipeline": {"name": "edges"}}\n',
        "edges/nonce.txt": uuid.uuid4().hex,  # a context no other test built
    }
    files.update(extra)
    return files


# ---------------------------------------------------------------- against the engine


@pytest.mark.integration
def test_image_holds_the_commit_not_the_working_tree(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env, **{"edges/app.txt": "committed\n"}))
    (repo / "edges" / "app.txt").write_text("uncommitted edit\n")
    (repo / "edges" / "untracked.txt").write_text("never added\n")
    job = make_job(repo, unique_image(docker_env))

    result, lines = run_build(repo, job)

    assert result.outcome == "done"
    assert result.data["image_ref"] == f"{job.image}:{job.commit}"
    assert result.data["reused"] == "false"
    assert in_image(docker_env, result.data["image_ref"], "cat /app/app.txt") == "committed\n"
    assert in_image(docker_env, result.data["image_ref"], "ls /app").split() == ["Dockerfile", "app.txt", "nonce.txt"]
    assert any("Step 2/" in line and "COPY . /app" in line for line in lines), lines


@pytest.mark.integration
def test_dockerignore_as_committed_is_honoured(docker_env, tmp_path):
    files = edges_files(
        docker_env,
        **{
            "edges/.dockerignore": "*.log\nsecrets/\n!secrets/public.txt\n**/cache\n",
            "edges/run.log": "log\n",
            "edges/keep.txt": "keep\n",
            "edges/secrets/key.pem": "private\n",
            "edges/secrets/public.txt": "public\n",
            "edges/deep/er/cache/blob": "cached\n",
        },
    )
    repo = make_repo(tmp_path, files)
    job = make_job(repo, unique_image(docker_env))

    result, lines = run_build(repo, job)

    listing = in_image(docker_env, result.data["image_ref"], "cd /app && find . -type f | sort").split()
    # As with docker's CLI, .dockerignore itself reaches the image unless it lists itself.
    assert listing == ["./.dockerignore", "./Dockerfile", "./keep.txt", "./nonce.txt", "./secrets/public.txt"]
    assert any("3 left out by .dockerignore" in line for line in lines), lines


@pytest.mark.integration
def test_labels_name_commit_source_template_and_key(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    git(repo, "remote", "add", "origin", "https://deploy:s3cr3t-token@git.example.com/team/edges.git")
    job = make_job(repo, unique_image(docker_env))
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    result, lines = run_build(repo, job)

    client = svc.docker_client(docker_env)
    try:
        labels = client.images.get(result.data["image_ref"]).labels
    finally:
        client.close()
    assert labels["org.opencontainers.image.revision"] == job.commit
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/team/edges.git"
    created = datetime.datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert created.replace(tzinfo=datetime.timezone.utc) >= before
    assert labels["io.pachhook.template"] == "edges/pipeline.json"
    assert labels["io.pachhook.version"] == __import__("pachhook").__version__
    assert labels["io.pachhook.context-key"] == result.data["context_key"]
    assert "s3cr3t-token" not in "\n".join(lines)
    # The template is deployment configuration, not build input.
    assert "pipeline.json" not in in_image(docker_env, result.data["image_ref"], "ls /app")


@pytest.mark.integration
def test_same_context_again_is_a_retag_without_build(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    image = unique_image(docker_env)
    first, _ = run_build(repo, make_job(repo, image))
    # A second commit that changes only the template and a file outside the context.
    (repo / "edges" / "pipeline.json").write_text('{"pipeline": {"name": "edges"}, "parallelism_spec": {}}\n')
    (repo / "README.md").write_text("docs\n")
    second_commit = commit_all(repo, "template only")

    second, lines = run_build(repo, make_job(repo, image, commit=second_commit))

    assert second.outcome == "reused"
    assert second.data["reused"] == "true"
    assert second.data["context_key"] == first.data["context_key"]
    assert second.data["image_id"] == first.data["image_id"]
    assert second.data["image_ref"] == f"{image}:{second_commit}"
    assert not any("Step 1/" in line for line in lines), lines
    assert "without building" in second.message
    client = svc.docker_client(docker_env)
    try:
        assert client.images.get(f"{image}:{second_commit}").id == first.data["image_id"]
    finally:
        client.close()


@pytest.mark.integration
def test_changed_context_builds_anew(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    image = unique_image(docker_env)
    first, _ = run_build(repo, make_job(repo, image))
    (repo / "edges" / "nonce.txt").write_text(uuid.uuid4().hex)
    second, _ = run_build(repo, make_job(repo, image, commit=commit_all(repo, "code")))
    assert second.outcome == "done"
    assert second.data["context_key"] != first.data["context_key"]


@pytest.mark.integration
def test_short_tag_and_build_args_from_configuration(docker_env, tmp_path):
    image = unique_image(docker_env)
    files = edges_files(
        docker_env,
        **{
            "edges/Dockerfile": svc.base_dockerfile(docker_env, "ARG GREETING=unset", "RUN echo $GREETING > /greeting"),
            ".pachhook.toml": f'tag = "short"\n[images."{image}"]\nbuild_args = {{ GREETING = "hello" }}\n',
        },
    )
    repo = make_repo(tmp_path, files)
    job = make_job(repo, image)

    result, _ = run_build(repo, job)

    assert result.data["image_ref"] == f"{image}:{job.commit[:7]}"
    assert in_image(docker_env, result.data["image_ref"], "cat /greeting") == "hello\n"


@pytest.mark.integration
def test_dockerfile_error_fails_with_one_line_not_retryable(docker_env, tmp_path):
    files = edges_files(docker_env, **{"edges/Dockerfile": svc.base_dockerfile(docker_env, "RUN exit 3")})
    repo = make_repo(tmp_path, files)
    with pytest.raises(StepError) as failure:
        run_build(repo, make_job(repo, unique_image(docker_env)))
    message = str(failure.value)
    assert "\n" not in message
    assert "docker build of" in message and "returned a non-zero code: 3" in message
    assert failure.value.retryable is False


# ---------------------------------------------------------------- engine down


def test_engine_down_is_one_line_naming_docker_host(tmp_path, monkeypatch):
    repo = make_repo(tmp_path, {"edges/Dockerfile": "FROM scratch\n", "edges/pipeline.json": "{}\n"})
    dead = f"unix://{tmp_path}/dead.sock"
    monkeypatch.setenv("DOCKER_HOST", dead)
    with pytest.raises(StepError) as failure:
        run_build(repo, make_job(repo, "127.0.0.1:9/none/edges"))
    message = str(failure.value)
    assert "\n" not in message
    assert "Docker engine" in message and f"DOCKER_HOST={dead}" in message
    assert failure.value.retryable is True


def test_job_without_image_skips(tmp_path):
    repo = make_repo(tmp_path, {"edges/pipeline.json": "{}\n"})
    result, _ = run_build(repo, make_job(repo, ""))
    assert result.outcome == "skipped"


# ---------------------------------------------------------------- context export (git only)


def tar_names(repo: Path, inputs: BuildInputs, commit: str = "HEAD") -> List[str]:
    sha = git(repo, "rev-parse", commit)
    exported = buildcontext.export_context(repo, buildcontext.plan_context(repo, sha, inputs))
    with tarfile.open(fileobj=exported.tar) as tar:
        return sorted(member.name for member in tar.getmembers() if member.isfile() or member.issym())


def test_symlink_out_of_the_repository_is_refused(tmp_path):
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n"}, symlinks={"ctx/passwd": "../../etc/passwd"})
    with pytest.raises(ContextError, match=r"symlink 'ctx/passwd' .* points outside the repository"):
        tar_names(repo, BuildInputs("ctx", "ctx/Dockerfile"))


def test_absolute_symlink_is_refused_and_inside_one_kept(tmp_path):
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n", "ctx/a.txt": "a"}, symlinks={"ctx/b.txt": "a.txt"})
    assert tar_names(repo, BuildInputs("ctx", "ctx/Dockerfile")) == ["Dockerfile", "a.txt", "b.txt"]
    (repo / "ctx" / "abs").symlink_to("/etc/hostname")
    commit_all(repo, "absolute link")
    with pytest.raises(ContextError, match="points outside the repository"):
        tar_names(repo, BuildInputs("ctx", "ctx/Dockerfile"))


@pytest.mark.parametrize("setting", ["../elsewhere", "/abs/path", "ctx/../../x"])
def test_context_or_dockerfile_outside_the_repository_is_refused(setting):
    config = type("Image", (), {"context": setting, "dockerfile": None, "build_args": {}})()
    with pytest.raises(ContextError, match="outside the repository|is absolute"):
        buildcontext.resolve_inputs("edges/pipeline.json", config)
    config = type("Image", (), {"context": None, "dockerfile": setting, "build_args": {}})()
    with pytest.raises(ContextError, match="outside the repository|is absolute"):
        buildcontext.resolve_inputs("edges/pipeline.json", config)


def test_dockerfile_outside_the_context_is_carried_and_hidden_from_copy(tmp_path):
    repo = make_repo(tmp_path, {"docker/edges.Dockerfile": "FROM scratch\n", "src/a.py": "print()\n"})
    sha = git(repo, "rev-parse", "HEAD")
    plan = buildcontext.plan_context(repo, sha, BuildInputs("src", "docker/edges.Dockerfile"))
    exported = buildcontext.export_context(repo, plan)
    with tarfile.open(fileobj=exported.tar) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        ignore = tar.extractfile(".dockerignore").read().decode()
    assert exported.dockerfile == buildcontext.OUTSIDE_DOCKERFILE
    assert names == sorted([".dockerignore", buildcontext.OUTSIDE_DOCKERFILE, "a.py"])
    assert buildcontext.OUTSIDE_DOCKERFILE in ignore.split()


def test_missing_dockerfile_and_context_are_one_line_errors(tmp_path):
    repo = make_repo(tmp_path, {"edges/pipeline.json": "{}\n"})
    sha = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ContextError, match=r"^Dockerfile 'edges/Dockerfile' is missing in commit"):
        buildcontext.plan_context(repo, sha, BuildInputs("edges", "edges/Dockerfile"))
    with pytest.raises(ContextError, match=r"^build context 'nowhere' is not a directory"):
        buildcontext.plan_context(repo, sha, BuildInputs("nowhere", "edges/Dockerfile"))


def test_context_key_follows_sent_files_dockerfile_and_args(tmp_path):
    repo = make_repo(tmp_path, {"c/Dockerfile": "FROM scratch\n", "c/a.txt": "a", "c/.dockerignore": "*.md\n"})
    key = lambda inputs: buildcontext.plan_context(repo, git(repo, "rev-parse", "HEAD"), inputs).key  # noqa: E731
    base = key(BuildInputs("c", "c/Dockerfile"))
    assert key(BuildInputs("c", "c/Dockerfile", {"A": "1"})) != base
    (repo / "c" / "notes.md").write_text("ignored by .dockerignore\n")
    commit_all(repo, "ignored file")
    assert key(BuildInputs("c", "c/Dockerfile")) == base
    (repo / "c" / "a.txt").write_text("changed")
    commit_all(repo, "code")
    changed = key(BuildInputs("c", "c/Dockerfile"))
    assert changed != base
    (repo / "c" / "Dockerfile").write_text("FROM scratch\nENV X=1\n")
    commit_all(repo, "dockerfile")
    assert key(BuildInputs("c", "c/Dockerfile")) != changed


@pytest.mark.parametrize(
    "patterns, path, excluded",
    [
        ("*.log", "a.log", True),
        ("*.log", "sub/a.log", False),  # `*` does not cross folders
        ("**/*.log", "sub/deeper/a.log", True),
        ("build", "build/out/x", True),  # a matching parent folder excludes its files
        ("build\n!build/keep", "build/keep", False),
        ("!keep\n*", "keep", True),  # the last matching pattern wins
        ("/docs", "docs/a", True),
        ("a?c", "abc", True),
        ("[!x]y", "zy", True),
        ("# comment\n\n", "anything", False),
    ],
)
def test_dockerignore_matching_follows_docker(patterns, path, excluded):
    assert DockerIgnore.parse(patterns).excludes(path) is excluded


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://user:tok@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://ghp_TOKEN@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://github.com:8443/o/r.git", "https://github.com:8443/o/r.git"),
        ("ssh://git@host/o/r.git", "ssh://git@host/o/r.git"),
        ("ssh://git:pw@host/o/r.git", "ssh://host/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ],
)
def test_remote_url_loses_its_credentials(url, expected):
    assert strip_credentials(url) == expected


@pytest.mark.integration
def test_dry_run_says_build_then_reuse_and_changes_nothing(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    job = make_job(repo, unique_image(docker_env))
    lines: List[str] = []
    ctx = StepContext(repo_root=repo, git_dir=repo / ".git", job=job, log=lines.append, dry_run=True)

    planned = run_step("build", ctx)

    assert planned.outcome == "skipped"
    assert planned.message.startswith(f"dry run: would build {job.image}:{job.commit} from edges")
    client = svc.docker_client(docker_env)
    try:
        assert client.api.images(name=job.image) == []
    finally:
        client.close()
    built, _ = run_build(repo, job)
    again = run_step("build", ctx)
    assert f"would reuse image {built.data['image_id'][7:19]}" in again.message

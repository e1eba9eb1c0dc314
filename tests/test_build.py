"""The build step against the real test engine, and its git-side context export."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import services as svc

from pachhook.deliver import buildcontext, dockerclient
from pachhook.deliver.buildcontext import BuildInputs, ContextError
from pachhook.deliver.steps.base import StepContext, StepError, run_step
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
    assert svc.run_in_image(docker_env, result.data["image_ref"], "cat /app/app.txt") == "committed\n"
    assert svc.run_in_image(docker_env, result.data["image_ref"], "ls /app").split() == [
        "Dockerfile",
        "app.txt",
        "nonce.txt",
        "pipeline.json",
    ]
    # One line per step, with its time, from BuildKit's progress.
    assert any(line.startswith("build: [2/2] COPY . /app (") for line in lines), lines


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

    listing = svc.run_in_image(docker_env, result.data["image_ref"], "cd /app && find . -type f | sort").split()
    # As with docker's CLI, .dockerignore itself reaches the image unless it lists itself.
    assert listing == [
        "./.dockerignore",
        "./Dockerfile",
        "./keep.txt",
        "./nonce.txt",
        "./pipeline.json",
        "./secrets/public.txt",
    ]


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
            ".pachhook.toml": f'tag = "short"\n[images."{image}"]\nbuild_args = {{ GREETING = "hello" }}\n'
            'network = "host"\n',
        },
    )
    repo = make_repo(tmp_path, files)
    job = make_job(repo, image)

    result, _ = run_build(repo, job)

    assert result.data["image_ref"] == f"{image}:{job.commit[:7]}"
    assert svc.run_in_image(docker_env, result.data["image_ref"], "cat /greeting") == "hello\n"


def host_network(image: str, **extra: str) -> Dict[str, str]:
    """The configuration that lets BuildKit RUN steps run on the test engine (it has no bridge)."""
    return {".pachhook.toml": f'[images."{image}"]\nnetwork = "host"\n', **extra}


@pytest.mark.integration
def test_failing_run_names_step_exit_code_and_last_output(docker_env, tmp_path):
    image = unique_image(docker_env)
    step = "RUN echo first; printf '\\033[31mred\\033[0m\\n'; exit 3"
    files = edges_files(
        docker_env, **host_network(image, **{"edges/Dockerfile": svc.base_dockerfile(docker_env, step)})
    )
    repo = make_repo(tmp_path, files)
    with pytest.raises(StepError) as failure:
        run_build(repo, make_job(repo, image))
    message = str(failure.value)
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith(f"docker build of {image}:")
    assert "step [2/2] RUN echo first" in message and "exit code: 3" in message, message
    assert "last output: first | red" in message, message
    assert "http" not in message
    assert failure.value.retryable is False


@pytest.mark.integration
def test_dockerfile_syntax_error_is_the_engines_own_words(docker_env, tmp_path):
    files = edges_files(docker_env, **{"edges/Dockerfile": svc.base_dockerfile(docker_env, "RUNN exit 3")})
    repo = make_repo(tmp_path, files)
    with pytest.raises(StepError) as failure:
        run_build(repo, make_job(repo, unique_image(docker_env)))
    message = str(failure.value)
    assert "dockerfile parse error line 2: unknown instruction: RUNN" in message, message
    assert "http+docker" not in message and "Client Error" not in message
    assert failure.value.retryable is False


@pytest.mark.integration
def test_run_without_a_bridge_names_the_network_setting(docker_env, tmp_path):
    files = edges_files(docker_env, **{"edges/Dockerfile": svc.base_dockerfile(docker_env, "RUN true")})
    repo = make_repo(tmp_path, files)
    with pytest.raises(StepError) as failure:
        run_build(repo, make_job(repo, unique_image(docker_env)))
    assert 'set network = "host" for the image' in str(failure.value), str(failure.value)


@pytest.mark.integration
def test_buildkit_syntax_targetarch_and_unused_failing_stage(docker_env, tmp_path):
    image = unique_image(docker_env)
    dockerfile = "\n".join(
        [
            "# syntax is BuildKit's: cache mounts, COPY --chmod, TARGETARCH",
            "FROM " + docker_env.base_image + " AS broken",
            "RUN exit 1",
            "FROM " + docker_env.base_image,
            "ARG TARGETARCH",
            "RUN --mount=type=cache,target=/cache echo tool-linux-$TARGETARCH > /arch",
            "COPY --chmod=700 run.sh /run.sh",
            "",
        ]
    )
    files = edges_files(docker_env, **host_network(image, **{"edges/Dockerfile": dockerfile, "edges/run.sh": "echo\n"}))
    repo = make_repo(tmp_path, files)
    result, _ = run_build(repo, make_job(repo, image))
    assert svc.run_in_image(docker_env, result.data["image_ref"], "cat /arch") == "tool-linux-amd64\n"
    assert svc.run_in_image(docker_env, result.data["image_ref"], "stat -c %a /run.sh") == "700\n"


@pytest.mark.integration
def test_target_platform_and_secret(docker_env, tmp_path, monkeypatch):
    image = unique_image(docker_env)
    dockerfile = "\n".join(
        [
            "FROM " + docker_env.base_image + " AS tools",
            # BuildKit keeps secrets out of its cache key: a new step text, so this run reads the secret
            f"RUN --mount=type=secret,id=pip busybox cat /run/secrets/pip > /got && echo {uuid.uuid4().hex} >/run-id",
            "FROM tools AS final",
            "RUN echo final > /final",
            "",
        ]
    )
    config = (
        f'[images."{image}"]\nnetwork = "host"\ntarget = "tools"\nplatform = "linux/amd64"\n'
        'secrets = { pip = { env = "PHK_TEST_PIP" } }\n'
    )
    files = edges_files(docker_env, **{".pachhook.toml": config, "edges/Dockerfile": dockerfile})
    repo = make_repo(tmp_path, files)
    value = "pip-" + uuid.uuid4().hex
    monkeypatch.setenv("PHK_TEST_PIP", value)
    result, lines = run_build(repo, make_job(repo, image))
    got = svc.run_in_image(docker_env, result.data["image_ref"], "busybox cat /got")
    assert got == value, "\n".join(["the build's log:", *lines])  # the log never holds the value (below)
    assert svc.run_in_image(docker_env, result.data["image_ref"], "ls /final || echo none").strip().endswith("none")
    assert value not in "\n".join(lines) + str(result)
    client = svc.docker_client(docker_env)
    try:
        built = client.images.get(result.data["image_ref"])
        assert value not in str(built.labels) and value not in str(built.history())
    finally:
        client.close()
    monkeypatch.delenv("PHK_TEST_PIP")
    (repo / "edges" / "nonce.txt").write_text("again")
    with pytest.raises(StepError, match="environment variable PHK_TEST_PIP, which is not set"):
        run_build(repo, make_job(repo, image, commit=commit_all(repo, "again")))


def path_with(tmp_path: Path, **tools: str) -> str:
    """A PATH holding git (and git-lfs) plus the given tools (name -> real program)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("git", "git-lfs"):
        if shutil.which(name):
            (folder / name).symlink_to(shutil.which(name))
    for name, program in tools.items():
        (folder / name).symlink_to(program)
    return str(folder)


def cli_without_buildx() -> Optional[str]:
    """A docker CLI 23+ without the buildx plugin (these machines have /usr/local/bin/docker 28.x)."""
    for path in ("/usr/local/bin/docker", "/usr/bin/docker"):
        if os.path.exists(path):
            cli, problem = dockerclient._probe_cli(path)
            if cli is None and "no buildx plugin" in problem:
                return path
    return None


def test_broken_docker_cli_is_named_with_the_fix(tmp_path, monkeypatch):
    broken = cli_without_buildx()
    if broken is None:
        pytest.skip("no docker CLI 23+ without buildx on this machine to show the refusal")
    folder = path_with(tmp_path, docker=broken)
    monkeypatch.setenv("PATH", folder)
    monkeypatch.delenv("PACHHOOK_DOCKER_CLI", raising=False)
    repo = make_repo(tmp_path, {"edges/Dockerfile": "FROM scratch\n", "edges/pipeline.json": "{}\n"})
    with pytest.raises(StepError) as failure:
        run_build(repo, make_job(repo, "127.0.0.1:9/none/edges"))
    message = str(failure.value)
    assert f"{folder}/docker (" in message and "has no buildx plugin" in message
    assert "install the buildx plugin" in message and "PACHHOOK_DOCKER_CLI" in message
    assert failure.value.retryable is False


def test_first_cli_without_buildkit_is_passed_over_for_one_that_builds(tmp_path, monkeypatch):
    broken = cli_without_buildx()
    working = next((p for p in ("/usr/bin/docker", "/usr/local/bin/docker") if p != broken and os.path.exists(p)), None)
    if broken is None or working is None:
        pytest.skip("needs a docker CLI without buildx and one that builds with BuildKit")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "docker").symlink_to(broken)
    (second / "docker").symlink_to(working)
    monkeypatch.setenv("PATH", f"{first}{os.pathsep}{second}")
    monkeypatch.delenv("PACHHOOK_DOCKER_CLI", raising=False)
    found = dockerclient.find_cli()
    assert found is not None and found.path == str(second / "docker")


@pytest.mark.integration
def test_without_a_docker_cli_the_engine_api_builds(docker_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path))
    monkeypatch.delenv("PACHHOOK_DOCKER_CLI", raising=False)
    files = edges_files(docker_env, **{"edges/.dockerignore": "*.log\n", "edges/run.log": "x\n"})
    repo = make_repo(tmp_path, files)
    result, lines = run_build(repo, make_job(repo, unique_image(docker_env)))
    assert result.outcome == "done"
    assert any("the engine's API (legacy builder" in line for line in lines), lines
    listing = svc.run_in_image(docker_env, result.data["image_ref"], "ls -a /app").split()
    assert "run.log" not in listing and "nonce.txt" in listing


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


def config_problems(tmp_path: Path, text: str) -> List[str]:
    from pachhook.core.config import ConfigError, load_config

    (tmp_path / ".pachhook.toml").write_text(text)
    try:
        load_config(tmp_path)
    except ConfigError as error:
        return list(error.problems) if hasattr(error, "problems") else str(error).splitlines()
    return []


def test_image_settings_are_read_and_checked(tmp_path):
    from pachhook.core.config import load_config

    (tmp_path / ".pachhook.toml").write_text(
        '[images."reg/edges"]\nplatform = "linux/arm64"\ntarget = "tools"\nnetwork = "host"\n'
        'submodules = true\nsecrets = { pip = { env = "PIP_TOKEN" }, netrc = { src = "~/.netrc" } }\n'
    )
    image = load_config(tmp_path).images["reg/edges"]
    assert (image.platform, image.target, image.network, image.submodules) == ("linux/arm64", "tools", "host", True)
    assert image.secrets == {"pip": ("env", "PIP_TOKEN"), "netrc": ("src", "~/.netrc")}
    inputs = buildcontext.resolve_inputs("edges/pipeline.json", image)
    assert (inputs.platform, inputs.target, inputs.network, inputs.submodules) == ("linux/arm64", "tools", "host", True)


@pytest.mark.parametrize(
    "body, expected",
    [
        ('build_args = { GITHUB_TOKEN = "x" }', "build_args.GITHUB_TOKEN: looks like a secret"),
        ('build_args = { db_password = "x" }', "looks like a secret"),
        ('build_args = { SSH_KEY = "x" }', 'pass it as secrets = { ssh_key = { env = "SSH_KEY" } }'),
        ('secrets = { pip = "PIP_TOKEN" }', 'secrets.pip: must be { env = "VARIABLE" } or { src = "FILE" }'),
        ('secrets = { pip = { url = "x" } }', 'must be { env = "VARIABLE" } or { src = "FILE" }'),
        ('secrets = ["pip"]', "must be a table of secret ids"),
        ('platform = ""', "platform: must be a non-empty string"),
        ('submodules = "yes"', "submodules: must be true or false"),
    ],
)
def test_bad_image_settings_are_named(tmp_path, body, expected):
    found = config_problems(tmp_path, f'[images."reg/edges"]\n{body}\n')
    assert any(expected in line and line.startswith(".pachhook.toml:2:") for line in found), found


def test_build_args_with_harmless_names_are_fine(tmp_path):
    assert (
        config_problems(tmp_path, '[images."r/e"]\nbuild_args = { PYTHON_VERSION = "3", KEYBOARD = "x", MONKEY = 1 }\n')
        == []
    )


# ---------------------------------------------------------------- context checkout (git only)


def checkout_names(repo: Path, inputs: BuildInputs, commit: str = "HEAD") -> List[str]:
    sha = git(repo, "rev-parse", commit)
    checkout = buildcontext.materialize(repo, buildcontext.plan_context(repo, sha, inputs))
    try:
        found = []
        for path in sorted(checkout.context_dir.rglob("*")):
            if path.is_file() or path.is_symlink():
                found.append(path.relative_to(checkout.context_dir).as_posix())
        return found
    finally:
        checkout.cleanup()


def test_symlink_out_of_the_repository_is_refused(tmp_path):
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n"}, symlinks={"ctx/passwd": "../../etc/passwd"})
    with pytest.raises(ContextError, match=r"symlink 'ctx/passwd' .* points outside the repository"):
        checkout_names(repo, BuildInputs("ctx", "ctx/Dockerfile"))


def test_absolute_symlink_is_refused_and_inside_one_kept(tmp_path):
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n", "ctx/a.txt": "a"}, symlinks={"ctx/b.txt": "a.txt"})
    assert checkout_names(repo, BuildInputs("ctx", "ctx/Dockerfile")) == ["Dockerfile", "a.txt", "b.txt"]
    (repo / "ctx" / "abs").symlink_to("/etc/hostname")
    commit_all(repo, "absolute link")
    with pytest.raises(ContextError, match="points outside the repository"):
        checkout_names(repo, BuildInputs("ctx", "ctx/Dockerfile"))


@pytest.mark.parametrize("setting", ["../elsewhere", "/abs/path", "ctx/../../x"])
def test_context_or_dockerfile_outside_the_repository_is_refused(setting):
    config = type("Image", (), {"context": setting, "dockerfile": None, "build_args": {}})()
    with pytest.raises(ContextError, match="outside the repository|is absolute"):
        buildcontext.resolve_inputs("edges/pipeline.json", config)
    config = type("Image", (), {"context": None, "dockerfile": setting, "build_args": {}})()
    with pytest.raises(ContextError, match="outside the repository|is absolute"):
        buildcontext.resolve_inputs("edges/pipeline.json", config)


def test_checkout_is_the_commit_with_checkout_attributes_not_the_work_tree(tmp_path):
    files = {
        ".gitattributes": "ctx/crlf.txt eol=crlf\nctx/id.txt ident\n",
        "ctx/Dockerfile": "FROM scratch\n",
        "ctx/crlf.txt": "a\nb\n",
        "ctx/id.txt": "$Id$\n",
        "docker/other.Dockerfile": "FROM scratch\n",
    }
    repo = make_repo(tmp_path, files)
    (repo / "ctx" / "crlf.txt").write_text("uncommitted\n")
    (repo / "ctx" / "untracked.txt").write_text("never added\n")
    sha = git(repo, "rev-parse", "HEAD")
    checkout = buildcontext.materialize(
        repo, buildcontext.plan_context(repo, sha, BuildInputs("ctx", "docker/other.Dockerfile"))
    )
    try:
        assert (checkout.context_dir / "crlf.txt").read_bytes() == b"a\r\nb\r\n"
        blob = git(repo, "rev-parse", "HEAD:ctx/id.txt")
        assert (checkout.context_dir / "id.txt").read_text() == f"$Id: {blob} $\n"
        assert sorted(p.name for p in checkout.context_dir.iterdir()) == ["Dockerfile", "crlf.txt", "id.txt"]
        # A Dockerfile outside the context keeps its place beside it, not inside it.
        assert checkout.dockerfile.read_text() == "FROM scratch\n" and checkout.dockerfile.parent.name == "docker"
        assert checkout.size == len(b"FROM scratch\n") + 6 + len(f"$Id: {blob} $\n")
    finally:
        checkout.cleanup()
    assert not checkout.root.exists()
    # The user's index and work tree are untouched.
    status = [line.strip() for line in git(repo, "status", "--porcelain").splitlines()]
    assert status == ["M ctx/crlf.txt", "?? ctx/untracked.txt"]


def lfs_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n"})
    git(repo, "lfs", "install", "--local")
    (repo / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    (repo / "ctx" / "model.bin").write_bytes(b"weights" * 500)
    commit_all(repo, "model in LFS")
    return repo


def test_lfs_content_is_checked_out(tmp_path):
    repo = lfs_repo(tmp_path)
    assert git(repo, "cat-file", "-p", "HEAD:ctx/model.bin").startswith("version https://git-lfs.github.com/spec/v1")
    sha = git(repo, "rev-parse", "HEAD")
    checkout = buildcontext.materialize(
        repo, buildcontext.plan_context(repo, sha, BuildInputs("ctx", "ctx/Dockerfile"))
    )
    try:
        assert (checkout.context_dir / "model.bin").read_bytes() == b"weights" * 500
    finally:
        checkout.cleanup()


def test_lfs_pointer_that_would_ship_is_an_error_naming_file_and_fix(tmp_path, monkeypatch):
    repo = lfs_repo(tmp_path)
    sha = git(repo, "rev-parse", "HEAD")
    plan = buildcontext.plan_context(repo, sha, BuildInputs("ctx", "ctx/Dockerfile"))
    # Without git-lfs on PATH (and without its filter configured) git writes the pointer.
    git(repo, "config", "--local", "--remove-section", "filter.lfs")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setattr(buildcontext.shutil, "which", lambda name: None)
    with pytest.raises(ContextError) as failure:
        buildcontext.materialize(repo, plan)
    message = str(failure.value)
    assert message.startswith("ctx/model.bin would be sent as a Git LFS pointer"), message
    assert "install git-lfs" in message


def test_submodules_are_checked_out_when_asked(tmp_path):
    (tmp_path / "lib").mkdir()
    library = make_repo(tmp_path / "lib", {"lib.txt": "library\n"})
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n"})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "ctx/vendor/lib")
    commit_all(repo, "submodule")
    assert checkout_names(repo, BuildInputs("ctx", "ctx/Dockerfile")) == ["Dockerfile"]
    names = checkout_names(repo, BuildInputs("ctx", "ctx/Dockerfile", submodules=True))
    assert "vendor/lib/lib.txt" in names, names
    git(repo, "submodule", "deinit", "-q", "-f", "ctx/vendor/lib")
    shutil.rmtree(repo / ".git" / "modules")
    with pytest.raises(
        ContextError, match=r"submodule 'ctx/vendor/lib' is not cloned here; run `git submodule update --init"
    ):
        checkout_names(repo, BuildInputs("ctx", "ctx/Dockerfile", submodules=True))


def test_missing_dockerfile_and_context_are_one_line_errors(tmp_path):
    repo = make_repo(tmp_path, {"edges/pipeline.json": "{}\n"})
    sha = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ContextError, match=r"^Dockerfile 'edges/Dockerfile' is missing in commit"):
        buildcontext.plan_context(repo, sha, BuildInputs("edges", "edges/Dockerfile"))
    with pytest.raises(ContextError, match=r"^build context 'nowhere' is not a directory"):
        buildcontext.plan_context(repo, sha, BuildInputs("nowhere", "edges/Dockerfile"))


def test_reuse_key_follows_tree_dockerfile_args_platform_target_not_templates(tmp_path):
    repo = make_repo(tmp_path, {"c/Dockerfile": "FROM scratch\n", "c/a.txt": "a", "c/pipeline.json": "{}\n"})

    def key(inputs: BuildInputs) -> str:
        sha = git(repo, "rev-parse", "HEAD")
        return buildcontext.plan_context(repo, sha, inputs, leave_out=lambda p: p.endswith("pipeline.json")).key

    base = key(BuildInputs("c", "c/Dockerfile"))
    assert key(BuildInputs("c", "c/Dockerfile", {"A": "1"})) != base
    assert key(BuildInputs("c", "c/Dockerfile", platform="linux/arm64")) != base
    assert key(BuildInputs("c", "c/Dockerfile", target="tools")) != base
    (repo / "c" / "pipeline.json").write_text('{"changed": true}\n')
    commit_all(repo, "template only")
    assert key(BuildInputs("c", "c/Dockerfile")) == base
    (repo / "c" / "a.txt").write_text("changed")
    commit_all(repo, "code")
    changed = key(BuildInputs("c", "c/Dockerfile"))
    assert changed != base
    (repo / "c" / "a.txt").chmod(0o755)
    commit_all(repo, "mode")
    assert key(BuildInputs("c", "c/Dockerfile")) != changed


def test_platform_defaults_to_docker_default_platform_then_amd64(monkeypatch):
    monkeypatch.delenv("DOCKER_DEFAULT_PLATFORM", raising=False)
    assert buildcontext.resolve_inputs("e/pipeline.json", None).platform == "linux/amd64"
    monkeypatch.setenv("DOCKER_DEFAULT_PLATFORM", "linux/arm64")
    assert buildcontext.resolve_inputs("e/pipeline.json", None).platform == "linux/arm64"
    config = type("Image", (), {"platform": "linux/s390x"})()
    assert buildcontext.resolve_inputs("e/pipeline.json", config).platform == "linux/s390x"


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


# ---------------------------------------------------------------- kept checkout between builds


def snapshot(folder: Path) -> Dict[str, tuple]:
    found: Dict[str, tuple] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[name] = ("link", os.readlink(path))
        elif path.is_file():
            found[name] = (oct(path.stat().st_mode & 0o777), path.read_bytes())
    return found


def fresh_and_kept(repo: Path, inputs: BuildInputs, keep: Path) -> tuple:
    sha = git(repo, "rev-parse", "HEAD")
    plan = buildcontext.plan_context(repo, sha, inputs)
    fresh = buildcontext.materialize(repo, plan)
    kept = buildcontext.materialize(repo, plan, keep_in=keep)
    try:
        assert kept.context_dir.parent.parent == keep and fresh.root != keep
        return snapshot(fresh.context_dir), snapshot(kept.context_dir), kept.context_dir
    finally:
        fresh.cleanup()
        kept.cleanup()


def test_kept_checkout_follows_each_commit_exactly(tmp_path):
    files = {"ctx/Dockerfile": "FROM scratch\n", "ctx/a.txt": "a\n", "ctx/gone.txt": "gone\n", "ctx/d/b.txt": "b\n"}
    repo = make_repo(tmp_path, files)
    keep = tmp_path / "kept"
    inputs = BuildInputs("ctx", "ctx/Dockerfile")
    fresh, kept, folder = fresh_and_kept(repo, inputs, keep)
    assert fresh == kept and "gone.txt" in kept
    unchanged = (folder / "d" / "b.txt").stat()

    (repo / "ctx" / "gone.txt").unlink()
    (repo / "ctx" / "a.txt").write_text("changed\n")
    (repo / "ctx" / "new.sh").write_text("echo\n")
    (repo / "ctx" / "new.sh").chmod(0o755)
    commit_all(repo, "change, delete, add")
    fresh, kept, folder = fresh_and_kept(repo, inputs, keep)
    assert fresh == kept and "gone.txt" not in kept and kept["new.sh"][0] == "0o755"
    # Git rewrote only what changed: the untouched file is the same file, same time.
    again = (folder / "d" / "b.txt").stat()
    assert (again.st_ino, again.st_mtime_ns) == (unchanged.st_ino, unchanged.st_mtime_ns)

    # A new .gitattributes above the context changes how unchanged files are written.
    (repo / ".gitattributes").write_text("*.txt eol=crlf\n")
    commit_all(repo, "attributes")
    fresh, kept, _ = fresh_and_kept(repo, inputs, keep)
    assert fresh == kept and kept["d/b.txt"][1] == b"b\r\n"


def test_kept_checkout_busy_falls_back_to_a_temporary_folder(tmp_path):
    repo = make_repo(tmp_path, {"ctx/Dockerfile": "FROM scratch\n"})
    keep = tmp_path / "kept"
    plan = buildcontext.plan_context(repo, git(repo, "rev-parse", "HEAD"), BuildInputs("ctx", "ctx/Dockerfile"))
    first = buildcontext.materialize(repo, plan, keep_in=keep)
    try:
        second = buildcontext.materialize(repo, plan, keep_in=keep)
        assert second.root != keep and (second.context_dir / "Dockerfile").is_file()
        second.cleanup()
        assert not second.root.exists()
    finally:
        first.cleanup()
    third = buildcontext.materialize(repo, plan, keep_in=keep)
    assert third.root == keep
    third.cleanup()
    assert (keep / "tree" / "ctx" / "Dockerfile").is_file()


@pytest.mark.integration
def test_an_unrecorded_image_with_the_key_is_not_searched_for_on_the_engine(docker_env, tmp_path):
    # Issue 16: the reuse key is looked up where it was recorded (this clone's image-keys
    # file, the tag itself, the digests pushed for it), never by a label search over every
    # image on the engine, which grew with the engine. Without the record, the step builds.
    repo = make_repo(tmp_path, edges_files(docker_env))
    image = unique_image(docker_env)
    first, _ = run_build(repo, make_job(repo, image))
    (repo / ".git" / "pachhook" / "image-keys.json").unlink()
    (repo / "edges" / "pipeline.json").write_text('{"pipeline": {"name": "edges"}, "description": "2"}\n')
    second_commit = commit_all(repo, "template only")

    second, _ = run_build(repo, make_job(repo, image, commit=second_commit))

    assert second.data["context_key"] == first.data["context_key"]
    assert second.outcome != "reused" and second.data["reused"] == "false"

"""The oracle: pachhook's image holds exactly the files `docker build` puts in an image built
from a clean clone of the same commit (same docker CLI, BuildKit, same engine).

Each case is a small repository; both images' file lists (path, type, size, mode, link target)
are read with `docker create` + `docker export` and must be equal. The reference build runs
the CLI by hand, as a user would in a fresh `git clone`.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import services as svc
from test_build import git, make_job, run_build

from pachhook.deliver import dockerclient

Entry = Tuple[str, str, int, str, str]  # path, type, size, mode, link target

# Files of a repository: text, or ("link", target), or ("exec", text), or ("bytes", data).
Files = Dict[str, object]


def base(services: svc.Services) -> str:
    return services.base_image


def cases(services: svc.Services) -> Dict[str, Tuple[Files, str, Optional[str]]]:
    """name -> (files, context folder, Dockerfile path or None for CONTEXT/Dockerfile)."""
    b = base(services)
    return {
        "multi-stage": (
            {
                "app/Dockerfile": f"FROM {b} AS build\nRUN mkdir /out && echo built > /out/artefact\n"
                f"FROM {b}\nCOPY --from=build /out /app/out\nCOPY . /app/src\n",
                "app/main.py": "print('hi')\n",
            },
            "app",
            None,
        ),
        "arg-before-from": (
            {
                "app/Dockerfile": f"ARG BASE={b}\nFROM ${{BASE}}\nARG BASE\nRUN echo $BASE > /base\nCOPY . /app\n",
                "app/x.txt": "x\n",
            },
            "app",
            None,
        ),
        "cache-mount-and-chmod": (
            {
                "app/Dockerfile": f"FROM {b}\nRUN --mount=type=cache,target=/cache echo cached > /cache/f && "
                "cp /cache/f /from-cache\nCOPY --chmod=750 run.sh /run.sh\n",
                "app/run.sh": "echo run\n",
            },
            "app",
            None,
        ),
        "targetarch": (
            {
                "app/Dockerfile": f"FROM {b}\nARG TARGETARCH\nARG TARGETPLATFORM\n"
                "RUN echo tool-linux-$TARGETARCH.tar.gz > /tool && echo $TARGETPLATFORM > /platform\n",
            },
            "app",
            None,
        ),
        "dockerignore-edges": (
            {
                # A UTF-8 BOM before the first pattern, as Notepad writes it.
                "app/.dockerignore": "\ufeff.env\nsecrets/\n!secrets/public.txt\n[!x]y.txt\n**/cache\n*.log\n!keep.log\n",
                "app/Dockerfile": f"FROM {b}\nCOPY . /app\n",
                "app/.env": "TOKEN=do-not-ship\n",
                "app/secrets/key.pem": "private\n",
                "app/secrets/public.txt": "public\n",
                "app/!y.txt": "literal bang\n",
                "app/ay.txt": "class\n",
                "app/deep/er/cache/blob": "cached\n",
                "app/run.log": "log\n",
                "app/keep.log": "kept\n",
            },
            "app",
            None,
        ),
        "modes-symlinks-non-ascii": (
            {
                "app/Dockerfile": f"FROM {b}\nCOPY . /app\n",
                "app/bin/tool": ("exec", "#!/bin/sh\necho tool\n"),
                "app/données/é-ü.txt": "unicode\n",
                "app/link-to-tool": ("link", "bin/tool"),
                "app/dir-link": ("link", "données"),
                "app/empty.txt": "",
            },
            "app",
            None,
        ),
        "eol-and-ident": (
            {
                ".gitattributes": "*.txt text eol=crlf\n*.id ident\n*.bin -text\n",
                "app/Dockerfile": f"FROM {b}\nCOPY . /app\n",
                "app/lines.txt": "one\ntwo\nthree\n",
                "app/version.id": "$Id$\n",
                "app/raw.bin": ("bytes", b"a\nb\r\n\x00"),
            },
            "app",
            None,
        ),
        "dockerfile-outside-context": (
            {
                "docker/app.Dockerfile": f"FROM {b}\nCOPY . /app\n",
                "src/a.py": "a = 1\n",
                "src/pkg/b.py": "b = 2\n",
            },
            "src",
            "docker/app.Dockerfile",
        ),
        "root-context": (
            {
                ".dockerignore": ".git\n",
                "Dockerfile": f"FROM {b}\nCOPY . /app\n",
                "README.md": "root\n",
                "lib/util.py": "u = 1\n",
            },
            "",
            None,
        ),
        "lfs": (
            {
                ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n",
                "app/Dockerfile": f"FROM {b}\nCOPY . /app\n",
                "app/model.bin": ("bytes", os.urandom(3000)),
            },
            "app",
            None,
        ),
    }


def write_repo(path: Path, files: Files, image: str) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    if any(str(v).find("filter=lfs") >= 0 for v in files.values()):
        git(path, "lfs", "install", "--local")
    # BuildKit RUN steps need the host network on the test engine (it has no bridge).
    (path / ".pachhook.toml").write_text(f'[images."{image}"]\nnetwork = "host"\n')
    for name, content in sorted(files.items(), key=lambda item: item[0] != ".gitattributes"):
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "link":
            target.symlink_to(content[1])
        elif isinstance(content, tuple) and content[0] == "exec":
            target.write_text(content[1])
            target.chmod(0o755)
        elif isinstance(content, tuple) and content[0] == "bytes":
            target.write_bytes(content[1])
        else:
            target.write_text(str(content))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "case")
    return git(path, "rev-parse", "HEAD")


def reference_build(cli: dockerclient.DockerCli, clone: Path, context: str, dockerfile: str, tag: str) -> None:
    """`docker build` of a clean clone, as a user runs it."""
    env = dict(os.environ)
    if not cli.buildx:
        env["DOCKER_BUILDKIT"] = "1"
    argv = cli.build_command() + ["--network=host", "-f", str(clone / dockerfile), "-t", tag, str(clone / context)]
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def file_list(services: svc.Services, image: str) -> List[Entry]:
    """The image's files as `docker export` of a created container lists them."""
    client = svc.docker_client(services)
    container = client.containers.create(image, command=["/nothing"])
    try:
        stream = container.export()
        reader = _ChunkReader(stream)
        entries = []
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                kind = "dir" if member.isdir() else "link" if member.issym() else "file" if member.isfile() else "other"
                entries.append((member.name.rstrip("/"), kind, member.size, oct(member.mode), member.linkname))
        return sorted(entries)
    finally:
        container.remove(force=True)
        client.close()


class _ChunkReader:
    def __init__(self, chunks) -> None:
        self.chunks = iter(chunks)
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            try:
                self.buffer += next(self.chunks)
            except StopIteration:
                break
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


CASE_NAMES = [
    "multi-stage",
    "arg-before-from",
    "cache-mount-and-chmod",
    "targetarch",
    "dockerignore-edges",
    "modes-symlinks-non-ascii",
    "eol-and-ident",
    "dockerfile-outside-context",
    "root-context",
    "lfs",
]


@pytest.mark.integration
@pytest.mark.parametrize("case", CASE_NAMES)
def test_image_files_equal_docker_build_of_a_clean_clone(docker_env, tmp_path, case):
    cli = dockerclient.find_cli()
    assert cli is not None, "the oracle needs a docker CLI that builds with BuildKit"
    files, context, dockerfile = cases(docker_env)[case]
    image = f"{docker_env.registry}/oracle/{case}-{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repo"
    commit = write_repo(repo, files, image)
    template = f"{context}/pipeline.json" if context else "pipeline.json"
    if dockerfile:
        config = (repo / ".pachhook.toml").read_text() + f'dockerfile = "{dockerfile}"\ncontext = "{context}"\n'
        (repo / ".pachhook.toml").write_text(config)
        git(repo, "commit", "-q", "-am", "dockerfile setting")
        commit = git(repo, "rev-parse", "HEAD")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, stdin=subprocess.DEVNULL, timeout=120)
    # An uncommitted edit in the user's work tree must not matter.
    (repo / (context or ".") / "uncommitted.txt").write_text("not committed\n")

    result, _ = run_build(repo, make_job(repo, image, template=template, commit=commit))
    reference = f"{image}-reference:latest"
    reference_build(cli, clone, context or ".", dockerfile or os.path.join(context, "Dockerfile"), reference)

    ours, theirs = file_list(docker_env, result.data["image_ref"]), file_list(docker_env, reference)
    assert ours == theirs
    # A second commit: pachhook brings its kept checkout forward instead of writing it anew.
    (repo / (context or ".") / "uncommitted.txt").unlink()
    (repo / (context or ".") / "second.txt").write_text("second commit\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    clone2 = tmp_path / "clone2"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone2)], check=True, stdin=subprocess.DEVNULL, timeout=120)
    again, _ = run_build(repo, make_job(repo, image, template=template, commit=second))
    reference2 = f"{image}-reference:second"
    reference_build(cli, clone2, context or ".", dockerfile or os.path.join(context, "Dockerfile"), reference2)
    assert file_list(docker_env, again.data["image_ref"]) == file_list(docker_env, reference2)

    if case == "dockerignore-edges":
        # What docker did, for the record: the BOM is not part of the first pattern, `!` in a
        # class is a literal, an exception under an excluded folder takes the file back.
        names = {entry[0] for entry in ours}
        assert "app/.env" not in names and "app/secrets/key.pem" not in names and "app/!y.txt" not in names
        assert "app/run.log" not in names and "app/deep/er/cache" not in names
        assert {"app/secrets/public.txt", "app/keep.log", "app/ay.txt"} <= names
    if case == "lfs":
        model = next(entry for entry in ours if entry[0] == "app/model.bin")
        assert model[2] == 3000  # the content, not a 130-byte pointer

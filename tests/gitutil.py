"""Real git repositories for the queue, hook and install tests (shared helpers, no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import services

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
VENV_BIN = Path(sys.executable).parent
PACHCTL_DOUBLE = HERE / "doubles" / "pachctl"
EXAMPLES = CHECKOUT / "examples"
# No pachctl on it: this python's folder (pachhook's console script), then the system's (git, sh).
BARE_PATH = os.pathsep.join([str(VENV_BIN), "/usr/bin", "/bin"])


def git_env(home: Path) -> Dict[str, str]:
    """An environment in which git ignores the user's and the system's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        encoding="utf-8",
    )
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            # The venv's console scripts (pachhook, pre-commit) come first, as for a user who
            # installed pachhook in the environment they commit from.
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def terminal_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """git_env (its home in tmp_path) of a terminal without colour, plus `extra`."""
    env = git_env(tmp_path / "home")
    env.pop("PACHHOOK_COLOR", None)
    env.update(NO_COLOR="1", **extra)
    return env


def offline_env(tmp_path: Path) -> Dict[str, str]:
    """terminal_env with neither pachctl (BARE_PATH) nor a Docker engine (a socket that does not exist)."""
    return terminal_env(
        tmp_path,
        PATH=BARE_PATH,
        DOCKER_HOST=services.DEAD_DOCKER_HOST,
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
    )


def with_pachctl_double(env: Dict[str, str], tmp_path: Path) -> Dict[str, str]:
    """`env` with the pachctl test double first on PATH, named `pachctl`, its state in tmp_path/pachd.

    Linked into a folder of its own: the doubles' folder holds other programs a test may not want found.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "pachctl").symlink_to(PACHCTL_DOUBLE)
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PACHCTL_DOUBLE_DIR=str(tmp_path / "pachd"))


def run(
    args: Sequence[str],
    cwd: Path,
    env: Dict[str, str],
    input: Optional[str] = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        list(args),
        cwd=str(cwd),
        env=env,
        input=input,
        text=True,
        timeout=timeout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def pachhook_module(*args: str, cwd: Path, env: Dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m pachhook ARGS` in cwd, output captured; the exit status is the caller's to check."""
    return run([sys.executable, "-m", "pachhook", *args], cwd, env, check=False, timeout=timeout)


def examples_project(folder: Path, env: Dict[str, str], config: Optional[str] = 'worker = "manual"\n') -> Path:
    """A copy of examples/ in a new repository on main, nothing committed; `config` its .pachhook.toml."""
    shutil.copytree(EXAMPLES, folder)
    if config is not None:
        (folder / ".pachhook.toml").write_text(config, encoding="utf-8")
    run(["git", "init", "-q", "-b", "main"], folder, env)
    return folder


def pachhook_run(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`pachhook run ARGS` in repo, in this process's environment less GitHub's variables, plus `env`.

    GITHUB_* are left out so a test run inside GitHub Actions writes nothing to the job's summary.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pachhook", "run", *args],
        cwd=repo,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Repo:
    """A work tree of a real repository, with helpers to write files, commit and ask git."""

    def __init__(self, path: Path, env: Dict[str, str]) -> None:
        self.path = path
        self.env = env

    def git(self, *args: str, check: bool = True, input: Optional[str] = None) -> str:
        return run(["git", *args], self.path, self.env, input=input, check=check).stdout.strip()

    def pachhook(self, *args: str, input: Optional[str] = None, check: bool = False) -> subprocess.CompletedProcess:
        return run([str(VENV_BIN / "pachhook"), *args], self.path, self.env, input=input, check=check)

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def commit(self, message: str, paths: Iterable[str] = (".",), *extra: str) -> str:
        self.git("add", *paths)
        self.git("commit", "-q", "--allow-empty", "-m", message, *extra)
        return self.git("rev-parse", "HEAD")

    def add_origin(self, bare: Path) -> Path:
        """A new bare repository at `bare`, added as this one's remote `origin`."""
        run(["git", "init", "-q", "--bare", str(bare)], bare.parent, self.env)
        self.git("remote", "add", "origin", str(bare))
        return bare

    @property
    def common_dir(self) -> Path:
        return Path(self.git("rev-parse", "--path-format=absolute", "--git-common-dir"))


# Two environments: main to prod's context; feature branches to dev's context and project,
# each as its own copy of the pipelines (plan, rollback and release tests).
PROD_AND_DEV = """\
worker = "manual"

[environments.prod]
branches = ["main"]
context = "prod"

[environments.dev]
branches = ["feature/*"]
context = "dev"
project = "dev"
pipeline_suffix = "-{{ branch_slug }}"
"""


def template(
    name: str, image: str = "registry.invalid/team/{name}:{{{{ tag }}}}", inputs: Sequence[str] = ("images",)
) -> str:
    """A valid pipeline spec (JSON) reading the given repos through pfs."""
    pfs = [{"pfs": {"repo": repo, "glob": "/*"}} for repo in inputs]
    spec = {
        "pipeline": {"name": name},
        "transform": {"image": image.format(name=name), "cmd": ["/bin/sh", "-c", "true"]},
        "input": pfs[0] if len(pfs) == 1 else {"cross": pfs},
    }
    return json.dumps(spec, indent=2) + "\n"


def make_repo(
    tmp_path: Path,
    name: str = "repo",
    config: str = 'worker = "manual"\n',
    pipelines: Sequence[str] = ("edges", "montage"),
) -> Repo:
    """A repository with one folder per pipeline (template, Dockerfile, script) and a first commit."""
    env = git_env(tmp_path / "home")
    path = tmp_path / name
    path.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main", str(path)], tmp_path, env)
    repo = Repo(path, env)
    if config:
        repo.write(".pachhook.toml", config)
    for pipeline in pipelines:
        repo.write(f"{pipeline}/pipeline.json", template(pipeline))
        repo.write(f"{pipeline}/Dockerfile", "FROM scratch\nCOPY run.sh /run.sh\n")
        repo.write(f"{pipeline}/run.sh", f"echo {pipeline}\n")
    repo.write("README.md", "demo\n")
    repo.commit("first")
    return repo


def live_jobs(repo: Repo) -> list:
    """`pachhook status --format json --all` as the user gets it."""
    proc = repo.pachhook("status", "--format", "json", "--all", check=True)
    return json.loads(proc.stdout)["jobs"]


def commit_at_once(
    trees: Dict[str, Repo], pipelines: Dict[str, str], count: int, commit: Callable[[Repo, str], str] = Repo.commit
) -> Dict[str, List[str]]:
    """Each tree commits `count` changes to its pipeline's run.sh, all trees at the same time.

    One thread per tree, `commit(tree, message)` making each commit; returns the commits each
    tree made, in order. An error in any thread fails the caller.
    """
    made: Dict[str, List[str]] = {name: [] for name in trees}
    errors: List[BaseException] = []

    def commit_many(name: str) -> None:
        try:
            for number in range(count):
                trees[name].write(f"{pipelines[name]}/run.sh", f"echo {name} {number}\n")
                made[name].append(commit(trees[name], f"{name} {number}"))
        except BaseException as error:  # reported by the calling thread
            errors.append(error)

    threads = [threading.Thread(target=commit_many, args=(name,)) for name in trees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return made

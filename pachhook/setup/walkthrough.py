"""`pachhook demo`: the whole delivery line on local defaults, in a throwaway repository.

The examples are copied into a new git repository; pachhook's plain hooks are installed
there; one commit is made (pre-commit validates, post-commit queues) and the queue is
delivered. What the machine lacks is skipped with its reason and shown instead:

- no Docker engine: build and push become dry runs (the image that would be built);
- no registry (neither `--registry` nor the `docker-registry` program): push is a dry run;
- no `pachctl` on PATH: update is a dry run, printing the rendered spec and the command.

It never touches a cluster the user did not name: without `--context NAME`, everything it
starts runs with a throwaway pachctl configuration of its own (context `pachhook-demo`,
whose address answers nothing) and update is a dry run. With `--context NAME` (a context
of the user's pachctl configuration) the demo's pipelines are updated there, pulling from
the `--registry` it then needs (the registry the demo starts stops when it ends). The first
line says which.

With everything present, the real background worker (`pachhook worker`) delivers. Every
wait is bounded by `--timeout`; a registry or worker the demo started is stopped before
it returns, whatever happens.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from docker.errors import DockerException, ImageNotFound

from pachhook.core import gitrepo
from pachhook.deliver import dockerclient
from pachhook.deliver.backends.pachctl import BackendError
from pachhook.deliver.backends.session import open_session
from pachhook.deliver.runner import one_line
from pachhook.deliver.steps.base import StepContext, run_step
from pachhook.queue.states import DONE, PENDING, STEP_DONE, STEP_NAMES
from pachhook.queue.store import Queue

DEMO_BASE_IMAGE = "pachhook-demo/busybox:base"
DEMO_CONTEXT = "pachhook-demo"  # the throwaway context, in the demo folder's own pachctl configuration
# Loopback port 1: nothing answers there, so a stray pachctl call fails instead of reaching a
# cluster (without an address pachctl would try localhost:30650, a port-forward's usual port).
NOWHERE = "grpc://127.0.0.1:1"
DEMO_ENVIRONMENT = "demo"
EXAMPLE_REGISTRY = "localhost:5000"  # the registry the examples' templates name
IDENTITY = {"user.name": "pachhook demo", "user.email": "demo@pachhook.invalid"}


class DemoError(Exception):
    """The demo cannot start (bad --dir, no examples); one line."""


@dataclass
class Skip:
    step: str  # build | push | update | registry
    reason: str

    def to_dict(self) -> Dict[str, str]:
        return {"step": self.step, "reason": self.reason}


@dataclass
class DemoReport:
    directory: str = ""
    registry: str = ""
    context: str = ""  # the pachctl context the demo delivers to
    throwaway: bool = True  # the context is the demo's own (no cluster), not one the user named
    skipped: List[Skip] = field(default_factory=list)
    validation: str = ""
    commit: str = ""
    jobs: List[Dict[str, Any]] = field(default_factory=list)
    provenance: List[Dict[str, Any]] = field(default_factory=list)
    rendered: Dict[str, str] = field(default_factory=dict)  # pipeline -> spec JSON
    commands: Dict[str, str] = field(default_factory=dict)  # pipeline -> apply command
    ok: bool = False
    timed_out: bool = False

    def skip(self, step: str, reason: str) -> None:
        self.skipped.append(Skip(step, reason))

    def skipped_steps(self) -> List[str]:
        return [item.step for item in self.skipped]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "directory": self.directory,
            "registry": self.registry,
            "context": self.context,
            "throwaway_context": self.throwaway,
            "ok": self.ok,
            "timed_out": self.timed_out,
            "skipped": [item.to_dict() for item in self.skipped],
            "validation": self.validation,
            "commit": self.commit,
            "jobs": self.jobs,
            "provenance": self.provenance,
            "rendered": self.rendered,
            "commands": self.commands,
        }


Say = Callable[[str, str], None]  # (kind, text): first | heading | info | progress | detail | skip | ok | fail


def find_examples() -> Optional[Path]:
    """The examples: packaged (in a checkout, a link to examples/), else beside the package."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "data" / "examples", here.parent / "examples"):
        if candidate.is_dir() and any(candidate.glob("*/Dockerfile")):
            return candidate.resolve()
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def registry_answers(registry: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=timeout):
            return True
    except urllib.error.HTTPError as error:
        return error.code == 401  # alive, wants a login
    except (urllib.error.URLError, OSError, ValueError):
        return False


def registry_program() -> Optional[str]:
    return shutil.which("docker-registry") or next(
        (path for path in ("/usr/bin/docker-registry", "/usr/sbin/docker-registry") if os.access(path, os.X_OK)), None
    )


class Processes:
    """The processes the demo starts; `stop_all` ends each by its own id."""

    def __init__(self) -> None:
        self.started: List[subprocess.Popen] = []

    def start(self, argv: List[str], log: Path, **kwargs: Any) -> subprocess.Popen:
        # Its own process group: stopping it also stops what it started (a worker's pachctl).
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)  # the group the demo made for this process
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    continue
                # The leader is gone; members of its group may linger a moment after SIGTERM.
                if sig == signal.SIGTERM and _group_alive(process.pid):
                    time.sleep(0.2)
                    continue
                break


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def start_registry(directory: Path, processes: Processes, deadline: float) -> Optional[str]:
    """A registry on a free loopback port, its storage in the demo folder; None if it did not start."""
    program = registry_program()
    if program is None:
        return None
    folder = directory / "registry"
    folder.mkdir(exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = processes.start([program, "serve", str(config)], folder / "registry.log")
    address = f"127.0.0.1:{port}"
    while time.monotonic() < min(deadline, time.monotonic() + 10):
        if process.poll() is not None:
            return None
        if registry_answers(address, timeout=0.5):
            return address
        time.sleep(0.1)
    return None


def ensure_base_image(client: Any) -> Optional[str]:
    """A local image holding busybox for the examples' Dockerfiles, made offline; the reason if not."""
    try:
        client.images.get(DEMO_BASE_IMAGE)
        return None
    except ImageNotFound:
        pass
    except DockerException as error:
        return f"the engine did not answer ({' '.join(str(error).split())[:120]})"
    busybox = shutil.which("busybox") or ("/bin/busybox" if os.path.isfile("/bin/busybox") else None)
    if busybox is None:
        return "no busybox binary to make the examples' base image from (apt-get install busybox-static)"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        archive.add(os.path.realpath(busybox), arcname="bin/busybox")
    repository, tag = DEMO_BASE_IMAGE.rsplit(":", 1)
    try:
        client.api.import_image_from_data(data.getvalue(), repository=repository, tag=tag)
    except DockerException as error:
        return f"could not import the base image ({' '.join(str(error).split())[:120]})"
    return None


def _pachhook(
    args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pachhook", *args],
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )


def prepare_directory(requested: Optional[str]) -> Path:
    try:
        if requested is None:
            return Path(tempfile.mkdtemp(prefix="pachhook-demo-"))
        path = Path(requested).resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise DemoError(f"--dir {requested}: exists and is not an empty folder; name a new one")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DemoError(
            f"cannot make the demo folder {requested or 'in ' + tempfile.gettempdir()}: {error.strerror or error}"
        ) from None
    return path


def write_repository(repo: Path, examples: Path, registry: str, build_base: bool, context: str = DEMO_CONTEXT) -> None:
    """The examples, with their images moved to `registry` and the demo's configuration:
    branch main delivers to pachctl context `context`, named, never the active one."""
    shutil.copytree(examples, repo, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    images = []
    for template in sorted(list(repo.glob("*/pipeline.*")) + list(repo.glob("*/*.pipeline.*"))):
        text = template.read_text(encoding="utf-8")
        if registry != EXAMPLE_REGISTRY:
            text = text.replace(f"{EXAMPLE_REGISTRY}/", f"{registry}/")
            template.write_text(text, encoding="utf-8")
        images.append(f"{registry}/pachhook-demo/{template.parent.name}")
    lines = ["# pachhook demo: the worker is started by the demo itself, so that it can stop it.", 'worker = "manual"']
    lines += ["", f"[environments.{DEMO_ENVIRONMENT}]", 'branches = ["main"]', f'context = "{context}"']
    if build_base:
        for image in images:
            lines += ["", f'[images."{image}"]', f'build_args = {{ BUSYBOX_IMAGE = "{DEMO_BASE_IMAGE}" }}']
    (repo / ".pachhook.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def hook_env(pach_config: Optional[Path] = None) -> Dict[str, str]:
    """The environment for git commands whose hooks must find this pachhook on PATH, and for
    everything the demo starts; with `pach_config`, pachctl's configuration is that file."""
    env = gitrepo.env_without_git_vars()
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    if pach_config is not None:
        env["PACH_CONFIG"] = str(pach_config)
        env["PACH_CONTEXT"] = DEMO_CONTEXT
        env.pop("PACHD_ADDRESS", None)  # overrides any context's address (client.go)
    return env


def throwaway_pach_config(folder: Path) -> Path:
    """The demo's own pachctl configuration: one context, DEMO_CONTEXT, leading nowhere."""
    path = folder / "pachyderm" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    context = {"pachd_address": NOWHERE}
    path.write_text(json.dumps({"v2": {"active_context": DEMO_CONTEXT, "contexts": {DEMO_CONTEXT: context}}}) + "\n")
    return path


def check_context(context: str, registry: Optional[str]) -> None:
    """DemoError (one line) unless `--context NAME` names a context of the user's pachctl
    configuration, with a `--registry` the cluster can pull the demo's images from."""
    if not registry:
        raise DemoError(
            f"--context {context} needs --registry HOST:PORT, a registry that cluster can pull from"
            " (the registry the demo starts is stopped when the demo ends)"
        )
    try:
        open_session(context).close()  # the same lookup a delivery makes, in a private copy
    except BackendError as error:
        raise DemoError(f"--context {context}: {error}") from None


def first_line(report: DemoReport) -> str:
    """The demo's first line: which pachctl context it uses, and whether a cluster is touched."""
    if report.throwaway:
        return (
            f"pachhook demo: pachctl context {report.context}, a throwaway one of the demo's own"
            " (no cluster is touched: update runs as a dry run); --context NAME delivers to a cluster of yours"
        )
    return (
        f"pachhook demo: pachctl context {report.context} (given with --context): pipelines edges and montage"
        " there are updated"
    )


def _partial_drain(
    repo: Path, real_steps: List[str], logs: Dict[str, List[str]], say: Say, stop: threading.Event
) -> None:
    """Run the queued jobs: the steps this machine can run for real, the others as dry runs.

    The queue records each dry-run step as skipped, so `pachhook status` shows exactly
    which steps ran.
    """
    common = gitrepo.git_common_dir(repo)
    worker_id = f"pachhook-demo:{os.getpid()}"
    with Queue(common) as queue:
        while not stop.is_set():
            job = queue.leases.take(worker_id, 600.0)
            if job is None:
                return
            lines = logs.setdefault(job.pipeline, [])
            results: Dict[str, Dict[str, str]] = {}
            for name in STEP_NAMES:
                dry = name not in real_steps
                queue.start_step(job.id, name, worker_id)

                def log(line: str, job_id: int = job.id, lines: List[str] = lines) -> None:
                    queue.logs.append(job_id, line)
                    lines.append(line)

                context = StepContext(
                    repo_root=repo, git_dir=common, job=queue.get(job.id), log=log, results=dict(results), dry_run=dry
                )
                try:
                    outcome = run_step(name, context)
                except Exception as error:  # a failing step fails the job, as the worker would
                    cause = one_line(error)
                    log(f"{name}: failed: {cause}")
                    queue.fail_step(job.id, name, cause, worker_id)
                    say("fail", f"{job.pipeline}: {name} failed: {cause}")
                    break
                data = {str(k): str(v) for k, v in outcome.data.items()}
                data["outcome"] = "dry run" if dry else outcome.outcome
                queue.finish_step(job.id, name, data, skipped=dry or outcome.outcome == "skipped", worker_id=worker_id)
                results[name] = data
                message = outcome.message
                if dry:
                    message = message[len("dry run") :].lstrip(": ") if message.startswith("dry run") else message
                    message = message.split("; ", 1)[0]  # what would happen, not why it cannot be checked
                say(
                    "progress",
                    f"{job.pipeline}: {name}: {'dry run' if dry else outcome.outcome}"
                    + (f": {message}" if message else ""),
                )


def _rendered_from_log(lines: List[str]) -> Optional[str]:
    """The spec a dry-run update logged after `would apply to pipeline NAME:`."""
    for index, line in enumerate(lines):
        if line.startswith("would apply to pipeline"):
            body = []
            for following in lines[index + 1 :]:
                if not following.startswith("  "):
                    break
                body.append(following[2:])
            return "\n".join(body) + "\n"
    return None


def _command_from_log(lines: List[str]) -> Optional[str]:
    for line in lines:
        if line.startswith(("with `", "applying with `", "a real run writes it to ")) and "`" in line:
            return line.split("`")[1]
    return None


def _wait_worker(process: subprocess.Popen, repo: Path, deadline: float, say: Say) -> bool:
    """Until the worker has drained the queue (True) or the deadline passes (False).

    Each step the worker finishes is reported as it happens: long builds show progress.
    """
    seen: Dict[tuple, str] = {}
    with Queue(gitrepo.git_common_dir(repo)) as queue:
        while True:
            for job in reversed(queue.list_jobs()):
                for step in job.steps:
                    key = (job.id, step.name)
                    if step.state != seen.get(key) and step.state != PENDING:
                        seen[key] = step.state
                        result = step.result.get("outcome", "") if step.state == STEP_DONE else ""
                        detail = f" ({result})" if result and result != "done" else ""
                        error = f": {step.error}" if step.error else ""
                        say("progress", f"{job.pipeline}: {step.name}: {step.state}{detail}{error}")
            if process.poll() is not None and not queue.leases.has_work():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def run_demo(
    directory: Optional[str] = None,
    registry: Optional[str] = None,
    timeout: float = 120.0,
    say: Optional[Say] = None,
    context: Optional[str] = None,
) -> DemoReport:
    """Set up, commit and deliver the examples; DemoError when the demo cannot start at all.

    `context`: the user's pachctl context to deliver to; None: the demo's throwaway one.
    """
    say = say or (lambda kind, text: None)
    deadline = time.monotonic() + timeout
    examples = find_examples()
    if examples is None:
        raise DemoError(
            "the examples folder was not found beside the package (run the demo from an"
            " editable install of a pachhook checkout: pip install -e .)"
        )
    if context is not None:
        check_context(context, registry)
    folder = prepare_directory(directory)
    report = DemoReport(directory=str(folder), context=context or DEMO_CONTEXT, throwaway=context is None)
    say("first", first_line(report))
    processes = Processes()
    try:
        _run(report, folder, examples, registry, deadline, processes, say)
    finally:
        processes.stop_all()
    return report


def _run(
    report: DemoReport,
    folder: Path,
    examples: Path,
    registry: Optional[str],
    deadline: float,
    processes: Processes,
    say: Say,
) -> None:
    repo = folder / "repo"
    say("heading", f"1. a throwaway repository from {examples}")
    say("info", f"   {repo}")

    say("heading", "2. what this machine offers")
    client = None
    try:
        client = dockerclient.make_client(timeout=30)
        say("ok", f"Docker engine at {dockerclient.engine_host()}")
    except dockerclient.EngineUnavailable as error:
        reason = str(error).split("; ")[0]
        report.skip("build", reason)
        report.skip("push", reason)
        say("skip", f"build and push: {reason}")
    base_ready = False
    if client is not None:
        problem = ensure_base_image(client)
        client.close()
        if problem:
            report.skip("build", problem)
            report.skip("push", "nothing built")
            say("skip", f"build and push: {problem}")
        else:
            base_ready = True
            say("ok", f"base image {DEMO_BASE_IMAGE} (busybox, made offline)")
    if registry:
        if registry_answers(registry):
            report.registry = registry
            say("ok", f"registry {registry} (given with --registry)")
        else:
            raise DemoError(f"--registry {registry}: no registry answers at http://{registry}/v2/")
    elif base_ready:
        started = start_registry(folder, processes, deadline)
        if started:
            report.registry = started
            say("ok", f"registry {started} (started for the demo, storage in {folder / 'registry'})")
        elif registry_program() is None:
            report.skip(
                "push",
                "no registry: `docker-registry` is not installed (apt-get install docker-registry)"
                " and no --registry HOST:PORT was given",
            )
            say("skip", f"push: {report.skipped[-1].reason}")
        else:
            report.skip("push", f"the registry did not start (log: {folder / 'registry' / 'registry.log'})")
            say("skip", f"push: {report.skipped[-1].reason}")
    pachctl = shutil.which("pachctl")
    if report.throwaway:
        report.skip(
            "update",
            f"no --context given: the demo touches no cluster (its throwaway context {report.context} leads"
            " nowhere); the spec is rendered and the command shown, not run",
        )
        say("skip", f"update: {report.skipped[-1].reason}")
    elif pachctl:
        say("ok", f"pachctl at {pachctl}, context {report.context}")
    else:
        report.skip("update", "pachctl not found on PATH: the spec is rendered and the command shown, not run")
        say("skip", f"update: {report.skipped[-1].reason}")

    say("heading", "3. commit (pre-commit validates, post-commit queues)")
    write_repository(repo, examples, report.registry or EXAMPLE_REGISTRY, base_ready, report.context)
    env = hook_env(throwaway_pach_config(folder) if report.throwaway else None)
    gitrepo.run(["init", "-q", "-b", "main"], repo, env=env, timeout=60)
    for key, value in IDENTITY.items():
        if not gitrepo.run(["config", "--get", key], repo, env=env, timeout=60).stdout.strip():
            gitrepo.run(["config", key, value], repo, env=env, timeout=60)
    # The user's global git settings must not reach outside the demo folder (a shared
    # core.hooksPath) or stop the commit (signing that asks for a passphrase).
    gitrepo.run(["config", "core.hooksPath", str(repo / ".git" / "hooks")], repo, env=env, timeout=60)
    gitrepo.run(["config", "commit.gpgsign", "false"], repo, env=env, timeout=60)
    installed = _pachhook(["install", "--plain", "--force"], repo, env)
    if installed.returncode != 0:
        say("fail", f"pachhook install: {(installed.stderr or installed.stdout).strip()}")
    validated = _pachhook(["validate"], repo, env)
    report.validation = (validated.stdout + validated.stderr).strip()
    say(
        "ok" if validated.returncode == 0 else "fail",
        f"validate: {report.validation.splitlines()[-1]}" if report.validation else "validate: no problems",
    )
    gitrepo.run(["add", "-A"], repo, env=env, timeout=60)
    try:
        committed = gitrepo.run(
            ["commit", "-q", "-m", "pachhook demo: the examples"],
            repo,
            env=env,
            timeout=max(5.0, deadline - time.monotonic()),
        )
    except gitrepo.GitError as error:
        say("fail", f"git commit failed: {error}")
        return
    hook_lines = committed.stderr.decode(errors="replace").strip()
    if committed.returncode != 0:
        say("fail", f"git commit failed: {hook_lines or committed.stdout.decode(errors='replace').strip()}")
        return
    for line in hook_lines.splitlines():
        say("detail", f"   hook: {line}")
    report.commit = gitrepo.run(["rev-parse", "HEAD"], repo, env=env, timeout=60).stdout.decode().strip()
    status = _status(repo, env)
    if not status:  # the post-commit hook did not find pachhook: queue as it would have
        _pachhook(["queue", "--no-worker"], repo, env)
        status = _status(repo, env)
    say(
        "ok",
        f"commit {report.commit[:12]}: {len(status)} job(s) queued "
        f"({', '.join(job['pipeline'] for job in reversed(status))})",
    )

    say("heading", "4. delivery")
    skipped = set(report.skipped_steps())
    logs: Dict[str, List[str]] = {}
    if not skipped:
        say("info", "   the background worker builds, pushes and updates (`pachhook worker`)")
        worker = processes.start(
            [sys.executable, "-m", "pachhook", "worker", "--repo", str(repo)],
            folder / "worker.log",
            cwd=str(repo),
            env=env,
        )
        finished = _wait_worker(worker, repo, deadline, say)
    else:
        real = [step for step in STEP_NAMES if step not in skipped]
        dry = [step for step in STEP_NAMES if step in skipped]
        say(
            "info",
            f"   {'running ' + ', '.join(real) + ' for real, ' if real else 'every step runs as a dry run: '}"
            f"{', '.join(dry)}{' as a dry run' if real else ''}",
        )
        stop = threading.Event()
        thread = threading.Thread(target=_partial_drain, args=(repo, real, logs, say, stop), daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
        finished = not thread.is_alive()
        stop.set()
    if not finished:
        report.timed_out = True
        say("fail", "the delivery did not finish within --timeout; see `pachhook status` in the repository")

    report.jobs = _status(repo, env)
    # Status lists newest first; specs and commands read best in delivery order.
    for job in sorted(report.jobs, key=lambda job: job["id"]):
        lines = logs.get(job["pipeline"]) or _job_log(repo, env, job["id"])
        update: Dict[str, Any] = next((step for step in job["steps"] if step["name"] == "update"), {})
        spec_path = (update.get("result") or {}).get("spec_path", "")
        rendered = _rendered_from_log(lines)
        if rendered is None and spec_path and os.path.isfile(spec_path):
            rendered = Path(spec_path).read_text(encoding="utf-8")
        if rendered:
            report.rendered[job["pipeline"]] = rendered
            if spec_path and not os.path.exists(spec_path):
                # A dry run writes nothing; the demo does, so the command shown can be run later.
                Path(spec_path).parent.mkdir(parents=True, exist_ok=True)
                Path(spec_path).write_text(rendered, encoding="utf-8")
        command = _command_from_log(lines)
        if command:
            report.commands[job["pipeline"]] = command
    provenance = _pachhook(["provenance", report.commit, "--format", "json"], repo, env)
    try:
        report.provenance = json.loads(provenance.stdout).get("matches", [])
    except ValueError:
        report.provenance = []
    report.ok = bool(report.jobs) and all(job["state"] == DONE for job in report.jobs) and not report.timed_out


def _status(repo: Path, env: Dict[str, str]) -> List[Dict[str, Any]]:
    completed = _pachhook(["status", "--format", "json"], repo, env)
    try:
        return json.loads(completed.stdout).get("jobs", [])
    except ValueError:
        return []


def _job_log(repo: Path, env: Dict[str, str], job_id: int) -> List[str]:
    with Queue(gitrepo.git_common_dir(repo)) as queue:
        return queue.logs.lines(job_id)

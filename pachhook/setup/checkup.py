"""The checks behind `pachhook doctor`: each answers ok, or says what to do.

Every check is a function taking the shared `Probe` (what earlier checks learnt) and
returning one or more `Check` records. No check raises: an unexpected failure becomes a
`fail` line naming it. Network and subprocess waits are bounded (`TIMEOUT` seconds).
Secrets are never part of a message: credentials are reported as present or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

from pachhook.core import gitrepo
from pachhook.core.config import ConfigError, load_config
from pachhook.core.sanitize import one_line
from pachhook.deliver import credhelpers, dockerauth, dockerclient
from pachhook.deliver.backends.pachctl import BackendError, PachctlBackend
from pachhook.deliver.backends.session import open_session, user_config_path
from pachhook.deliver.registry import insecure_by_default
from pachhook.queue.affected import parse_template
from pachhook.queue.database import DB_NAME, FOLDER, SCHEMA_VERSION
from pachhook.queue.launch import LOG_NAME, worker_running
from pachhook.queue.states import FAILED, QUEUED
from pachhook.setup.hookinstall import PRE_COMMIT_CONFIG
from pachhook.setup.hookscripts import HOOK_IDS, MARKER
from pachhook.validate.checks import has_errors, validate_paths, working_tree_templates

OK, WARN, FAIL = "ok", "warn", "fail"
HOOK_TYPES = ("pre-commit", "pre-push", "post-commit")
TIMEOUT = 5.0


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    message: str
    fix: str = ""  # what to do, when not ok
    seconds: float = 0.0  # how long the check took (shown with --verbose)

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)


@dataclass
class Probe:
    """What the checks share: the repository and what earlier checks found."""

    cwd: Path
    root: Optional[Path] = None
    common_dir: Optional[Path] = None
    hooks_dir: Optional[Path] = None
    config: Any = None
    templates: List[Path] = field(default_factory=list)
    images: List[str] = field(default_factory=list)  # image repositories pachhook builds
    docker: Any = None  # a docker-py client when the engine answered
    queued: int = 0  # jobs waiting for a worker
    failed: List[str] = field(default_factory=list)  # names of the checks that failed so far


def _fail_safe(function: Callable[[Probe], List[Check]], name: str) -> Callable[[Probe], List[Check]]:
    def run(probe: Probe) -> List[Check]:
        try:
            return function(probe)
        except Exception as error:  # a check must report, never crash the report
            text = " ".join(str(error).split())[:200]
            return [
                Check(
                    name,
                    FAIL,
                    f"check failed unexpectedly: {type(error).__name__}: {text}",
                    "please report this as a pachhook bug",
                )
            ]

    return run


def check_repository(probe: Probe) -> List[Check]:
    try:
        info = gitrepo.head_info(probe.cwd) if gitrepo.rev_exists("HEAD", probe.cwd) else None
        probe.root = info.root if info else gitrepo.repo_root(probe.cwd)
        probe.common_dir = gitrepo.git_common_dir(probe.cwd)
        probe.hooks_dir = gitrepo.hooks_dir(probe.cwd)
    except gitrepo.GitError as error:
        return [
            Check(
                "repository",
                FAIL,
                f"not a git repository ({error})",
                "run pachhook doctor inside your pipeline repository",
            )
        ]
    return [Check("repository", OK, str(probe.root))]


def _precommit_hook_ids(root: Path) -> Optional[Dict[str, List[str]]]:
    """Hook ids by stage that .pre-commit-config.yaml enables for pachhook, None without that file."""
    path = root / PRE_COMMIT_CONFIG
    if not path.is_file():
        return None

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}
    ids: List[str] = []
    repos = data.get("repos") if isinstance(data, dict) else None
    for repo in repos if isinstance(repos, list) else []:
        if isinstance(repo, dict):
            ids += [str(hook.get("id")) for hook in repo.get("hooks") or [] if isinstance(hook, dict)]
    return {"ids": ids}


def check_hooks(probe: Probe) -> List[Check]:
    if probe.hooks_dir is None or probe.root is None:
        return [Check("hooks", FAIL, "no repository", "run inside a git repository")]
    configured = _precommit_hook_ids(probe.root)
    checks = []
    for hook_type in HOOK_TYPES:
        name = f"{hook_type} hook"
        path = probe.hooks_dir / hook_type
        if not path.is_file():
            checks.append(
                Check(
                    name,
                    FAIL,
                    "not installed",
                    "run `pachhook init` (pre-commit framework) or `pachhook install` (plain hooks)",
                )
            )
            continue
        if not os.access(path, os.X_OK):
            checks.append(Check(name, FAIL, f"{path} is not executable", f"chmod +x {path}"))
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "pachhook" in text:
            checks.append(Check(name, OK, f"pachhook hook installed ({path})"))
        elif "pre-commit" in text:
            if configured is None:
                checks.append(
                    Check(
                        name,
                        FAIL,
                        "pre-commit hook installed but .pre-commit-config.yaml is missing",
                        "run `pachhook init`",
                    )
                )
            elif HOOK_IDS[hook_type] in configured.get("ids", []):
                checks.append(Check(name, OK, f"pre-commit runs {HOOK_IDS[hook_type]}"))
            else:
                checks.append(
                    Check(
                        name,
                        FAIL,
                        f".pre-commit-config.yaml does not enable {HOOK_IDS[hook_type]}",
                        "run `pachhook init` to add pachhook's hooks",
                    )
                )
        else:
            checks.append(
                Check(
                    name,
                    FAIL,
                    f"{path} is another tool's hook and does not run pachhook",
                    "run `pachhook install` (it explains how it treats existing hooks)",
                )
            )
    return checks


def check_configuration(probe: Probe) -> List[Check]:
    if probe.root is None:
        return []
    try:
        probe.config = load_config(probe.root)
    except ConfigError as error:
        first = error.problems[0] if error.problems else str(error)
        more = f" (and {len(error.problems) - 1} more)" if len(error.problems) > 1 else ""
        return [Check("configuration", FAIL, first + more, "fix the configuration (docs/configuration.md)")]
    source = probe.config.source
    where = os.path.relpath(source, probe.root) if source else "no configuration file: conventions apply"
    return [Check("configuration", OK, f"valid ({where})")]


def check_templates(probe: Probe) -> List[Check]:
    if probe.config is None or probe.root is None:
        return []
    probe.templates = working_tree_templates(probe.root, probe.config)
    if not probe.templates:
        return [
            Check(
                "templates",
                WARN,
                "no pipeline templates found",
                "name them pipeline.json|yaml or NAME.pipeline.json|yaml, or set `templates` in the configuration",
            )
        ]
    diagnostics = validate_paths(
        probe.templates, jsonnet_args=probe.config.jsonnet_args, tag_form=getattr(probe.config, "tag", "full")
    )
    images = []
    for path in probe.templates:
        try:
            parsed = parse_template(path.read_bytes(), str(path), probe.config.jsonnet_args)
        except OSError:
            continue
        images += [spec["image"] for spec in parsed.get("specs", []) if spec.get("image")]
    probe.images = sorted(set(images))
    errors = [d for d in diagnostics if d.severity == "error"]
    if has_errors(diagnostics):
        first = errors[0]
        where = os.path.relpath(first.file, probe.root) if os.path.isabs(first.file) else first.file
        return [
            Check(
                "templates",
                FAIL,
                f"{len(errors)} error(s) in {len(probe.templates)} template(s); first: "
                f"{where}:{first.line}:{first.column}: {first.message}",
                "run `pachhook validate` for the full list",
            )
        ]
    warnings = len(diagnostics) - len(errors)
    note = f", {warnings} warning(s)" if warnings else ""
    return [Check("templates", OK, f"{len(probe.templates)} template(s) valid{note}")]


# Lines of pre-commit's output that mean the hook could not start (not that it refused a template).
_SETUP_BROKEN = (
    "not found",  # language: system and the executable is not on PATH
    "An unexpected error has occurred",  # a hook repository that cannot be cloned or installed
    "InvalidConfigError",
    "InvalidManifestError",
    "No hook with id",
    "is not on PATH",  # pachhook's plain hook scripts
)
HOOK_RUN_TIMEOUT = 300.0  # the first run of a pinned hook repository clones and installs it


def check_hooks_run(probe: Probe) -> List[Check]:
    """Run the validate hook as git would, on the templates: proves the set-up works, not only that it is written."""
    if probe.root is None or probe.hooks_dir is None:
        return []
    hook = probe.hooks_dir / "pre-commit"
    try:
        text = hook.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []  # "not installed" is already said
    relative = [os.path.relpath(path, probe.root) for path in probe.templates]
    if MARKER in text:
        # a plain hook: run the script itself, as git runs it
        argv = [str(hook), *relative]
        how = "the pre-commit hook script"
    elif "--hook-type" in text:
        if not relative:
            return [
                Check(
                    "hooks run",
                    WARN,
                    f"no template to run {HOOK_IDS['pre-commit']} on",
                    "add a template, then run `pachhook doctor` again",
                )
            ]
        argv = [sys.executable, "-m", "pre_commit", "run", "--hook-stage", "manual", HOOK_IDS["pre-commit"]]
        argv += ["--files", *relative]
        how = f"`pre-commit run --hook-stage manual {HOOK_IDS['pre-commit']}`"
    else:
        return []
    try:
        completed = subprocess.run(
            argv,
            cwd=str(probe.root),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=HOOK_RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return [
            Check("hooks run", FAIL, f"{how} did not finish in {HOOK_RUN_TIMEOUT:.0f} s", "run it by hand to see why")
        ]
    except OSError as error:
        return [Check("hooks run", FAIL, f"cannot run {how}: {error.strerror or error}", "run `pachhook init`")]
    output = [" ".join(line.split()) for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode == 0:
        return [Check("hooks run", OK, f"{how} passed on {len(relative)} template(s)")]
    broken = [line for line in output if any(marker in line for marker in _SETUP_BROKEN)]
    templates_failed = any(check_name == "templates" for check_name in probe.failed)
    if not broken and templates_failed:
        return [Check("hooks run", OK, f"{how} runs and refuses the template errors reported above")]
    reason = (broken or output[-1:] or [f"exit status {completed.returncode}"])[0][:200]
    return [
        Check(
            "hooks run",
            FAIL,
            f"{how} failed, so commits are not checked: {reason}",
            "install pachhook where `git commit` runs (activate its virtual environment, or `pipx install pachhook`)"
            " and check .pre-commit-config.yaml; `pachhook init` rewrites pachhook's entry",
        )
    ]


def check_docker(probe: Probe) -> List[Check]:
    try:
        probe.docker = dockerclient.make_client(timeout=int(TIMEOUT))
    except dockerclient.EngineUnavailable as error:
        return [
            Check("docker", FAIL, str(error).split("; ")[0], "start dockerd, or point DOCKER_HOST at a running engine")
        ]
    try:
        version = probe.docker.version().get("Version", "?")
    except Exception:
        version = "?"
    return [Check("docker", OK, f"engine {version} at {dockerclient.engine_host()}")]


def _registry_answer(registry: str, secure: bool) -> str:
    """ "open", "login" (401) or why the registry did not answer; bounded by TIMEOUT."""
    scheme = "https" if secure else "http"
    url = f"{scheme}://{'registry-1.docker.io' if registry == 'docker.io' else registry}/v2/"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT):
            return "open"
    except urllib.error.HTTPError as error:
        return "login" if error.code == 401 else f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"not reachable ({' '.join(str(reason).split())[:120]})"


def check_credentials(probe: Probe) -> List[Check]:
    if not probe.images:
        return []
    registries: Dict[str, List[str]] = {}
    for image in probe.images:
        registry, _ = dockerclient.split_image(image)
        registries.setdefault(registry, []).append(image)
    checks = []
    for registry, images in sorted(registries.items()):
        name = f"registry {registry}"
        try:
            auth = dockerauth.registry_login(registry)
        except (credhelpers.CredentialHelperError, dockerauth.LoginUnavailable) as error:
            checks.append(Check(name, FAIL, str(error)))
            continue
        if auth:
            # Present is all that is said: never the user name, password or token.
            checks.append(Check(name, OK, "credentials present in the docker config"))
            continue
        if probe.docker:
            secure = dockerclient.registry_secure(probe.docker, registry)
        else:
            secure = not insecure_by_default(registry)
        answer = _registry_answer(registry, secure)
        if answer == "open":
            checks.append(Check(name, OK, "no credentials, none needed (the registry accepts anonymous requests)"))
        elif answer == "login":
            checks.append(
                Check(name, FAIL, "no credentials and the registry asks for a login", f"run `docker login {registry}`")
            )
        else:
            checks.append(
                Check(
                    name,
                    FAIL,
                    f"no credentials, and the registry is {answer}",
                    f"start the registry or fix the image name in the template ({images[0]})",
                )
            )
    return checks


def _run(argv: List[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=TIMEOUT
    )


def check_backend(probe: Probe) -> List[Check]:
    backend = getattr(probe.config, "backend", "pachctl")
    if backend == "api":
        return _check_api()
    executable = getattr(probe.config, "pachctl", "pachctl")
    found = shutil.which(executable)
    if found is None:
        return [
            Check(
                "pachctl",
                FAIL,
                f"{executable!r} not found on PATH",
                'install pachctl (docs.pachyderm.com), or set `pachctl = "/path/to/pachctl"`',
            )
        ]
    try:
        version = _run([found, "version", "--client-only"])
        context = _run([found, "config", "get", "active-context"])
    except (OSError, subprocess.TimeoutExpired) as error:
        return [
            Check(
                "pachctl",
                FAIL,
                f"{found} did not answer ({type(error).__name__})",
                "check that pachctl runs: `pachctl version --client-only`",
            )
        ]
    shown = (version.stdout.strip().splitlines() or ["?"])[-1]
    active = context.stdout.strip()
    if version.returncode != 0:
        return [Check("pachctl", FAIL, "`pachctl version --client-only` failed", "check the pachctl installation")]
    if context.returncode != 0 or not active:
        return [
            Check(
                "pachctl",
                FAIL,
                f"pachctl {shown}, but no active context",
                "connect it to your cluster: `pachctl connect ADDRESS` or `pachctl config set active-context NAME`",
            )
        ]
    return [Check("pachctl", OK, f"pachctl {shown} ({found}), active context {active}")]


def _check_api() -> List[Check]:
    try:
        from pachhook.deliver.backends.api import ApiBackend

        backend = ApiBackend(timeout=TIMEOUT)
        backend.inspect("pachhook-doctor-probe")  # any answer, even "not found", proves the connection
    except ImportError:
        return [Check("pachyderm API", FAIL, "pachyderm-sdk is not installed", "pip install 'pachhook[api]'")]
    except BackendError as error:
        return [Check("pachyderm API", FAIL, str(error), "check the active context in your pachctl configuration")]
    return [Check("pachyderm API", OK, f"connected ({backend.describe()})")]


def check_transactions(probe: Probe) -> List[Check]:
    """A transaction open in the user's pachctl configuration: their own `pachctl update
    pipeline` joins it and applies nothing until it is finished (pachctl keeps the active
    transaction per context, transaction/cmds/util.go). pachhook's deliveries do not: their
    private configuration has none. No line when the configuration has no open transaction."""
    path = user_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        contexts = data["v2"]["contexts"]
        found = [
            (name, str(context["active_transaction"]))
            for name, context in sorted(contexts.items())
            if isinstance(context, dict) and context.get("active_transaction")
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []  # no configuration, or one pachctl itself will complain about
    checks = []
    for name, transaction in found:
        answer = _ask_transaction(probe, name, transaction)
        if answer == "gone":
            checks.append(
                Check(
                    "pachctl transaction",
                    WARN,
                    f"context {name} names transaction {transaction} as active ({path}), which the cluster no"
                    " longer has: your own `pachctl update pipeline` there fails until it is cleared",
                    "run `pachctl stop transaction` with that context active",
                )
            )
            continue
        checks.append(
            Check(
                "pachctl transaction",
                WARN,
                f"context {name} has transaction {transaction} open ({path}){answer}: your own `pachctl update"
                " pipeline` there joins it and applies nothing until it is finished (pachhook's deliveries do"
                " not join it)",
                "`pachctl finish transaction` to apply it, or `pachctl delete transaction` to drop it",
            )
        )
    return checks


def _ask_transaction(probe: Probe, context: str, transaction: str) -> str:
    """What the cluster says of the transaction: ", N requests", "gone", or "" when it cannot tell.

    Asked through a private configuration (the user's file is never written), only with
    the pachctl backend and a pachctl at hand; bounded by TIMEOUT."""
    if getattr(probe.config, "backend", "pachctl") == "api":
        return ""
    executable = getattr(probe.config, "pachctl", "pachctl") or "pachctl"
    if shutil.which(executable) is None:
        return ""
    try:
        with open_session(context) as session:
            text = PachctlBackend(executable, timeout=TIMEOUT, session=session).read(
                ["inspect", "transaction", transaction, "--raw"]
            )
    except BackendError as error:
        return f" (the cluster did not answer: {one_line(error, 200)})"
    if text is None:
        return "gone"
    try:
        requests = json.loads(text).get("requests") or []
    except (ValueError, AttributeError):
        return ""
    return f", {len(requests)} request{'s' if len(requests) != 1 else ''} in it"


def check_queue(probe: Probe) -> List[Check]:
    """Read the queue without changing it: opening it through Queue would set a damaged file aside."""
    if probe.common_dir is None:
        return []
    folder = probe.common_dir / FOLDER
    path = folder / DB_NAME
    checks: List[Check] = []
    aside = sorted(p for p in folder.glob(DB_NAME + ".corrupt-*") if not p.name.endswith(("-wal", "-shm")))
    if aside:
        checks.append(
            Check(
                "queue history",
                WARN,
                f"a damaged queue was set aside as {aside[-1]}"
                + (f" (and {len(aside) - 1} older)" if len(aside) > 1 else "")
                + "; its jobs are not in the current queue",
                "nothing to do unless you need those jobs' records; delete the file when done",
            )
        )
    if not path.is_file():
        return [Check("queue", OK, "empty (no commit queued yet)")] + checks
    fix = "run `pachhook status`: it moves the damaged file aside (kept, never deleted) and starts an empty queue"
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=TIMEOUT)
        try:
            integrity = db.execute("PRAGMA quick_check").fetchone()[0]
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                rows, stale = [], 0
            else:
                rows = db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
                stale = db.execute(
                    "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_expires < ?", (time.time(),)
                ).fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        return [Check("queue", FAIL, f"the queue database cannot be read ({error})", fix)] + checks
    if integrity != "ok":
        return [Check("queue", FAIL, f"the queue database is damaged: {integrity}", fix)] + checks
    counts = {state: count for state, count in rows}
    summary = ", ".join(f"{counts[state]} {state}" for state in sorted(counts)) or "no jobs"
    probe.queued = counts.get(QUEUED, 0)
    if counts.get(FAILED):
        checks.insert(0, Check("queue", WARN, summary, "see `pachhook status`; then `pachhook retry JOB` once fixed"))
    elif stale:
        checks.insert(
            0,
            Check(
                "queue",
                WARN,
                f"{summary}; {stale} running job(s) hold an expired lease",
                "a worker died: `pachhook run` picks those jobs up again",
            ),
        )
    else:
        checks.insert(0, Check("queue", OK, summary))
    return checks


def check_worker(probe: Probe) -> List[Check]:
    if probe.common_dir is None:
        return []
    folder = probe.common_dir / FOLDER
    mode = getattr(probe.config, "worker", "background")
    running = folder.is_dir() and worker_running(folder)
    waiting = probe.queued
    if running:
        return [Check("worker", OK, f"running (log: {folder / LOG_NAME})")]
    if waiting and mode == "background":
        return [
            Check(
                "worker",
                WARN,
                f"not running, {waiting} job(s) queued",
                "run `pachhook run` (foreground) or `pachhook worker`",
            )
        ]
    if waiting:
        return [Check("worker", WARN, f'worker = "manual" and {waiting} job(s) queued', "run `pachhook run`")]
    return [Check("worker", OK, f"idle ({mode} mode)")]


CHECKS = (
    ("repository", check_repository),
    ("hooks", check_hooks),
    ("configuration", check_configuration),
    ("templates", check_templates),
    ("hooks run", check_hooks_run),
    ("docker", check_docker),
    ("credentials", check_credentials),
    ("pachctl", check_backend),
    ("pachctl transaction", check_transactions),
    ("queue", check_queue),
    ("worker", check_worker),
)


def run_checks(cwd: Optional[Path] = None, on_check: Optional[Callable[[Check], None]] = None) -> List[Check]:
    """Every check in order; `on_check` sees each line as soon as it is known."""
    probe = Probe(cwd=Path(cwd or os.getcwd()))
    results: List[Check] = []
    try:
        for name, function in CHECKS:
            started = time.monotonic()
            found = _fail_safe(function, name)(probe)
            for check in found:
                check.seconds = round((time.monotonic() - started) / max(len(found), 1), 3)
                results.append(check)
                if check.status == FAIL:
                    probe.failed.append(check.name)
                if on_check:
                    on_check(check)
    finally:
        if probe.docker is not None:
            probe.docker.close()
    return results

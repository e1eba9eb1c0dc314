"""Installing and removing pachhook's git hooks: plain hook scripts, or the pre-commit framework's.

Where `.pre-commit-config.yaml` exists, the pre-commit framework installs its hook
scripts for the pre-commit, post-commit, pre-push, post-merge and post-rewrite stages (`pre-commit install`);
otherwise pachhook writes its own plain hooks. A hook file pachhook did not write is
never replaced without `force` (and then it is kept aside and put back by `uninstall`).
What was installed is recorded in `<git common dir>/pachhook/installed`, so that
`uninstall` removes exactly that. `pachhook init` records the hooks it has pre-commit
install the same way.

The functions say what happened in an `Outcome`; the commands print it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from pachhook.core.gitrepo import state_folder
from pachhook.setup.hookscripts import HOOK_IDS, HOOK_NAMES, MARKER, script

SAVED_SUFFIX = ".pachhook-saved"
RECORD_NAME = "installed"
PRE_COMMIT_CONFIG = ".pre-commit-config.yaml"
PLAIN, PRE_COMMIT = "plain", "pre-commit"  # how a recorded hook was installed
PRE_COMMIT_TIMEOUT = 300.0  # seconds: `pre-commit install` may have to fetch a hook repository


@dataclass
class Outcome:
    """What an install or uninstall did: an exit status, lines for stdout and for stderr."""

    status: int = 0
    said: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)


def is_ours(path: Path) -> bool:
    """Whether the hook file at `path` is one pachhook wrote (it carries the marker line)."""
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def record_installed(common: Path, mode: str, names: Sequence[str]) -> None:
    """Note that the hooks `names` were installed in `mode` (PLAIN or PRE_COMMIT)."""
    folder = Path(state_folder(common))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_NAME).write_text("".join(f"{mode} {name}\n" for name in names), encoding="utf-8")


def read_installed(common: Path) -> List[Tuple[str, str]]:
    """The recorded (mode, hook name) pairs; none when nothing is recorded."""
    try:
        lines = (Path(state_folder(common)) / RECORD_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [(parts[0], parts[1]) for parts in (line.split() for line in lines) if len(parts) == 2]


def install_plain(hooks: Path, common: Path, force: bool) -> Outcome:
    """Write pachhook's plain hook scripts into `hooks`, each atomically."""
    outcome = Outcome()
    refused = [
        name
        for name in HOOK_NAMES
        if ((hooks / name).exists() or (hooks / name).is_symlink()) and not is_ours(hooks / name) and not force
    ]
    if refused:
        outcome.status = 1
        outcome.problems += [
            f"{hooks / name} exists and was not installed by pachhook; leaving it (use --force to replace it;"
            f" it is kept as {name}{SAVED_SUFFIX} and restored by uninstall)"
            for name in refused
        ]
        return outcome
    hooks.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        target = hooks / name
        if (target.exists() or target.is_symlink()) and not is_ours(target):
            os.replace(target, hooks / f"{name}{SAVED_SUFFIX}")
        temporary = hooks / f".{name}.pachhook-tmp"
        temporary.write_text(script(name), encoding="utf-8")
        temporary.chmod(0o755)
        os.replace(temporary, target)
    record_installed(common, PLAIN, HOOK_NAMES)
    outcome.said.append(f"installed {', '.join(HOOK_NAMES)} hooks in {hooks}")
    return outcome


def install_with_pre_commit(root: Path, common: Path, force: bool) -> Outcome:
    """Have the pre-commit framework install its hook scripts for pachhook's three hook types."""
    outcome = Outcome()
    text = (root / PRE_COMMIT_CONFIG).read_text(encoding="utf-8", errors="replace")
    missing = [hook_id for hook_id in HOOK_IDS.values() if hook_id not in text]
    command = [sys.executable, "-m", "pre_commit", "install"]
    for name in HOOK_NAMES:
        command += ["--hook-type", name]
    if force:
        command.append("--overwrite")
    ok, lines = _run_pre_commit(command, root)
    if not ok:
        outcome.status = 1
        outcome.problems.append(lines[-1] if ok is None else f"`pre-commit install` failed: {lines[-1]}")
        return outcome
    outcome.said += lines
    record_installed(common, PRE_COMMIT, HOOK_NAMES)
    if missing:
        outcome.said.append(
            f"note: {PRE_COMMIT_CONFIG} does not list {', '.join(missing)}; see docs/hooks.md for the entries to add"
        )
    return outcome


def uninstall(root: Path, hooks: Path, common: Path, force: bool) -> Outcome:
    """Remove the recorded hooks: plain ones still carrying the marker (any with `force`),
    putting back what `install --force` had kept aside, and the framework's through
    `pre-commit uninstall`. What could not be removed stays recorded."""
    outcome = Outcome()
    entries = read_installed(common)
    if not entries:
        outcome.said.append("pachhook installed no hooks here; nothing to remove")
        return outcome
    kept: List[Tuple[str, str]] = []
    for name in [name for mode, name in entries if mode == PLAIN]:
        target = hooks / name
        if not (target.exists() or target.is_symlink()):
            continue
        if not is_ours(target) and not force:
            outcome.problems.append(
                f"{target} no longer carries pachhook's marker; leaving it (use --force to remove it anyway)"
            )
            kept.append((PLAIN, name))
            outcome.status = 1
            continue
        target.unlink()
        saved = hooks / f"{name}{SAVED_SUFFIX}"
        if saved.exists():
            os.replace(saved, target)
            outcome.said.append(f"removed {name}, restored the hook it had replaced")
        else:
            outcome.said.append(f"removed {name}")
    framework = [name for mode, name in entries if mode == PRE_COMMIT]
    if framework:
        command = [sys.executable, "-m", "pre_commit", "uninstall"]
        for name in framework:
            command += ["--hook-type", name]
        ok, lines = _run_pre_commit(command, root)
        outcome.said += lines
        if not ok:
            kept += [(PRE_COMMIT, name) for name in framework]
            outcome.status = 1
    record = Path(state_folder(common)) / RECORD_NAME
    if kept:
        record.write_text("".join(f"{mode} {name}\n" for mode, name in kept), encoding="utf-8")
    else:
        record.unlink()
    return outcome


def _run_pre_commit(command: List[str], root: Path) -> Tuple[Optional[bool], List[str]]:
    """Run a `pre-commit` command in `root`: whether it succeeded (None: it could not be
    started), and its output lines (never none)."""
    try:
        proc = subprocess.run(
            command,
            cwd=str(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=PRE_COMMIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, [f"cannot run pre-commit: {error}"]
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 and not lines:
        lines = [f"exit status {proc.returncode}"]
    return proc.returncode == 0, lines

"""`pachhook install [--force] [--plain]`: install pachhook's git hooks in this repository.

Where `.pre-commit-config.yaml` exists, the pre-commit framework installs its hook
scripts for the pre-commit, post-commit and pre-push stages (`pre-commit install`);
otherwise pachhook writes its own plain hooks. A hook file pachhook did not write is
never replaced without `--force` (and then it is kept aside and put back by
`pachhook uninstall`). What was installed is recorded in
`<git common dir>/pachhook/installed`, so that `uninstall` removes exactly that.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from pachhook.commands._common import guard, parse_args
from pachhook.core import gitrepo
from pachhook.setup.hookscripts import HOOK_NAMES, MARKER, script

SAVED_SUFFIX = ".pachhook-saved"
RECORD_NAME = "installed"
PRE_COMMIT_CONFIG = ".pre-commit-config.yaml"
PRE_COMMIT_HOOK_IDS = ("pachhook-validate", "pachhook-queue", "pachhook-check-push")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook install",
        description=(
            "Install the pre-commit, post-commit and pre-push git hooks: through"
            " `pre-commit install` when .pre-commit-config.yaml exists, else pachhook's plain"
            " hook scripts. A hook pachhook did not write is left alone unless --force."
        ),
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace hooks pachhook did not write (they are kept aside and restored by uninstall)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="install the plain hook scripts even where .pre-commit-config.yaml exists"
    )
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        root = gitrepo.repo_root()
        hooks = gitrepo.hooks_dir(root)
        common = gitrepo.git_common_dir(root)
    except gitrepo.GitError as error:
        print(f"pachhook install: {error}", file=sys.stderr)
        return 2
    if (root / PRE_COMMIT_CONFIG).is_file() and not args.plain:
        return install_with_pre_commit(root, common, args.force)
    return install_plain(hooks, common, args.force)


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def install_plain(hooks: Path, common: Path, force: bool) -> int:
    refused: List[str] = []
    for name in HOOK_NAMES:
        target = hooks / name
        if (target.exists() or target.is_symlink()) and not is_ours(target) and not force:
            refused.append(name)
    if refused:
        for name in refused:
            print(
                f"pachhook install: {hooks / name} exists and was not installed by pachhook;"
                " leaving it (use --force to replace it; it is kept as"
                f" {name}{SAVED_SUFFIX} and restored by uninstall)",
                file=sys.stderr,
            )
        return 1
    hooks.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        target = hooks / name
        if (target.exists() or target.is_symlink()) and not is_ours(target):
            os.replace(target, hooks / f"{name}{SAVED_SUFFIX}")
        temporary = hooks / f".{name}.pachhook-tmp"
        temporary.write_text(script(name), encoding="utf-8")
        temporary.chmod(0o755)
        os.replace(temporary, target)
    _record(common, "plain", HOOK_NAMES)
    print(f"pachhook install: installed {', '.join(HOOK_NAMES)} hooks in {hooks}")
    return 0


def install_with_pre_commit(root: Path, common: Path, force: bool) -> int:
    text = (root / PRE_COMMIT_CONFIG).read_text(encoding="utf-8", errors="replace")
    missing = [hook_id for hook_id in PRE_COMMIT_HOOK_IDS if hook_id not in text]
    command = [
        sys.executable,
        "-m",
        "pre_commit",
        "install",
        "--hook-type",
        "pre-commit",
        "--hook-type",
        "post-commit",
        "--hook-type",
        "pre-push",
    ]
    if force:
        command.append("--overwrite")
    try:
        proc = subprocess.run(
            command, cwd=str(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    except OSError as error:
        print(f"pachhook install: cannot run pre-commit: {error}", file=sys.stderr)
        return 1
    output = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        last = output.splitlines()[-1] if output else f"exit status {proc.returncode}"
        print(f"pachhook install: `pre-commit install` failed: {last}", file=sys.stderr)
        return 1
    for line in output.splitlines():
        print(f"pachhook install: {line}")
    _record(common, "pre-commit", ("pre-commit", "post-commit", "pre-push"))
    if missing:
        print(
            f"pachhook install: note: {PRE_COMMIT_CONFIG} does not list {', '.join(missing)};"
            " see docs/hooks.md for the entries to add"
        )
    return 0


def _record(common: Path, mode: str, names: Sequence[str]) -> None:
    folder = common / "pachhook"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_NAME).write_text("".join(f"{mode} {name}\n" for name in names), encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guard("pachhook install", _main, argv)

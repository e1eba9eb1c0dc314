"""`pachhook uninstall [--force]`: remove the git hooks `pachhook install` installed, and only those.

Plain hooks are removed when they still carry pachhook's marker line (a hook edited
into something else is left, unless --force); a hook that `install --force` had put
aside comes back. Hooks installed through the pre-commit framework are removed with
`pre-commit uninstall` for the hook types pachhook had it install.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from pachhook.commands._common import guard, parse_args
from pachhook.commands.install import RECORD_NAME, SAVED_SUFFIX, is_ours
from pachhook.core import gitrepo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachhook uninstall",
        description="Remove the git hooks that `pachhook install` installed; other hooks are left alone.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="also remove a recorded plain hook that no longer carries pachhook's marker line",
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
        print(f"pachhook uninstall: {error}", file=sys.stderr)
        return 2
    record = common / "pachhook" / RECORD_NAME
    entries = _read_record(record)
    if not entries:
        print("pachhook uninstall: pachhook installed no hooks here; nothing to remove")
        return 0
    status = 0
    kept: List[Tuple[str, str]] = []
    plain = [name for mode, name in entries if mode == "plain"]
    framework = [name for mode, name in entries if mode == "pre-commit"]
    for name in plain:
        target = hooks / name
        if not (target.exists() or target.is_symlink()):
            continue
        if not is_ours(target) and not args.force:
            print(
                f"pachhook uninstall: {target} no longer carries pachhook's marker; leaving it"
                " (use --force to remove it anyway)",
                file=sys.stderr,
            )
            kept.append(("plain", name))
            status = 1
            continue
        target.unlink()
        saved = hooks / f"{name}{SAVED_SUFFIX}"
        if saved.exists():
            os.replace(saved, target)
            print(f"pachhook uninstall: removed {name}, restored the hook it had replaced")
        else:
            print(f"pachhook uninstall: removed {name}")
    if framework:
        command = [sys.executable, "-m", "pre_commit", "uninstall"]
        for name in framework:
            command += ["--hook-type", name]
        proc = subprocess.run(
            command, cwd=str(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        for line in proc.stdout.decode(errors="replace").strip().splitlines():
            print(f"pachhook uninstall: {line}")
        if proc.returncode != 0:
            kept += [("pre-commit", name) for name in framework]
            status = 1
    if kept:
        record.write_text("".join(f"{mode} {name}\n" for mode, name in kept), encoding="utf-8")
    else:
        record.unlink()
    return status


def _read_record(path: Path) -> List[Tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            entries.append((parts[0], parts[1]))
    return entries


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guard("pachhook uninstall", _main, argv)

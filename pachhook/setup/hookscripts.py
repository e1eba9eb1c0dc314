"""The plain git hook scripts pachhook installs, as text the package always carries.

`hooks/` in the source tree holds the same scripts for people who copy them by hand; a
test keeps both identical. They are POSIX sh, find the `pachhook` console script on PATH
and `exec` it, so the hook costs one shell plus pachhook itself.
"""

from __future__ import annotations

MARKER = "# pachhook-managed hook: `pachhook uninstall` removes it"

# hook name -> (pachhook command, what happens when pachhook cannot be found)
_HOOKS = {
    # --staged: what is being committed, read from the index, not the work tree
    "pre-commit": ("validate --staged", "pipeline templates were not checked", 1),
    "post-commit": ("queue", "nothing was queued for this commit", 0),
    "pre-push": ("check-push", "pipeline templates were not checked", 1),
    # a merge, pull or fast-forward moves a branch without post-commit (githooks(5))
    "post-merge": ("queue --hook post-merge", "nothing was queued for this merge", 0),
    # amend and rebase: the rewritten commits' jobs are superseded, the new head queued
    "post-rewrite": ("queue --hook post-rewrite", "nothing was queued for the rewritten commits", 0),
}

HOOK_NAMES = tuple(_HOOKS)

# The id under which `.pre-commit-hooks.yaml` offers each hook to the pre-commit framework,
# by git hook type: `pachhook-` and the command the hook runs. `init` writes these ids into
# `.pre-commit-config.yaml`, `install` and `doctor` look for them; a test keeps the file in step.
HOOK_IDS = {name: f"pachhook-{command.split()[0]}" for name, (command, _, _) in _HOOKS.items()}


def script(name: str) -> str:
    """The text of the plain git hook `name` (one of HOOK_NAMES)."""
    command, consequence, status = _HOOKS[name]
    if status:
        fallback = (
            f"echo \"pachhook: 'pachhook' is not on PATH, so {consequence}; install it"
            f' (pip install pachhook) or skip this hook once with --no-verify" >&2\n'
            f"exit {status}\n"
        )
    else:
        # post-commit, post-merge, post-rewrite cannot undo anything: say so, let git carry on.
        fallback = (
            f"echo \"pachhook: 'pachhook' is not on PATH, so {consequence};"
            f' run \\`pachhook queue\\` once it is installed" >&2\n'
            "exit 0\n"
        )
    return (
        "#!/bin/sh\n"
        f"{MARKER}\n"
        f"# git {name} hook: runs `pachhook {command}` (see docs/hooks.md).\n"
        "if command -v pachhook >/dev/null 2>&1; then\n"
        f'    exec pachhook {command} "$@"\n'
        "fi\n" + fallback
    )

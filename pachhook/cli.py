"""The `pachhook` console script: a thin dispatcher over one module per subcommand.

Each subcommand lives in `pachhook.commands.<module>` with its own
`build_parser() -> argparse.ArgumentParser` and `main(argv) -> int`. Only the module of
the command being run is imported, so a hook pays for its own imports and nothing else.
Every command runs inside `guard`, the one place where a bug, Ctrl-C or a closed pipe
becomes an exit status.
"""

from __future__ import annotations

import sys

from pachhook import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import; the post-commit hook passes through here
    from typing import Sequence

# name -> (module under pachhook.commands, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "check pipeline spec templates against the Pachyderm spec"),
    "render": ("render", "print a template rendered for a commit"),
    "plan": ("plan", "show what delivering a commit would change, field by field"),
    "queue": ("queue", "post-commit: record delivery jobs for a commit"),
    "check-push": ("check_push", "pre-push: validate templates in every pushed commit"),
    "run": ("run", "run queued jobs (or one commit's steps) in the foreground"),
    "worker": ("worker", "drain the queue in the background (started by `queue`)"),
    "status": ("status", "list jobs and the state of their steps"),
    "logs": ("logs", "print a job's log"),
    "retry": ("retry", "queue a failed or cancelled job again"),
    "cancel": ("cancel", "cancel a queued job"),
    "rollback": ("rollback", "re-apply an earlier commit's or version's spec and hold the pipeline"),
    "release": ("release", "lift a rollback's hold so the queue delivers the pipeline again"),
    "provenance": ("provenance", "link commits, images and pipeline versions"),
    "install": ("install", "install pachhook's git hooks in this repository"),
    "uninstall": ("uninstall", "remove the git hooks pachhook installed"),
    "init": ("init", "set up pachhook in this repository (pre-commit config, hooks)"),
    "doctor": ("doctor", "check hooks, configuration, Docker, registries, pachctl, queue"),
    "demo": ("demo", "deliver the examples in a throwaway repository, on local defaults"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: pachhook [--version] COMMAND [ARGS ...]",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `pachhook COMMAND --help` for a command's options."]
    return "\n".join(lines)


def load_command(name: str):  # -> module with build_parser() and main()
    module_name, _ = COMMANDS[name]
    # `__import__`, not importlib.import_module: importlib (with warnings) costs a hook 1.5 ms
    full_name = f"pachhook.commands.{module_name}"
    __import__(full_name)
    return sys.modules[full_name]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"pachhook {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(f"pachhook: unknown command {name!r}", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    status = guard(name, args[1:])
    if argv is None:  # this process is the `pachhook` program, not a caller of main(ARGS)
        from pachhook.core import processend

        if processend.may_end_now():
            processend.end_process(status)
    return status


def guard(name: str, argv: Sequence[str]) -> int:
    """Run command `name`: the one place that turns what escapes a command into an exit status.

    Ctrl-C is one line and 130; a reader that stopped reading (`pachhook status | head`)
    ends the command quietly with 141, as a shell pipeline would; a bug is one line,
    `pachhook NAME: internal error: ...`, and 3, never a traceback.
    """
    try:
        status = load_command(name).main(argv)
        sys.stdout.flush()  # buffered output meets a closed pipe here, not after the guard at exit
        return status
    except KeyboardInterrupt:
        print(f"pachhook {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        from pachhook.core.output import quiet_broken_pipe

        return quiet_broken_pipe()
    except Exception as error:
        from pachhook.core.sanitize import one_line

        text = one_line(error)
        kind = f"{type(error).__name__}: {text}" if text else type(error).__name__
        print(f"pachhook {name}: internal error: {kind} (please report it)", file=sys.stderr)
        return 3

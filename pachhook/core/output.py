"""Terminal output shared by the commands: colour, quiet and verbose, check marks.

Colour is used only when the stream is a terminal, never when `NO_COLOR` is set (to any
value, see no-color.org) and never when `TERM=dumb`; `PACHHOOK_COLOR=always` forces it
for people who pipe into `less -R`. Kept free of heavy imports: any command may use it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    import argparse
    from typing import Optional, TextIO

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "cyan": "36",
}

# The word each check status prints as, and its colour.
STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "yellow", "info": "cyan"}


def color_enabled(stream: Optional[TextIO] = None) -> bool:
    """Whether text written to `stream` (default stdout) should carry ANSI colours."""
    if "NO_COLOR" in os.environ:
        return False
    forced = os.environ.get("PACHHOOK_COLOR", "").lower()
    if forced in ("never", "no", "0"):
        return False
    if forced in ("always", "yes", "1"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def paint(text: str, style: str, enabled: bool) -> str:
    """`text` wrapped in the ANSI codes of `style` (e.g. "bold red") when enabled."""
    if not enabled:
        return text
    codes = ";".join(_CODES[word] for word in style.split() if word in _CODES)
    return f"\033[{codes}m{text}\033[0m" if codes else text


class Printer:
    """Writes a command's lines: `quiet` keeps only results and failures, `verbose` adds detail.

    Levels: `detail` (verbose only), `info` (hidden by quiet), `result` (always),
    `error` (always, to stderr).
    """

    def __init__(
        self, quiet: bool = False, verbose: bool = False, stream: Optional[TextIO] = None, err: Optional[TextIO] = None
    ) -> None:
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self._stream = stream
        self._err = err
        self.color = color_enabled(self.stream)

    @property
    def stream(self) -> TextIO:
        # Looked up on use so that pytest's capsys (which swaps sys.stdout) sees the lines.
        return self._stream if self._stream is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def paint(self, text: str, style: str) -> str:
        return paint(text, style, self.color)

    def _write(self, text: str, stream: TextIO) -> None:
        stream.write(text + "\n")
        stream.flush()

    def detail(self, text: str) -> None:
        if self.verbose:
            self._write(self.paint(text, "dim"), self.stream)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._write(text, self.stream)

    def heading(self, text: str) -> None:
        if not self.quiet:
            self._write(self.paint(text, "bold"), self.stream)

    def result(self, text: str) -> None:
        self._write(text, self.stream)

    def error(self, text: str) -> None:
        self._write(self.paint(text, "red") if color_enabled(self.err) else text, self.err)

    def status(self, status: str, name: str, message: str, always: bool = False) -> None:
        """One check line: `ok    name: message`; quiet hides the ok lines unless `always`."""
        if status == "ok" and self.quiet and not always:
            return
        word = self.paint(f"{status:<5}", STATUS_STYLE.get(status, "bold"))
        self._write(f"{word} {name}: {message}" if message else f"{word} {name}", self.stream)


def add_output_options(parser: argparse.ArgumentParser, json_format: bool = True) -> None:
    """The --quiet/--verbose (and --format) options every one of these commands takes alike."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only results and problems")
    group.add_argument("-v", "--verbose", action="store_true", help="print more detail about each step")
    if json_format:
        parser.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="output format: lines for people (default) or one JSON document",
        )


def quiet_broken_pipe() -> int:
    """After stdout's reader went away (`pachhook doctor | head`): no traceback, exit 141 like a shell.

    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141

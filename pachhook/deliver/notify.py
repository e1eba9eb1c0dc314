"""A desktop notification when a background delivery fails, where the desktop offers one.

The background worker has no terminal: a failure would otherwise wait for the next commit,
push or `pachhook status` to be seen. `notify-send` (freedesktop) or `osascript` (macOS)
is used when found on PATH; `notify = false` in the configuration turns it off. A
notification that cannot be shown is skipped without a word: it is a courtesy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import List, Optional

TIMEOUT = 5.0


def notification_command(title: str, body: str) -> Optional[List[str]]:
    """The argument list that shows a notification on this machine, None when none can."""
    found = shutil.which("notify-send")
    if found:
        return [found, "--app-name=pachhook", "--urgency=critical", title, body]
    if sys.platform == "darwin":
        found = shutil.which("osascript")
        if found:
            # AppleScript strings: backslash and double quote are the characters to escape.
            def quoted(text: str) -> str:
                return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

            return [found, "-e", f"display notification {quoted(body)} with title {quoted(title)}"]
    return None


def notify_failure(title: str, body: str) -> bool:
    """Show the notification; whether a command ran and succeeded."""
    argv = notification_command(title, body[:300])
    if argv is None:
        return False
    try:
        completed = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return completed.returncode == 0

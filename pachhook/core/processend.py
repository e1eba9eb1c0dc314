"""Ending the `pachhook` program without the interpreter's teardown.

When a command has returned, CPython still frees every module and object one by one before
the process ends: about 30 ms after a delivery has imported its ~150 modules (measured with
strace on a quiet 2-core machine: no system call between the last line written and the
first munmap), paid after the work is done, on every `pachhook run`. Nothing pachhook needs
happens there: its files are written and closed in `with` blocks, its queue database
commits each transaction, and the callbacks registered with `atexit` (a credential guard's
folder removed) are run here first.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds the hooks do not spend
    from typing import NoReturn

# Set it (to anything) to end every command the ordinary way, e.g. to look at teardown.
SLOW_EXIT_VARIABLE = "PACHHOOK_NO_FAST_EXIT"


def may_end_now() -> bool:
    """Whether ending at once is safe: no thread of this process other than the main one
    and daemon threads runs (the interpreter would wait for it), and not switched off."""
    if SLOW_EXIT_VARIABLE in os.environ:
        return False
    threading = sys.modules.get("threading")
    if threading is None:
        return True
    main = threading.main_thread()
    return all(thread is main or thread.daemon for thread in threading.enumerate())


def end_process(status: int) -> "NoReturn":
    """Run the atexit callbacks, flush the standard streams and end the process with `status`."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a reader that went away, a closed stream
            pass
    os._exit(status)

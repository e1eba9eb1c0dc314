"""One docker CLI process: an argument list, stdin closed, a session of its own, a deadline.

The session of its own means no controlling terminal (a credential helper the CLI starts
cannot prompt) and one process group, so that at the deadline, or when the caller stops,
the CLI is ended with everything it started. Output is bytes as the CLI wrote it: callers
clean it (core/sanitize) before it reaches a log, a screen or the queue.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

IDLE_TICK = 0.5  # seconds between calls of on_idle while the CLI is silent


def _start(argv: Sequence[str], env: Dict[str, str], stderr: int) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
    )


def _end(process: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except OSError:
        pass
    process.wait()


def run(argv: Sequence[str], env: Dict[str, str], timeout: float) -> Tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of a short CLI call; TimeoutError after `timeout` seconds."""
    process = _start(argv, env, subprocess.PIPE)
    try:
        output, errors = process.communicate(timeout=timeout)
    except BaseException as error:
        _end(process)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        if isinstance(error, subprocess.TimeoutExpired):
            raise TimeoutError(f"`{' '.join(argv[1:3])}` ran longer than {timeout:g}s") from None
        raise
    return process.returncode, output, errors


def stream(
    argv: Sequence[str],
    env: Dict[str, str],
    on_line: Callable[[str], None],
    timeout: float,
    on_idle: Callable[[], None] = lambda: None,
    stop_requested: Callable[[], bool] = lambda: False,
    terminal: bool = False,
) -> int:
    """Run a long CLI call (a build, a push, a pull), each line of its output (stdout and stderr
    together, decoded) handed to on_line as it comes; the exit status.

    terminal: the output goes to a pseudo-terminal instead of a pipe, for what the CLI shows
    only on a terminal (a push's byte counts); each line or carriage-return-ended piece is then
    handed on, cursor moves included (callers clean them out). The CLI still gets no
    controlling terminal: nothing it starts can prompt on it.

    on_idle runs after each line and every IDLE_TICK seconds of silence (for "still running"
    lines). Raises TimeoutError after `timeout` seconds and KeyboardInterrupt when
    stop_requested() says so; either way the CLI and what it started are ended first.
    """
    reader_fd = -1
    if terminal:
        import pty

        reader_fd, writer_fd = pty.openpty()
        try:
            process = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=writer_fd,
                stderr=writer_fd,
                start_new_session=True,
            )
        except BaseException:
            os.close(reader_fd)
            raise
        finally:
            os.close(writer_fd)
    else:
        process = _start(argv, env, subprocess.STDOUT)
    lines: "queue.Queue[Optional[bytes]]" = queue.Queue()

    def pump() -> None:
        if reader_fd < 0:
            assert process.stdout is not None
            for raw in iter(process.stdout.readline, b""):
                lines.put(raw)
        else:
            pending = b""
            while True:
                try:
                    chunk = os.read(reader_fd, 65536)
                except OSError:  # EIO: the CLI closed the terminal's last writer
                    chunk = b""
                if not chunk:
                    break
                pieces = (pending + chunk).replace(b"\r", b"\n").split(b"\n")
                pending = pieces.pop()
                for piece in pieces:
                    lines.put(piece)
            if pending:
                lines.put(pending)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                raw = lines.get(timeout=IDLE_TICK)
            except queue.Empty:
                on_idle()
                if time.monotonic() > deadline:
                    raise TimeoutError from None
                if stop_requested():
                    raise KeyboardInterrupt from None
                continue
            if raw is None:
                break
            if stop_requested():
                raise KeyboardInterrupt
            on_line(raw.decode("utf-8", "replace"))
            on_idle()
        return process.wait()
    except BaseException:
        _end(process)
        raise
    finally:
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        if reader_fd >= 0:
            os.close(reader_fd)

"""One BuildKit build through the docker CLI, its progress turned into log lines.

The CLI reads the context folder itself and applies `.dockerignore`; pachhook reads only the
CLI's plain progress (`--progress=plain`), which names each step (`#5 [2/3] RUN ...`), its
output (`#5 0.12 text`), and its end (`#5 DONE 0.3s`, `#5 CACHED`, `#5 ERROR: ...`). The log
gets one line per step with its time; a step still running after a second gets a line then,
and one every HEARTBEAT seconds, so a slow RUN is never silent. On a terminal the same
events also feed the image's live block (deliver/ttyprogress.py), drawn like BuildKit's tty
mode: the plain stream is the one both need, and it stays parseable for the errors.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

from pachhook.core.sanitize import clean, one_line
from pachhook.deliver import cliprocess, credhelpers

BUILD_TIMEOUT = 4 * 3600  # seconds: a build stuck longer than this is ended
HEARTBEAT = 10.0  # seconds between "still running" lines of a slow step
FIRST_NOTICE = 1.0  # seconds before a running step gets its first line
KEPT_OUTPUT = 12  # last output lines kept per step, for the error
KEPT_TAIL = 40  # last lines of the whole output, for an error outside any step

_LINE = re.compile(r"^#(\d+) (.*)$")
_OUTPUT = re.compile(r"^\d+\.\d+ (.*)$")
_DONE = re.compile(r"^DONE (\d+(?:\.\d+)?)s$")
# Causes worth trying again: the network or a registry out of breath, not the Dockerfile.
_TRANSIENT = re.compile(
    r"i/o timeout|timed out|timeout|connection refused|connection reset|tls handshake|temporary failure"
    r"|no such host|unexpected eof|too many requests|\b(?:429|500|502|503|504)\b|service unavailable"
    r"|cannot connect to the docker daemon|error during connect",
    re.I,
)


@dataclass
class _Step:
    name: str
    started: float
    output: Deque[str] = field(default_factory=lambda: collections.deque(maxlen=KEPT_OUTPUT))
    noticed: float = 0.0  # when the last "running" line was logged
    ended: bool = False


@dataclass
class CliBuildResult:
    image_id: str  # "" when the build failed
    error: str = ""  # the engine's own explanation, one line
    transient: bool = False
    steps: int = 0


def _is_step(name: str) -> bool:
    """Steps of the Dockerfile (`[2/3] RUN ...`, `[stage 1/2] COPY ...`) and the export."""
    return (name.startswith("[") and not name.startswith("[internal]")) or name.startswith("exporting to image")


class _Progress:
    def __init__(self, log: Callable[[str], None], view: Optional[Any] = None) -> None:
        self.log = log
        self.view = view  # a terminal's live block of this image (deliver/ttyprogress.ImageView)
        self.steps: Dict[str, _Step] = {}
        self.current = ""
        self.tail: Deque[str] = collections.deque(maxlen=KEPT_TAIL)
        self.failed: Optional[_Step] = None
        self.failure = ""
        self.logged = 0

    def feed(self, raw: str) -> None:
        line = clean(raw, 4000)
        if not line.strip():
            return
        match = _LINE.match(line)
        if not match:
            self.tail.append(line)
            return
        number, rest = match.groups()
        step = self.steps.get(number)
        if step is None:
            self.steps[number] = _Step(name=rest, started=time.monotonic())
            if self.view is not None and _is_step(rest):
                self.view.step_started(number, rest)
            return
        if rest == step.name or rest.startswith("sha256:"):
            return
        done = _DONE.match(rest)
        if self.view is not None and (done or rest == "CACHED" or rest.startswith("ERROR") or rest == "CANCELED"):
            self.view.step_ended(number, rest.split(" ", 1)[0])
        if done or rest == "CACHED":
            step.ended = True
            if _is_step(step.name):
                took = "cached" if rest == "CACHED" else f"{float(done.group(1)):.1f}s"  # type: ignore[union-attr]
                self.log(f"build: {step.name} ({took})")
                self.logged += 1
            return
        if rest.startswith("ERROR:") or rest.startswith("ERROR "):
            step.ended = True
            if step.name.startswith("importing cache manifest from "):
                # --cache-from an image that is not there (yet): BuildKit builds on without it
                source = step.name[len("importing cache manifest from ") :]
                self.log(f"build: no cache from {source}: {one_line(rest[len('ERROR') :].lstrip(': '), 300)}")
                return
            if self.failed is None:
                self.failed, self.failure = step, rest[len("ERROR") :].lstrip(": ").strip()
            return
        if rest == "CANCELED":
            step.ended = True
            return
        output = _OUTPUT.match(rest)
        step.output.append(output.group(1) if output else rest)
        if self.view is not None:
            self.view.step_output(number, step.output[-1])

    def heartbeat(self) -> None:
        now = time.monotonic()
        for step in self.steps.values():
            if step.ended or not _is_step(step.name):
                continue
            running = now - step.started
            if not step.noticed and running >= FIRST_NOTICE:
                self.log(f"build: {step.name} … running")
                step.noticed = now
            elif step.noticed and now - step.noticed >= HEARTBEAT:
                self.log(f"build: {step.name} … running {running:.0f}s")
                step.noticed = now

    def explanation(self, status: int) -> str:
        """The engine's own explanation of a failed build, on one line."""
        # The CLI ends with the overall error (`error: failed to solve: ...` or, before buildx,
        # `failed to solve with frontend dockerfile.v0: ...`), after a `------` box that repeats
        # the failing step.
        final = ""
        for line in reversed(self.tail):
            text = line.strip()
            if text and not text.startswith("------") and not text.startswith(">"):
                final = text
                break
        final = re.sub(r"^(?:error|ERROR):\s*", "", final)
        if self.failed is not None:
            cause = self.failure or final
            parts = [f"step {self.failed.name} failed: {cause}"]
            output = [line for line in self.failed.output if line.strip()]
            if output:
                parts.append("last output: " + " | ".join(output[-5:]))
            return one_line("; ".join(parts), 3000)
        return one_line(final or f"docker exited with status {status}", 3000)


class _Stops:
    """How many times the process asked its running builds to stop (Ctrl-C with builds in threads)."""

    lock = threading.Lock()
    count = 0


def stop_builds() -> None:
    """End every docker CLI build this process is running (each raises KeyboardInterrupt).

    The CLI runs in a session of its own, so the terminal's Ctrl-C does not reach it; a
    build running in a worker thread is ended from here instead.
    """
    with _Stops.lock:
        _Stops.count += 1


def run_build(
    argv: Sequence[str],
    env: Dict[str, str],
    log: Callable[[str], None],
    timeout: float = BUILD_TIMEOUT,
    view: Optional[Any] = None,
) -> CliBuildResult:
    """Run a docker CLI build (argv without --iidfile and --progress); the image id, or the cause.

    Secrets reach the CLI through env (named, never valued, in argv).
    """
    stops_before = _Stops.count
    progress = _Progress(log, view)
    with tempfile.TemporaryDirectory(prefix="pachhook-build-") as scratch:
        iidfile = os.path.join(scratch, "iid")
        command = [*argv[:-1], "--progress=plain", "--iidfile", iidfile, argv[-1]]
        try:
            status = cliprocess.stream(
                command,
                env,
                progress.feed,
                timeout,
                on_idle=progress.heartbeat,
                stop_requested=lambda: _Stops.count != stops_before,
            )
        except TimeoutError:
            return CliBuildResult("", f"the build ran longer than {timeout:.0f}s and was ended", transient=True)
        image_id = ""
        if status == 0:
            try:
                with open(iidfile, encoding="utf-8") as handle:
                    image_id = handle.read().strip()
            except OSError:
                image_id = ""
        if status == 0 and image_id:
            return CliBuildResult(image_id, steps=progress.logged)
        explanation = progress.explanation(status)
        if progress.failed is not None:
            for line in list(progress.failed.output)[-KEPT_OUTPUT:]:
                log(f"build: | {line}")
        transient = bool(_TRANSIENT.search(explanation)) and "exit code" not in explanation
        return CliBuildResult("", explanation, transient=transient, steps=progress.logged)


def cli_env(extra: Optional[Dict[str, str]] = None, buildkit: bool = True) -> Dict[str, str]:
    """The environment for the docker CLI: the user's (DOCKER_HOST, DOCKER_CONFIG...) plus BuildKit."""
    env = dict(os.environ)
    if buildkit:
        env["DOCKER_BUILDKIT"] = "1"
    env.pop("BUILDKIT_PROGRESS", None)
    env.update(extra or {})
    # the credential helpers the CLI runs (logins of base and cache images) get a deadline
    folder = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    env["PATH"] = credhelpers.guarded_path(env, os.path.join(folder, "config.json"))
    return env


def secret_flags(secrets: Dict[str, "tuple[str, str]"]) -> List[str]:
    """`--secret id=ID,env=VAR` / `--secret id=ID,src=FILE`: names only, never values."""
    flags: List[str] = []
    for secret_id, (kind, source) in sorted(secrets.items()):
        flags += ["--secret", f"id={secret_id},{kind}={os.path.expanduser(source) if kind == 'src' else source}"]
    return flags

"""Live progress on a terminal: each image's BuildKit steps with their running time, and its
push with a bar per layer, redrawn in place below the log lines.

It follows BuildKit's own tty display (`[+] Building 12.3s (5/9)`, `=> [2/3] RUN make 4.1s`),
one block per image so that concurrent builds each keep theirs. Log lines go above the
block (`line`) and scroll as usual; the block is redrawn a few times a second and erased at
the end, so what stays on the screen is the plain log. Only used when standard output is a
terminal: a log file, a pipe or CI gets the plain lines alone.

Everything shown comes through core/sanitize (no control sequences from a build's output)
and is cut to the terminal's width, so the block's height is known and redraws stay clean.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, TextIO

from pachhook.core.sanitize import strip_controls
from pachhook.deliver.buildcontext import human_size

REDRAW_SECONDS = 0.2
SHOWN_STEPS = 4  # running steps shown per image (BuildKit shows the newest ones too)
SHOWN_LAYERS = 6  # layers shown per push
BAR = 24  # characters of a layer's bar


@dataclass
class _Step:
    name: str
    started: float
    ended: Optional[float] = None
    state: str = ""  # "", "DONE", "CACHED", "ERROR"
    last_output: str = ""


@dataclass
class _Layer:
    status: str = "Waiting"
    current: int = 0
    total: int = 0


@dataclass
class ImageView:
    """The live block of one image: its build's steps, then its push's layers."""

    label: str
    started: float = field(default_factory=time.monotonic)
    steps: Dict[str, _Step] = field(default_factory=dict)
    layers: Dict[str, _Layer] = field(default_factory=dict)
    phase: str = "Building"
    closed: bool = False
    # the build or push thread changes the view while the display's thread draws it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def step_started(self, number: str, name: str) -> None:
        with self.lock:
            self.steps[number] = _Step(name=strip_controls(name), started=time.monotonic())

    def step_output(self, number: str, text: str) -> None:
        with self.lock:
            step = self.steps.get(number)
            if step is not None:
                step.last_output = strip_controls(text)

    def step_ended(self, number: str, state: str) -> None:
        with self.lock:
            step = self.steps.get(number)
            if step is not None:
                step.ended, step.state = time.monotonic(), state

    def pushing(self) -> None:
        with self.lock:
            self.phase, self.started = "Pushing", time.monotonic()

    def layer(self, layer_id: str, status: str, current: int = 0, total: int = 0) -> None:
        with self.lock:
            layer = self.layers.setdefault(layer_id, _Layer())
            layer.status = strip_controls(status)
            if total:
                layer.current, layer.total = current, total
            elif _finished(status):
                layer.current = layer.total

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def render(self, now: float, width: int) -> List[str]:
        with self.lock:
            if self.closed:
                return []
            if self.phase == "Pushing":
                done = sum(1 for layer in self.layers.values() if _finished(layer.status))
                lines = [f"{self.label}: [+] Pushing {now - self.started:.1f}s ({done}/{len(self.layers)} layers)"]
                for layer_id, layer in list(self.layers.items())[-SHOWN_LAYERS:]:
                    lines.append(f" => {layer_id[:12]} {_bar(layer)} {layer.status}")
                return [line[:width] for line in lines]
            finished = sum(1 for step in self.steps.values() if step.ended is not None)
            lines = [f"{self.label}: [+] Building {now - self.started:.1f}s ({finished}/{len(self.steps)})"]
            running = [step for step in self.steps.values() if step.ended is None]
            for step in running[-SHOWN_STEPS:]:
                # the running time on the right, as BuildKit puts it: a long step name is cut instead
                elapsed = f" {now - step.started:.1f}s"
                lines.append(f" => {step.name}"[: width - len(elapsed)] + elapsed)
                if step.last_output:
                    lines.append(f" => => {step.last_output}")
            return [line[:width] for line in lines]


def _finished(status: str) -> bool:
    """A layer the registry has: pushed now, there already, or mounted from another repository."""
    return status in ("Pushed", "Layer already exists") or status.startswith("Mounted from")


def _bar(layer: _Layer) -> str:
    if not layer.total:
        return " " * (BAR + 2)
    share = min(max(layer.current / layer.total, 0.0), 1.0)
    filled = int(share * BAR)
    arrow = ">" if filled < BAR else ""
    bar = ("=" * filled + arrow).ljust(BAR)
    return f"[{bar}] {human_size(layer.current)}/{human_size(layer.total)}"


class TerminalProgress:
    """The log lines and, below them, the live block of every image being built or pushed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.RLock()
        self._views: List[ImageView] = []
        self._height = 0  # lines of the block on the screen now
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="pachhook-progress", daemon=True)
        self._ticker.start()

    def image(self, label: str) -> ImageView:
        """A new block for one image's build (and then push)."""
        view = ImageView(label=strip_controls(label))
        with self._lock:
            self._views.append(view)
        return view

    def line(self, text: str) -> None:
        """A log line, above the block."""
        with self._lock:
            self._erase()
            self.stream.write(text + "\n")
            self._draw()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=2)
        with self._lock:
            self._erase()
            self._views.clear()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            with self._lock:
                try:
                    self._erase()
                    self._draw()
                except (OSError, ValueError):  # the terminal went away: the log lines say the rest
                    return

    def _erase(self) -> None:
        if self._height:
            # to the start of the block's first line, then clear to the end of the screen
            self.stream.write(f"\x1b[{self._height}F\x1b[J")
            self._height = 0

    def _draw(self) -> None:
        self._views = [view for view in self._views if not view.closed]
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
        rows = max(shutil.get_terminal_size((100, 24)).lines - 2, 3)
        now = time.monotonic()
        lines = [text for view in self._views for text in view.render(now, width)][:rows]
        for text in lines:
            self.stream.write(text + "\n")
        self._height = len(lines)
        self.stream.flush()


def for_stream(stream: TextIO, quiet: bool = False) -> Optional[TerminalProgress]:
    """A live display on `stream` when it is a terminal that can move its cursor; else None
    (a pipe, a file, CI's log, TERM=dumb, --quiet): the plain log lines alone."""
    import os

    try:
        is_terminal = stream.isatty()
    except (AttributeError, ValueError):
        return None
    if quiet or not is_terminal or os.environ.get("TERM", "") in ("", "dumb"):
        return None
    return TerminalProgress(stream)

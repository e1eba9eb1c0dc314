"""Jsonnet pipeline templates (`*.pipeline.jsonnet`), rendered locally the way pachd renders them.

`pachctl create pipeline --jsonnet FILE --arg k=v` sends the template to pachd, which
evaluates it with go-jsonnet (`src/internal/pachtmpl/pachtmpl.go`): every `--arg` is a
top-level argument whose value is a *string*, and the template can only import http(s)
URLs, which pachd fetches; a file next to the template is out of its reach. pachhook
renders with `gojsonnet`, the Python bindings of the same engine, so a template is checked
at commit time and delivery applies the JSON it renders to.

- Top-level arguments: `tag`, `commit`, `short_commit`, `branch` and the configured
  `jsonnet_args`, all strings. Only the ones the template's top-level function declares are
  passed (go-jsonnet refuses an argument the function does not name, where pachd is given
  only what the user typed).
- Imports are refused with a message: a local one because pachd cannot resolve it, an
  http(s) one because a commit hook does not fetch from the network.
- Evaluation runs in a forked child with a deadline: a template that loops forever fails
  the check instead of hanging `git commit`, and the Go runtime is never loaded into the
  hook's own process (forking a process that runs Go threads is unsafe).
- Problems found in the rendered specs are placed on the template's lines by finding the
  fields' names in the source, which is right for fields written out literally and falls
  back to the closest enclosing field otherwise (the engine keeps no positions of its
  output).
"""

from __future__ import annotations

import bisect
import json
import os
import re
import select
import signal
import time

from pachhook.core.diagnostics import ERROR, Diagnostic
from pachhook.spec.loader import MAX_FILE_BYTES, LoadedFile, Position, _add_root, _Positions

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Dict, List, Mapping, Optional, Tuple

SUFFIX = ".jsonnet"
ENGINE_MODULE = "_gojsonnet"  # what `pip install gojsonnet` provides
DEFAULT_TIMEOUT = 20.0  # seconds; a real template renders in milliseconds
TIMEOUT_ENV = "PACHHOOK_JSONNET_TIMEOUT"
# go-jsonnet pretty-prints with three spaces of indent: allow for it over the file limit.
MAX_OUTPUT_BYTES = 4 * MAX_FILE_BYTES
RESERVED_ARGS = ("tag", "commit", "short_commit", "branch")

_MISSING_ENGINE = (
    "Jsonnet templates need the gojsonnet package (the go-jsonnet engine pachd uses):"
    " pip install 'pachhook[jsonnet]', or add `additional_dependencies: [gojsonnet]` to the"
    " pachhook hooks in .pre-commit-config.yaml"
)


def is_jsonnet(path: str) -> bool:
    """Whether a template path names a Jsonnet template (by its extension)."""
    return path.endswith(SUFFIX)


def engine_available() -> bool:
    """Whether gojsonnet is installed (found without importing it)."""
    import importlib.util  # here: with contextlib and warnings, ~3 ms the pre-commit hook skips for JSON

    return importlib.util.find_spec(ENGINE_MODULE) is not None


def arguments(values: Mapping[str, str], configured: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The top-level arguments: the configured ones, then the commit's values (which win)."""
    merged = {str(key): str(value) for key, value in (configured or {}).items()}
    merged.update({key: str(values[key]) for key in RESERVED_ARGS if key in values})
    return merged


class EvaluationError(Exception):
    """The Jsonnet itself failed: `line`/`column` place it in the template (1-based)."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def evaluate(name: str, text: str, args: Mapping[str, str], timeout: Optional[float] = None) -> Any:
    """The value the template renders to (parsed JSON); EvaluationError when it does not."""
    if not engine_available():
        raise EvaluationError(_MISSING_ENGINE)
    if timeout is None:
        timeout = _timeout_from_env()
    if hasattr(os, "fork"):
        outcome = _evaluate_in_child(name, text, dict(args), timeout)
    else:  # no fork (Windows): in process, without a deadline
        outcome = _evaluate_here(name, text, dict(args))
    if "error" in outcome:
        raise EvaluationError(outcome["error"], outcome.get("line", 1), outcome.get("column", 1))
    try:
        return json.loads(outcome["json"])
    except ValueError as error:  # the engine only writes JSON; this would be a bug of ours
        raise EvaluationError(f"rendered output is not JSON: {error}") from None


def load(name: str, data: bytes, args: Mapping[str, str], timeout: Optional[float] = None) -> LoadedFile:
    """A Jsonnet template's specs, rendered with `args`, as the loader gives a spec file's.

    Jsonnet errors become one diagnostic placed at the line and column the engine names.
    """
    result = LoadedFile()
    if len(data) > MAX_FILE_BYTES:
        result.diagnostics.append(
            Diagnostic(name, 1, 1, f"file is over the {MAX_FILE_BYTES // 1048576} MB limit; it was not read", ERROR)
        )
        return result
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        result.diagnostics.append(
            Diagnostic(name, line, 1, "file is not UTF-8 text; save it as UTF-8", ERROR, "", "encoding")
        )
        return result
    try:
        value = evaluate(name, text, args, timeout)
    except EvaluationError as error:
        result.diagnostics.append(Diagnostic(name, error.line, error.column, error.message, ERROR, "", "jsonnet"))
        return result
    positions = _Positions(lambda: source_positions(text, value), (1, 1))
    _add_root(name, value, positions, 0, result)
    for index, document in enumerate(result.documents, 1):
        document.index = index
    if not result.documents and not result.diagnostics:
        result.diagnostics.append(
            Diagnostic(name, 1, 1, "template renders to no pipeline spec", ERROR, "", "empty-file")
        )
    return result


def built_image(spec: Any, tag: str) -> Optional[str]:
    """The image repository pachhook builds for a rendered spec, or None.

    A Jsonnet template has no placeholders: the image is pachhook's to build when
    `transform.image` carries the `tag` argument as its tag (`'registry/edges:' + tag`).
    """
    if not isinstance(spec, dict) or not tag:
        return None
    transform = spec.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    if not isinstance(image, str):
        return None
    reference = image.split("@", 1)[0]
    if not reference.endswith(":" + tag):
        return None
    repository = reference[: -len(tag) - 1]
    return repository if repository and not repository.endswith("/") else None


# --------------------------------------------------------------------------- evaluation


def _timeout_from_env() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def _evaluate_here(name: str, text: str, args: Dict[str, str]) -> Dict[str, Any]:
    """Evaluate in this process: {"json": text} or {"error", "line", "column"}."""
    import _gojsonnet

    refused: List[str] = []

    def refuse_import(folder: str, path: str) -> Tuple[str, bytes]:
        refused.append(path)
        raise RuntimeError("import refused")

    # go-jsonnet refuses an argument the top-level function does not declare, so each one
    # it names as unknown is dropped and the evaluation tried again (at most once per argument).
    given = dict(args)
    for _ in range(len(args) + 1):
        try:
            rendered = _gojsonnet.evaluate_snippet(name, text, tla_vars=given, import_callback=refuse_import)
            return {"json": rendered}
        except RuntimeError as error:
            message = str(error)
            unknown = re.match(r"RUNTIME ERROR: function has no parameter (\S+)", message)
            if unknown and unknown.group(1) in given:
                del given[unknown.group(1)]
                continue
            return _describe_error(name, message, refused, given)
    return {"error": "cannot call the template's top-level function with pachhook's arguments"}


def _describe_error(name: str, message: str, refused: List[str], args: Dict[str, str]) -> Dict[str, Any]:
    line, column = _first_position(name, message)
    if refused:
        target = refused[0]
        if re.match(r"https?://", target):
            why = (
                f"import {target!r} is not fetched: pachd fetches http(s) imports when it renders, but"
                " pachhook does not reach the network at commit time; inline the imported code"
            )
        else:
            why = (
                f"local import {target!r} refused: pachd renders the template on the cluster and"
                " cannot read files next to it; inline the imported code"
            )
        return {"error": why, "line": line, "column": column}
    body = message.split("\n", 1)[0].strip()
    body = re.sub(r"^RUNTIME ERROR:\s*", "", body)
    body = re.sub(r"^" + re.escape(name) + r":\d+:\d+(?:-\d+(?::\d+)?)?\s*", "", body)
    missing = re.match(r"Missing argument: (\S+)", body)
    if missing:
        known = ", ".join(sorted(set(args) | set(RESERVED_ARGS)))
        body = (
            f"top-level argument {missing.group(1)!r} has no value: pachhook passes {known};"
            " give it a default or set it in `jsonnet_args` in the pachhook configuration"
        )
    body = " ".join(body.split())[:500]
    return {"error": f"Jsonnet: {body}", "line": line, "column": column}


def _first_position(name: str, message: str) -> Position:
    """The first `name:LINE:COL` the engine's message mentions, else (1, 1)."""
    found = re.search(re.escape(name) + r":(\d+):(\d+)", message)
    if found:
        return int(found.group(1)), int(found.group(2))
    return 1, 1


def _evaluate_in_child(name: str, text: str, args: Dict[str, str], timeout: float) -> Dict[str, Any]:
    """Evaluate in a forked child that writes its outcome as JSON to a pipe; kill it at the deadline."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: evaluate, write, leave without running the parent's cleanups
        status = 0
        try:
            os.close(reader)
            try:
                outcome = _evaluate_here(name, text, args)
            except BaseException as error:  # noqa: BLE001 - whatever happens is reported to the parent
                outcome = {"error": f"Jsonnet engine failed: {type(error).__name__}: {error}"}
            payload = json.dumps(outcome).encode("utf-8")
            view = memoryview(payload)
            while view:
                written = os.write(writer, view)
                view = view[written:]
        except BaseException:  # noqa: BLE001
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    chunks: List[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    problem = ""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = (
                    f"Jsonnet: the template did not finish rendering within {timeout:g}s"
                    f" (an endless loop?); {TIMEOUT_ENV} sets the limit"
                )
                break
            ready, _, _ = select.select([reader], [], [], left)
            if not ready:
                continue
            chunk = os.read(reader, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_OUTPUT_BYTES:
                problem = f"Jsonnet: the template renders to more than {MAX_OUTPUT_BYTES // 1048576} MB"
                break
    finally:
        os.close(reader)
        if problem:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    if problem:
        return {"error": problem}
    try:
        outcome = json.loads(b"".join(chunks))
    except ValueError:
        return {"error": "Jsonnet: the engine stopped without an answer (it may have run out of memory)"}
    return outcome if isinstance(outcome, dict) else {"error": "Jsonnet: unexpected answer from the engine"}


# --------------------------------------------------------------------------- positions


def source_positions(text: str, value: Any) -> Dict[Tuple[Any, ...], Position]:
    """Positions in the template's text for the paths of its rendered value, keyed (0, *path).

    For each spec, the search starts where its pipeline name is written (when written
    literally), so in a template listing several specs each one's fields are found in its
    own part; a key not found from there is looked for from the top of the file.
    """
    lines = _line_starts(text)
    positions: Dict[Tuple[Any, ...], Position] = {}
    roots: List[Tuple[Tuple[Any, ...], Any]] = []
    if isinstance(value, list):
        roots = [((0, index), item) for index, item in enumerate(value)]
    else:
        roots = [((0,), value)]
    budget = 20_000  # keeps the mapping bounded on a huge rendered value
    for prefix, spec in roots:
        anchor = _anchor(text, spec)
        positions[prefix] = _position(lines, anchor)
        stack: List[Tuple[Tuple[Any, ...], Any, int]] = [(prefix, spec, anchor)]
        while stack and budget > 0:
            path, node, start = stack.pop()
            if isinstance(node, dict):
                items: List[Tuple[Any, Any]] = list(node.items())
            elif isinstance(node, list):
                items = list(enumerate(node))
            else:
                continue
            for key, child in items:
                budget -= 1
                offset = start
                if isinstance(key, str):
                    found = _find_key(text, key, start)
                    if found < 0 and start > 0:
                        found = _find_key(text, key, 0)
                    if found >= 0:
                        offset = found
                        positions[path + (key,)] = _position(lines, found)
                if isinstance(child, (dict, list)):
                    stack.append((path + (key,), child, offset))
    return positions


def _anchor(text: str, spec: Any) -> int:
    pipeline = spec.get("pipeline") if isinstance(spec, dict) else None
    name = pipeline.get("name") if isinstance(pipeline, dict) else None
    if not isinstance(name, str) or not name:
        return 0
    found = re.search(r"""(["'])""" + re.escape(name) + r"\1", text)
    if not found:
        return 0
    # back to the opening brace of the object holding it, roughly: the line of `pipeline`
    before = text.rfind("pipeline", 0, found.start())
    return before if before >= 0 else found.start()


def _find_key(text: str, key: str, start: int) -> int:
    """Offset of `key` written as a Jsonnet field name (`key:`, `"key"::`, `key+:`) at or after start."""
    quoted = re.escape(key)
    pattern = r"""(?<![\w$'"])(?:""" + quoted + r"""|"%s"|'%s')\s*\+?:""" % (quoted, quoted)
    found = re.compile(pattern).search(text, start)
    return found.start() if found else -1


def _line_starts(text: str) -> List[int]:
    return [0] + [match.end() for match in re.finditer("\n", text)]


def _position(starts: List[int], offset: int) -> Position:
    row = bisect.bisect_right(starts, offset) - 1
    return row + 1, offset - starts[row] + 1

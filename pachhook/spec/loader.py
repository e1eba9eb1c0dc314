"""Read pipeline spec files the way pachctl 2.x does, keeping where every value came from.

pachctl 2.x reads every file with Go's yaml.v3 (YAML 1.2 core schema): several specs may
be separated by `---` lines or given as a top-level list; anchors, aliases, timestamps and
non-decimal integers are refused. This module gives the same verdicts without building
anything an attacker could inflate:

- a file whose first non-blank character is `{` or `[` is split on `---` lines and each
  part read with the C `json` module (fast; PyYAML is then never imported); a part that is
  not strict JSON (comments, trailing commas) is read as YAML instead;
- other files go through PyYAML's *event* stream, from which values are built here,
  iteratively, with YAML 1.2 scalar rules; an anchor or alias stops the document at once,
  so an alias bomb costs nothing;
- files above MAX_FILE_BYTES are refused before they are read, nesting above MAX_DEPTH
  is refused before anything recursive sees it, and a file holding more than MAX_SPECS
  specs is refused: bytes, depth and spec count bound time and memory, not how many
  values a file holds (a real file of 480 pipelines holds far more than 10,000).

Bad input becomes `Diagnostic`s, never an exception. Line and column numbers of JSON
values are worked out only when a diagnostic needs them.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re

from pachhook.core.diagnostics import ERROR, WARNING, Diagnostic, JsonPath, Problem, format_json_path
from pachhook.core.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from pathlib import Path
    from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

    Position = Tuple[int, int]  # 1-based line and column
    _Done = Tuple[Any, Dict[JsonPath, Position], List[Tuple[JsonPath, Position, Position]]]
else:
    Position = tuple  # at run time only a name to import: its shape is for type checkers
    _Done = tuple  # at run time only a name to import: its shape is for type checkers

# A spec is a few kB; a file of 480 pipelines is ~220 kB. These bounds are also the hook's
# time bound: JSON is read by the C parser (~1 s per MB of the tiniest values), YAML through
# PyYAML's events (~5-10 s per MB of `[1,1,1,...]`), hence its lower limit.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_YAML_BYTES = 512 * 1024
MAX_DEPTH = 100  # a real spec nests about 10 levels; validators below may recurse this deep
# Each spec costs ~0.2 ms to check whatever it holds: a file of 300,000 `{}` must not take a
# minute. Real files hold a few hundred at most.
MAX_SPECS = 10_000
# Problems of one kind reported per file before the rest are summed up in one line.
MAX_REPORTED = 100
# yaml.v3 gives up on a key (a "simple key") longer than this, in JSON flow as in YAML blocks.
MAX_KEY_CHARS = 1024


_JSON_START = re.compile(rb"\s*[\[{]")
_DOC_MARKER = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


class Document(Record):
    """One pipeline spec (a mapping) of a file.

    `index` is its 1-based position among the specs of the file; `locate(path)` gives
    the line and column of the value at a JSON path (of its key, for a mapping member),
    or of the closest enclosing value that exists.
    """

    __slots__ = ("value", "index", "_positions", "_prefix")
    _compared = ("value", "index")

    def __init__(self, value: Dict[str, Any], index: int, positions: "_Positions", prefix: JsonPath = ()) -> None:
        self.value = value
        self.index = index
        self._positions = positions
        self._prefix = prefix

    def locate(self, path: JsonPath) -> Position:
        return self._positions.find(self._prefix + tuple(path))

    def diagnostic(self, file: str, problem: Problem, numbered: bool) -> Diagnostic:
        """`problem`, found in this spec, placed at its line and column of `file`.

        `numbered`: the file holds several specs, so the diagnostic names this one's index.
        """
        line, column = self.locate(problem.path)
        return Diagnostic(
            file,
            line,
            column,
            problem.message,
            problem.severity,
            format_json_path(problem.path),
            problem.rule,
            self.index if numbered else 0,
        )


class LoadedFile(Record):
    __slots__ = ("documents", "diagnostics", "specs")
    _compared = ("documents", "diagnostics")

    def __init__(
        self, documents: Optional[List[Document]] = None, diagnostics: Optional[List[Diagnostic]] = None
    ) -> None:
        self.documents: List[Document] = documents if documents is not None else []
        self.diagnostics: List[Diagnostic] = diagnostics if diagnostics is not None else []
        self.specs = 0  # counted against MAX_SPECS


class _Positions:
    """Positions of the values of one parsed text, keyed by (root, *json_path).

    Built on first use by `build`, which returns the map; `find` falls back to the
    closest existing parent, then to `default`.
    """

    def __init__(self, build: Callable[[], Dict[JsonPath, Position]], default: Position) -> None:
        self._build: Optional[Callable[[], Dict[JsonPath, Position]]] = build
        self._map: Dict[JsonPath, Position] = {}
        self.default = default

    def find(self, path: JsonPath) -> Position:
        if self._build is not None:
            build, self._build = self._build, None
            self._map = build()
        while path:
            found = self._map.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.default


class _LineIndex:
    """Offset -> (line, column) for a text that starts at line `first_line` of the file."""

    def __init__(self, text: str, first_line: int = 1) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._first_line = first_line

    def position(self, offset: int) -> Position:
        row = bisect.bisect_right(self._starts, offset) - 1
        return (self._first_line + row, offset - self._starts[row] + 1)


class _Refused(Exception):
    """Input pachctl would refuse; carries a ready diagnostic's parts."""

    def __init__(self, position: Position, message: str, rule: str, path: JsonPath = ()) -> None:
        super().__init__(message)
        self.position = position
        self.message = message
        self.rule = rule
        self.path = path


# --------------------------------------------------------------------------- entry points


def load_path(path: Union[str, Path]) -> LoadedFile:
    """Load a spec file from disk; unreadable, huge or binary files become diagnostics."""
    name = str(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            return _file_problem(name, _too_large(size), "file-too-large")
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat
    except IsADirectoryError:
        return _file_problem(name, "is a directory, not a pipeline spec file", "unreadable")
    except OSError as error:
        return _file_problem(name, f"cannot read file: {error.strerror or error}", "unreadable")
    return load_bytes(name, data)


def load_bytes(name: str, data: bytes) -> LoadedFile:
    """Parse the bytes of one spec file into its pipeline specs and the problems found."""
    if len(data) > MAX_FILE_BYTES:
        return _file_problem(name, _too_large(len(data)), "file-too-large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        return _file_problem(
            name,
            f"file is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); save it as UTF-8",
            "encoding",
            (line, column),
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    result = LoadedFile()
    if _JSON_START.match(data):
        _load_json_file(name, text, result)
    else:
        _load_yaml_text(name, text, 1, result)
    for index, document in enumerate(result.documents, 1):
        document.index = index
    if not result.documents and not result.diagnostics:
        result.diagnostics.append(Diagnostic(name, 1, 1, "file holds no pipeline spec", ERROR, "", "empty-file"))
    return result


def _too_large(size: int) -> str:
    return (
        f"file is {size / 1048576:.1f} MB, over the {MAX_FILE_BYTES // 1048576} MB limit"
        " for a pipeline spec file; it was not read"
    )


def _file_problem(name: str, message: str, rule: str, position: Position = (1, 1)) -> LoadedFile:
    return LoadedFile([], [Diagnostic(name, position[0], position[1], message, ERROR, "", rule)])


# --------------------------------------------------------------------------- shared steps


def _add_root(
    name: str,
    value: Any,
    positions: _Positions,
    root: int,
    result: LoadedFile,
) -> None:
    """Turn one parsed document into specs: a mapping, or a list of mappings (pachctl 2.1+)."""
    if result.specs > MAX_SPECS:
        return  # the file was refused already
    if value is None:
        line, column = positions.find((root,))
        result.diagnostics.append(empty_document(name, (line, column)))
        return
    result.specs += len(value) if isinstance(value, list) else 1
    if result.specs > MAX_SPECS:
        line, column = positions.find((root,))
        result.diagnostics.append(Diagnostic(name, line, column, _too_many_message(), ERROR, "", "too-many-specs"))
        return
    if isinstance(value, list):
        for item, element in enumerate(value):
            _add_spec(name, element, positions, (root, item), result)
        return
    _add_spec(name, value, positions, (root,), result)


def empty_document(name: str, where: Position) -> Diagnostic:
    """An empty document (`---` with nothing or only comments after it, or a bare null)."""
    # pachctl 2.x's SpecReader wants a mapping or a list in every document it decodes, and
    # it has sent the specs before this one to pachd by the time it fails here.
    return Diagnostic(
        name,
        where[0],
        where[1],
        "empty document (a `---` followed by nothing but comments, or null): pachctl 2.x fails"
        " on it after applying the specs before it; delete the `---` line or write a spec",
        ERROR,
        "",
        "empty-document",
    )


def _add_spec(name: str, value: Any, positions: _Positions, prefix: JsonPath, result: LoadedFile) -> None:
    if not isinstance(value, dict):
        line, column = positions.find(prefix)
        kind = _kind(value)
        result.diagnostics.append(
            Diagnostic(
                name,
                line,
                column,
                f"a pipeline spec must be a mapping of fields (a JSON object), found {kind}",
                ERROR,
                "",
                "not-a-mapping",
            )
        )
        return
    depth_error = _too_deep(value)
    if depth_error is not None:
        line, column = positions.find(prefix + depth_error)
        result.diagnostics.append(Diagnostic(name, line, column, _depth_message(), ERROR, "", "too-deep"))
        return
    result.documents.append(Document(value, 0, positions, prefix))  # numbered at the end


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "null"


def _too_many_message() -> str:
    return (
        f"file holds more than {MAX_SPECS} pipeline specs, the most pachhook checks in one file"
        " (real ones hold a few hundred at most): split it; it was not checked further"
    )


def _depth_message() -> str:
    return f"values are nested more than {MAX_DEPTH} levels deep; a pipeline spec never is"


def _too_deep(value: Any) -> Optional[JsonPath]:
    """The path of a value nested deeper than MAX_DEPTH, or None (iterative on purpose)."""
    stack: List[Tuple[Any, JsonPath]] = [(value, ())]
    while stack:
        current, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            return path
        if isinstance(current, dict):
            stack.extend((child, path + (key,)) for key, child in current.items() if isinstance(child, (dict, list)))
        elif isinstance(current, list) and (dict in set(map(type, current)) or list in set(map(type, current))):
            stack.extend((child, path + (i,)) for i, child in enumerate(current) if isinstance(child, (dict, list)))
    return None


# --------------------------------------------------------------------------- JSON


class _PairsHook:
    """object_pairs_hook of the JSON decoder: notes duplicate and over-long keys on the way."""

    def __init__(self) -> None:
        self.duplicates = False
        self.long_key = False

    def __call__(self, pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            self.duplicates = True
        if not self.long_key:
            # 1022 characters plus the two quotes reach yaml.v3's simple-key limit
            self.long_key = any(len(key) > MAX_KEY_CHARS - 2 for key, _ in pairs)
        return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_int(text: str) -> Any:
    # Python refuses to convert more than 4300 digits; such a number fits no field anyway,
    # and as a float (inf) it is refused by the schema with the field named.
    return int(text) if len(text) < 4000 else float(text)


def _load_json_file(name: str, text: str, result: LoadedFile) -> None:
    """Split on `---` lines; read each part as JSON, or as YAML when it is not strict JSON."""
    for number, (part, line) in enumerate(_split_documents(text)):
        if result.specs > MAX_SPECS:
            break  # the generator stops too: a huge file is not split to the end
        stripped = part.lstrip()
        if stripped[:1] in ("{", "["):
            _load_json_part(name, part, line, result)
            continue
        before = (len(result.documents), len(result.diagnostics))
        if stripped:  # a YAML document after a `---` line
            _load_yaml_text(name, part, line, result)
        if number > 0 and (len(result.documents), len(result.diagnostics)) == before:
            # nothing but blanks or comments after a `---`: yaml.v3 reads an empty document
            result.diagnostics.append(empty_document(name, (line, 1)))


def _split_documents(text: str) -> Iterator[Tuple[str, int]]:
    """The parts of text between `---` lines, each with its first line number."""
    start = 0
    first_line = 1
    for marker in _DOC_MARKER.finditer(text):
        yield text[start : marker.start()], first_line
        first_line += text.count("\n", start, marker.end())
        start = marker.end()
    yield text[start:], first_line


# An escape yaml.v3 does not know (`\/`) or refuses (a UTF-16 surrogate, `\ud83d`), after an
# even number of backslashes. JSON has backslashes only inside strings, so the whole text
# can be searched.
_BAD_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*(\\/|\\u[dD][89a-fA-F][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?)")


def escape_problem(escape: str) -> str:
    """What to say about an escape of a double-quoted string that yaml.v3 refuses."""
    if escape == "\\/":
        return "pachctl's YAML reader (yaml.v3) does not know the escape \\/ : write / alone"
    if len(escape) == 12:
        high, low = int(escape[2:6], 16), int(escape[8:12], 16)
        character = chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        return (
            f"{escape} is a UTF-16 surrogate pair, which pachctl's YAML reader (yaml.v3) refuses;"
            f" write the character itself ({character}) in the UTF-8 file"
        )
    return f"{escape} is half of a UTF-16 surrogate pair, which pachctl's YAML reader (yaml.v3) refuses"


def _load_json_part(name: str, part: str, first_line: int, result: LoadedFile) -> None:
    lines = _LineIndex(part, first_line)
    positions = _Positions(lambda: _scan_json(part, lines).positions, lines.position(_skip_blank(part, 0)))
    values: List[Any] = []
    offset = _skip_blank(part, 0)
    hook = _PairsHook()
    decoder = json.JSONDecoder(object_pairs_hook=hook, parse_constant=_refuse_constant)
    try:
        while offset < len(part):
            try:
                value, end = decoder.raw_decode(part, offset)
            except ValueError as error:
                if "integer string conversion" not in str(error):
                    raise
                # only then the slower decoder that turns a 4300-digit number into inf
                hook = _PairsHook()
                decoder = json.JSONDecoder(
                    object_pairs_hook=hook, parse_constant=_refuse_constant, parse_int=_parse_int
                )
                value, end = decoder.raw_decode(part, offset)
            values.append(value)
            offset = _skip_blank(part, end)
            if offset < len(part) and not values_may_follow(part, offset):
                raise json.JSONDecodeError("Extra data", part, offset)
    except RecursionError:
        line, column = _deep_json_position(part, lines)
        result.diagnostics.append(Diagnostic(name, line, column, _depth_message(), ERROR, "", "too-deep"))
        return
    except ValueError as error:  # JSONDecodeError, or NaN/Infinity refused
        as_yaml = LoadedFile()
        # YAML flow is laxer than JSON (comments, trailing commas): if it reads the text,
        # pachctl does too, and YAML's verdict (a refused anchor, say) is the one to give.
        if _load_yaml_text(name, part, first_line, as_yaml) != _SYNTAX_ERROR:
            if isinstance(error, json.JSONDecodeError) and as_yaml.documents and not as_yaml.diagnostics:
                if name.endswith(".json"):
                    line, column = lines.position(error.pos)
                    result.diagnostics.append(_not_strict_json(name, line, column, error))
            result.documents += as_yaml.documents
            result.diagnostics += as_yaml.diagnostics
            result.specs += as_yaml.specs
            return
        if isinstance(error, json.JSONDecodeError):
            line, column = lines.position(error.pos)
            message = f"invalid JSON: {error.msg}"
        else:
            line, column = lines.position(offset)
            message = f"invalid JSON: {error}"
        result.diagnostics.append(Diagnostic(name, line, column, message, ERROR, "", "syntax"))
        return
    if "\\" in part:
        bad = _BAD_ESCAPE.search(part)
        if bad is not None:
            line, column = lines.position(bad.start(1))
            message = "invalid JSON for pachctl: " + escape_problem(bad.group(1))
            result.diagnostics.append(Diagnostic(name, line, column, message, ERROR, "", "escape"))
            return
    scan: Optional[_JsonScan] = None
    if len(values) > 1:
        # Only pachctl 1.x read a stream of JSON objects; 2.x stops after the first one.
        scan = _scan_json(part, lines)
        line, column = scan.second_root or positions.default
        result.diagnostics.append(
            Diagnostic(
                name,
                line,
                column,
                "a second JSON document starts here without a `---` line before it;"
                " pachctl 2.x would apply the first and then fail: put a line holding"
                " only `---` between the documents",
                ERROR,
                "",
                "concatenated-json",
            )
        )
    if hook.duplicates or hook.long_key:
        scan = scan or _scan_json(part, lines)
        for path, where in scan.long_keys[:MAX_REPORTED]:
            result.diagnostics.append(_long_key(name, path[1:], where))
        _add_duplicates(name, [(path[1:], where, first) for path, where, first in scan.duplicates], result)
        if scan.long_keys:
            return
    for root, value in enumerate(values):
        _add_root(name, value, positions, root, result)


def _not_strict_json(name: str, line: int, column: int, error: json.JSONDecodeError) -> Diagnostic:
    what = error.msg
    # pachctl reads every file as YAML, so a comment or a trailing comma is fine for it;
    # editors, jq and every JSON tool stop here.
    return Diagnostic(
        name,
        line,
        column,
        f"not strict JSON ({what}): pachctl reads it as YAML and takes it, but JSON tools will"
        " not; remove the comment, trailing comma or single quotes, or rename the file .yaml",
        WARNING,
        "",
        "not-strict-json",
    )


def _long_key(name: str, path: JsonPath, where: Position) -> Diagnostic:
    return Diagnostic(
        name,
        where[0],
        where[1],
        f"a key longer than {MAX_KEY_CHARS} characters, which pachctl's YAML reader (yaml.v3)"
        " refuses; no field of a spec is that long",
        ERROR,
        format_json_path(path),
        "long-key",
    )


def _add_duplicates(name: str, duplicates: List[Tuple[JsonPath, Position, Position]], result: LoadedFile) -> None:
    for path, where, first in duplicates[:MAX_REPORTED]:
        result.diagnostics.append(_duplicate(name, path, where, first))
    if len(duplicates) > MAX_REPORTED:
        line, column = duplicates[MAX_REPORTED][1]
        message = f"{len(duplicates) - MAX_REPORTED} more duplicate keys in this document are not listed"
        result.diagnostics.append(Diagnostic(name, line, column, message, ERROR, "", "duplicate-key"))


def values_may_follow(part: str, offset: int) -> bool:
    """After one JSON value, only another value (a 1.x-style stream) may follow."""
    return part[offset] in "{["


def _skip_blank(text: str, offset: int) -> int:
    while offset < len(text) and text[offset] in " \t\r\n":
        offset += 1
    return offset


def _duplicate(name: str, path: JsonPath, where: Position, first: Position) -> Diagnostic:
    key = path[-1]
    return Diagnostic(
        name,
        where[0],
        where[1],
        f"duplicate key {key!r} (first at {first[0]}:{first[1]}); pachctl 2.x keeps one of"
        " them silently: remove the other",
        ERROR,
        format_json_path(path),
        "duplicate-key",
    )


# Strings as `"[^"\\]*(?:\\.[^"\\]*)*"`: the simpler `"(?:[^"\\]|\\.)*"` keeps a backtracking
# entry per character, ~600 MB and seconds for one 5 MB string.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


class _JsonScan:
    __slots__ = ("positions", "second_root", "duplicates", "long_keys")

    def __init__(
        self,
        positions: Dict[JsonPath, Position],
        second_root: Optional[Position],
        duplicates: List[Tuple[JsonPath, Position, Position]],  # (path, position, first position)
        long_keys: List[Tuple[JsonPath, Position]],
    ) -> None:
        self.positions = positions
        self.second_root = second_root
        self.duplicates = duplicates
        self.long_keys = long_keys


_SCAN_BUDGET = 100_000  # tokens; later values of a huge file are placed at their parents


def _scan_json(part: str, lines: _LineIndex) -> _JsonScan:
    """Walk the tokens of a JSON text: positions of every value, the start of a second
    top-level value, duplicate keys, and keys too long for yaml.v3.

    Only run when a diagnostic needs a position, so it may be slower than `json`.
    """
    positions: Dict[JsonPath, Position] = {}
    duplicates: List[Tuple[JsonPath, Position, Position]] = []
    long_keys: List[Tuple[JsonPath, Position]] = []
    second_root: Optional[Position] = None
    # frame: [is_object, path, key or index, expecting_key, keys seen]
    stack: List[List[Any]] = []
    root = -1
    # Stopping early keeps a diagnostic on a huge file from costing seconds.
    budget = _SCAN_BUDGET
    for match in _JSON_TOKEN.finditer(part):
        budget -= 1
        if budget < 0:
            break
        token = match.group()
        char = token[0]
        if stack:
            frame = stack[-1]
            if frame[0]:
                if char == "}":
                    stack.pop()
                    continue
                if frame[3]:
                    if char == '"':
                        key = _json_string(token)
                        where = lines.position(match.start())
                        path = frame[1] + (key,)
                        if len(token) > MAX_KEY_CHARS:
                            long_keys.append((path, where))
                        if key in frame[4]:
                            duplicates.append((path, where, positions.get(path, where)))
                        else:
                            frame[4].add(key)
                            positions[path] = where
                        frame[2] = key
                        frame[3] = False
                    continue
                if char == ":":
                    continue
                if char == ",":
                    frame[3] = True
                    continue
                path = frame[1] + (frame[2],)
            else:
                if char == "]":
                    stack.pop()
                    continue
                if char == ",":
                    frame[2] += 1
                    continue
                path = frame[1] + (frame[2],)
                positions.setdefault(path, lines.position(match.start()))
        else:
            root += 1
            path = (root,)
            positions.setdefault(path, lines.position(match.start()))
            if root == 1:
                second_root = positions[path]
        if char == "{":
            stack.append([True, path, None, True, set()])
        elif char == "[":
            stack.append([False, path, 0, False, None])
    return _JsonScan(positions, second_root, duplicates, long_keys)


def _json_string(token: str) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        return token[1:-1]
    return value if isinstance(value, str) else token[1:-1]


def _deep_json_position(part: str, lines: _LineIndex) -> Position:
    depth = 0
    for match in re.finditer(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]', part):
        char = match.group()[0]
        if char in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                return lines.position(match.start())
        elif char in "}]":
            depth -= 1
    return lines.position(0)


# --------------------------------------------------------------------------- YAML

_INT_STRICT = re.compile(r"(0|-?[1-9][0-9]*)\Z")
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
# The layouts yaml.v3 tries on an unquoted scalar: a date; a date, `T` and a time with a
# zone; a date, a space and a time without one. Anything else stays a string.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?(Z|[-+][0-9]{2}:[0-9]{2})"
    r"| [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?)?\Z"
)
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"}
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + "str", _TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"}
_COLLECTION_TAGS = {_TAG + "map", _TAG + "seq"}


_NUMERIC_START = frozenset("+-.0123456789")
# What Go's json.Number accepts when pachctl marshals a YAML float (yamlToJSON keeps the text
# as written, with a "0" put before a leading "."); `1.` or `+1.5` fail there.
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")


def _resolve_plain(text: str, where: Position) -> Any:
    """A plain (unquoted, untagged) scalar as yaml.v3 reads it, then as pachctl accepts it."""
    if text[:1] not in _NUMERIC_START:
        if text in _NULLS:
            return None
        if text in _BOOLS:
            return _BOOLS[text]
        return text
    if text.isdigit() and text.isascii() and len(text) < 19 and (text[0] != "0" or len(text) == 1):
        return int(text)  # the common case, without the regular expressions below
    if text in _SPECIAL_FLOATS:
        raise _Refused(where, f"{text} has no JSON form; quote it if it is meant as text", "yaml-scalar")
    if _TIMESTAMP.match(text) and _is_real_time(text):
        # yaml.v3 tags only a date Go's time.Parse takes: `2024-02-30` stays a string
        raise _Refused(
            where, f'unquoted {text} is a YAML timestamp, which pachctl refuses; quote it: "{text}"', "yaml-scalar"
        )
    plain = text.replace("_", "")
    if _GO_INT.match(plain) and _fits_64_bits(plain):
        if _INT_STRICT.match(text):
            return int(text)
        raise _Refused(
            where,
            f"YAML reads {text} as an integer in a form pachctl refuses"
            " (octal, hex, binary, a sign or underscores): write a plain decimal"
            " number, or quote it if it is text",
            "yaml-scalar",
        )
    if _YAML_FLOAT.match(plain):
        number = float(plain)
        if math.isinf(number):
            return text  # out of range for a float: yaml.v3 keeps it a string
        if not _JSON_NUMBER.match("0" + text if text.startswith(".") else text):
            raise _Refused(
                where,
                f"YAML reads {text} as a number that pachctl cannot pass on as JSON; write {number!r},"
                " or quote it if it is text",
                "yaml-scalar",
            )
        return number
    return text


_TIME_PARTS = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[Tt ]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2}))?")


def _is_real_time(text: str) -> bool:
    """Whether Go's time.Parse takes this date (and time): month, day and clock in range."""
    import datetime  # only for the rare unquoted date

    match = _TIME_PARTS.match(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        datetime.date(year or 2000, month, day)  # Go's year 0 is a leap year, like 2000
    except ValueError:
        return False
    return hour < 24 and minute < 60 and second < 60


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _fits_64_bits(plain: str) -> bool:
    # yaml.v3 falls back to a float for integers beyond int64/uint64
    digits = plain.lstrip("+-")
    digits = digits[2:] if digits[1:2] in ("x", "X", "o", "O", "b", "B") else digits
    if len(digits.lstrip("0")) > 64:
        # too many digits for 64 bits in any base; int() would refuse past 4300 digits
        # (or, on an older Python, take quadratic time over a 5 MB number)
        return False
    try:
        number = int(plain, 0) if not re.match(r"[-+]?0[0-7]", plain) else int(plain, 8)
    except ValueError:
        return True
    return -(2**63) <= number < 2**64


def _resolve_tagged(tag: str, text: str, plain: bool, where: Position) -> Any:
    if tag == "!" or tag == _TAG + "str":
        return text
    if tag not in _SCALAR_TAGS:
        raise _Refused(where, f"YAML tag {_short_tag(tag)} is not supported by pachctl; remove it", "yaml-tag")
    value = _resolve_plain(text, where) if text else None
    expected: Any = {
        _TAG + "int": int,
        _TAG + "float": (int, float),
        _TAG + "bool": bool,
        _TAG + "null": type(None),
    }[tag]
    if isinstance(value, bool) and expected is not bool:
        value = text
    if not isinstance(value, expected):
        raise _Refused(where, f"{text!r} is not a valid {_short_tag(tag)}", "yaml-tag")
    return float(value) if tag == _TAG + "float" else value


_READ, _REFUSED, _SYNTAX_ERROR = "read", "refused", "syntax error"


def _load_yaml_text(name: str, text: str, first_line: int, result: LoadedFile) -> str:
    """Read YAML documents into `result`; says whether they were read, refused, or unparsable."""
    if len(text) > MAX_YAML_BYTES:
        # a character may be several bytes: the text is over the limit in bytes too
        message = (
            f"{len(text) / 1024:.0f} kB of YAML, over the {MAX_YAML_BYTES // 1024} kB limit for YAML in a spec"
            f" file (JSON may take up to {MAX_FILE_BYTES // 1048576} MB): split the file; it was not read"
        )
        result.diagnostics.append(Diagnostic(name, first_line, 1, message, ERROR, "", "file-too-large"))
        return _REFUSED
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    builder = _YamlBuilder(text, first_line)
    try:
        for event in yaml.parse(text, Loader=loader):
            done = builder.feed(event)
            if done is not None:
                value, positions, duplicates = done
                _add_duplicates(name, duplicates, result)
                found = _Positions(_fixed(positions), positions.get((0,), (first_line, 1)))
                _add_root(name, value, found, 0, result)
    except _Refused as refused:
        line, column = refused.position
        path = format_json_path(builder.current_path())
        message = refused.message + _placeholder_hint(text, line - first_line)
        result.diagnostics.append(Diagnostic(name, line, column, message, ERROR, path, refused.rule))
        return _REFUSED
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = (mark.line if mark else 0) + first_line
        column = (mark.column if mark else 0) + 1
        if mark is not None and mark.index >= len(text):
            # libyaml puts an error at the end of the stream on a line after the last one
            # when the text does not end with a line break: point at the real end instead
            line, column = _LineIndex(text, first_line).position(len(text))
        what = error.problem or "syntax error"
        if error.context:
            what = f"{what} ({error.context})"
        what = " ".join(what.split()) + _placeholder_hint(text, line - first_line)
        result.diagnostics.append(Diagnostic(name, line, column, f"invalid YAML: {what}", ERROR, "", "syntax"))
        return _SYNTAX_ERROR
    except yaml.reader.ReaderError as error:
        line, column = _LineIndex(text, first_line).position(max(error.position, 0))
        code = error.character if isinstance(error.character, int) else ord(error.character)
        message = f"invalid YAML: character U+{code:04X} is not allowed in YAML text"
        result.diagnostics.append(Diagnostic(name, line, column, message, ERROR, "", "syntax"))
        return _SYNTAX_ERROR
    except yaml.YAMLError as error:
        message = "invalid YAML: " + " ".join(str(error).split())
        result.diagnostics.append(Diagnostic(name, first_line, 1, message, ERROR, "", "syntax"))
        return _SYNTAX_ERROR
    return _READ


def _fixed(positions: Dict[JsonPath, Position]) -> Callable[[], Dict[JsonPath, Position]]:
    return lambda: positions


def _placeholder_hint(text: str, row: int) -> str:
    """Advice when the offending line holds `{{`: unquoted, YAML reads it as a mapping."""
    lines = text.split("\n", row + 1)
    if 0 <= row < len(lines) and "{{" in lines[row]:
        return (
            '; placeholders only go in string values: quote it, e.g. "{{ tag }}" (unquoted, `{{` starts a YAML mapping)'
        )
    return ""


class _YamlBuilder:
    """Builds plain values from PyYAML events, iteratively, recording positions."""

    def __init__(self, text: str, first_line: int) -> None:
        self.text = text
        self.backslashes = "\\" in text  # escapes are looked at only when there may be some
        self.first_line = first_line
        self.documents = 0  # of the whole text, against MAX_SPECS
        self._reset()

    def _reset(self) -> None:
        self.stack: List[List[Any]] = []  # [container, path, pending key, key position, is_map]
        self.positions: Dict[JsonPath, Position] = {}
        self.duplicates: List[Tuple[JsonPath, Position, Position]] = []
        self.root: Any = None
        self.start: Optional[Position] = None  # of an explicit document's `---`

    def _expecting_key(self) -> bool:
        return bool(self.stack) and self.stack[-1][4] and self.stack[-1][3] is None

    def current_path(self) -> JsonPath:
        """The path of the value being read (for a refusal's diagnostic)."""
        if not self.stack:
            return ()
        container, path, key, key_where, is_map = self.stack[-1]
        if is_map:
            return tuple(path[1:]) + ((key,) if key_where is not None else ())
        return tuple(path[1:]) + (len(container),)

    def _alias_refused(self, event: Any) -> _Refused:
        return _Refused(
            self._where(event),
            "YAML anchors and aliases (&name, *name, <<) are refused by pachctl; write the values out",
            "yaml-alias",
        )

    def _where(self, event: Any) -> Position:
        mark = event.start_mark
        return (mark.line + self.first_line, mark.column + 1)

    def feed(self, event: Any) -> Optional[_Done]:
        kind = type(event).__name__
        if kind == "ScalarEvent":
            self._scalar(event)
            return None
        if kind == "MappingEndEvent" or kind == "SequenceEndEvent":
            self.stack.pop()
            return None
        if kind == "DocumentStartEvent":
            self.documents += 1
            if self.documents > MAX_SPECS:
                # parsing a million empty documents costs PyYAML ~20 s
                raise _Refused(self._where(event), _too_many_message(), "too-many-specs")
            version = getattr(event, "version", None)
            if version is not None and tuple(version) != (1, 1):
                # yaml.v3 takes `%YAML 1.1` only ("found incompatible YAML document")
                raise _Refused(
                    self._where(event),
                    f"pachctl's YAML reader (yaml.v3) refuses `%YAML {version[0]}.{version[1]}`; delete the %YAML line",
                    "yaml-directive",
                )
            self._reset()
            if getattr(event, "explicit", False):
                self.start = self._where(event)
            return None
        if kind == "DocumentEndEvent":
            if self.root is None and self.start is not None:
                self.positions[(0,)] = self.start  # an empty document is shown at its `---`
            return self.root, self.positions, self.duplicates
        if kind in ("StreamStartEvent", "StreamEndEvent"):
            return None
        if kind == "AliasEvent" or getattr(event, "anchor", None):
            raise self._alias_refused(event)
        # MappingStartEvent / SequenceStartEvent
        where = self._where(event)
        tag = event.tag
        if tag not in (None, "!") and tag not in _COLLECTION_TAGS:
            raise _Refused(where, f"YAML tag {_short_tag(tag)} is not supported by pachctl; remove it", "yaml-tag")
        if len(self.stack) >= MAX_DEPTH:
            raise _Refused(where, _depth_message(), "too-deep")
        is_map = kind == "MappingStartEvent"
        container: Any = {} if is_map else []
        path = self._place(container, where, event, container)
        self.stack.append([container, path, None, None, is_map])
        return None

    def _scalar(self, event: Any) -> None:
        if getattr(event, "anchor", None):
            raise self._alias_refused(event)
        where = self._where(event)
        tag = event.tag
        style = event.style
        if style == '"' and self.backslashes and "\\" in self._source(event):
            bad = _BAD_ESCAPE.search(self._source(event))
            if bad is not None:
                raise _Refused(where, escape_problem(bad.group(1)), "escape")
        if self._expecting_key() and tag in (None, "!"):
            value: Any = event.value  # JSON keys are strings: `on:` or `1:` as written
        elif tag is None and not style and event.implicit[0]:
            value = _resolve_plain(event.value, where)
        elif tag is None or tag == "!":
            value = event.value
        else:
            value = _resolve_tagged(tag, event.value, not style, where)
        self._place(value, where, event, None)

    def _source(self, event: Any) -> str:
        return self.text[event.start_mark.index : event.end_mark.index]

    def _place(self, value: Any, where: Position, event: Any, collection: Any) -> JsonPath:
        """Attach a new value to its parent; returns its path."""
        if not self.stack:
            self.root = value
            self.positions[(0,)] = where
            return (0,)
        frame = self.stack[-1]
        container, path, key, key_where, is_map = frame
        if is_map:
            if key is None and frame[3] is None:
                if collection is not None:
                    raise _Refused(where, "a mapping key must be a plain string, not a list or mapping", "yaml-key")
                frame[2] = _key_text(event.value, value)
                frame[3] = where
                return tuple(path)
            member = path + (key,)
            if key in container:
                # the later value wins, as in pachctl 2.8+; the duplicate is still an error
                self.duplicates.append((member[1:], frame[3], self.positions[member]))
            else:
                self.positions[member] = frame[3]
            container[key] = value
            frame[2] = None
            frame[3] = None
            return tuple(member)
        member = path + (len(container),)
        container.append(value)
        self.positions[member] = where
        return tuple(member)


def _key_text(raw: str, value: Any) -> str:
    # JSON keys are strings; a YAML key like `1` or `true` keeps its written form.
    return value if isinstance(value, str) else raw

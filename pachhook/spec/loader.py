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
  is refused before anything recursive sees it.

Bad input becomes `Diagnostic`s, never an exception. Line and column numbers of JSON
values are worked out only when a diagnostic needs them.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from pachhook.core.diagnostics import ERROR, Diagnostic, JsonPath, format_json_path

MAX_FILE_BYTES = 5 * 1024 * 1024  # a real spec is a few kB; this keeps memory and time bounded
MAX_DEPTH = 100  # a real spec nests about 10 levels; validators below may recurse this deep
# Real spec files hold under 100 values (87 at most in the upstream corpus); checking costs
# up to ~1 ms per value, so a 5 MB file of a million tiny values must be refused unread.
MAX_VALUES = 10_000

Position = Tuple[int, int]  # 1-based line and column

_JSON_START = re.compile(rb"\s*[\[{]")
_DOC_MARKER = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


@dataclass
class Document:
    """One pipeline spec (a mapping) of a file.

    `index` is its 1-based position among the specs of the file; `locate(path)` gives
    the line and column of the value at a JSON path (of its key, for a mapping member),
    or of the closest enclosing value that exists.
    """

    value: Dict[str, Any]
    index: int
    _positions: "_Positions" = field(repr=False, compare=False)
    _prefix: JsonPath = field(default=(), repr=False, compare=False)

    def locate(self, path: JsonPath) -> Position:
        return self._positions.find(self._prefix + tuple(path))


@dataclass
class LoadedFile:
    documents: List[Document] = field(default_factory=list)
    diagnostics: List[Diagnostic] = field(default_factory=list)
    values: int = field(default=0, repr=False, compare=False)  # counted against MAX_VALUES


class _Positions:
    """Positions of the values of one parsed text, keyed by (root, *json_path).

    Built on first use by `build`, which returns the map; `find` falls back to the
    closest existing parent, then to `default`.
    """

    def __init__(self, build: Callable[[], Dict[tuple, Position]], default: Position) -> None:
        self._build: Optional[Callable[[], Dict[tuple, Position]]] = build
        self._map: Dict[tuple, Position] = {}
        self.default = default

    def find(self, path: tuple) -> Position:
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
    if value is None:
        return  # an empty document, as between two `---` lines: pachctl skips it
    if result.values > MAX_VALUES:
        return  # the file was refused already
    result.values += _count_values(value, MAX_VALUES + 1 - result.values)
    if result.values > MAX_VALUES:
        line, column = positions.find((root,))
        result.diagnostics.append(Diagnostic(name, line, column, _too_many_message(), ERROR, "", "too-many-values"))
        return
    if isinstance(value, list):
        for item, element in enumerate(value):
            _add_spec(name, element, positions, (root, item), result)
        return
    _add_spec(name, value, positions, (root,), result)


def _add_spec(name: str, value: Any, positions: _Positions, prefix: tuple, result: LoadedFile) -> None:
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
        f"file holds more than {MAX_VALUES} values; a pipeline spec file never does"
        " (real ones hold a few hundred at most): it was not checked further"
    )


def _count_values(value: Any, limit: int) -> int:
    """How many values `value` holds, itself included; counting stops at `limit`."""
    count = 0
    stack = [value]
    while stack and count < limit:
        current = stack.pop()
        count += 1
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return count


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
        elif isinstance(current, list):
            stack.extend((child, path + (i,)) for i, child in enumerate(current) if isinstance(child, (dict, list)))
    return None


# --------------------------------------------------------------------------- JSON


def _pairs_hook(pairs: list) -> dict:
    _pairs_hook.pairs += len(pairs)  # type: ignore[attr-defined]
    result = dict(pairs)
    if len(result) != len(pairs):
        _pairs_hook.duplicates = True  # type: ignore[attr-defined]
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_refuse_constant)


def _load_json_file(name: str, text: str, result: LoadedFile) -> None:
    """Split on `---` lines; read each part as JSON, or as YAML when it is not strict JSON."""
    for part, line in _split_documents(text):
        if result.values > MAX_VALUES:
            break  # the generator stops too: a huge file is not split to the end
        stripped = part.lstrip()
        if not stripped:
            continue
        if stripped[0] in "{[":
            _load_json_part(name, part, line, result)
        else:  # a YAML document after a `---` line
            _load_yaml_text(name, part, line, result)


def _split_documents(text: str) -> Iterator[Tuple[str, int]]:
    """The parts of text between `---` lines, each with its first line number."""
    start = 0
    first_line = 1
    for marker in _DOC_MARKER.finditer(text):
        yield text[start : marker.start()], first_line
        first_line += text.count("\n", start, marker.end())
        start = marker.end()
    yield text[start:], first_line


def _load_json_part(name: str, part: str, first_line: int, result: LoadedFile) -> None:
    lines = _LineIndex(part, first_line)
    positions = _Positions(lambda: _scan_json(part, lines)[0], lines.position(_skip_blank(part, 0)))
    values: List[Any] = []
    offset = _skip_blank(part, 0)
    if part.count("{") > MAX_VALUES:
        # So many objects that the file is likely refused: count with the C parser alone
        # before paying the Python duplicate-key hook once per object.
        try:
            quick = json.loads(part)
        except (ValueError, RecursionError):
            quick = None  # the full parse below says what is wrong
        if quick is not None and _count_values(quick, MAX_VALUES + 1) > MAX_VALUES:
            _add_root(name, quick, positions, 0, result)  # reports too-many-values
            return
    _pairs_hook.duplicates = False  # type: ignore[attr-defined]
    _pairs_hook.pairs = 0  # type: ignore[attr-defined]
    try:
        while offset < len(part):
            value, end = _DECODER.raw_decode(part, offset)
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
            result.documents += as_yaml.documents
            result.diagnostics += as_yaml.diagnostics
            return
        if isinstance(error, json.JSONDecodeError):
            line, column = lines.position(error.pos)
            message = f"invalid JSON: {error.msg}"
        else:
            line, column = lines.position(offset)
            message = f"invalid JSON: {error}"
        result.diagnostics.append(Diagnostic(name, line, column, message, ERROR, "", "syntax"))
        return
    if _pairs_hook.pairs > MAX_VALUES:  # type: ignore[attr-defined]
        # duplicate keys collapse in the dict: count them here, before reporting each one
        result.values = MAX_VALUES + 1
        line, column = positions.default
        result.diagnostics.append(Diagnostic(name, line, column, _too_many_message(), ERROR, "", "too-many-values"))
        return
    if _SURROGATE_ESCAPE.search(part) and _has_lone_surrogate(values):
        # `"\ud800"` decodes to a string no encoder can write out; pachctl refuses it too
        as_yaml = LoadedFile()
        _load_yaml_text(name, part, first_line, as_yaml)
        result.documents += as_yaml.documents
        result.diagnostics += as_yaml.diagnostics or [
            Diagnostic(
                name,
                positions.default[0],
                positions.default[1],
                "invalid JSON: a \\u escape names half of a UTF-16 surrogate pair",
                ERROR,
                "",
                "syntax",
            )
        ]
        return
    if len(values) > 1:
        # Only pachctl 1.x read a stream of JSON objects; 2.x stops after the first one.
        second = _scan_json(part, lines)[1]
        line, column = second if second else positions.default
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
    if _pairs_hook.duplicates:  # type: ignore[attr-defined]
        for path, where, first in _scan_json(part, lines)[2]:
            result.diagnostics.append(_duplicate(name, path[1:], where, first))
    for root, value in enumerate(values):
        _add_root(name, value, positions, root, result)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(values: List[Any]) -> bool:
    """Whether a decoded string or key holds half a surrogate pair (iterative)."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def values_may_follow(part: str, offset: int) -> bool:
    """After one JSON value, only another value (a 1.x-style stream) may follow."""
    return part[offset] in "{["


def _skip_blank(text: str, offset: int) -> int:
    while offset < len(text) and text[offset] in " \t\r\n":
        offset += 1
    return offset


def _duplicate(name: str, path: tuple, where: Position, first: Position) -> Diagnostic:
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


def _scan_json(part: str, lines: _LineIndex):
    """Walk the tokens of a JSON text: positions of every value, the start of a second
    top-level value, and duplicate keys (path, position, first position).

    Only run when a diagnostic needs a position, so it may be slower than `json`.
    """
    positions: Dict[tuple, Position] = {}
    duplicates: List[Tuple[tuple, Position, Position]] = []
    second_root: Optional[Position] = None
    # frame: [is_object, path, key or index, expecting_key, keys seen]
    stack: List[list] = []
    root = -1
    # A file with more values than MAX_VALUES is refused anyway; stopping there keeps a
    # diagnostic on a huge file from costing seconds (later values fall back to parents).
    budget = 4 * MAX_VALUES + 16
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
    return positions, second_root, duplicates


def _json_string(token: str) -> str:
    try:
        return json.loads(token)
    except ValueError:
        return token[1:-1]


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


def _resolve_plain(text: str, where: Position) -> Any:
    """A plain (unquoted, untagged) scalar as yaml.v3 reads it, then as pachctl accepts it."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _SPECIAL_FLOATS:
        raise _Refused(where, f"{text} has no JSON form; quote it if it is meant as text", "yaml-scalar")
    if text[0] not in "+-.0123456789":
        return text
    if _TIMESTAMP.match(text):
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
            return text  # out of range for a float: leave it for the schema to reject
        return number
    return text


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
    expected = {_TAG + "int": int, _TAG + "float": (int, float), _TAG + "bool": bool, _TAG + "null": type(None)}[tag]
    if isinstance(value, bool) and expected is not bool:
        value = text
    if not isinstance(value, expected):
        raise _Refused(where, f"{text!r} is not a valid {_short_tag(tag)}", "yaml-tag")
    return float(value) if tag == _TAG + "float" else value


_READ, _REFUSED, _SYNTAX_ERROR = "read", "refused", "syntax error"


def _load_yaml_text(name: str, text: str, first_line: int, result: LoadedFile) -> str:
    """Read YAML documents into `result`; says whether they were read, refused, or unparsable."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    builder = _YamlBuilder(first_line)
    try:
        for event in yaml.parse(text, Loader=loader):
            done = builder.feed(event)
            if done is not None:
                value, positions, duplicates = done
                for path, where, first in duplicates:
                    result.diagnostics.append(_duplicate(name, path, where, first))
                found = _Positions(lambda p=positions: p, positions.get((0,), (first_line, 1)))
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

    def __init__(self, first_line: int) -> None:
        self.first_line = first_line
        self._reset()

    def _reset(self) -> None:
        self.stack: List[list] = []  # [container, path, pending key, key position, is_map]
        self.events = getattr(self, "events", 0)  # of the whole text, against MAX_VALUES
        self.positions: Dict[tuple, Position] = {}
        self.duplicates: List[Tuple[tuple, Position, Position]] = []
        self.root: Any = None

    def _expecting_key(self) -> bool:
        return bool(self.stack) and self.stack[-1][4] and self.stack[-1][3] is None

    def current_path(self) -> JsonPath:
        """The path of the value being read (for a refusal's diagnostic)."""
        if not self.stack:
            return ()
        container, path, key, key_where, is_map = self.stack[-1]
        if is_map:
            return path[1:] + ((key,) if key_where is not None else ())
        return path[1:] + (len(container),)

    def _where(self, event: Any) -> Position:
        mark = event.start_mark
        return (mark.line + self.first_line, mark.column + 1)

    def feed(self, event: Any):
        kind = type(event).__name__
        if kind in ("DocumentStartEvent", "ScalarEvent", "MappingStartEvent", "SequenceStartEvent", "AliasEvent"):
            self.events += 1
            if self.events > MAX_VALUES:
                # parsing a million empty documents or tiny values costs PyYAML ~20 s
                raise _Refused(self._where(event), _too_many_message(), "too-many-values")
        if kind == "DocumentStartEvent":
            self._reset()
            return None
        if kind == "DocumentEndEvent":
            return self.root, self.positions, self.duplicates
        if kind in ("StreamStartEvent", "StreamEndEvent"):
            return None
        if kind == "AliasEvent" or getattr(event, "anchor", None):
            raise _Refused(
                self._where(event),
                "YAML anchors and aliases (&name, *name, <<) are refused by pachctl; write the values out",
                "yaml-alias",
            )
        if kind in ("MappingEndEvent", "SequenceEndEvent"):
            self.stack.pop()
            return None
        where = self._where(event)
        if kind == "ScalarEvent":
            tag = event.tag
            if self._expecting_key() and tag in (None, "!"):
                value = event.value  # JSON keys are strings: `on:` or `1:` as written
            elif tag is None and event.style in ("", None) and event.implicit[0]:
                value = _resolve_plain(event.value, where)
            elif tag is None or tag == "!":
                value = event.value
            else:
                value = _resolve_tagged(tag, event.value, event.style in ("", None), where)
            self._place(value, where, event, None)
            return None
        # MappingStartEvent / SequenceStartEvent
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

    def _place(self, value: Any, where: Position, event: Any, collection: Any) -> tuple:
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
                return path
            member = path + (key,)
            if key in container:
                # the later value wins, as in pachctl 2.8+; the duplicate is still an error
                self.duplicates.append((member[1:], frame[3], self.positions[member]))
            else:
                self.positions[member] = frame[3]
            container[key] = value
            frame[2] = None
            frame[3] = None
            return member
        member = path + (len(container),)
        container.append(value)
        self.positions[member] = where
        return member


def _key_text(raw: str, value: Any) -> str:
    # JSON keys are strings; a YAML key like `1` or `true` keeps its written form.
    return value if isinstance(value, str) else raw

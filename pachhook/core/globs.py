"""Repository globs, the one translator every part of pachhook uses to find templates.

A glob names paths relative to the repository root, `/` between folders:

- `**/` is any number of folders (none too), `**` elsewhere anything, slashes included;
- `*` is any run of characters within one name, `?` one character within a name;
- `[abc]`, `[a-z]` one of the characters, `[!abc]` (or `[^abc]`) one that is not; a class
  never matches `/`; `]` cannot be a member (it ends the class);
- everything else stands for itself.

A path matches a glob as a whole or not at all: `pipeline.json.bak` does not match
`**/pipeline.json`. The configuration checks its globs with `glob_problem` when it is read,
so a glob that cannot be translated is reported there, once, with its file and line.

One reading of a glob (`_parts`) serves two ends: `GlobSet` matches paths with it directly,
and `glob_regex` writes it as a regular expression for the pre-commit framework's `files`
(tests hold the two to the same answers). The matcher imports nothing: `re` (with `enum`)
costs the post-commit hook about 8 ms, an eighth of its budget.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Iterable, List, Optional, Sequence, Tuple

    # (kind, text, ranges): ("text", "abc", ()), ("star" | "one" | "folders" | "anything", "", ()),
    # ("class" | "not-class", "", ((low, high), ...))
    Part = Tuple[str, str, Tuple[Tuple[str, str], ...]]


class GlobError(ValueError):
    """A glob that cannot be translated; the message says why in a few words."""


def _parts(glob: str) -> List[Part]:
    """The glob read into parts (see Part); raises GlobError."""
    parts: List[Part] = []
    index = 0
    glob = glob.lstrip("/")
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**/", index):
            parts.append(("folders", "", ()))
            index += 3
        elif glob.startswith("**", index):
            parts.append(("anything", "", ()))
            index += 2
        elif char == "*":
            parts.append(("star", "", ()))
            index += 1
        elif char == "?":
            parts.append(("one", "", ()))
            index += 1
        elif char == "[":
            end = glob.find("]", index + 1)
            if end == -1:
                raise GlobError(f"'[' at position {index + 1} is never closed by ']'")
            parts.append(_class(glob[index + 1 : end], index))
            index = end + 1
        elif char == "]":
            raise GlobError(f"']' at position {index + 1} closes no '['")
        elif parts and parts[-1][0] == "text":
            parts[-1] = ("text", parts[-1][1] + char, ())
            index += 1
        else:
            parts.append(("text", char, ()))
            index += 1
    return parts


def _class(body: str, index: int) -> Part:
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    if not body:
        raise GlobError(f"the character class at position {index + 1} is empty")
    members: List[Tuple[str, str]] = []
    at = 0
    while at < len(body):
        if at + 2 < len(body) and body[at + 1] == "-":
            low, high = body[at], body[at + 2]
            if low > high:
                raise GlobError(f"the range {low}-{high} at position {index + 2 + at} runs backwards")
            members.append((low, high))
            at += 3
        else:
            members.append((body[at], body[at]))
            at += 1
    return ("not-class" if negate else "class", "", tuple(members))


def glob_regex(glob: str) -> str:
    """The regular expression (without anchors) of one repository glob; raises GlobError."""
    import re

    out: List[str] = []
    for part in _parts(glob):
        kind = part[0]
        if kind == "folders":
            out.append("(?:[^/]+/)*")
        elif kind == "anything":
            out.append(".*")
        elif kind == "star":
            out.append("[^/]*")
        elif kind == "one":
            out.append("[^/]")
        elif kind == "text":
            out.append(re.escape(part[1]))
        else:
            body = "".join(
                re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}" for low, high in part[2]
            )
            # A class never matches the folder separator, negated or not.
            out.append(f"[^/{body}]" if kind == "not-class" else f"(?!/)[{body}]")
    return "".join(out)


def glob_problem(glob: str) -> Optional[str]:
    """Why `glob` cannot be used, in a few words; None for a good glob."""
    try:
        _parts(glob)
    except GlobError as error:
        return str(error)
    return None


def literal_ending(glob: str) -> str:
    """The text every path `glob` matches ends with: what follows its last wildcard.

    `**/pipeline.json` gives "pipeline.json", `**/*.pipeline.yaml` ".pipeline.yaml", and a
    glob ending in a wildcard or a character class "" (any path may match it).
    """
    glob = glob.lstrip("/")  # as _parts reads it
    at = len(glob)
    while at > 0 and glob[at - 1] not in "*?[]":
        at -= 1
    if glob.startswith("/", at) and glob.endswith("**", 0, at):
        at += 1  # `**/` may stand for no folder at all: `pipeline.json` matches `**/pipeline.json`
    return glob[at:]


def _matches(parts: Sequence[Part], path: str) -> bool:
    """Whether `parts` match all of `path`.

    A search over (part, position) pairs: a wildcard tries its longest reach first and
    backs off, and a pair that failed once is not tried again, so no glob costs more than
    parts x positions steps. A name may hold a newline: only `/` is special.
    """
    failed: set[Tuple[int, int]] = set()
    end = len(path)

    def match_from(at: int, position: int) -> bool:
        while at < len(parts):
            part = parts[at]
            kind = part[0]
            if kind == "text":
                text = part[1]
                if not path.startswith(text, position):
                    return False
                position += len(text)
            elif kind in ("one", "class", "not-class"):
                if position == end or path[position] == "/" or (kind != "one" and not _in_class(part, path[position])):
                    return False
                position += 1
            else:
                for reach in reversed(_reaches(kind, path, position)):
                    if (at + 1, reach) not in failed:
                        if match_from(at + 1, reach):
                            return True
                        failed.add((at + 1, reach))
                return False
            at += 1
        return position == end

    return match_from(0, 0)


def _in_class(part: Part, char: str) -> bool:
    inside = any(low <= char <= high for low, high in part[2])
    return inside != (part[0] == "not-class")


def _reaches(kind: str, path: str, position: int) -> List[int]:
    """Where a wildcard starting at `position` may end, nearest first."""
    if kind == "anything":  # `**`: anything, slashes included
        return list(range(position, len(path) + 1))
    if kind == "star":  # `*`: within the current name
        slash = path.find("/", position)
        return list(range(position, (len(path) if slash == -1 else slash) + 1))
    reaches = [position]  # `**/`: whole folder names, each with its slash, or none
    while True:
        slash = path.find("/", reaches[-1])
        if slash <= reaches[-1]:  # no further slash, or an empty name: no folder here
            return reaches
        reaches.append(slash + 1)


class GlobSet:
    """A list of globs read once: `matches(path)` is whether any of them matches all of path."""

    __slots__ = ("globs", "endings", "_parts")

    def __init__(self, globs: Iterable[str]) -> None:
        self.globs = tuple(globs)
        # Names are sorted out by their endings first, a string comparison: at 100k paths
        # the matcher then runs on the few that could match, not on every path.
        self.endings = tuple(sorted({literal_ending(glob) for glob in self.globs}))
        self._parts = [_parts(glob) for glob in self.globs]

    def matches(self, path: str) -> bool:
        return path.endswith(self.endings) and any(_matches(parts, path) for parts in self._parts)


def find_templates(paths: Iterable[str], globs: Sequence[str]) -> List[str]:
    """The templates among `paths` (repository-relative, `/` separated), in the given order.

    Every caller finds templates through this function, whatever the paths come from:
    the working tree (validate, doctor) or a commit's tree (queue, run --commit, check-push).
    """
    matcher = GlobSet(globs)
    return [path for path in paths if matcher.matches(path)]

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

On the hook paths: this module imports `re` and nothing else.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Iterable, List, Optional, Sequence


class GlobError(ValueError):
    """A glob that cannot be translated; the message says why in a few words."""


def glob_regex(glob: str) -> str:
    """The regular expression (without anchors) of one repository glob; raises GlobError."""
    out: List[str] = []
    index = 0
    glob = glob.lstrip("/")
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**/", index):
            out.append("(?:[^/]+/)*")
            index += 3
        elif glob.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[":
            end = glob.find("]", index + 1)
            if end == -1:
                raise GlobError(f"'[' at position {index + 1} is never closed by ']'")
            out.append(_class_regex(glob[index + 1 : end], index))
            index = end + 1
        elif char == "]":
            raise GlobError(f"']' at position {index + 1} closes no '['")
        else:
            out.append(re.escape(char))
            index += 1
    return "".join(out)


def _class_regex(body: str, index: int) -> str:
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    if not body:
        raise GlobError(f"the character class at position {index + 1} is empty")
    members: List[str] = []
    at = 0
    while at < len(body):
        if at + 2 < len(body) and body[at + 1] == "-":
            low, high = body[at], body[at + 2]
            if low > high:
                raise GlobError(f"the range {low}-{high} at position {index + 2 + at} runs backwards")
            members.append(f"{re.escape(low)}-{re.escape(high)}")
            at += 3
        else:
            members.append(re.escape(body[at]))
            at += 1
    # A class never matches the folder separator, negated or not.
    return f"[^/{''.join(members)}]" if negate else f"(?!/)[{''.join(members)}]"


def glob_problem(glob: str) -> Optional[str]:
    """Why `glob` cannot be used, in a few words; None for a good glob."""
    try:
        re.compile(glob_regex(glob))
    except (GlobError, re.error) as error:
        return str(error)
    return None


def literal_ending(glob: str) -> str:
    """The text every path `glob` matches ends with: what follows its last wildcard.

    `**/pipeline.json` gives "pipeline.json", `**/*.pipeline.yaml` ".pipeline.yaml", and a
    glob ending in a wildcard or a character class "" (any path may match it).
    """
    glob = glob.lstrip("/")  # as glob_regex reads it
    at = len(glob)
    while at > 0 and glob[at - 1] not in "*?[]":
        at -= 1
    if glob.startswith("/", at) and glob.endswith("**", 0, at):
        at += 1  # `**/` may stand for no folder at all: `pipeline.json` matches `**/pipeline.json`
    return glob[at:]


class GlobSet:
    """A list of globs compiled once: `matches(path)` is whether any of them matches all of path."""

    __slots__ = ("globs", "endings", "_regex")

    def __init__(self, globs: Iterable[str]) -> None:
        self.globs = tuple(globs)
        # Names are sorted out by their endings first, a string comparison: at 100k paths
        # the regular expression then runs on the few that could match, not on every path.
        self.endings = tuple(sorted({literal_ending(glob) for glob in self.globs}))
        alternatives = "|".join(f"(?:{glob_regex(glob)})" for glob in self.globs)
        # DOTALL: a name may hold a newline, and `**` and `[^/]` must match it as any character.
        self._regex = re.compile(f"(?:{alternatives})" if self.globs else "(?!)", re.DOTALL)

    def matches(self, path: str) -> bool:
        return path.endswith(self.endings) and self._regex.fullmatch(path) is not None


def find_templates(paths: Iterable[str], globs: Sequence[str]) -> List[str]:
    """The templates among `paths` (repository-relative, `/` separated), in the given order.

    Every caller finds templates through this function, whatever the paths come from:
    the working tree (validate, doctor) or a commit's tree (queue, run --commit, check-push).
    """
    matcher = GlobSet(globs)
    return [path for path in paths if matcher.matches(path)]

"""Records for the hook paths: equality, hash and repr from the fields, like a dataclass.

Not dataclasses on purpose: `import dataclasses` pulls in `inspect` (and with it `ast`,
`dis` and `tokenize`), about 25 ms on a quiet machine, and the pre-commit and post-commit
hooks, which run on every commit, read these records.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import; the post-commit hook reads these records
    from typing import Any, Tuple


class Record:
    """Fields are the class's `__slots__`; `_compared` names those that equality, hash and
    repr look at when not all of them do (a cache a record carries, say).

    A slot named `_name` is read through the property `name` in repr (config keys that
    check their value when set).
    """

    __slots__: Tuple[str, ...] = ()
    _compared: Tuple[str, ...] = ()

    def _fields(self) -> Tuple[str, ...]:
        return self._compared or self.__slots__

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name.lstrip('_')}={getattr(self, name.lstrip('_'))!r}" for name in self._fields())
        return f"{type(self).__name__}({fields})"

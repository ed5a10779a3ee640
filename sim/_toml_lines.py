"""Where each key of a TOML document is written: the line of every table and key.

`tomllib` gives values without positions, and msgspec reports a bad field by
its path (``$.services.api.policy.breaker``). `key_lines` reads the text once
more, just enough to map paths to lines: table headers (``[a.b]``, and
``[[a.b]]`` with its element's index), keys (dotted and quoted ones too), and
values that span lines (arrays, inline tables, multi-line strings), whose
contents it skips. A path inside an inline table or a multi-line array gets
the line of the key that holds it, through `line_of`'s longest-prefix match.
"""

from __future__ import annotations

import json
import re

__all__ = ["Path", "key_lines", "line_of"]

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _keys(text: str) -> tuple[str, ...] | None:
    """``a."b.c".d`` as its keys; None when it is not a key."""
    keys: list[str] = []
    i = _skip_space(text, 0)
    while i < len(text):
        if text[i] == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            try:
                keys.append(json.loads(text[i : end + 1]))
            except ValueError:
                keys.append(text[i + 1 : end])
            i = end + 1
        elif text[i] == "'":
            end = text.find("'", i + 1)
            if end < 0:
                return None
            keys.append(text[i + 1 : end])
            i = end + 1
        else:
            match = _BARE.match(text, i)
            if match is None:
                return None
            keys.append(match.group())
            i = match.end()
        i = _skip_space(text, i)
        if i == len(text):
            return tuple(keys)
        if text[i] != ".":
            return None
        i = _skip_space(text, i + 1)
    return None


class _Value:
    """Scans a value across lines: open brackets and an open multi-line string."""

    def __init__(self) -> None:
        self.depth = 0
        self.string: str | None = None  # the closing delimiter of an open string

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.string is not None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.string is not None:
                if text.startswith(self.string, i):
                    i += len(self.string)
                    self.string = None
                    continue
                i += 2 if text[i] == "\\" and self.string[0] == '"' else 1
                continue
            char = text[i]
            if char == "#":
                return
            if text.startswith('"""', i) or text.startswith("'''", i):
                self.string = text[i : i + 3]
                i += 3
                continue
            if char in "\"'":
                self.string = char
            elif char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
            i += 1
        if self.string is not None and len(self.string) == 1:
            self.string = None  # a one-line string cannot go on (that is a syntax error)


def _split_assignment(line: str) -> tuple[str, str] | None:
    """``key = value`` split at the first ``=`` outside quotes."""
    quote: str | None = None
    for i, char in enumerate(line):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "=":
            return line[:i], line[i + 1 :]
    return None


def _header(line: str) -> tuple[tuple[str, ...], bool] | None:
    """The keys of a ``[table]`` or ``[[array]]`` header, and whether it is an array."""
    array = line.startswith("[[")
    close = line.find("]]" if array else "]")
    if close < 0:
        return None
    keys = _keys(line[2 if array else 1 : close])
    return None if keys is None else (keys, array)


def key_lines(text: str) -> dict[Path, int]:
    """Every table's and key's path, with the (1-based) line it is written on."""
    lines: dict[Path, int] = {}
    arrays: dict[Path, int] = {}  # array-of-tables path -> index of its last element
    table: Path = ()
    value = _Value()
    for number, raw in enumerate(text.splitlines(), 1):
        if value.open:
            value.feed(raw)
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            found = _header(line)
            if found is None:
                continue
            keys, array = found
            path: Path = ()
            for key in keys:
                path = (*path, key)
                if path in arrays and (array is False or len(path) < len(keys)):
                    path = (*path, arrays[path])
            if array:
                index = arrays.get(path, -1) + 1
                arrays[path] = index
                lines.setdefault(path, number)
                path = (*path, index)
            lines[path] = number
            table = path
            continue
        assignment = _split_assignment(line)
        if assignment is None:
            continue
        keys_text, rest = assignment
        found_keys = _keys(keys_text)
        if found_keys is None:
            continue
        lines[(*table, *found_keys)] = number
        value.feed(rest)
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest ancestor written in the file."""
    for end in range(len(path), 0, -1):
        number = lines.get(path[:end])
        if number is not None:
            return number
    return None

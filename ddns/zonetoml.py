"""Admins' commands rewriting one key of a zone's ``zone.toml`` in place. Pure.

``ddns domain ttl``, ``ddns domain kerberos`` and ``ddns domain unsigned``
change one setting without hand-editing: the key's lines are replaced and
every other line, comment and blank stays as the admin wrote it, so the
commit's diff is the one line that changed.
"""
from __future__ import annotations

import json
import re
import tomllib

from .errors import Invalid
from .zones import SETTINGS_FILE

TomlValue = int | str | list[str] | tuple[str, ...]


def with_setting(settings_toml: str, table: str, key: str, value: TomlValue | None) -> str:
    """zone.toml text with KEY of TABLE ("": the top level) set to VALUE (None: removed).

    What an admin's command changes without hand-editing: the key's lines
    (a multi-line array too) are replaced and its trailing comment kept; a
    missing key goes at the end of its table (a top-level one before the
    first table), a missing table at the end of the file. Everything else
    stays as written. Invalid when the text cannot take the change this way
    (the table is written inline, say): then zone.toml needs a hand edit.
    """
    lines = settings_toml.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    region = _table_region(lines, _statements(lines), table)
    line = None if value is None else f"{key} = {_toml_value(value)}\n"
    statements = (region[0][1:] if table else region[0]) if region else []  # a table's header is not its key
    found = next(((a, b) for a, b in statements if key in _parse(lines[a:b])), None)
    if found:
        lines[found[0]:found[1]] = [_keep_comment(lines[found[0]:found[1]], line)] if line else []
    elif line and region is None:
        lines += (["\n"] if lines and lines[-1].strip() else []) + [f"[{table}]\n", line]
    elif line:
        lines.insert(region[1], line)
    text = "".join(lines)
    written = _parse([text]).get(table, {}) if table else _parse([text])
    if written.get(key) != (list(value) if isinstance(value, tuple) else value):
        raise Invalid(f"{SETTINGS_FILE}: cannot set {'.'.join(filter(None, (table, key)))} here; edit the file")
    return text


def _toml_value(value: TomlValue) -> str:
    """VALUE in TOML (a basic string is a JSON string, a list of them a JSON array)."""
    if isinstance(value, bool) or not isinstance(value, (int, str, list, tuple)):
        raise TypeError(f"no TOML for {value!r}")
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=True)


def _parse(lines: list[str]) -> dict:
    try:
        return tomllib.loads("".join(lines))
    except tomllib.TOMLDecodeError:
        return {}


def _parses(lines: list[str]) -> bool:
    try:
        tomllib.loads("".join(lines))
        return True
    except tomllib.TOMLDecodeError:
        return False


def _statements(lines: list[str]) -> list[tuple[int, int]]:
    """(first line, line after the last) of each statement: a key = value (of several lines), a header, a comment."""
    spans, i = [], 0
    while i < len(lines):
        end = next((j for j in range(i + 1, len(lines) + 1) if _parses(lines[i:j])), len(lines))
        spans.append((i, end))
        i = end
    return spans


def _table_region(lines: list[str], spans: list[tuple[int, int]],
                  table: str) -> tuple[list[tuple[int, int]], int] | None:
    """TABLE's statements ("": those before the first header) and where a new key of it goes; None: no such table.

    A new top-level key goes right before the first header; a new key of a
    table after its last key (or its header), before the blank lines and
    comments that lead to the next table.
    """
    headers = [k for k, (a, _) in enumerate(spans) if lines[a].lstrip().startswith("[")]
    if not table:
        return spans[: headers[0] if headers else len(spans)], spans[headers[0]][0] if headers else len(lines)
    for n, k in enumerate(headers):
        if re.fullmatch(rf"\s*\[\s*{re.escape(table)}\s*\]\s*(#.*)?\n", lines[spans[k][0]]):
            region = spans[k: headers[n + 1] if n + 1 < len(headers) else len(spans)]
            keys = [b for a, b in region if lines[a].strip() and not lines[a].lstrip().startswith("#")]
            return region, keys[-1]
    return None


def _keep_comment(old: list[str], line: str) -> str:
    """LINE with the indentation and the trailing comment of the statement OLD it replaces."""
    indent = old[0][: len(old[0]) - len(old[0].lstrip())]
    last, head, before = old[-1].rstrip("\n"), old[:-1], _parse(old)
    for match in re.finditer("#", last):
        if _parse(head + [last[: match.start()] + "\n"]) == before:
            spaces = last[: match.start()][len(last[: match.start()].rstrip()):] or " "
            return f"{indent}{line.rstrip()}{spaces}{last[match.start():]}\n"
    return indent + line

"""Reading JSON bodies: bounded nesting, and only text that can be stored.

``json.loads`` accepts three things the rest of the server cannot handle: nesting so deep that a
recursive step (the parser itself, ``repr``, a validator) runs out of stack, ``\\ud800``-style
escapes of lone UTF-16 surrogates, which make Python strings no database driver can encode, and
``NaN`` / ``Infinity``, which are not JSON (RFC 8259) and which no stored JSON column can hold as sent.
All are refused here with a message naming where, as a client error.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, List, Tuple, Union

try:  # the server's hot path (every report); the CLI may run without the server's extras
    import orjson as _fast
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _fast = None

# Reports and scanner output nest fewer than 10 levels.
MAX_DEPTH = 64
# A JSON escape of a surrogate code point (U+D800-U+DFFF): only then is the parsed value walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# 19 digits in a row may be an integer past 64 bits, which orjson reads as a float (rounded): json.loads then.
# Found by mapping every digit to "0" and searching for 19 zeros: the regex [0-9]{19} did the same at 10x
# the cost (22 of a report's 32 us), as it restarts at every digit of every hex digest.
_LONG_RUN = b"0" * 19
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"0" * 9)


class JsonInputError(Exception):
    """Valid JSON that is not accepted; the message starts with the field path."""


def field_path(parts: Iterable[Union[str, int]], whole: str = "(body)") -> str:
    """``["pushes", 3, "digest"]`` -> ``pushes[3].digest``, the way a person reads it."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or whole


def loads(raw: Union[bytes, str]) -> Any:
    """``json.loads`` that raises JsonInputError for nesting past the parser's recursion limit
    and for lone surrogates; other errors are ``json.loads``' own (ValueError).

    orjson parses first (a third of ``json.loads``' time on a report). It accepts only RFC 8259 JSON in
    UTF-8, so whatever it refuses is parsed again by ``json.loads``, whose answer (a value, or the error
    naming what is wrong) is the one given; a body that may hold an integer past 64 bits goes to
    ``json.loads`` directly. Both give the same values for what both accept."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _fast is not None and not _may_hold_long_integer(data):
        try:
            value = _fast.loads(raw)
        except _fast.JSONDecodeError:
            value = _strict_loads(raw)
    else:
        value = _strict_loads(raw)
    if _SURROGATE_ESCAPE.search(data):
        _check_text(value)
    return value


def _may_hold_long_integer(data: bytes) -> bool:
    """True when ``data`` has 19 or more digits in a row (an integer that may not fit in 64 bits)."""
    return _LONG_RUN in data.translate(_DIGITS_TO_ZERO)


def _strict_loads(raw: Union[bytes, str]) -> Any:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonInputError(f"(body): nested deeper than {MAX_DEPTH} levels") from None


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"(body): {name} is not a JSON number (RFC 8259); send a number or null")


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonInputError when ``value`` nests deeper than ``max_depth`` arrays and objects."""
    stack: List[Tuple[Any, int, Tuple[Union[str, int], ...]]] = [(value, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Tuple[Union[str, int], Any]] = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if depth >= max_depth:
            raise JsonInputError(f"{field_path(path)}: nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1, (*path, key)) for key, child in children)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value: Any) -> None:
    stack: List[Tuple[Any, Tuple[Union[str, int], ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if not _is_text(node):
                raise JsonInputError(f"{field_path(path)}: holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                                     "which is not text; send valid Unicode")
        elif isinstance(node, dict):
            for key, child in node.items():
                if not _is_text(key):
                    raise JsonInputError(f"{field_path(path)}: a key holds a lone UTF-16 surrogate, which is not text")
                stack.append((child, (*path, key)))
        elif isinstance(node, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(node))

"""Bounding and cleaning strings that come from the environment, the daemon or a server.

Values such as a branch name or a job display name are chosen by whoever writes the
pipeline, so they may be huge, contain newlines, or try to forge agent logging commands
(``##vso[...]`` is honoured anywhere in a line by the Azure Pipelines agent, ``::cmd::`` at
the start of a line by GitHub Actions). Nothing from outside is printed or stored raw.
"""

from __future__ import annotations

import re
from typing import Optional

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_VSO = re.compile(r"##\s*vso\s*\[", re.IGNORECASE)
_FORMAT = re.compile(r"##\s*\[", re.IGNORECASE)

DEFAULT_LIMIT = 1024


def clean(value: Optional[str], limit: int = DEFAULT_LIMIT) -> Optional[str]:
    """Control characters become one space, the result is stripped and cut to ``limit``
    characters (an ellipsis marks the cut). Empty becomes None: a missing value is never invented."""
    if value is None:
        return None
    text = _CONTROL.sub(" ", str(value)).strip()
    if not text:
        return None
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "\u2026"
    return text


def for_log(value: object, limit: int = 400) -> str:
    """A value made safe to print in a CI log line: one line, bounded, no agent commands."""
    text = clean(str(value), limit) or ""
    text = _VSO.sub("#vso[", text)
    return _FORMAT.sub("#[", text)

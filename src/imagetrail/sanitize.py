"""Output guards for text that came from reports and scans: links and spreadsheet cells.

Used by the web explorer (every link it renders, its CSV export), the CLI's CSV output and the
work items remediation writes, so the rule lives in one place. Standard library only: the CLI
imports it.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

SAFE_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
# Whitespace or control characters inside a URL: browsers strip some of them ("java\tscript:"),
# so a URL carrying any is refused rather than guessed at.
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
# Spreadsheets evaluate a cell as a formula when it starts with one of these, also after leading
# spaces (OWASP "CSV Injection"); a leading tab or carriage return is itself a trigger.
_FORMULA_START = ("=", "+", "-", "@")
_FORMULA_CONTROL = ("\t", "\r")


def safe_url(value: object) -> Optional[str]:
    """``value`` if it is an absolute http(s) URL with a host, else None (never a link).

    A ``javascript:``, ``data:`` or ``vbscript:`` URL from a report, a protocol-relative
    ``//host`` or anything with spaces or control characters is refused.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_URL_LENGTH or _UNSAFE_CHARACTERS.search(text):
        return None
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:  # e.g. an invalid IPv6 literal or port
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES or not host:
        return None
    return text


def safe_href(value: object) -> Optional[str]:
    """A link target the web may render: a path on this site (``/images/…``), a ``mailto:`` address
    built by the page itself, or an http(s) URL accepted by ``safe_url``."""
    if not isinstance(value, str):
        return None
    if value.startswith("/") and not value.startswith(("//", "/\\")) and not _UNSAFE_CHARACTERS.search(value):
        return value
    if value.lower().startswith("mailto:") and not _UNSAFE_CHARACTERS.search(value):
        return value
    return safe_url(value)


def csv_cell(value: object) -> str:
    """One CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_CONTROL) or text.lstrip().startswith(_FORMULA_START):
        return "'" + text
    return text

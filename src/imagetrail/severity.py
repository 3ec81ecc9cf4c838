"""Severity levels shared by the scan parsers, the summaries and the explorer filters."""

from __future__ import annotations

from typing import Dict, Optional

NONE = 0
UNKNOWN = 1
LOW = 2
MEDIUM = 3
HIGH = 4
CRITICAL = 5

NAMES: Dict[int, str] = {
    NONE: "none",
    UNKNOWN: "unknown",
    LOW: "low",
    MEDIUM: "medium",
    HIGH: "high",
    CRITICAL: "critical",
}
# Trivy: UNKNOWN LOW MEDIUM HIGH CRITICAL. Grype adds Negligible, counted as low
# (Grype's own --fail-on ordering puts it just below low).
_RANKS = {
    "unknown": UNKNOWN,
    "negligible": LOW,
    "low": LOW,
    "medium": MEDIUM,
    "moderate": MEDIUM,
    "high": HIGH,
    "important": HIGH,
    "critical": CRITICAL,
}
FILTER_NAMES = ("low", "medium", "high", "critical")


def rank(name: Optional[str]) -> int:
    """The rank of a scanner's severity string; anything unrecognised counts as unknown."""
    return _RANKS.get((name or "").strip().lower(), UNKNOWN)


def parse_filter(name: str) -> int:
    """The rank for a ``--min-severity`` value; raises ValueError naming the accepted values."""
    value = name.strip().lower()
    if value not in FILTER_NAMES:
        raise ValueError(f"min-severity must be one of {', '.join(FILTER_NAMES)}, not {name!r}")
    return _RANKS[value]

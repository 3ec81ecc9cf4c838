"""The explorer's export columns, one list shared by the web CSV (``/explorer.csv``) and the CLI
(``imagetrail query --format csv|table``), and the one way times are printed (ISO 8601 with their offset)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Tuple, Union

from imagetrail.facts import summary
from imagetrail.views.explorer import ExplorerRow


def utc_iso(value: Union[datetime, str, None]) -> str:
    """``2024-05-31T10:00:00+00:00``; a time stored without an offset is UTC (the database keeps UTC)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")


def _top(row: ExplorerRow) -> str:
    v = row.vulnerabilities
    return "; ".join(
        f"{c.id} {c.package} {c.installed_version or ''}->{c.fixed_version or 'no fix'}" for c in (v.top if v else [])
    )


def _count(level: str) -> Callable[[ExplorerRow], object]:
    return lambda row: getattr(row.vulnerabilities.counts, level) if row.vulnerabilities else ""


def _trail(get: Callable) -> Callable[[ExplorerRow], object]:
    return lambda row: get(row.trail) if row.trail else ""


# (column, value of a row). Appending keeps the columns spreadsheets already read in their place.
EXPLORER_COLUMNS: Tuple[Tuple[str, Callable[[ExplorerRow], object]], ...] = (
    ("cluster", lambda row: row.cluster),
    ("namespace", lambda row: row.namespace),
    ("workload_kind", lambda row: row.workload_kind),
    ("workload", lambda row: row.workload_name),
    ("pod", lambda row: row.pod),
    ("container", lambda row: row.container),
    ("container_kind", lambda row: row.container_kind),
    ("image", lambda row: row.image),
    ("digest", lambda row: row.digest),
    ("digest_error", lambda row: row.digest_error),
    ("exposed", lambda row: "yes" if row.exposed else "no"),
    ("exposure", lambda row: "; ".join(e.reason + (f" ({e.address})" if e.address else "") for e in row.exposure)),
    ("critical", _count("critical")),
    ("high", _count("high")),
    ("medium", _count("medium")),
    ("low", _count("low")),
    ("max_severity", lambda row: row.vulnerabilities.max_severity if row.vulnerabilities else ""),
    ("top_cves", _top),
    ("organization", _trail(lambda t: t.organization)),
    ("project", _trail(lambda t: t.project)),
    ("pipeline", _trail(lambda t: t.pipeline or t.pipeline_id)),
    ("run", _trail(lambda t: t.run_number or t.run_id)),
    ("run_url", _trail(lambda t: t.run_url)),
    ("repository", _trail(lambda t: t.repository)),
    ("branch", _trail(lambda t: t.branch)),
    ("commit", _trail(lambda t: t.commit)),
    ("owner", _trail(lambda t: t.owner_name)),
    ("owner_email", _trail(lambda t: t.owner_email)),
    ("evidence", _trail(lambda t: summary(t.evidence))),
    ("running", lambda row: "yes" if row.running else "no"),
    ("owner_source", _trail(lambda t: t.owners[0].source if t.owners else "")),
    ("owners", _trail(lambda t: "; ".join(f"{o.label} ({o.source})" for o in t.owners))),
    ("pushed_at", _trail(lambda t: utc_iso(t.pushed_at))),
    ("scanned_at", lambda row: utc_iso(row.vulnerabilities.scanned_at) if row.vulnerabilities else ""),
)
EXPLORER_HEADER: List[str] = [name for name, _ in EXPLORER_COLUMNS]


def explorer_record(row: ExplorerRow) -> Dict[str, str]:
    """Column -> text (not yet guarded for spreadsheets: ``imagetrail.sanitize.csv_cell`` does that)."""
    return {name: _text(get(row)) for name, get in EXPLORER_COLUMNS}


def _text(value: Optional[object]) -> str:
    return "" if value is None else str(value)

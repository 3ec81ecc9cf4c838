"""The explorer page: query-string parsing, sort links, paging and the CSV export.

The query itself is the cloud layer's ``run_query`` (the same function as ``GET /v1/query``);
this module only maps the GET form to ``ExplorerFilters`` and back to links.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.auth import Principal
from imagetrail.queries.explorer import decode_cursor, run_query
from imagetrail.queries.pipeline_risk import DEFAULT_DAYS, MAX_DAYS
from imagetrail.sanitize import csv_cell
from imagetrail.views.columns import EXPLORER_HEADER, explorer_record, utc_iso  # noqa: F401 (pages' times)
from imagetrail.views.explorer import ExplorerPage, ExplorerRow
from imagetrail.views.filters import DEFAULT_SORT, FILTER_FIELDS, MAX_PAGE, SORT_LABELS, ExplorerFilters
from imagetrail.views.pipelines import PipelineReport, PipelineVulnerabilities

PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 50
CSV_BATCH = 500
FORM_FIELDS = tuple(spec.name for spec in FILTER_FIELDS)

# Column header -> sort key (None: not sortable). Severity toggles between descending and ascending.
COLUMNS = [
    ("Workload", "workload"),
    ("Cluster", "cluster"),
    ("Exposure", None),
    ("Image", "image"),
    ("Vulnerabilities", "severity"),
    ("Pipeline run", None),
    ("Commit", None),
    ("Owner", None),
]
@dataclass
class ExplorerRequest:
    form: Dict[str, str]
    filters: Optional[ExplorerFilters]
    sort: str = DEFAULT_SORT
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    errors: List[str] = field(default_factory=list)
    # Seek cursors from the previous / next page's link: a deep page is read from there, not past an OFFSET.
    after: Optional[str] = None
    before: Optional[str] = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "ExplorerRequest":
        form = {name: (params.get(name) or "").strip() for name in FORM_FIELDS}
        errors: List[str] = []
        sort = params.get("sort") or DEFAULT_SORT
        if sort not in SORT_LABELS:
            errors.append(f"sort: must be one of {', '.join(SORT_LABELS)}, not {sort!r}")
            sort = DEFAULT_SORT
        page = _positive_int(params.get("page"), 1, "page", errors)
        page_size = _positive_int(params.get("page_size"), DEFAULT_PAGE_SIZE, "page_size", errors)
        if page_size not in PAGE_SIZES:
            errors.append(f"page_size: must be one of {', '.join(map(str, PAGE_SIZES))}, not {page_size}")
            page_size = DEFAULT_PAGE_SIZE
        values: Dict[str, object] = {}
        for spec in FILTER_FIELDS:
            raw = form[spec.name]
            if spec.surface.widget == "flag":
                values[spec.name] = raw in ("true", "on", "1")
            elif spec.surface.widget == "tristate" and raw not in ("", "true", "false"):
                errors.append(f"{spec.name}: must be true, false or empty, not {raw[:30]!r}")
            elif spec.surface.widget == "tristate" and raw:
                values[spec.name] = raw == "true"
            elif raw:
                values[spec.name] = raw
        filters = None
        try:
            filters = ExplorerFilters(**values)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "filters"
                errors.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        cursors: Dict[str, Optional[str]] = {}
        for name in ("after", "before"):
            raw = params.get(name) or None
            if raw is not None:
                try:
                    decode_cursor(raw, sort, name)
                except ValueError as exc:
                    errors.append(str(exc))
                    raw = None
            cursors[name] = raw
        return cls(
            form=form, filters=filters, sort=sort, page=page, page_size=page_size, errors=errors, **cursors
        )

    def params(self, **changes: object) -> Dict[str, str]:
        """The query-string parameters for a link to this query with ``changes``."""
        values: Dict[str, object] = {k: v for k, v in self.form.items() if v}
        values.update(sort=self.sort, page=self.page, page_size=self.page_size)
        values.update(changes)
        if values.get("sort") == DEFAULT_SORT:
            values.pop("sort")
        if values.get("page") == 1:
            values.pop("page")
        if values.get("page_size") == DEFAULT_PAGE_SIZE:
            values.pop("page_size")
        return {k: str(v) for k, v in values.items() if v not in ("", None)}

    def href(self, path: str = "/explorer", **changes: object) -> str:
        params = self.params(**changes)
        return path + ("?" + urlencode(params) if params else "")


def _positive_int(raw: Optional[str], default: int, name: str, errors: List[str]) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name}: expected a whole number, not {raw!r}")
        return default
    if not 1 <= value <= MAX_PAGE:
        errors.append(f"{name}: must be between 1 and {MAX_PAGE}, not {raw[:30]}")
        return default
    return value


def days_param(raw: Optional[str], errors: List[str]) -> int:
    """The ``days`` of the pipelines page: a whole number of days back, default 7."""
    if raw in (None, ""):
        return DEFAULT_DAYS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        errors.append(f"days: expected a whole number from 1 to {MAX_DAYS}, not {raw[:30]!r}")
        return DEFAULT_DAYS
    return int(raw)


def pipeline_href(query: ExplorerRequest, report: PipelineReport, row: PipelineVulnerabilities) -> str:
    """The explorer listing one pipeline's images of the pipelines page's window and severity."""
    return query.href(
        org=row.organization,
        project=row.project,
        pipeline=row.pipeline_id or row.pipeline or "",
        pushed_after=report.since.date().isoformat(),
        min_severity=report.min_severity,
        page=1,
    )


def run(session: Session, principal: Principal, query: ExplorerRequest) -> ExplorerPage:
    assert query.filters is not None
    cursor = {"after": query.after} if query.after else {"before": query.before} if query.before else {}
    result = run_query(
        session, query.filters, principal, query.page, query.page_size, query.sort, **cursor
    )
    last_page = max(math.ceil(result.total / query.page_size), 1)
    if query.page > last_page:  # a stale link past the end: show the last page instead
        query.page = last_page
        result = run_query(
            session, query.filters, principal, page=last_page, page_size=query.page_size, sort=query.sort
        )
    return result


def _columns(query: ExplorerRequest) -> List[Dict[str, Optional[str]]]:
    columns = []
    for label, key in COLUMNS:
        if key is None:
            columns.append({"label": label, "href": None, "aria_sort": None})
            continue
        if key == "severity":
            active = query.sort in ("severity", "-severity")
            aria = ("descending" if query.sort == "-severity" else "ascending") if active else "none"
            target = "severity" if query.sort == "-severity" else "-severity"
        else:
            active = query.sort == key
            aria = "ascending" if active else "none"
            target = key
        columns.append({"label": label, "href": query.href(sort=target, page=1), "aria_sort": aria})
    return columns


def form_fields() -> List[Dict[str, object]]:
    """The query builder's inputs, one per filter of ``ExplorerFilters`` (the template loops over them)."""
    fields: List[Dict[str, object]] = []
    for spec in FILTER_FIELDS:
        surface = spec.surface
        choices: List[tuple] = []
        if surface.widget == "tristate":
            choices = list(zip(("", "true", "false"), surface.choices))
        elif surface.widget == "choice":
            choices = [("", "any")] + [(value, value) for value in spec.choices]
        fields.append({
            "id": "f-" + spec.name.replace("_", "-"),
            "name": spec.name,
            "label": surface.label,
            "widget": surface.widget,
            "choices": choices,
            "placeholder": surface.placeholder,
            "maxlength": spec.max_length,
            "title": spec.description,
        })
    return fields


FORM = form_fields()
RUNNING_CHOICES = next(f["choices"] for f in FORM if f["name"] == "running")


def context(query: ExplorerRequest, result: Optional[ExplorerPage]) -> Dict[str, object]:
    pages = max(math.ceil(result.total / result.page_size), 1) if result else 1
    page = result.page if result else 1
    return {
        "form": query.form,
        "fields": FORM,
        "errors": query.errors,
        "result": result,
        "sort": query.sort,
        "sort_label": SORT_LABELS[query.sort],
        "page_size": query.page_size,
        "page_sizes": PAGE_SIZES,
        "columns": _columns(query),
        "pages": pages,
        "first_row": (page - 1) * query.page_size + 1,
        "last_row": min(page * query.page_size, result.total) if result else 0,
        # With the neighbouring page's cursor when there is one, so paging on stays as fast as page 1.
        "prev_href": (
            query.href(page=page - 1, before=result.prev_cursor if result else None) if page > 1 else None
        ),
        "next_href": (
            query.href(page=page + 1, after=result.next_cursor if result else None) if page < pages else None
        ),
        "csv_href": query.href("/explorer.csv", page=1, page_size=DEFAULT_PAGE_SIZE),
    }


# --- CSV --------------------------------------------------------------------------------------

CSV_HEADER = EXPLORER_HEADER  # the same columns as imagetrail query --format csv (views/columns.py)


def csv_row(row: ExplorerRow) -> List[str]:
    return [csv_cell(value) for value in explorer_record(row).values()]


def csv_lines(sessions: sessionmaker, principal: Principal, query: ExplorerRequest) -> Iterator[str]:
    """Every matching row, fetched and written in batches so memory stays flat on big results."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue()
    assert query.filters is not None
    page, after = 1, None
    with sessions() as session:
        while True:
            # Each batch seeks on from the last row of the one before (no OFFSET to scan through).
            result = run_query(session, query.filters, principal, page, CSV_BATCH, query.sort, after=after)
            after = result.next_cursor
            buffer.seek(0)
            buffer.truncate()
            for row in result.rows:
                writer.writerow(csv_row(row))
            yield buffer.getvalue()
            if page * CSV_BATCH >= result.total or not result.rows:
                break
            page += 1

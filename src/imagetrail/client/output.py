"""How every client command prints: ``--format table|json|csv``, ``--wide``, ``--url``.

Tables fit the terminal (``shutil.get_terminal_size``): long cells are cut with an ellipsis and, when that
is not enough, the optional columns on the right are left out; ``--wide`` prints every column whole. Into a
pipe or a file (no terminal, no COLUMNS) cells are never cut.
CSV cells go through ``imagetrail.sanitize.csv_cell`` (a spreadsheet shows them, never runs them).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from imagetrail.sanitize import csv_cell

FORMATS = ("table", "json", "csv")
GAP = "  "
MIN_CELL = 6
CUT_TO = 16  # long cells are cut down to this before optional columns are left out


@dataclass(frozen=True)
class Column:
    name: str  # the key in a row
    header: str = ""
    required: bool = False  # kept however narrow the terminal (image, digest, run)
    whole: bool = False  # never cut (a short digest must stay a prefix trace accepts)
    wide_only: bool = False  # only with --wide

    @property
    def title(self) -> str:
        return (self.header or self.name).upper()


def add_output_arguments(parser: argparse.ArgumentParser, formats: Sequence[str] = FORMATS,
                         default: str = "table") -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--format", choices=tuple(formats), default=default,
                       help=f"{' | '.join(formats)} (default {default})")
    group.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    group.add_argument("--wide", action="store_true", help="tables: every column, nothing cut to the terminal")
    group.add_argument("--url", help="backend URL (default: IMAGETRAIL_URL, else http://127.0.0.1:8080)")


def terminal_width() -> Optional[int]:
    """The terminal's columns; None when printing into a pipe or file (nothing to fit: grep sees whole cells)
    unless COLUMNS says otherwise."""
    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return shutil.get_terminal_size((120, 24)).columns
    return None


def short_digest(digest: Optional[str]) -> str:
    """``sha256:`` and 12 hex digits: what ``imagetrail trace`` accepts back as a unique prefix."""
    return digest[:19] if digest else "-"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def table(rows: Sequence[Dict[str, Any]], columns: Sequence[Column], wide: bool = False,
          width: Optional[int] = None) -> str:
    """Rows as aligned columns no wider than ``width`` (the terminal) unless ``wide``."""
    shown = [c for c in columns if wide or not c.wide_only]
    cells = [[("" if row.get(c.name) is None else str(row.get(c.name))).replace("\n", " ") for c in shown]
             for row in rows]
    widths = [max([len(c.title)] + [len(r[i]) for r in cells]) for i, c in enumerate(shown)]
    limit = None if wide else width or terminal_width()
    if limit is not None:

        def total() -> int:
            return sum(widths) + len(GAP) * (len(widths) - 1)

        while total() > limit:
            cuttable = [i for i, c in enumerate(shown) if not c.whole] or list(range(len(shown)))
            widest = max(cuttable, key=lambda i: widths[i])
            if widths[widest] > CUT_TO:
                widths[widest] -= 1  # cut the longest cells first, down to a readable size
                continue
            optional = [i for i, c in enumerate(shown) if not c.required]
            if optional:
                drop = optional[-1]  # then the rightmost optional column goes
                del shown[drop], widths[drop]
                for r in cells:
                    del r[drop]
                continue
            if widths[widest] <= MIN_CELL:
                break
            widths[widest] -= 1
    lines = [GAP.join(c.title[:w].ljust(w) for c, w in zip(shown, widths)).rstrip()]
    lines += [GAP.join(_cut(v, w).ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def csv_text(rows: Sequence[Dict[str, Any]], header: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in header])
    return buffer.getvalue()


def emit(args: argparse.Namespace, answer: Any, rows: Sequence[Dict[str, Any]], columns: Sequence[Column],
         footer: str = "", empty: str = "no rows", header: Optional[Sequence[str]] = None) -> None:
    """Print ``answer`` as JSON, ``rows`` as CSV (``header``, default every column) or as a table."""
    if args.format == "json":
        print(json.dumps(answer, indent=2))
    elif args.format == "csv":
        sys.stdout.write(csv_text(rows, header or [c.name for c in columns]))
    else:
        print(table(rows, columns, wide=getattr(args, "wide", False)) if rows else empty)
        if footer:
            print(footer)

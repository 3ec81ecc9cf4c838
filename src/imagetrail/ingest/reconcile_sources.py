"""A reconcile pass's outcome per source (``reconcile_sources``): what the coverage page shows, and
where the source's next pass starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Optional

from sqlalchemy.orm import Session, sessionmaker

from imagetrail.store.bulk import insert_many
from imagetrail.store.models.reconcile import ReconcileSource

T_SOURCES = ReconcileSource.__table__


@dataclass(frozen=True)
class PassRecord:
    system: str
    organization: str
    started: datetime
    stored: int  # reports this pass stored, added to the source's count
    pending: int
    message: Optional[str]  # the source's error, or the reports it refused
    listed: bool  # the source could be listed; if not, it keeps its last pending count
    complete: bool  # nothing left to retry: the next pass starts at ``started``


def record_pass(sessions: sessionmaker[Session], record: PassRecord) -> None:
    engine = sessions.kw["bind"]
    with engine.begin() as conn:
        insert_many(conn, T_SOURCES, [{"system": record.system, "organization": record.organization,
                                       "pending": 0, "reconciled": 0}],
                    skip_conflicts_on=("system", "organization"))
        values: Dict[str, Any] = {"last_run_at": record.started, "last_error": record.message,
                                  "reconciled": T_SOURCES.c.reconciled + record.stored}
        if record.listed:
            values["pending"] = record.pending
        if record.complete:
            values["covered_from"] = record.started
        conn.execute(T_SOURCES.update().where(T_SOURCES.c.system == record.system,
                                              T_SOURCES.c.organization == record.organization).values(values))

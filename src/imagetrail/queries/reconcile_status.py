"""Pending and reconciled counts, and the time of the last reconcile, for the coverage page."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries.visibility import reads_every_organization
from imagetrail.store.models.reconcile import ReconcileSource
from imagetrail.views.coverage import ReconcileSourceStatus, ReconcileStatus


def reconcile_status(session: Session, principal: Principal) -> ReconcileStatus:
    rows = session.execute(select(ReconcileSource).order_by(ReconcileSource.system,
                                                            ReconcileSource.organization)).scalars().all()
    sources = [ReconcileSourceStatus(system=r.system, organization=r.organization, last_run_at=r.last_run_at,
                                     pending=r.pending, reconciled=r.reconciled,
                                     last_error=r.last_error if reads_every_organization(principal) else None)
               for r in rows if principal.may_access(r.organization)]
    runs = [s.last_run_at for s in sources if s.last_run_at is not None]
    return ReconcileStatus(last_run_at=max(runs) if runs else None, pending=sum(s.pending for s in sources),
                           reconciled=sum(s.reconciled for s in sources), sources=sources)

"""Whether a database holds anything yet: sample data (``imagetrail demo``) is loaded only into an empty one."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from imagetrail.store.models.cloud import Cluster
from imagetrail.store.models.pipeline import Run


def holds_runs_or_clusters(session: Session) -> bool:
    return bool(session.execute(select(exists().select_from(Run))).scalar_one()
                or session.execute(select(exists().select_from(Cluster))).scalar_one())

"""What a reconcile pass reads: the organisations (and their projects) that reported, and where each
source's last complete pass started. The pass runs for the backend itself, so no principal filters it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Tuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from imagetrail.store.models.pipeline import Organization, Project
from imagetrail.store.models.reconcile import ReconcileSource


@dataclass
class ReportingOrganization:
    system: str
    name: str
    server_url: Optional[str]
    last_report_at: Optional[datetime]  # as stored (SQLite drops the time zone)
    projects: List[str] = field(default_factory=list)


def reporting_organizations(session: Session, systems: Iterable[str]) -> List[ReportingOrganization]:
    """Every organisation of ``systems`` that reported, with its projects; by system, then name."""
    rows = session.execute(
        select(Organization.system, Organization.name, Organization.server_url, Organization.last_report_at,
               Project.name)
        .outerjoin(Project, Project.organization_id == Organization.id)
        .where(Organization.system.in_(list(systems)))
        .order_by(Organization.system, Organization.name, Project.name)).all()
    found: Dict[Tuple[str, str], ReportingOrganization] = {}
    for system, name, server_url, last_report_at, project in rows:
        organization = found.setdefault((system, name), ReportingOrganization(system, name, server_url, last_report_at))
        if project:
            organization.projects.append(project)
    return list(found.values())


def covered_from(session: Session, system: str, organization: str) -> Optional[datetime]:
    """Where the source's last complete pass started (None before its first one), as stored."""
    return session.execute(select(ReconcileSource.covered_from).where(
        ReconcileSource.system == system, ReconcileSource.organization == organization)).scalar()

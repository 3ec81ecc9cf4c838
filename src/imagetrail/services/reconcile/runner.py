"""One reconcile pass: for every source, list the reports kept since it was last covered, and
store each through the normal ingest path (validated, checked against its run, idempotent by
reportId), with the identity of the run it was kept with.

A source's window starts where its previous complete pass started (or at the organisation's
last report, for the first pass; never more than ``reconcile_max_days`` back), minus a margin
for runs that were still finishing. It only moves on when nothing is left pending: a report that
could not be read or stored is tried again by the next pass. A report that is invalid, or
describes another run than the one it was kept with, is refused for good and named in the
source's last error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Dict, Iterable, List, Optional, Tuple

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.auth.report_claims import report_conflict
from imagetrail.ingest.reconcile_sources import PassRecord, record_pass
from imagetrail.ingest.reports import ingest_report
from imagetrail.ingest.validation import ReportInvalid, validate_report
from imagetrail.queries.reconcile_sources import covered_from, reporting_organizations
from imagetrail.report import SYSTEM_AZURE_DEVOPS, SYSTEM_GITHUB
from imagetrail.services.reconcile.sources import KeptReport, SourceError
from imagetrail.settings import Settings

log = logging.getLogger("imagetrail.services.reconcile")

# Runs that were still finishing when the previous pass listed them are listed again.
MARGIN = timedelta(minutes=15)


@dataclass
class SourceOutcome:
    system: str
    organization: str
    found: int = 0
    stored: int = 0
    duplicate: int = 0
    pending: int = 0
    refused: List[str] = field(default_factory=list)
    error: Optional[str] = None


@dataclass
class Source:
    system: str
    organization: str
    server_url: Optional[str]
    last_report_at: Optional[datetime]
    projects: List[str]


def _aware(moment: Optional[datetime]) -> Optional[datetime]:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Reconciler:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        from imagetrail.services.remediation import server_collection_urls

        self._servers = server_collection_urls(settings.azure_devops_server_urls)
        self._secrets = [s for s in (settings.azure_devops_pat, settings.azure_devops_client_secret,
                                     settings.github_token) if s]

    # -- which sources, from when ------------------------------------------------------------
    def sources(self) -> List[Source]:
        wanted = []
        if self.settings.azure_devops_identity:
            wanted.append(SYSTEM_AZURE_DEVOPS)
        if self.settings.github_token:
            wanted.append(SYSTEM_GITHUB)
        if not wanted:
            return []
        with self.sessions() as session:
            reporting = reporting_organizations(session, wanted)
        found: Dict[Tuple[str, str], Source] = {
            (o.system, o.name): Source(o.system, o.name, o.server_url, _aware(o.last_report_at), o.projects)
            for o in reporting}
        if SYSTEM_AZURE_DEVOPS in wanted:
            for name in self.settings.reconcile_azure_devops_orgs:
                found.setdefault((SYSTEM_AZURE_DEVOPS, name), Source(SYSTEM_AZURE_DEVOPS, name, None, None, []))
        return list(found.values())

    def _window_start(self, session: Session, source: Source, now: datetime) -> datetime:
        covered = covered_from(session, source.system, source.organization)
        start = _aware(covered) if covered else source.last_report_at
        oldest = now - timedelta(days=self.settings.reconcile_max_days)
        return oldest if start is None else max(start - MARGIN, oldest)

    # -- one pass -----------------------------------------------------------------------------
    def run_once(self) -> List[SourceOutcome]:
        outcomes = []
        for source in self.sources():
            now = datetime.now(timezone.utc)
            with self.sessions() as session:
                since = self._window_start(session, source, now)
            outcome = SourceOutcome(source.system, source.organization)
            try:
                self._reconcile(source, since, outcome)
            except SourceError as exc:
                outcome.error = self._mask(str(exc))
            except (DBAPIError, OSError):
                raise  # the database (or this host) is in trouble: the scheduler retries the pass later
            except Exception as exc:  # noqa: BLE001 - one source's surprise must not stop the others
                log.exception("reconcile %s/%s failed", source.system, source.organization)
                outcome.error = f"unexpected {type(exc).__name__}; see the backend's log"
            self._record(source, now, outcome)
            if outcome.error or outcome.refused or outcome.pending:
                log.warning("reconcile %s/%s: %s", source.system, source.organization,
                            outcome.error or "; ".join(outcome.refused[:3]) or f"{outcome.pending} pending")
            outcomes.append(outcome)
        return outcomes

    def _kept(self, source: Source, since: datetime) -> Iterable[KeptReport]:
        limit = self.settings.max_report_bytes
        if source.system == SYSTEM_AZURE_DEVOPS:
            from imagetrail.services.reconcile import azure_devops
            from imagetrail.services.remediation import trusted_organization_url

            org_url = trusted_organization_url(self.settings.azure_devops_url, self._servers, source.organization,
                                               source.server_url)
            if org_url is None:
                raise SourceError(f"no trusted URL for Azure DevOps organisation {source.organization!r} "
                                  "(IMAGETRAIL_AZURE_DEVOPS_URL / IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS)")
            if not source.projects:
                raise SourceError(f"no project of {source.organization!r} has reported yet, so there is no "
                                  "project to list runs of")
            return azure_devops.kept_reports(org_url, source.organization, source.projects, since,
                                             azure_devops.credentials(self.settings), limit)
        from imagetrail.services.reconcile.github import GitHubArtifacts

        client = GitHubArtifacts(self.settings.github_api_url, self.settings.github_token or "")

        def every_repository() -> Iterable[KeptReport]:
            try:
                for repository in source.projects:
                    yield from client.kept_reports(repository, since, limit)
            finally:
                client.close()

        return every_repository()

    def _reconcile(self, source: Source, since: datetime, outcome: SourceOutcome) -> None:
        for kept in self._kept(source, since):
            outcome.found += 1
            if kept.content is None or kept.principal is None:
                outcome.pending += 1 if kept.retry else 0
                outcome.refused.append(self._mask(f"{kept.where}: {kept.problem}"))
                continue
            try:
                body = json.loads(kept.content)
                validate_report(body)
            except (ValueError, ReportInvalid) as exc:  # JSONDecodeError and ReportInvalid are ValueErrors
                outcome.refused.append(f"{kept.where}: not a valid report: {str(exc)[:200]}")
                continue
            conflict = report_conflict(kept.principal, body)
            if conflict:
                outcome.refused.append(f"{kept.where}: the report does not describe this run: {conflict}")
                continue
            try:
                result = ingest_report(self.sessions, body, kept.principal)
            except DBAPIError as exc:
                outcome.pending += 1
                outcome.refused.append(f"{kept.where}: not stored yet ({type(exc).__name__})")
                continue
            if result.created:
                outcome.stored += 1
            else:
                outcome.duplicate += 1

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _record(self, source: Source, started: datetime, outcome: SourceOutcome) -> None:
        message = outcome.error or ("; ".join(outcome.refused[:5])[:2000] if outcome.refused else None)
        record_pass(self.sessions, PassRecord(
            system=source.system, organization=source.organization, started=started, stored=outcome.stored,
            pending=outcome.pending, message=message,
            listed=outcome.error is None,  # a source that could not be listed keeps its last count
            complete=outcome.error is None and outcome.pending == 0))

"""Resolve and store the owners of the runs that pushed the query's images (``imagetrail owners resolve``).

For each run: the CODEOWNERS rule matching the image's Dockerfile (label ``dev.imagetrail.dockerfile``,
else the entry point of its BuildKit provenance, else ``Dockerfile`` at the repository root) and the commit's author, both read at the built commit
through the run's own system (GitHub or Azure Repos) with the remediation credentials and trust
policy; then the configured team mapping and the requester. A source that cannot be read is named in
the answer and skipped; the others still count.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from sqlalchemy.orm import sessionmaker

from imagetrail.auth import Principal
from imagetrail.facts import CLAIMED, DISPUTED
from imagetrail.parsers.codeowners import DEFAULT_DOCKERFILE, CodeownersError
from imagetrail.queries import owners as owner_list
from imagetrail.remote.owner_sources import AzureRepository, GitHubRepository
from imagetrail.remote.trackers import TrackerError
from imagetrail.services import remediation_plan as plan
from imagetrail.services.remediation_trust import SYSTEM_GITHUB, Destination, Policy, route
from imagetrail.settings import Settings
from imagetrail.views.filters import ExplorerFilters
from imagetrail.views.remediation import ResolveAnswer, ResolvedRun
from imagetrail.views.trail import OwnerEntry, Trail


def _repository(destination: Destination, trail: Trail, settings: Settings):
    if destination.tracker == SYSTEM_GITHUB:
        return GitHubRepository(destination.base_url, settings.github_token, destination.container)
    return AzureRepository(
        destination.base_url, settings.azure_devops_pat or "", trail.project, trail.repository_name or ""
    )


def resolve(
    sessions: sessionmaker,
    settings: Settings,
    principal: Principal,
    filters: ExplorerFilters,
    max_runs: int = 100,
) -> ResolveAnswer:
    policy = Policy.from_settings(settings)
    owners_policy = owner_list.OwnerPolicy.from_settings(settings)
    with sessions() as session:
        images = plan.images(session, filters, principal)
        paths: Dict[str, str] = {}
        for digest, image in images.items():
            if image.trail is not None:
                paths[digest] = owner_list.dockerfile_path(session, image.trail.pushed_digest)
    done: Dict[int, ResolvedRun] = {}
    for digest, image in images.items():
        trail = image.trail
        if trail is None or trail.run_key is None or trail.run_key in done or len(done) >= max_runs:
            continue
        problems: List[str] = []
        found: List[OwnerEntry] = []
        author: Optional[OwnerEntry] = None
        destination = route(trail, policy)
        if not trail.commit or trail.evidence.get("commit") == DISPUTED:
            problems.append("codeowners, commit-author: the run's commit is unknown or disputed")
        elif not isinstance(destination, Destination):
            problems.append(f"codeowners, commit-author: {destination}")
        else:
            repository = _repository(destination, trail, settings)
            path = paths.get(digest, DEFAULT_DOCKERFILE)
            try:
                codeowners = repository.codeowners(trail.commit)
                if codeowners is not None:
                    found = owner_list.from_codeowners(codeowners[1], codeowners[0], path, trail)
            except (TrackerError, CodeownersError) as exc:
                problems.append(f"codeowners: {exc}")
            try:
                commit_author = repository.commit_author(trail.commit)
                if commit_author is not None and not commit_author.bot:
                    author = OwnerEntry(
                        source=owner_list.SOURCE_COMMIT_AUTHOR,
                        name=commit_author.name,
                        email=commit_author.email,
                        login=commit_author.login,
                        detail=f"author of {trail.commit[:12]}",
                        evidence=trail.evidence.get("commit", CLAIMED),
                    )
            except TrackerError as exc:
                problems.append(f"commit-author: {exc}")
        resolved = owner_list.ordered(found, author, trail, owners_policy)
        owner_list.store(sessions, trail.run_key, resolved)
        done[trail.run_key] = ResolvedRun(
            organization=trail.organization,
            project=trail.project,
            pipeline=trail.pipeline,
            run_id=trail.run_id,
            digest=digest,
            owners=resolved,
            problems=problems,
        )
    return ResolveAnswer(runs=list(done.values()))

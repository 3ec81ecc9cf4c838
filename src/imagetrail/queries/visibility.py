"""Who may see what, as SQL conditions built from the principal. The one home of the visibility rules.

Organisations: a principal granted every organisation (``organizations is None``) sees every row; any other
principal sees the rows of its organisations, compared in lower case as names are stored. An image (a digest)
belongs to the organisations whose runs pushed it or its image index / a platform manifest of it.

Registry events name no organisation: readers granted every organisation see all registries; other readers
see the registries ``IMAGETRAIL_REGISTRY_ORGS`` maps to one of their organisations.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from sqlalchemy import and_, bindparam, false, or_, select, true
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.settings import Settings
from imagetrail.store.models.cloud import ORGANIZATION_COPY_FULL, RunningContainer
from imagetrail.store.models.pipeline import DigestOrganization, Organization


def reads_every_organization(principal: Principal) -> bool:
    """Whether ``principal`` is granted every organisation (and so also sees rows that name none)."""
    return principal.organizations is None


def visible_organizations(principal: Principal) -> Optional[Set[str]]:
    """The organisation names ``principal`` may read, lower case; None means every organisation."""
    return None if principal.organizations is None else {o.lower() for o in principal.organizations}


def organization_condition(principal: Principal, column: Any = Organization.name) -> Any:
    """A WHERE condition on an organisation-name column: true for every row the principal may read."""
    visible = visible_organizations(principal)
    if visible is None:
        return true()
    return column.in_(sorted(visible)) if visible else false()


# The same rule for a statement built once and run many times (the trace's hot statements): the readable
# organisations are a parameter, bound per execution by ``organization_parameters``.
VISIBLE_ORGANIZATIONS = "visible_organizations"


def organization_parameter_condition(column: Any = Organization.name) -> Any:
    """``organization_condition`` with the organisations left as the ``VISIBLE_ORGANIZATIONS`` parameter; for
    statements of readers who are not granted every organisation (``reads_every_organization`` is False)."""
    return column.in_(bindparam(VISIBLE_ORGANIZATIONS, expanding=True))


def organization_parameters(principal: Principal) -> Dict[str, List[str]]:
    """The parameters of ``organization_parameter_condition`` for ``principal`` (none for a reader of every
    organisation, whose statement has no such condition). An empty list matches no row."""
    visible = visible_organizations(principal)
    return {} if visible is None else {VISIBLE_ORGANIZATIONS: sorted(visible)}


def container_condition_parts(session: Session, principal: Principal) -> List[Any]:
    """WHERE conditions on running_containers, no row meeting two of them; a container is visible when it meets
    one: its digest was pushed by a run of a readable organisation, itself or as its image index / a platform
    manifest (``digest_organizations``, kept by ingest). The same rows as ``organization_condition`` over the
    pushes joined up to their organisation, with the relatives of the pushed digests added (``digest_condition``
    on the container's digest).

    The parts: the container's filled copy ``organization_ids`` (a column filter, no lookup per candidate row),
    then the containers whose copy is not filled yet (NULL, just after a sync) or too long to keep
    (``ORGANIZATION_COPY_FULL``), read from ``digest_organizations``. A filter takes their OR; a count sums one
    statement per part, so the filled part reads the copy's own small index (an index-only scan) where the OR
    of them reads every row.
    """
    if visible_organizations(principal) is None:
        return [true()]
    c = RunningContainer
    ids = _organization_ids(session, principal)
    if not ids:
        return [false()]
    listed = [c.organization_ids.like(f"%,{i},%") for i in ids]  # NULL LIKE .. is not true: disjoint
    not_copied = or_(c.organization_ids.is_(None), c.organization_ids == ORGANIZATION_COPY_FULL)
    return [or_(*listed), and_(not_copied, _pushed_by(ids, c.digest))]


def digest_condition(session: Session, principal: Principal, digest: Any) -> Any:
    """A WHERE condition on a digest column: true for images a run of a readable organisation pushed, itself or
    as its image index / a platform manifest (``digest_organizations``: one index probe per candidate)."""
    if visible_organizations(principal) is None:
        return true()
    ids = _organization_ids(session, principal)
    return _pushed_by(ids, digest) if ids else false()


def _organization_ids(session: Session, principal: Principal) -> List[int]:
    # Read first, so the conditions name the ids and the planner sees plain filters; once per session (a
    # reader's explorer page builds both conditions). An organisation created later in a long session is
    # left out: rows hidden, never shown.
    visible = frozenset(visible_organizations(principal) or ())
    known: Dict[frozenset, List[int]] = session.info.setdefault("visible_organization_ids", {})
    if visible not in known:
        known[visible] = sorted(session.execute(
            select(Organization.id).where(organization_condition(principal))).scalars())
    return known[visible]


def _pushed_by(ids: List[int], digest: Any) -> Any:
    # A correlated EXISTS (one index probe per row that needs it), not IN an uncorrelated list: that made the
    # plan carry a hash of every digest of the organisations, and the reader's "exposed AND high" went from
    # 10 to 23 ms (benchmarks/results/bench_query.md).
    return select(DigestOrganization.digest).where(
        DigestOrganization.digest == digest, DigestOrganization.organization_id.in_(ids)).exists()


def visible_registries(principal: Principal, settings: Settings) -> Optional[Set[str]]:
    """Registries whose pushes ``principal`` may read; None means every registry."""
    if reads_every_organization(principal):
        return None
    return {host for host, orgs in settings.registry_organizations.items()
            if "*" in orgs or principal.organizations.intersection(orgs)}


def registry_condition(column, visible: Optional[Set[str]]):
    if visible is None:
        return None
    return column.in_(sorted(visible)) if visible else false()

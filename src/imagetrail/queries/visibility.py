"""Who may see what, as SQL conditions built from the principal. The one home of the visibility rules.

Registry events name no organisation: readers granted every organisation see all registries; other readers
see the registries ``IMAGETRAIL_REGISTRY_ORGS`` maps to one of their organisations.
"""

from __future__ import annotations

from typing import Optional, Set

from sqlalchemy import false

from imagetrail.auth import Principal
from imagetrail.settings import Settings


def visible_registries(principal: Principal, settings: Settings) -> Optional[Set[str]]:
    """Registries whose pushes ``principal`` may read; None means every registry."""
    if principal.organizations is None:
        return None
    return {host for host, orgs in settings.registry_organizations.items()
            if "*" in orgs or principal.organizations.intersection(orgs)}


def registry_condition(column, visible: Optional[Set[str]]):
    if visible is None:
        return None
    return column.in_(sorted(visible)) if visible else false()

"""The facts of a trail and how each is known: shared by the backend, the CLI and the web (stdlib only).

- ``verified``: bound to a claim of the credential that sent it (a job token, or the CI
  system's API);
- ``claimed``: stated in a report that no such claim binds (API key, app identity, or a field
  the job token does not name);
- ``disputed``: reports of one run disagree; every competing value is kept with its sender.
"""

from __future__ import annotations

from typing import Mapping

VERIFIED, CLAIMED, DISPUTED = "verified", "claimed", "disputed"
IDENTITY_FACTS = ("organization", "project", "pipeline", "run")  # the run itself
SOURCE_FACTS = ("repository", "branch", "commit", "requester")  # what reports of one run may disagree on
FACTS = IDENTITY_FACTS + SOURCE_FACTS


def summary(levels: Mapping[str, str]) -> str:
    """One line for tables, CSV cells and work items: 'verified: run, commit; disputed: requester'."""
    parts = []
    for level in (DISPUTED, CLAIMED, VERIFIED):
        named = [fact for fact in FACTS if levels.get(fact) == level]
        if named:
            parts.append(f"{level}: {', '.join(named)}")
    return "; ".join(parts)

"""How a run's repository, branch, commit and requester are known, from every statement of them.

The state of a fact is a pure function of the statements recorded for it (``fact_statements``),
so it does not depend on the order reports arrive in:

- one verified value -> ``verified`` (verified facts replace claimed ones);
- several verified values -> ``disputed`` (two bound credentials disagree);
- no verified value: one claimed value -> ``claimed``; several -> ``disputed`` (a claim never
  silently replaces another claim).

A disputed fact shows the value a run-bound credential (job token, CI API) stated if there is
one, else the first stated; the trace lists every competing value and who sent it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from imagetrail.server.auth.report_claims import BOUND_KINDS, CLAIMED, DISPUTED, VERIFIED


@dataclass(frozen=True)
class Statement:
    fact: str
    value: str
    ref_id: Optional[int]  # the repository / person row of the value
    evidence: str  # verified | claimed
    credential_kind: str
    credential_id: str

    @property
    def key(self) -> Tuple[str, str, str, str]:
        return self.fact, self.value, self.credential_kind, self.credential_id


def _norm(value: str) -> str:
    return value.strip().lower()


def _distinct(statements: Sequence[Statement]) -> List[Statement]:
    seen, found = set(), []
    for statement in statements:
        if _norm(statement.value) not in seen:
            seen.add(_norm(statement.value))
            found.append(statement)
    return found


def resolve(statements: Sequence[Statement]) -> Tuple[Optional[Statement], Optional[str]]:
    """The statement whose value the run shows, and its evidence; (None, None) without statements.
    ``statements`` are in the order they were recorded."""
    verified = _distinct([s for s in statements if s.evidence == VERIFIED])
    if len(verified) == 1:
        return verified[0], VERIFIED
    if len(verified) > 1:
        return verified[0], DISPUTED
    claimed = _distinct(statements)
    if not claimed:
        return None, None
    if len(claimed) == 1:
        return claimed[0], CLAIMED
    bound = [s for s in statements if s.credential_kind in BOUND_KINDS]
    return (bound or claimed)[0], DISPUTED

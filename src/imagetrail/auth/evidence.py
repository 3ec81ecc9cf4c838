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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from imagetrail.auth.report_claims import BOUND_KINDS
from imagetrail.facts import CLAIMED, DISPUTED, IDENTITY_FACTS, VERIFIED


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


def push_evidence(report_evidence: Optional[Mapping[str, str]], identity_kind: str,
                  run_facts: Mapping[str, Tuple[Any, Optional[str]]]) -> Dict[str, str]:
    """How each fact of one push is known. The run's identity as the push's own report knew it
    (reports stored before evidence: verified when sent by a run-bound credential); the run's
    ``run_facts`` (fact -> (value, stored evidence)) as all reports of the run together do."""
    bound = VERIFIED if identity_kind in BOUND_KINDS else CLAIMED
    found = {fact: (report_evidence or {}).get(fact, bound) for fact in IDENTITY_FACTS}
    for fact, (value, evidence) in run_facts.items():
        if value is not None:
            found[fact] = evidence or CLAIMED
    return found

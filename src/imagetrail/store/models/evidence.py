"""Evidence: who stated which value of a run's facts, and how it is known.

A run's repository, branch, commit and requester (``runs``) are resolved from every statement
recorded here (``server/evidence.py``): one row per distinct (run, fact, value, credential).
``evidence`` is ``verified`` (bound to a claim of the credential that sent it: a job token or
the CI system's API) or ``claimed`` (stated in a report the credential does not bind).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime
from imagetrail.store.models.pipeline import REF_LEN


class FactStatement(Base):
    __tablename__ = "fact_statements"
    __table_args__ = (UniqueConstraint("run_id", "fact", "value", "credential_kind", "credential_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))  # indexed by the unique key
    fact: Mapped[str] = mapped_column(String(16))  # repository | branch | commit | requester
    value: Mapped[str] = mapped_column(String(REF_LEN))  # clone URI, ref, commit, person key
    ref_id: Mapped[Optional[int]] = mapped_column(Integer)  # repositories.id / people.id of that value
    evidence: Mapped[str] = mapped_column(String(16))  # verified | claimed
    credential_kind: Mapped[str] = mapped_column(String(32))  # azure-devops | github | api-key | entra | ...
    credential_id: Mapped[str] = mapped_column(String(512))  # key:<id>, token subject, app id
    report_id: Mapped[Optional[str]] = mapped_column(String(71))  # the first report that stated it
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""Owners of a run's images, resolved from their sources (cloud/owners.py), in order.

One row per owner of a run: ``position`` 0 is asked first. ``source`` is codeowners | commit-author |
team-mapping | requester; ``evidence`` how the owner is known: verified (the resolving server read it
from configuration, or from the repository at a commit bound to the job's identity), claimed (read
at a commit the report only claimed), disputed (reports disagree on the commit or requester).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime
from imagetrail.store.models.pipeline import REF_LEN


class RunOwner(Base):
    __tablename__ = "run_owners"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32))
    name: Mapped[Optional[str]] = mapped_column(String(255))
    email: Mapped[Optional[str]] = mapped_column(String(320))
    login: Mapped[Optional[str]] = mapped_column(String(255))
    detail: Mapped[Optional[str]] = mapped_column(String(REF_LEN))  # the CODEOWNERS rule, the team
    evidence: Mapped[str] = mapped_column(String(16))
    resolved_at: Mapped[datetime] = mapped_column(UTCDateTime())

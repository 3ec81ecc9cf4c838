"""Reconcile bookkeeping: which process reconciles now, and how far each source is covered.

``reconcile_leases``: one row per job name; a process reconciles only while it holds the row
(an expiring lease, so a crashed holder does not block the others for long).
``reconcile_sources``: one row per CI organisation reconciled (Azure DevOps organisation,
GitHub owner): when it was last reconciled, from when the next run lists runs, how many kept
reports are still pending and how many were stored by reconcile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime


class ReconcileLease(Base):
    __tablename__ = "reconcile_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[Optional[str]] = mapped_column(String(128))
    # Epoch seconds: compared in SQL on SQLite and PostgreSQL alike, without time zone pitfalls.
    expires_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[Optional[float]] = mapped_column(Float)


class ReconcileSource(Base):
    __tablename__ = "reconcile_sources"
    __table_args__ = (UniqueConstraint("system", "organization"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    system: Mapped[str] = mapped_column(String(32))  # azure-devops | github
    organization: Mapped[str] = mapped_column(String(255))  # lower-cased, as in organizations.name
    last_run_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Start of the last complete run: the next run lists runs finished since then (minus a margin).
    covered_from: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    pending: Mapped[int] = mapped_column(Integer, default=0)  # kept reports found but not stored yet
    reconciled: Mapped[int] = mapped_column(Integer, default=0)  # kept reports stored by reconcile, in all
    last_error: Mapped[Optional[str]] = mapped_column(Text)

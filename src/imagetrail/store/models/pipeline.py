"""Pipeline side of the map: who pushed which image, from which run, repository and commit.

Every fact keeps its evidence: a push row points at the report that stated it
(``reports``: when it was received and which identity sent it), and a run's repository,
branch, commit and requester say how they are known (``*_evidence``, from ``fact_statements``).
Dimension tables (organisation, project, pipeline, repository, person) are
shared by all reports and created on first sight.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, ForeignKey, Index, Integer, Select, String, Text, UniqueConstraint, select, union
from sqlalchemy.orm import Mapped, mapped_column, relationship

from imagetrail.store.db import Base, UTCDateTime

# Long enough for any registry/repository path seen in practice; Docker allows 255 for a
# domain and repository paths of a few hundred characters.
REF_LEN = 1024


class Report(Base):
    """One collector report as received: the evidence behind every push."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(71), primary_key=True)  # sha256:<64 hex>, deterministic
    schema_version: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    identity_kind: Mapped[str] = mapped_column(String(32))  # api-key | azure-devops | github | entra
    identity_subject: Mapped[str] = mapped_column(String(512))
    job_id: Mapped[Optional[int]] = mapped_column(ForeignKey("jobs.id"), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # How the run it names is known: {"organization"|"project"|"pipeline"|"run": "verified"|"claimed"};
    # None for reports stored before evidence (then: verified when identity_kind is run-bound).
    evidence: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (UniqueConstraint("system", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    system: Mapped[str] = mapped_column(String(32))  # azure-devops | github
    name: Mapped[str] = mapped_column(String(255))  # lower-cased organisation name / GitHub owner
    external_id: Mapped[Optional[str]] = mapped_column(String(255))
    server_url: Mapped[Optional[str]] = mapped_column(String(REF_LEN))
    last_report_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[Optional[str]] = mapped_column(String(255))
    last_report_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    organization: Mapped[Organization] = relationship()


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("project_id", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    external_id: Mapped[str] = mapped_column(String(255))  # definition id / workflow ref
    name: Mapped[Optional[str]] = mapped_column(String(512))

    project: Mapped[Project] = relationship()


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("organization_id", "uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    uri: Mapped[str] = mapped_column(String(REF_LEN))  # clone URI; the name when no URI was reported
    name: Mapped[Optional[str]] = mapped_column(String(512))
    type: Mapped[Optional[str]] = mapped_column(String(64))  # TfsGit, GitHub, Bitbucket...
    external_id: Mapped[Optional[str]] = mapped_column(String(255))


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    key: Mapped[str] = mapped_column(String(512))  # email, else id, else name (lower-cased)
    name: Mapped[Optional[str]] = mapped_column(String(512))
    email: Mapped[Optional[str]] = mapped_column(String(512))
    external_id: Mapped[Optional[str]] = mapped_column(String(255))


class Run(Base):
    """A pipeline run (Azure DevOps build / release, GitHub workflow run attempt)."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("pipeline_id", "external_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))  # indexed by the unique key
    external_id: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer, default=1)  # GitHub run attempt; 1 on Azure DevOps
    number: Mapped[Optional[str]] = mapped_column(String(255))
    url: Mapped[Optional[str]] = mapped_column(String(REF_LEN))
    reason: Mapped[Optional[str]] = mapped_column(String(128))
    repository_id: Mapped[Optional[int]] = mapped_column(ForeignKey("repositories.id"), index=True)
    branch: Mapped[Optional[str]] = mapped_column(String(REF_LEN))
    commit: Mapped[Optional[str]] = mapped_column(String(64))
    requester_id: Mapped[Optional[int]] = mapped_column(ForeignKey("people.id"))
    # How each of the four facts above is known: verified | claimed | disputed (models/evidence.py).
    repository_evidence: Mapped[Optional[str]] = mapped_column(String(16))
    branch_evidence: Mapped[Optional[str]] = mapped_column(String(16))
    commit_evidence: Mapped[Optional[str]] = mapped_column(String(16))
    requester_evidence: Mapped[Optional[str]] = mapped_column(String(16))

    pipeline: Mapped[Pipeline] = relationship()
    repository: Mapped[Optional[Repository]] = relationship()
    requester: Mapped[Optional[Person]] = relationship()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("run_id", "external_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))  # indexed by the unique key
    external_id: Mapped[str] = mapped_column(String(255))  # job id, else job name
    name: Mapped[Optional[str]] = mapped_column(String(512))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    stage: Mapped[Optional[str]] = mapped_column(String(512))
    agent_name: Mapped[Optional[str]] = mapped_column(String(512))
    agent_os: Mapped[Optional[str]] = mapped_column(String(64))
    host_type: Mapped[Optional[str]] = mapped_column(String(64))

    run: Mapped[Run] = relationship()


class Image(Base):
    """An image by its manifest (or index) digest: the key every side joins on."""

    __tablename__ = "images"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ImageReference(Base):
    __tablename__ = "image_references"
    __table_args__ = (UniqueConstraint("registry", "repository", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "registry" is reserved on declarative classes, so the attribute is registry_host.
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(512))
    tag: Mapped[str] = mapped_column(String(128), default="")  # "" when pushed by digest only


class Push(Base):
    """Job J pushed reference R as digest D: the edge the trace walks."""

    __tablename__ = "pushes"
    __table_args__ = (
        UniqueConstraint("report_id", "reference", "digest"),
        # (.., pushed_at, id): the trace's page order, so a page is read in order and the LIMIT stops the scan
        Index("ix_pushes_digest_pushed_at_id", "digest", "pushed_at", "id"),
        Index("ix_pushes_reference_id_pushed_at_id", "reference_id", "pushed_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"))  # indexed by the unique key
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    reference_id: Mapped[int] = mapped_column(ForeignKey("image_references.id"))
    digest: Mapped[Optional[str]] = mapped_column(ForeignKey("images.digest"))  # None only with digest_error
    reference: Mapped[str] = mapped_column(String(REF_LEN))  # as pushed
    image_id: Mapped[Optional[str]] = mapped_column(String(71))  # local image (config) id
    pushed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    digest_error: Mapped[Optional[str]] = mapped_column(Text)

    job: Mapped[Job] = relationship()
    image_reference: Mapped[ImageReference] = relationship()


class ImageRelation(Base):
    """An image index (manifest list) and one of the per-platform manifests it lists.

    The registry, the collector, the scanner and the kubelet may each name a different one
    of these digests; the trace and the explorer follow this relation both ways.
    """

    __tablename__ = "image_relations"
    __table_args__ = (UniqueConstraint("index_digest", "manifest_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    index_digest: Mapped[str] = mapped_column(String(71))  # indexed by the unique key
    manifest_digest: Mapped[str] = mapped_column(String(71), index=True)
    os: Mapped[Optional[str]] = mapped_column(String(64))
    architecture: Mapped[Optional[str]] = mapped_column(String(64))
    variant: Mapped[Optional[str]] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # collector | registry | scanner
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


def with_related(digests: Select) -> Select:
    """The digests of ``digests`` (a one-column select) plus their index / platform-manifest relatives: the one
    hop the trace, the explorer and the pushed-digests list all follow."""
    base = digests.subquery()
    column = base.c[0]
    return union(
        select(column),
        select(ImageRelation.manifest_digest).where(ImageRelation.index_digest.in_(select(column))),
        select(ImageRelation.index_digest).where(ImageRelation.manifest_digest.in_(select(column))),
    )


class DigestOrganization(Base):
    """An organisation whose run pushed this digest, or its image index or one of its platform manifests.

    Derived from ``pushes`` and ``image_relations`` (one hop, like the trace) and rewritten for the digests
    a report or a new relation touches (``imagetrail.ingest.digest_organizations``), so "may this reader see
    the image" is one indexed lookup (``imagetrail.queries.visibility.container_condition_parts``) instead of a join
    up from every push. A digest with no row was pushed by no reported run.
    """

    __tablename__ = "digest_organizations"
    __table_args__ = (Index("ix_digest_organizations_organization_digest", "organization_id", "digest"),)

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)

"""Reports kept with Azure DevOps runs: the Builds and Attachments calls, through ``azure-devops``.

Builds - List (``minTime``) per project, then each build's attachments of type
``imagetrail.report`` (Attachments - List / Get). Shared by the backend's reconcile source
(services.reconcile.azure_devops) and the ``imagetrail reconcile`` command (client), which is why it
lives here and not in services: the client may not import services.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterator, Tuple

ATTACHMENT_TYPE = "imagetrail.report"
# .../_apis/build/builds/{buildId}/{timelineId}/{recordId}/attachments/{type}/{name}
_ATTACHMENT_HREF = re.compile(r"/builds/(?P<build>\d+)/(?P<timeline>[0-9a-fA-F-]{36})/(?P<record>[0-9a-fA-F-]{36})/"
                              r"attachments/")


def builds_with_reports(build_client: Any, project: str, since: datetime, top: int) -> Iterator[Tuple[Any, Any]]:
    """(build, attachment) for every kept report of the project's builds since ``since``."""
    for build in build_client.get_builds(project, min_time=since, top=top) or []:
        for attachment in build_client.get_attachments(project, build.id, ATTACHMENT_TYPE) or []:
            yield build, attachment


def _self_href(attachment: Any) -> str:
    """The attachment's download link. The package maps ``_links`` to a ReferenceLinks model whose
    ``links`` field is never in the JSON, so the links end up in ``additional_properties``."""
    links = getattr(attachment, "_links", None)
    if links is None:
        return ""
    found = (getattr(links, "links", None) or getattr(links, "additional_properties", None) or {}).get("self")
    return (found or {}).get("href", "") if isinstance(found, dict) else ""


def download(build_client: Any, project: str, build_id: int, attachment: Any, limit: int) -> bytes:
    """The attachment's content; ValueError when it has no link or is larger than ``limit`` bytes."""
    match = _ATTACHMENT_HREF.search(_self_href(attachment))
    if not match:
        raise ValueError(f"attachment {attachment.name!r} of build {build_id} has no download link")
    chunks, size = [], 0
    for chunk in build_client.get_attachment(project, build_id, match["timeline"], match["record"],
                                             ATTACHMENT_TYPE, attachment.name):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"attachment {attachment.name!r} of build {build_id} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

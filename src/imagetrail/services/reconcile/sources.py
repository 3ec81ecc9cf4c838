"""A report kept with its run, as a reconcile source yields it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from imagetrail.auth import Principal


@dataclass
class KeptReport:
    where: str  # names the run and the attachment / artifact, for messages
    content: Optional[bytes]  # None when it could not be read (``problem`` says why)
    principal: Optional[Principal]
    problem: Optional[str] = None
    retry: bool = True  # False: refused for good (a later pass would refuse it again)


class SourceError(Exception):
    """A source could not be listed at all (credentials, network); the message says what to do."""

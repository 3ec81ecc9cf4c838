"""What the collector prints: one line per message, in the CI system's own warning syntax.

Azure Pipelines: ``##vso[task.logissue type=warning]ImageTrail: ...``; GitHub Actions
(``GITHUB_ACTIONS=true``): ``::warning::ImageTrail: ...``; elsewhere ``ImageTrail: warning: ...``
on stderr. Every line is cleaned (see ``text.for_log``); every known secret value, and the
credentials of any ``scheme://user:password@host`` URL, is masked before it is written, whatever
its origin (an exception text may quote a URL or a header).
"""

from __future__ import annotations

import re
import sys
from typing import List, Mapping, Optional, TextIO

from imagetrail.collector.settings import SECRET_VARIABLES
from imagetrail.collector.text import for_log

PREFIX = "ImageTrail: "
MASK = "***"
# scheme://user:password@host: a backend, proxy or registry URL may carry credentials.
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/?#@]+@", re.IGNORECASE)


class Console:
    def __init__(self, env: Mapping[str, str], out: Optional[TextIO] = None,
                 err: Optional[TextIO] = None) -> None:
        self.azure = (env.get("TF_BUILD") or "").lower() == "true"
        self.github = not self.azure and (env.get("GITHUB_ACTIONS") or "").lower() == "true"
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._secrets: List[str] = []
        self.warnings: List[str] = []  # what was warned, for the report
        for name in SECRET_VARIABLES:
            self.add_secret(env.get(name))

    def add_secret(self, value: Optional[str]) -> None:
        # Very short values would mask ordinary words; real tokens and keys are long.
        if value and len(value) >= 6 and value not in self._secrets:
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return _URL_CREDENTIALS.sub(r"\1" + MASK + "@", text)

    def safe(self, message: object, limit: int = 600) -> str:
        return for_log(self.mask(str(message)), limit)

    def info(self, message: str) -> None:
        self._write(self.out, PREFIX + self.safe(message))

    def warning(self, message: str) -> None:
        text = self.safe(message)
        self.warnings.append(text)
        if self.azure:
            # logissue data: '%' must be escaped as %AZP25 so it is shown literally.
            self._write(self.out, "##vso[task.logissue type=warning]" + PREFIX + text.replace("%", "%AZP25"))
        elif self.github:
            self._write(self.out, "::warning::" + PREFIX + text.replace("%", "%25"))
        else:
            self._write(self.err, PREFIX + "warning: " + text)

    def command(self, line: str) -> None:
        """A logging command built by the collector itself (e.g. task.addattachment)."""
        self._write(self.out, self.mask(line))

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe must not fail the job

"""CODEOWNERS: which rule owns an image's Dockerfile (or build context), from the file at the built commit.

Parsing and matching are the ``codeowners`` package's (GitHub's rules: gitignore-style patterns without
``!`` negation or ``[ ]`` ranges, the last matching line wins, a line without owners clears them).
Azure Repos has no CODEOWNERS of its own; the same file format is read from an Azure Repos repository,
where owners are most useful as e-mail addresses (``@name`` handles are kept as written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

# Where GitHub looks, in its order (the first found is used); Azure Repos: the same plus .azuredevops/.
GITHUB_LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
AZURE_REPOS_LOCATIONS = (".azuredevops/CODEOWNERS", ".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
# GitHub ignores a CODEOWNERS file over 3 MB; so does ImageTrail, and bounds the line count too.
MAX_BYTES = 3 * 1024 * 1024
MAX_LINES = 50_000
DEFAULT_DOCKERFILE = "Dockerfile"


class CodeownersError(ValueError):
    """The file cannot be used (too big, not text); the message says why."""


@dataclass(frozen=True)
class Match:
    owners: List[Tuple[str, str]]  # (USERNAME | TEAM | EMAIL, value) in the rule's order
    line: int
    pattern: str

    @property
    def rule(self) -> str:
        return f"CODEOWNERS line {self.line}: {self.pattern}"


def parse_text(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise CodeownersError(f"CODEOWNERS is {len(data)} bytes, over the {MAX_BYTES} GitHub reads")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CodeownersError("CODEOWNERS is not UTF-8 text") from None
    if text.count("\n") > MAX_LINES:
        raise CodeownersError(f"CODEOWNERS has more than {MAX_LINES} lines")
    return text


def match(text: str, path: str) -> Optional[Match]:
    """The rule owning ``path`` (repository-relative, ``/`` separators), or None when no line matches."""
    from codeowners import CodeOwners

    owners, line, pattern, _section = CodeOwners(text).matching_line(normalize_path(path))
    if pattern is None:
        return None
    return Match(owners=list(owners), line=line, pattern=pattern)


def normalize_path(path: str) -> str:
    """A repository-relative path: no leading ``./`` or ``/``, ``\\`` as ``/``, no ``..`` escapes."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CodeownersError(f"the path {path[:200]!r} leaves the repository")
    return "/".join(parts) or DEFAULT_DOCKERFILE

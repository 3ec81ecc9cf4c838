"""Each public fixture is stored once (tests/fixtures/*/SOURCES.md says where it came from)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_no_fixture_is_stored_twice():
    by_content = defaultdict(list)
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        by_content[hashlib.sha256(path.read_bytes()).hexdigest()].append(path.relative_to(FIXTURES).as_posix())
    assert len(by_content) > 20, "the fixtures were not found"
    copies = [paths for paths in by_content.values() if len(paths) > 1]
    assert copies == [], "read one copy from both places instead"


def test_every_fixture_is_attributed_in_its_directorys_sources():
    missing = [path.relative_to(FIXTURES).as_posix() for path in sorted(FIXTURES.rglob("*"))
               if path.is_file() and path.name != "SOURCES.md"
               and f"`{path.name}`" not in (path.parent / "SOURCES.md").read_text(encoding="utf-8")]
    assert missing == []

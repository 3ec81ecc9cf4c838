"""The CODEOWNERS matcher against real files from public repositories (tests/fixtures/codeowners)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagetrail.parsers.codeowners import CodeownersError, match, normalize_path, parse_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "codeowners"


def owners(fixture: str, path: str):
    found = match(parse_text((FIXTURES / fixture).read_bytes()), path)
    return None if found is None else [value for _, value in found.owners]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("Dockerfile", ["@global-owner1", "@global-owner2"]),
        ("web/app.js", ["@js-owner"]),  # unanchored: any depth; the inline comment is not an owner
        ("cmd/main.go", ["docs@example.com"]),
        ("notes.txt", ["@octo-org/octocats"]),
        ("build/logs/Dockerfile", ["@octocat"]),  # **/logs (later) wins over /build/logs/
        ("docs/Dockerfile", ["@doctocat"]),  # /docs/ is later than docs/*
        ("docs/api/Dockerfile", ["@doctocat"]),
        ("scripts/Dockerfile", ["@doctocat", "@octocat"]),
        ("services/apps/Dockerfile", ["@octocat"]),  # apps/ matches a directory anywhere
        ("apps/github/Dockerfile", []),  # a rule without owners clears them: nobody
    ],
)
def test_github_docs_example_last_match_wins(path, expected):
    assert owners("github-docs-example_CODEOWNERS", path) == expected


def test_opentelemetry_collector_directories_and_the_default():
    approvers = "@open-telemetry/collector-approvers"
    assert owners("opentelemetry-collector_CODEOWNERS", "cmd/otelcorecol/Dockerfile") == [approvers]
    assert owners("opentelemetry-collector_CODEOWNERS", "pdata/pprofile/Dockerfile") == [
        approvers,
        "@mx-psi",
        "@dmathieu",
    ]
    # "pdata/" is a directory rule; "pdata/pprofile" (later, without a slash) names a file or directory.
    assert owners("opentelemetry-collector_CODEOWNERS", "pdata/internal/Dockerfile") == [
        approvers,
        "@BogdanDrutu",
        "@dmitryax",
    ]


def test_anchored_rules_and_no_default_owner():
    assert owners("pol-token_CODEOWNERS", "src/Dockerfile") == ["@0xPolygon/internal-security"]
    assert owners("pol-token_CODEOWNERS", "script/deploy/x/Deploy.s.sol") == ["@0xPolygon/internal-security"]
    assert owners("pol-token_CODEOWNERS", "lib/src/Dockerfile") is None  # /src/ is anchored to the root
    assert owners("pol-token_CODEOWNERS", "Dockerfile") is None
    assert owners("fleet-examples_CODEOWNERS", "single-cluster/helm/Dockerfile") == ["@rancher/fleet"]


def test_kinds_and_the_rule_are_reported():
    found = match(parse_text((FIXTURES / "github-docs-example_CODEOWNERS").read_bytes()), "x.go")
    assert found.owners == [("EMAIL", "docs@example.com")]
    assert found.rule == "CODEOWNERS line 12: *.go"


def test_paths_are_repository_relative_and_bounded():
    assert normalize_path("./src\\app/Dockerfile") == "src/app/Dockerfile"
    assert normalize_path("/") == "Dockerfile"
    with pytest.raises(CodeownersError, match="leaves the repository"):
        normalize_path("../../etc/passwd")
    with pytest.raises(CodeownersError, match="over the"):
        parse_text(b"* @a\n" * 700_000)
    with pytest.raises(CodeownersError, match="not UTF-8"):
        parse_text(b"\xff\xfe* @a")

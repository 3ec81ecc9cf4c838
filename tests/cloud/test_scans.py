"""Parsing Trivy and Grype reports, detected by content; errors name the file and the field."""

from __future__ import annotations

import json

import pytest

from imagetrail import severity as sev
from imagetrail.parsers.scans import ScanFormatError, parse_report
from tests.cloud.support import FIXTURES


def load(name):
    return (FIXTURES / name).read_bytes()


def test_trivy_image_report():
    report = parse_report(load("trivy-action_alpine-3.10_image-report.json"), "alpine.json")
    assert (report.format, report.scanner, report.scanner_version) == ("trivy-image", "trivy", "0.72.0")
    (image,) = report.images
    assert image.digests == ["sha256:451eee8bedcb2f029756dc3e9d73bab0e7943c1ac55cff3a4861c52a0fdd3e98"]
    (finding,) = image.findings
    assert (
        finding.vulnerability_id,
        finding.package,
        finding.installed_version,
        finding.fixed_version,
        finding.severity,
    ) == ("CVE-2021-36159", "apk-tools", "2.10.6-r0", "2.10.7-r0", sev.CRITICAL)


def test_trivy_report_with_two_results_counts_every_finding():
    report = parse_report(load("trivysummary_acp-clamav-http-0.4.0_image-report.json"), "clamav.json")
    findings = report.images[0].findings
    assert len(findings) == 21
    assert sum(f.severity == sev.HIGH for f in findings) == 8
    assert sum(f.severity == sev.MEDIUM for f in findings) == 13
    assert "golang.org/x/sys" in {f.package for f in findings}


def test_trivy_k8s_report_keeps_each_image_once_and_warns_about_unscanned_resources():
    report = parse_report(load("zora_trivy-k8s-report_kind-cluster.json"), "kind.json")
    assert report.format == "trivy-k8s"
    assert len(report.images) == 6  # k8s-sidecar appears in two deployments
    assert len(report.warnings) == 1 and "Deployment foo/bar" in report.warnings[0]
    nginx = [i for i in report.images if i.artifact == "nginx:1.25.0"][0]
    assert nginx.digests == ["sha256:af296b188c7b7df99ba960ca614439c99cb7cf252ed7bbc23e90cfda59092305"]


def test_grype_report_carries_manifest_and_repo_digests_and_their_relation():
    report = parse_report(load("grype_chainguard-ruby_image.json"), "ruby.json")
    assert (report.scanner, report.scanner_version) == ("grype", "0.61.1")
    assert report.db_version == "schemaVersion=5 built=2023-05-17T01:32:43Z"
    # the report's -04:00 offset is honoured: the same instant, normalised to UTC at parse
    assert report.scanned_at.isoformat() == "2023-05-18T01:00:56.783213+00:00"
    (image,) = report.images
    manifest = "sha256:86abe662dfa3746038eea6b0db91092b0767d78b8b8938a343d614cd1579adc2"
    index = "sha256:3c9afb4f188827ea1062ec3b8acea32893236a0d7df31e0498df93486cff0978"
    assert image.digests == [manifest, index]
    assert image.relations == [(index, manifest, "linux", "arm64")]
    assert [(f.vulnerability_id, f.fixed_version) for f in image.findings] == [
        ("CVE-2023-28755", "3.0.6-r0"),
        ("CVE-2023-28755", None),
        ("GHSA-HV5J-3H9F-99C2", "0.10.2"),
    ]
    assert all(f.severity == sev.HIGH for f in image.findings)


def edited(name, change):
    document = json.loads(load(name))
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "data, message",
    [
        (load("trivy-action_alpine-3.10_image-report.json")[:2000], "alpine.json: invalid JSON at line"),
        (b'{"version": "2.1.0", "runs": []}', "alpine.json: not a supported report"),
        (b"[]", "alpine.json: the top level is a list"),
        (
            edited("trivy-action_alpine-3.10_image-report.json", lambda d: d.update(SchemaVersion=1)),
            "alpine.json: SchemaVersion is 1; only Trivy JSON SchemaVersion 2",
        ),
        (
            edited("trivy-action_alpine-3.10_image-report.json", lambda d: d["Metadata"].pop("RepoDigests")),
            "alpine.json: Metadata.RepoDigests is missing or empty",
        ),
        (
            edited(
                "trivy-action_alpine-3.10_image-report.json",
                lambda d: d["Results"][0]["Vulnerabilities"][0].pop("VulnerabilityID"),
            ),
            "alpine.json: Results[0].Vulnerabilities[0].VulnerabilityID is missing",
        ),
        (
            edited(
                "trivy-action_alpine-3.10_image-report.json",
                lambda d: d["Metadata"].update(RepoDigests=["alpine:3"]),
            ),
            "alpine.json: Metadata.RepoDigests[0] is not <repository>@sha256:<64 hex>",
        ),
        (
            edited("grype_chainguard-ruby_image.json", lambda d: d["source"].update(type="directory")),
            "alpine.json: source.type is 'directory'",
        ),
        (
            edited(
                "grype_chainguard-ruby_image.json",
                lambda d: (
                    d["source"]["target"].pop("repoDigests"),
                    d["source"]["target"].pop("manifestDigest"),
                ),
            ),
            "alpine.json: source.target.repoDigests and source.target.manifestDigest are missing",
        ),
        (
            edited("grype_chainguard-ruby_image.json", lambda d: d["matches"][1]["artifact"].pop("name")),
            "alpine.json: matches[1].artifact.name is missing",
        ),
    ],
)
def test_bad_reports_name_the_file_and_the_field(data, message):
    with pytest.raises(ScanFormatError) as excinfo:
        parse_report(data, "alpine.json")
    assert message in str(excinfo.value)


def test_truncated_report_is_called_truncated():
    data = load("grype_chainguard-ruby_image.json")
    with pytest.raises(ScanFormatError, match="looks truncated"):
        parse_report(data[: len(data) // 2], "ruby.json")

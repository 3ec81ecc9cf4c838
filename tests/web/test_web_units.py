"""Unit tests of the web layer's pure parts: search routing, graph layout, explorer parameters, CSV."""

from __future__ import annotations

import re

import pytest

from imagetrail.sanitize import csv_cell
from imagetrail.web.explorer_view import ExplorerRequest
from imagetrail.web.graph import Edge, Node, layout, render_svg
from imagetrail.web.search import Kind, classify
from imagetrail.web.session import safe_next

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, kinds",
    [
        (DIGEST, [Kind.DIGEST]),
        (DIGEST.upper().replace("SHA256", "sha256"), [Kind.DIGEST]),
        ("sha256:abababababab", [Kind.DIGEST_PREFIX]),
        ("abababababab", [Kind.DIGEST_PREFIX]),
        ("ababababab", [Kind.IMAGE_REFERENCE, Kind.PIPELINE]),  # too short for a digest prefix
        ("CVE-2023-5363", [Kind.CVE]),
        ("cve-2021-44228", [Kind.CVE]),
        ("GHSA-jfh8-c2jp-5v3q", [Kind.CVE]),
        ("https://dev.azure.com/org/proj/_git/app", [Kind.REPOSITORY_URL]),
        ("git@github.com:org/app.git", [Kind.REPOSITORY_URL]),
        ("myregistry.azurecr.io/team/app:1.4", [Kind.IMAGE_REFERENCE]),
        ("localhost:5000/app", [Kind.IMAGE_REFERENCE]),
        ("nginx:1.25", [Kind.IMAGE_REFERENCE]),
        ("payments/api", [Kind.WORKLOAD, Kind.IMAGE_REFERENCE, Kind.PIPELINE]),  # ambiguous: both looked up
        ("Payments API CI", [Kind.PIPELINE]),
        ("   ", []),
    ],
)
def test_classify(text, kinds):
    assert [r.kind for r in classify(text)] == kinds


def test_classify_normalises_values():
    assert classify("cve-2021-44228")[0].value == "CVE-2021-44228"
    assert classify("abababababab")[0].value == "sha256:abababababab"


def _chain():
    nodes = [
        Node("w1", 0, "workload", "ns/a"),
        Node("w2", 0, "workload", "ns/b", badge="internet-exposed"),
        Node("img", 1, "image", "Image", lines=["reg/app:1", "reg/app:latest"]),
        Node("p1", 3, "push", "Push :1"),
        Node("p2", 3, "push", "Push :latest"),
        Node("run", 4, "run", "Run #7", href="https://dev.azure.com/o/p/_build/results?buildId=7"),
        Node("c", 5, "commit", "Commit abc"),
        Node("o", 6, "owner", "Owner <script>"),
    ]
    edges = [
        Edge("w1", "img"),
        Edge("w2", "img"),
        Edge("img", "p1"),
        Edge("img", "p2"),
        Edge("p1", "run"),
        Edge("p2", "run"),
        Edge("run", "c"),
        Edge("c", "o"),
        Edge("c", "missing"),
    ]
    return nodes, edges


def test_layout_places_layers_left_to_right_without_overlap():
    nodes, edges = _chain()
    placed = layout(nodes, edges)
    by_id = {p.node.id: p for p in placed.nodes}
    # Empty layer 2 is dropped: columns are consecutive and strictly increasing in x by layer.
    xs = sorted({p.x for p in placed.nodes})
    assert len(xs) == 6 and by_id["img"].x < by_id["p1"].x < by_id["run"].x < by_id["o"].x
    assert by_id["p1"].x == by_id["p2"].x
    for a in placed.nodes:
        for b in placed.nodes:
            if a is not b and a.x == b.x:
                assert a.y + a.height <= b.y or b.y + b.height <= a.y, (a.node.id, b.node.id)
        assert 0 <= a.x and a.x + a.width <= placed.width and 0 <= a.y and a.y + a.height <= placed.height
    assert len(placed.edges) == 8  # the edge to an unknown node is dropped


def test_barycentre_ordering_removes_a_crossing():
    nodes = [Node("a", 0, "x", "a"), Node("b", 0, "x", "b"), Node("B", 1, "x", "B"), Node("A", 1, "x", "A")]
    placed = {p.node.id: p for p in layout(nodes, [Edge("a", "A"), Edge("b", "B")]).nodes}
    assert placed["A"].y < placed["B"].y


def test_svg_is_escaped_accessible_and_linked():
    nodes, edges = _chain()
    svg = str(render_svg(nodes, edges, title="Trail of <img>", description="d & e"))
    assert (
        svg.startswith("<svg") and 'role="img"' in svg and 'aria-labelledby="graph-title graph-desc"' in svg
    )
    assert "<script>" not in svg and "Owner &lt;script&gt;" in svg and "Trail of &lt;img&gt;" in svg
    assert '<a href="https://dev.azure.com/o/p/_build/results?buildId=7">' in svg
    assert len(re.findall(r'<path class="edge"', svg)) == 8
    assert svg.count('class="node ') == len(nodes)
    assert "internet-exposed" in svg


def test_long_labels_keep_the_meaningful_end():
    long_ref = "registry.example.com/a/very/long/team/path/service-name:2024.06.11"
    svg = str(render_svg([Node("n", 0, "push", "Push", lines=[long_ref])], [], title="t"))
    visible = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert visible[1].startswith("…") and visible[1].endswith("service-name:2024.06.11")
    assert long_ref in svg  # whole in the tooltip


def test_explorer_request_maps_the_form_to_filters():
    query = ExplorerRequest.from_params(
        {
            "exposed": "true",
            "min_severity": "high",
            "cve": "cve-2023-1",
            "fix_available": "true",
            "pushed_after": "2024-05-31",
            "sort": "workload",
            "page": "3",
            "page_size": "25",
        }
    )
    assert not query.errors
    f = query.filters
    assert (f.exposed, f.min_severity, f.cve, f.fix_available) == (True, "high", "CVE-2023-1", True)
    assert f.pushed_after.isoformat() == "2024-05-31T00:00:00+00:00"
    assert (query.sort, query.page, query.page_size) == ("workload", 3, 25)
    link = query.href(sort="-severity", page=1)
    assert "sort=" not in link and "page=" not in link and "page_size=25" in link and "exposed=true" in link


def test_explorer_request_names_each_bad_field():
    query = ExplorerRequest.from_params(
        {
            "exposed": "maybe",
            "sort": "owner",
            "page": "0",
            "page_size": "7",
            "pushed_before": "31/05/2024",
            "min_severity": "extreme",
        }
    )
    text = " | ".join(query.errors)
    for field_name in ("exposed:", "sort:", "page:", "page_size:", "pushed_before:", "min_severity:"):
        assert field_name in text, text


@pytest.mark.parametrize(
    "value, expected",
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("@x", "'@x"),
        ("-2", "'-2"),
        (" =1+2", "' =1+2"),  # leading whitespace does not hide a formula
        ("\u00a0 @SUM(A1)", "'\u00a0 @SUM(A1)"),
        ("\n-cmd", "'\n-cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("nginx:1.25", "nginx:1.25"),
        ("a=b", "a=b"),
        (None, ""),
        (3, "3"),
    ],
)
def test_csv_cells_cannot_become_formulas(value, expected):
    assert csv_cell(value) == expected


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/explorer?x=1", "/explorer?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_sign_in_only_returns_to_same_site_paths(target, expected):
    assert safe_next(target) == expected


def test_explorer_request_refuses_a_cursor_that_is_not_one_naming_the_parameter():
    query = ExplorerRequest.from_params({"sort": "workload", "page": "3", "after": "bm90IGEgY3Vyc29y"})
    assert query.after is None
    assert any(error.startswith("after: not a cursor") for error in query.errors), query.errors
    query = ExplorerRequest.from_params({"before": "x" * 9000})
    assert any(error.startswith("before: not a cursor") for error in query.errors), query.errors

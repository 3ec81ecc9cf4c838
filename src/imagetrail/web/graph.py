"""A small layered left-to-right graph renderer that emits inline SVG on the server.

The trail graph has at most a few dozen nodes in fixed layers (workload → image →
push → run → commit → owner), so a full graph-layout library would be overkill: nodes
are placed in columns by layer, ordered within a column by the barycentre of their
neighbours (a few sweeps reduce edge crossings), and edges are cubic curves. The output
works without JavaScript; links on nodes are plain SVG ``<a>`` elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from markupsafe import Markup, escape

from imagetrail.sanitize import safe_href

NODE_WIDTH = 188
COLUMN_GAP = 28
ROW_GAP = 18
LINE_HEIGHT = 16
PAD_X = 10
PAD_Y = 9
MARGIN = 12
# Average advance of the 12px UI font used in the SVG; labels longer than a box are cut
# with an ellipsis and kept whole in the node's <title> tooltip and in the table.
CHAR_WIDTH = 6.6
SWEEPS = 4
TITLE_WIDTH = (NODE_WIDTH - 2 * PAD_X) * 0.88  # titles are bold, hence wider


@dataclass
class Node:
    id: str
    layer: int
    kind: str  # css class suffix: workload, image, push, run, commit, owner...
    title: str
    lines: List[str] = field(default_factory=list)
    href: Optional[str] = None
    # An extra mark for the reader (e.g. "internet-exposed"), shown as a badge.
    badge: Optional[str] = None


@dataclass
class Edge:
    source: str
    target: str


@dataclass
class PlacedNode:
    node: Node
    x: float
    y: float
    width: float
    height: float


@dataclass
class Layout:
    nodes: List[PlacedNode]
    edges: List[Tuple[PlacedNode, PlacedNode]]
    width: float
    height: float


def _node_height(node: Node) -> float:
    rows = 1 + len(node.lines) + (1 if node.badge else 0)
    return rows * LINE_HEIGHT + 2 * PAD_Y


def _order_layers(columns: List[List[Node]], edges: Sequence[Edge]) -> None:
    """Barycentre heuristic: sort each column by the mean position of its neighbours."""
    neighbours: Dict[str, List[str]] = {}
    for edge in edges:
        neighbours.setdefault(edge.source, []).append(edge.target)
        neighbours.setdefault(edge.target, []).append(edge.source)
    for sweep in range(SWEEPS):
        position = {node.id: index for column in columns for index, node in enumerate(column)}
        order = range(1, len(columns)) if sweep % 2 == 0 else range(len(columns) - 2, -1, -1)
        for col in order:

            def barycentre(node: Node, col: int = col, position: Dict[str, int] = position) -> float:
                linked = [position[n] for n in neighbours.get(node.id, []) if n in position]
                return sum(linked) / len(linked) if linked else position[node.id]

            columns[col].sort(key=barycentre)  # stable: ties keep their previous order
            position.update({node.id: index for index, node in enumerate(columns[col])})


def layout(nodes: Sequence[Node], edges: Sequence[Edge]) -> Layout:
    """Place nodes in columns (empty layers are dropped) and resolve edges to placed nodes."""
    layers = sorted({node.layer for node in nodes})
    columns: List[List[Node]] = [[n for n in nodes if n.layer == layer] for layer in layers]
    known = {node.id for node in nodes}
    edges = [e for e in edges if e.source in known and e.target in known]
    _order_layers(columns, edges)

    heights = [sum(_node_height(n) for n in column) + ROW_GAP * (len(column) - 1) for column in columns]
    total_height = max(heights, default=0) + 2 * MARGIN
    placed: Dict[str, PlacedNode] = {}
    for index, column in enumerate(columns):
        x = MARGIN + index * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + (total_height - 2 * MARGIN - heights[index]) / 2  # centre each column
        for node in column:
            height = _node_height(node)
            placed[node.id] = PlacedNode(node, x, y, NODE_WIDTH, height)
            y += height + ROW_GAP
    total_width = 2 * MARGIN + len(columns) * NODE_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP
    placed_edges = [(placed[e.source], placed[e.target]) for e in edges]
    return Layout(list(placed.values()), placed_edges, total_width, total_height)


def _fit(text: str, width: float = NODE_WIDTH - 2 * PAD_X) -> str:
    """Cut a label to the box. Paths (image references, repositories) keep their end, where the
    name and tag are; other text keeps its start."""
    limit = int(width / CHAR_WIDTH)
    if len(text) <= limit:
        return text
    if "/" in text and " " not in text:
        return "…" + text[len(text) - limit + 1 :]
    return text[: limit - 1] + "…"


def _edge_path(source: PlacedNode, target: PlacedNode) -> str:
    x1, y1 = source.x + source.width, source.y + source.height / 2
    x2, y2 = target.x, target.y + target.height / 2
    bend = max((x2 - x1) / 2, 20)
    return f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2 - 6:.1f},{y2:.1f}"


def render_svg(nodes: Sequence[Node], edges: Sequence[Edge], title: str, description: str = "") -> Markup:
    """The graph as an inline ``<svg>`` element (safe markup: every label is escaped)."""
    placed = layout(nodes, edges)
    out: List[str] = [
        f'<svg class="trail-graph" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="graph-title graph-desc" width="{placed.width:.0f}" height="{placed.height:.0f}" '
        f'viewBox="0 0 {placed.width:.0f} {placed.height:.0f}">',
        f'<title id="graph-title">{escape(title)}</title>',
        f'<desc id="graph-desc">{escape(description)}</desc>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="edge-head"/></marker></defs>',
        '<g class="edges">',
    ]
    for source, target in placed.edges:
        out.append(
            f'<path class="edge" data-source="{escape(source.node.id)}" '
            f'data-target="{escape(target.node.id)}" d="{_edge_path(source, target)}" '
            'marker-end="url(#arrow)"/>'
        )
    out.append('</g><g class="nodes">')
    for item in placed.nodes:
        node = item.node
        full_text = " — ".join([node.title, *node.lines] + ([node.badge] if node.badge else []))
        group = [
            f'<g class="node node-{escape(node.kind)}" data-node-id="{escape(node.id)}" '
            f'data-kind="{escape(node.kind)}">',
            f"<title>{escape(full_text)}</title>",
            f'<rect x="{item.x:.1f}" y="{item.y:.1f}" width="{item.width:.0f}" '
            f'height="{item.height:.0f}" rx="6"/>',
        ]
        text_x = item.x + PAD_X
        baseline = item.y + PAD_Y + LINE_HEIGHT - 4
        title = escape(_fit(node.title, TITLE_WIDTH))
        group.append(f'<text class="node-title" x="{text_x:.1f}" y="{baseline:.1f}">{title}</text>')
        for line in node.lines:
            baseline += LINE_HEIGHT
            group.append(f'<text x="{text_x:.1f}" y="{baseline:.1f}">{escape(_fit(line))}</text>')
        if node.badge:
            baseline += LINE_HEIGHT
            badge = escape(_fit(node.badge))
            group.append(f'<text class="node-badge" x="{text_x:.1f}" y="{baseline:.1f}">{badge}</text>')
        group.append("</g>")
        href = safe_href(node.href)
        if href:
            group = [f'<a href="{escape(href)}">', *group, "</a>"]
        out.extend(group)
    out.append("</g></svg>")
    return Markup("".join(out))

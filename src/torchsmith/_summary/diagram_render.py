"""Drawing a :class:`~torchsmith._summary.diagram.Diagram`: mermaid, DOT, SVG, PNG, HTML.

Layout comes from a layout library, never from here: graphviz's ``dot`` where it is
installed, else grandalf's Sugiyama layered layout, whose boxes and routed edges this
module draws as SVG (or, for PNG without ``dot``, with matplotlib). Files are written
through a temporary file in the same folder and renamed, so a failed write leaves nothing.
"""

from __future__ import annotations

import html
import io
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchsmith._files import write_bytes
from torchsmith.errors import ConfigError, TorchsmithError

if TYPE_CHECKING:
    from torchsmith._summary.diagram import Diagram, DiagramNode

__all__ = ["to_mermaid", "to_dot", "to_svg", "to_png", "to_html", "html_fragment", "save_diagram",
           "SUFFIXES", "ENGINES", "dot_available", "check_diagram_path"]

SUFFIXES = (".svg", ".png", ".html", ".mmd", ".dot")
ENGINES = ("auto", "dot", "grandalf")
DOT_TIMEOUT_S = 60

_FONT = "Helvetica, Arial, sans-serif"
_FILL = {"module": "#e8f0fe", "op": "#fff4e0", "input": "#e6f4ea", "output": "#e6f4ea"}
_STROKE = {"module": "#3b6ec2", "op": "#c77c02", "input": "#2e7d32", "output": "#2e7d32"}
_CHAR_W, _LINE_H, _PAD_X, _PAD_Y = 7.0, 15.0, 12.0, 8.0


def dot_available() -> bool:
    """True when graphviz's ``dot`` is on PATH."""
    return shutil.which("dot") is not None


# --------------------------------------------------------------------------- text forms
def _mermaid_text(text: str) -> str:
    return html.escape(text, quote=False).replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(d: Diagram) -> str:
    """A mermaid ``flowchart TD``: modules as boxes, ops as circles, edges labelled with shapes."""
    lines = ["flowchart TD"]
    for n in d.nodes:
        text = _mermaid_text(n.label)
        if n.kind == "op":
            lines.append(f'  {n.id}(("{text}"))')
        elif n.kind in ("input", "output"):
            lines.append(f'  {n.id}(["{text}"])')
        else:
            lines.append(f'  {n.id}["{text}"]')
    for e in d.edges:
        lines.append(f'  {e.src} -->|"{_mermaid_text(e.label)}"| {e.dst}')
    classes = {"module": "fill:#e8f0fe,stroke:#3b6ec2", "op": "fill:#fff4e0,stroke:#c77c02",
               "io": "fill:#e6f4ea,stroke:#2e7d32"}
    for cls, style in classes.items():
        lines.append(f"  classDef {cls} {style}")
    for cls, kinds in (("module", ("module",)), ("op", ("op",)), ("io", ("input", "output"))):
        ids = [n.id for n in d.nodes if n.kind in kinds]
        if ids:
            lines.append(f"  class {','.join(ids)} {cls}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(d: Diagram) -> str:
    """Graphviz DOT, top to bottom, edges labelled with shapes."""
    lines = ["digraph torchsmith {", '  rankdir=TB; nodesep=0.35; ranksep=0.4;',
             f'  graph [fontname="Helvetica", label="{_dot_text(d.title)}", labelloc=t, fontsize=14];',
             '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    for n in d.nodes:
        shape = {"op": "ellipse", "input": "box", "output": "box"}.get(n.kind, "box")
        style = "rounded,filled" if n.kind != "op" else "filled"
        lines.append(f'  {n.id} [label="{_dot_text(n.label)}", shape={shape}, style="{style}", '
                     f'fillcolor="{_FILL[n.kind]}", color="{_STROKE[n.kind]}"];')
    for e in d.edges:
        lines.append(f'  {e.src} -> {e.dst} [label=" {_dot_text(e.label)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _run_dot(d: Diagram, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise ConfigError("graphviz's dot is not installed (apt-get install graphviz); use engine='grandalf' "
                          "or engine='auto'")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=to_dot(d).encode(), capture_output=True,
                              timeout=DOT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise TorchsmithError(f"dot took over {DOT_TIMEOUT_S} s to lay out {len(d.nodes)} nodes; draw fewer "
                              "levels (depth=1) or use engine='grandalf'") from e
    if done.returncode != 0:
        raise TorchsmithError(f"dot failed (exit {done.returncode}): {done.stderr.decode(errors='replace')[:300]}")
    return done.stdout


def _engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"unknown diagram engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "dot" if dot_available() else "grandalf"
    return engine


# --------------------------------------------------------------------------- grandalf layout
@dataclass
class _Box:
    node: DiagramNode
    w: float
    h: float
    xy: tuple[float, float] = (0.0, 0.0)  # centre


@dataclass
class _Route:
    src: str
    dst: str
    label: str
    points: list[tuple[float, float]] = field(default_factory=list)


class _VertexView:
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _EdgeView:
    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def setpath(self, pts: list[Any]) -> None:
        self.points = [(float(x), float(y)) for x, y in pts]


@dataclass
class _Layout:
    boxes: dict[str, _Box]
    routes: list[_Route]
    width: float
    height: float


def _box_size(n: DiagramNode) -> tuple[float, float]:
    lines = n.label.split("\n")
    w = max(len(line) for line in lines) * _CHAR_W + 2 * _PAD_X
    h = len(lines) * _LINE_H + 2 * _PAD_Y
    if n.kind == "op":
        w, h = w + 10, max(h, 30.0)
    return max(w, 44.0), h


def layout(d: Diagram) -> _Layout:
    """Positions of boxes and routed edges from grandalf's Sugiyama layout (top to bottom)."""
    try:
        from grandalf.graphs import Edge, Graph, Vertex
        from grandalf.layouts import SugiyamaLayout
        from grandalf.routing import route_with_lines
    except ImportError as e:
        raise ConfigError("drawing a diagram without graphviz needs grandalf: pip install 'torchsmith[diagram]' "
                          "(or install graphviz's dot)") from e
    boxes = {n.id: _Box(n, *_box_size(n)) for n in d.nodes}
    vertices = {nid: Vertex(nid) for nid in boxes}
    for nid, v in vertices.items():
        v.view = _VertexView(boxes[nid].w, boxes[nid].h)
    labels: dict[tuple[str, str], list[str]] = {}
    for de in d.edges:  # grandalf draws one line per pair; several tensors share it, labels joined
        labels.setdefault((de.src, de.dst), []).append(de.label)
    edges = {}
    for src, dst in labels:
        edge = Edge(vertices[src], vertices[dst])
        edge.view = _EdgeView()
        edges[(src, dst)] = edge
    graph = Graph(list(vertices.values()), list(edges.values()))
    x_offset = 0.0
    for comp in graph.C:  # each connected part laid out on its own, side by side
        sug = SugiyamaLayout(comp)
        sug.xspace, sug.yspace = 30, 36
        roots = [v for v in comp.sV if v.data == "input"]
        sug.init_all(roots=roots or None)
        sug.route_edge = route_with_lines
        sug.draw()
        xs = [v.view.xy[0] - v.view.w / 2 for v in comp.sV]
        shift = x_offset - min(xs)
        for v in comp.sV:
            boxes[v.data].xy = (v.view.xy[0] + shift, v.view.xy[1])
        for ge in comp.sE:
            ge.view.points = [(x + shift, y) for x, y in ge.view.points]
        x_offset = max(boxes[v.data].xy[0] + boxes[v.data].w / 2 for v in comp.sV) + 40
    routes = []
    for (src, dst), edge in edges.items():
        pts = edge.view.points or [boxes[src].xy, boxes[dst].xy]
        routes.append(_Route(src, dst, ", ".join(labels[(src, dst)]), list(pts)))
    # Normalise to a margin, room at the top for the title.
    xs = [bx.xy[0] - bx.w / 2 for bx in boxes.values()] + [p[0] for r in routes for p in r.points]
    ys = [bx.xy[1] - bx.h / 2 for bx in boxes.values()] + [p[1] for r in routes for p in r.points]
    dx, dy = 20 - min(xs), 44 - min(ys)
    for bx in boxes.values():
        bx.xy = (bx.xy[0] + dx, bx.xy[1] + dy)
    for r in routes:
        r.points = [(x + dx, y + dy) for x, y in r.points]
    width = max(max(bx.xy[0] + bx.w / 2 for bx in boxes.values()),
                max((p[0] + 8 * len(r.label) for r in routes for p in r.points), default=0)) + 20
    height = max(bx.xy[1] + bx.h / 2 for bx in boxes.values()) + 20
    return _Layout(boxes, routes, width, height)


def _midpoint(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The middle of a route's middle segment: where its label goes."""
    k = max(1, len(points) // 2)
    (x0, y0), (x1, y1) = points[k - 1], points[min(k, len(points) - 1)]
    return (x0 + x1) / 2, (y0 + y1) / 2


def _svg_from_layout(d: Diagram, lay: _Layout) -> str:
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}" '
           f'viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" font-family="{_FONT}">',
           "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" "
           "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/>"
           "</marker></defs>",
           f'<title>{esc(d.title)}</title>',
           f'<text x="20" y="24" font-size="14" font-weight="bold">{esc(d.title)}</text>']
    for r in lay.routes:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in r.points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#555" stroke-width="1.2" '
                   'marker-end="url(#arrow)"/>')
        mx, my = _midpoint(r.points)
        out.append(f'<text x="{mx + 6:.1f}" y="{my + 4:.1f}" font-size="10" '
                   f'fill="#333">{esc(r.label)}</text>')
    for b in lay.boxes.values():
        n = b.node
        x, y = b.xy[0] - b.w / 2, b.xy[1] - b.h / 2
        fill, stroke = _FILL[n.kind], _STROKE[n.kind]
        out.append(f'<g class="node {n.kind}" id="{esc(n.id)}"><title>{esc(n.label)}</title>')
        if n.kind == "op":
            out.append(f'<ellipse cx="{b.xy[0]:.1f}" cy="{b.xy[1]:.1f}" rx="{b.w / 2:.1f}" ry="{b.h / 2:.1f}" '
                       f'fill="{fill}" stroke="{stroke}"/>')
        else:
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="6" '
                       f'fill="{fill}" stroke="{stroke}"/>')
        lines = n.label.split("\n")
        top = b.xy[1] - (len(lines) - 1) * _LINE_H / 2 + 4
        for k, line in enumerate(lines):
            weight = ' font-weight="bold"' if k == 0 and len(lines) > 1 else ""
            out.append(f'<text x="{b.xy[0]:.1f}" y="{top + k * _LINE_H:.1f}" font-size="12" '
                       f'text-anchor="middle"{weight}>{esc(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- SVG, PNG, HTML
def to_svg(d: Diagram, engine: str = "auto") -> str:
    """A standalone SVG document (no XML prolog or DOCTYPE, so it also embeds in HTML as is)."""
    if _engine(engine) == "dot":
        text = _run_dot(d, "svg").decode()
        return text[text.index("<svg"):]
    return _svg_from_layout(d, layout(d))


def to_png(d: Diagram, engine: str = "auto", dpi: int = 110) -> bytes:
    """PNG bytes: ``dot -Tpng`` where installed, else matplotlib drawing grandalf's layout."""
    if _engine(engine) == "dot":
        return _run_dot(d, "png")
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.patches import Ellipse, FancyBboxPatch
    except ImportError as e:
        raise ConfigError("a PNG without graphviz needs matplotlib: pip install 'torchsmith[plot]', or install "
                          "graphviz's dot, or save as .svg") from e

    lay = layout(d)
    fig = plt.figure(figsize=(lay.width / dpi, lay.height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    ax.axis("off")
    pt = 72 / dpi  # SVG pixels to points
    ax.text(20, 24, d.title, fontsize=14 * pt, fontweight="bold", va="baseline")
    for r in lay.routes:
        xs, ys = zip(*r.points)
        ax.plot(xs, ys, color="#555555", lw=1.2 * pt * 1.5)
        ax.annotate("", xy=r.points[-1], xytext=r.points[-2] if len(r.points) > 1 else r.points[0],
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.0})
        mid = _midpoint(r.points)
        ax.text(mid[0] + 6, mid[1], r.label, fontsize=10 * pt, color="#333333", va="center")
    for b in lay.boxes.values():
        n = b.node
        if n.kind == "op":
            patch: Any = Ellipse(b.xy, b.w, b.h, facecolor=_FILL[n.kind], edgecolor=_STROKE[n.kind])
        else:
            patch = FancyBboxPatch((b.xy[0] - b.w / 2, b.xy[1] - b.h / 2), b.w, b.h,
                                   boxstyle="round,pad=0,rounding_size=6", facecolor=_FILL[n.kind],
                                   edgecolor=_STROKE[n.kind])
        ax.add_patch(patch)
        ax.text(b.xy[0], b.xy[1], n.label, fontsize=12 * pt, ha="center", va="center", linespacing=1.1)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:{font};margin:1.5em;color:#222}} .torchsmith-diagram svg{{max-width:100%;height:auto}}
p.note{{color:#666}}</style></head>
<body>
{body}
</body></html>
"""


def html_fragment(d: Diagram, engine: str = "auto") -> str:
    """The SVG inline in a ``<div>``: for Jupyter and for embedding in a report."""
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in d.notes)
    return f'<div class="torchsmith-diagram">{to_svg(d, engine)}{notes}</div>'


def to_html(d: Diagram, engine: str = "auto") -> str:
    """A whole self-contained page: inline SVG and CSS, nothing fetched."""
    return _PAGE.format(title=html.escape(d.title), font=_FONT, body=html_fragment(d, engine))


# --------------------------------------------------------------------------- files
def check_diagram_path(path: str | Path) -> str:
    """The suffix of a diagram file name, or a ConfigError naming the supported ones."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"cannot save a diagram as {str(path)!r}: unknown suffix {suffix or '(none)'!r}; "
                          f"use one of {', '.join(SUFFIXES)}")
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; give a file name such as {path / ('net' + suffix)}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return suffix


def save_diagram(d: Diagram, path: Path, engine: str = "auto") -> Path:
    """Write the diagram in the format its suffix names, through a temp file renamed into place."""
    suffix = check_diagram_path(path)
    data: bytes
    if suffix == ".png":
        data = to_png(d, engine)
    elif suffix == ".svg":
        data = to_svg(d, engine).encode()
    elif suffix == ".html":
        data = to_html(d, engine).encode()
    elif suffix == ".mmd":
        data = to_mermaid(d).encode()
    else:
        data = to_dot(d).encode()
    return write_bytes(path, data)

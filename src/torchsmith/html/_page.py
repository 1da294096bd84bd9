"""The pieces every HTML rendering is made of: escaping, tables, embedded images, the page shell and its CSS.

Everything is self-contained: styles are inline, images are ``data:`` URIs, there is no
script, and a full page carries a Content-Security-Policy that forbids fetching anything,
so a report opened years later, offline, looks the way it did when it was written.
A notebook gets a :func:`fragment` (the same CSS, scoped to one ``div``); a file gets a :func:`page`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Raw", "esc", "table", "png_uri", "img", "figure_png", "fragment", "page", "section", "badge",
           "kv_table", "notes_list", "CSS"]


class Raw(str):
    """A string that already is HTML: :func:`table` and the other helpers insert it as it is."""


def esc(value: Any) -> str:
    """``value`` as text in HTML: every ``<``, ``>``, ``&`` and quote escaped (module names may hold ``<``)."""
    if isinstance(value, Raw):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = (),
          row_classes: Sequence[str] | None = None, caption: str | None = None, cls: str = "") -> Raw:
    """An HTML table; cells are escaped unless they are :class:`Raw`; ``right`` columns are numbers."""
    right = set(right)
    head = "".join(f'<th class="num">{esc(c)}</th>' if i in right else f"<th>{esc(c)}</th>"
                   for i, c in enumerate(columns))
    body = []
    for n, row in enumerate(rows):
        rc = row_classes[n] if row_classes is not None and n < len(row_classes) else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if i in right else f"<td>{esc(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f'<tr class="{esc(rc)}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return Raw(f'<div class="scroll"><table{klass}>{cap}<thead><tr>{head}</tr></thead>'
               f'<tbody>{"".join(body)}</tbody></table></div>')


def kv_table(pairs: Iterable[tuple[str, Any]]) -> Raw:
    """A two-column table of labels and values (totals, options)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)
    return Raw(f'<table class="kv"><tbody>{rows}</tbody></table>')


def notes_list(notes: Iterable[str], label: str = "note") -> Raw:
    items = "".join(f'<li><span class="label">{esc(label)}</span> {esc(n)}</li>' for n in notes)
    return Raw(f'<ul class="notes">{items}</ul>' if items else "")


def badge(text: str, kind: str) -> Raw:
    """A coloured label: ``kind`` is error, warning, info, ok or muted."""
    return Raw(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, *, width: int | None = None) -> Raw:
    """A PNG embedded in the page as a ``data:`` URI."""
    style = f' style="max-width:{width}px"' if width else ""
    return Raw(f'<img class="plot" src="{png_uri(png)}" alt="{esc(alt)}"{style}>')


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib ``Figure`` as PNG bytes (in memory: nothing is written)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def section(title: str, body: str, *, anchor: str | None = None, level: int = 2) -> Raw:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return Raw(f"<section{ident}><h{level}>{esc(title)}</h{level}>{body}</section>")


# One stylesheet for notebooks and files, scoped to .torchsmith so that it never restyles a notebook.
# Colours are translucent where they can be, so that a dark Jupyter theme keeps its own text colour.
CSS = """
.torchsmith{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;font-size:14px;
  line-height:1.45;color:inherit;max-width:100%}
.torchsmith h1{font-size:1.6em;margin:.2em 0 .1em}
.torchsmith h2{font-size:1.25em;margin:1.4em 0 .5em;padding-bottom:.2em;border-bottom:1px solid rgba(127,127,127,.35)}
.torchsmith h3{font-size:1.05em;margin:1em 0 .4em}
.torchsmith .title{font-weight:600;font-size:1.05em;margin:.2em 0 .5em}
.torchsmith .sub{color:rgba(110,110,110,1);margin:0 0 1em}
.torchsmith .muted{color:rgba(110,110,110,1)}
.torchsmith .scroll{overflow-x:auto;max-width:100%}
.torchsmith table{border-collapse:collapse;margin:.3em 0 .8em;font-size:13px}
.torchsmith caption{text-align:left;font-weight:600;padding:.2em 0}
.torchsmith th,.torchsmith td{padding:3px 10px;text-align:left;vertical-align:top;
  border-bottom:1px solid rgba(127,127,127,.2);white-space:nowrap}
.torchsmith thead th{border-bottom:2px solid rgba(127,127,127,.5);font-weight:600}
.torchsmith tbody tr:nth-child(even){background:rgba(127,127,127,.07)}
.torchsmith td.num,.torchsmith th.num{text-align:right;font-variant-numeric:tabular-nums}
.torchsmith td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.torchsmith table.kv th{font-weight:600;font-family:inherit;padding-right:18px;border:none}
.torchsmith table.kv td{border:none;white-space:normal}
.torchsmith table.kv tr:nth-child(even){background:none}
.torchsmith tr.failed td{background:rgba(220,38,38,.14)}
.torchsmith tr.best td{background:rgba(22,163,74,.12)}
.torchsmith .badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:11.5px;font-weight:600;
  letter-spacing:.02em;color:#fff;vertical-align:1px}
.torchsmith .badge.error{background:#dc2626}.torchsmith .badge.warning{background:#d97706}
.torchsmith .badge.info{background:#2563eb}.torchsmith .badge.ok{background:#16a34a}
.torchsmith .badge.muted{background:#6b7280}
.torchsmith .finding{border-left:4px solid #6b7280;padding:6px 12px;margin:8px 0;background:rgba(127,127,127,.06);
  border-radius:0 4px 4px 0}
.torchsmith .finding.error{border-color:#dc2626}.torchsmith .finding.warning{border-color:#d97706}
.torchsmith .finding.info{border-color:#2563eb}
.torchsmith .finding .head{font-weight:600}
.torchsmith .finding .where{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-weight:400;
  color:rgba(110,110,110,1)}
.torchsmith .finding p{margin:.3em 0}
.torchsmith .fix{margin:.3em 0}
.torchsmith .fix b{color:#16a34a}
.torchsmith code,.torchsmith .mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
  font-size:12.5px}
.torchsmith code{background:rgba(127,127,127,.12);padding:1px 4px;border-radius:3px}
.torchsmith .flow{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px;
  background:rgba(127,127,127,.08);padding:8px 12px;border-radius:4px;overflow-x:auto;white-space:nowrap}
.torchsmith .verdict{font-weight:600;margin:.6em 0}
.torchsmith .verdict.ok{color:#16a34a}.torchsmith .verdict.failed{color:#dc2626}
.torchsmith ul.notes{margin:.3em 0;padding-left:1.2em}
.torchsmith ul.notes .label{font-weight:600;color:rgba(110,110,110,1)}
.torchsmith img.plot{max-width:100%;height:auto;display:block;margin:.4em 0 1em;background:#fff}
.torchsmith .diagram{overflow:auto;max-width:100%;background:#fff;border:1px solid rgba(127,127,127,.25);
  border-radius:4px;padding:8px;margin:.4em 0 1em}
.torchsmith .diagram svg{max-width:100%;height:auto}
.torchsmith .diagram{text-align:center}.torchsmith .diagram p{text-align:left}
.torchsmith .explain{overflow-x:auto;max-width:100%}
.torchsmith .explain td{white-space:normal}.torchsmith .explain td code{white-space:pre}
.torchsmith ul.tree,.torchsmith ul.tree ul{list-style:none;margin:0;padding-left:1.3em}
.torchsmith ul.tree{padding-left:0}
.torchsmith ul.tree li{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px;
  border-left:1px solid rgba(127,127,127,.3);padding-left:.6em}
.torchsmith ul.tree .type{color:#7c3aed}.torchsmith ul.tree .count{color:rgba(110,110,110,1)}
.torchsmith .bar{height:16px;background:rgba(127,127,127,.18);border-radius:8px;overflow:hidden;margin:4px 0;
  max-width:640px}
.torchsmith .bar>div{height:100%;background:#2563eb;border-radius:8px}
.torchsmith .bar.done>div{background:#16a34a}
.torchsmith .hbar{display:inline-block;height:10px;background:#2563eb;border-radius:2px;vertical-align:middle}
.torchsmith nav.toc{margin:.5em 0 1em;font-size:13px}
.torchsmith nav.toc a{margin-right:14px;color:#2563eb;text-decoration:none}
.torchsmith .explain pre{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px;
  background:rgba(127,127,127,.08);padding:8px 12px;border-radius:4px;overflow-x:auto}
.torchsmith footer{margin-top:2em;color:rgba(110,110,110,1);font-size:12px}
"""

_PAGE_CSS = """
body{margin:0;background:#fff;color:#1f2328}
main.torchsmith{max-width:1180px;margin:0 auto;padding:24px 32px 48px}
"""

# Nothing may be fetched when the page opens: images are data: URIs and styles inline; no script at all.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def fragment(body: str) -> str:
    """HTML for a notebook cell: ``body`` in a ``div`` with the stylesheet scoped to it."""
    return f'<div class="torchsmith"><style>{CSS}</style>{body}</div>'


def page(title: str, body: str) -> str:
    """A whole self-contained HTML document."""
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_PAGE_CSS}{CSS}</style></head>"
            f'<body><main class="torchsmith">{body}</main></body></html>\n')

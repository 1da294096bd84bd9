"""HTML renderings: notebook cells (``_repr_html_`` of every result) and ``torchsmith report`` files.

Data objects never import these modules at import time; each result's ``_repr_html_`` imports
its renderer when a notebook asks for it.
"""

from __future__ import annotations

from torchsmith.html.report import model_report, run_report, write_report

__all__ = ["model_report", "run_report", "write_report"]

"""HTML renderings: notebook cells (``_repr_html_`` of every result) and the parts of ``torchsmith report``.

Each module renders one kind of result and imports that result's type only under ``TYPE_CHECKING``;
the results import their renderers. The report page itself is :mod:`torchsmith.report`.
"""

"""examples/model_building.ipynb runs top to bottom on a real Jupyter kernel, and its asserts hold.

The notebook is executed from a copy in a temporary folder (the committed file, with its outputs,
is never touched) by a kernel of the interpreter running the tests; any cell error fails the test
and names the cell. A second test keeps the committed notebook in step with its source,
examples/build_notebook.py.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("nbclient", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("matplotlib", reason="the plot extra is not installed (pip install -e '.[plot]')")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "model_building.ipynb"


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebook", EXAMPLES / "build_notebook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_runs_top_to_bottom_twice_in_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"Restart & Run All", twice: the second run must not trip over the first's files, and neither leaves a file
    beside the notebook (the lesson writes into the folder it names, under the temporary directory)."""
    from nbclient.exceptions import CellExecutionError

    builder = _builder()
    work, temp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the kernel's tempfile.gettempdir()
    copy = work / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    before = NOTEBOOK.read_bytes()
    for _ in range(2):
        nb = nbformat.read(copy, as_version=4)
        for cell in nb.cells:  # start clean: the committed outputs must not stand in for a run
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        try:
            builder.execute(nb, cwd=work, timeout=120)
        except CellExecutionError as e:
            pytest.fail(f"a cell of {NOTEBOOK.name} failed:\n{e}")
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), "some code cells did not run"
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, errors
        # It drew and trained: results rendered as HTML, the initialisation plot is an image, the diagrams are
        # SVG, and the run wrote its checkpoint where the lesson said.
        kinds = {kind for c in code for o in c.outputs for kind in o.get("data", {})}
        assert {"text/html", "image/png", "image/svg+xml"} <= kinds, kinds
        assert (temp / "torchsmith-lesson" / "runs" / "lenet-digits" / "best.safetensors").exists()
        assert sorted(p.name for p in work.iterdir()) == [NOTEBOOK.name], "the lesson wrote beside the notebook"
    assert NOTEBOOK.read_bytes() == before, "executing the copy changed the committed notebook"


def test_notebook_matches_its_source() -> None:
    """The committed .ipynb holds the cells build_notebook.py writes, executed (outputs present)."""
    builder = _builder()
    committed = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(committed)
    built = builder.build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], (
        "examples/model_building.ipynb is out of date: run .venv/bin/python examples/build_notebook.py")
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "the committed notebook is not executed (it must read on GitHub)"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert all("execution" not in c.metadata for c in committed.cells), "volatile timing metadata left in"

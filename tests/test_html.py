"""Notebook-native results: every result type's _repr_html_ holds the terminal's content, escaped and
well-formed, with its pictures embedded; the training progress bar runs in a real Jupyter kernel."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import torchsmith as ts
from torchsmith.html.progress import progress_html
from torchsmith.train import make_reporter
from torchsmith.train.progress import NotebookReporter

sys.path.insert(0, str(Path(__file__).parent))
from html_checks import check_html, external_refs  # noqa: E402

EVIL = "<b>evil&co</b>"  # a module name is any string without a dot: it may hold markup


class Evil(nn.Module):
    """A small CNN with a module whose name is HTML, and one that modifies its input in place."""

    default_input_size = (1, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.add_module(EVIL, nn.BatchNorm2d(4))
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.relu_()  # the doctor's input-mutated error
        x = getattr(self, EVIL)(self.conv(x))
        return self.head(torch.flatten(x, 1))


def escaped(text: str) -> str:
    return html.escape(text, quote=True)


def assert_clean(text: str) -> str:
    """Well-formed, nothing fetched, the raw markup of EVIL nowhere; returns the visible text."""
    visible = check_html(text)
    assert not external_refs(text), external_refs(text)
    assert EVIL not in text
    return visible


@pytest.fixture(scope="module")
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return ts.create_model("lenet")


def test_summary_html_has_the_table_the_flow_and_the_totals(lenet):
    s = ts.summary(lenet)
    out = s._repr_html_()
    text = assert_clean(out)
    for row in ("conv1", "conv2", "fc1", "fc3", "Conv2d", "Linear", "62,006", "48,120", "[1, 6, 28, 28]"):
        assert row in text, row
    assert s.flow() in text  # the shape flow, as in `show --flow`
    assert "Total parameters" in text and "Forward FLOPs" in text and "1,303,440" in text
    assert text.count("conv1") >= 1 and out.startswith('<div class="torchsmith">')


def test_summary_html_escapes_module_names():
    s = ts.summary(Evil())
    out = s._repr_html_()
    assert_clean(out)
    assert escaped(EVIL) in out


def test_check_html_shows_findings_fixes_and_the_statistics_plot():
    report = ts.check(Evil(), checks="input-mutated,signal,unused-parameters")
    finding = report.by_id("input-mutated")[0]
    out = report._repr_html_()
    text = assert_clean(out)
    assert "input-mutated" in text and "ERROR" in text
    assert finding.fix in text and finding.message in text
    assert "FAILED: 1 error(s)" in text
    assert out.count('src="data:image/png;base64,') == 1  # the per-layer statistics


def test_init_html_lists_every_tensor_and_what_no_rule_covered(lenet):
    model = ts.create_model("lenet")
    report = ts.init_weights(model, {"types": {"Conv": "kaiming_normal"}})
    text = assert_clean(report._repr_html_())
    assert "conv1.weight" in text and "kaiming_normal" in text and "types['Conv']" in text
    assert "Not covered by any rule" in text and "fc1.weight" in text and "parameters left uncovered" in text


def test_load_html_names_missing_and_mismatched_tensors(lenet):
    state = {k: v.clone() for k, v in lenet.state_dict().items()}
    del state["fc3.bias"]
    state["fc2.weight"] = torch.zeros(3, 3)
    report = ts.load_into(ts.create_model("lenet"), state, strict=False, on_mismatch="skip")
    text = assert_clean(report._repr_html_())
    assert "fc3.bias" in text and "missing" in text
    assert "shape mismatch" in text and "source [3, 3] vs model [84, 120]" in text
    assert report.summary() in text


def test_export_html_has_the_parity_table():
    # An ExportReport is plain data; a real export takes seconds and is tested in test_export.py.
    from torchsmith._export.report import BatchCheck, ExportReport

    report = ExportReport(format="onnx", path="out/<net>.onnx", exporter="torch.onnx.export (dynamo)",
                          input_shape=(2, 3, 32, 32), dynamic_batch=True, atol=1e-5, rtol=1e-4, opset=18,
                          checks=[BatchCheck(2, 1.2e-6, 3.4e-7, True, 0.51, 0.25),
                                  BatchCheck(1, 0.5, 0.1, False, 0.4, 0.2, problem="shape <1, 10> vs <1, 9>")],
                          file_size=250_000, notes=["a <note>"])
    out = report._repr_html_()
    text = assert_clean(out)
    assert "FAILED" in text and "out/<net>.onnx" in text and "opset 18" in text and "244.1 KiB" in text
    assert "1.2e-06" in text and "2.04x" in text and "FAIL (shape <1, 10> vs <1, 9>)" in text
    assert "<net>" not in out and "a <note>" in text


def test_eval_html_has_per_class_accuracy_and_the_confusion_matrix(lenet):
    ev = ts.evaluate(lenet, "digits")  # untrained: any confusion matrix will do
    out = ev._repr_html_()
    text = assert_clean(out)
    assert "Per-class accuracy" in text and f"{100 * ev.accuracy:.2f}%" in text and "450 samples" in text
    for i in (0, 3, 9):
        row = ev.confusion[i]
        assert f"{row[i]}/{sum(row)}" in text  # correct / samples of that class
    assert out.count('src="data:image/png;base64,') == 1  # the confusion matrix


def _named_hook(module, args, output):  # a hook with a name to find in the view
    return None


def test_the_four_views_render_as_html():
    model = Evil()
    handle = model.conv.register_forward_hook(_named_hook)
    try:
        params = ts.param_view(model)._repr_html_()
        buffers = ts.buffer_view(model)._repr_html_()
        hooks = ts.hook_view(model)._repr_html_()
        tree = ts.module_tree(model)._repr_html_()
    finally:
        handle.remove()
    assert "conv.weight" in assert_clean(params) and "[4, 1, 3, 3]" in check_html(params)
    assert escaped(EVIL) + ".running_mean" in buffers and "True" in assert_clean(buffers)
    assert "_named_hook" in assert_clean(hooks) and "forward" in check_html(hooks)
    text = assert_clean(tree)
    assert "Conv2d" in text and "BatchNorm2d" in text and f"{ts.count_parameters(model):,}" in text


def test_progress_html_draws_the_bar_and_the_epochs():
    out = progress_html(done=21, total=42, epoch=2, epochs=2, step=0, steps=21, loss=0.5, acc=0.9, rate=1500.0,
                        eta="0:03", history=[{"epoch": 1, "step": 21, "lr": 0.01, "train_loss": 0.7,
                                              "train_acc": 0.8, "test_loss": 0.6, "test_acc": 0.85,
                                              "images_per_s": 1500.0, "seconds": 1.0}],
                        messages=["a <note>"], finished=False)
    text = check_html(out)
    assert 'aria-valuenow="50"' in out and "width:50.0%" in out
    assert "loss 0.5000" in text and "1.5k img/s" in text and "85.00%" in text and "a <note>" in text


def test_make_reporter_outside_a_kernel_is_unchanged():
    assert not isinstance(make_reporter("auto"), NotebookReporter)


NOTEBOOK_CELL = """
import torch, torchsmith as ts
from torchsmith.train import make_reporter
torch.manual_seed(0)
rep = make_reporter()
print(type(rep).__name__)
model = ts.create_model("lenet", in_channels=1, input_size=16)
result = ts.fit(model, "digits", epochs=1, batch_size=256, lr=0.01, log_every=1, reporter=rep)
result
"""


@pytest.mark.timeout(120)
def test_progress_bar_and_results_in_a_real_jupyter_kernel():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=90, kernel_name="python3",
                                     resources={"metadata": {"path": str(Path.cwd())}})
    client.execute()
    outputs = nb.cells[0].outputs
    stdout = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "NotebookReporter" in stdout
    bars = [o for o in outputs if o.output_type == "display_data" and "text/html" in o.data]
    assert len(bars) == 1  # one output, updated in place
    bar = bars[0].data["text/html"]
    check_html(bar)
    assert 'aria-valuenow="100"' in bar and "bar done" in bar and "done" in bar
    assert bar.count("<tr>") == 2  # the header row and the epoch's row
    result = [o for o in outputs if o.output_type == "execute_result"][0].data["text/html"]
    assert "trained 1/1 epochs" in check_html(result) and "epoch" in result
    assert result.count('src="data:image/png;base64,') == 1  # TrainResult's curves


def test_no_renderer_imports_the_data_it_draws_at_run_time():
    """A renderer imports the types it draws only under TYPE_CHECKING (the data objects import their renderers):
    outside that block, torchsmith.html imports only itself and the small shared modules below it."""
    import ast

    allowed = ("torchsmith.html", "torchsmith._format", "torchsmith._plotting", "torchsmith.errors",
               "torchsmith._version")
    src = Path(ts.__file__).parent / "html"
    offenders = []
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text())
        type_checking = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                         and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                         for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in type_checking:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] == "torchsmith" and not n.startswith(allowed)]
    assert not offenders

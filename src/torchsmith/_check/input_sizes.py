"""Hard-coded sizes: run the model at other input sizes it should accept.

What "should accept" means, so the check stays general:

* every model: a batch of 1 (sizes that depend on the batch must come from
  ``x.shape[0]``), and in eval mode a sample's output must not depend on the
  other samples of its batch (``x.view(-1, n)`` mixes them);
* a model with convolutions or pooling over the trailing dimensions of its
  input (``(C, H, W)`` for 2-D): twice the spatial size, which keeps every
  divisibility the original size had, so only a size that was fixed in code
  can break. Models without convolutions (MLPs, sequence models) are only
  probed on the batch size: their feature sizes are legitimately fixed.

A model that *declares* its one input size gets an ``info`` finding
(``fixed-input-size``), not an error: one whose contract says so (a ViT's
``config.image_size`` with learned position embeddings, timm's
``patch_embed.img_size``) is not probed at other sizes at all; one that rejects
another size on purpose -- a torchsmith error with an ``input_size`` or
``default_input_size`` attribute (the zoo LeNet), or a ValueError/assert raised
by the model's own code rather than inside a torch op -- is told apart from a
size that was fixed by accident (a Linear whose in_features fit one size).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from torchsmith._check._context import QUOTE_LIMIT, Context, make_finding
from torchsmith._check._tracer import CheckTracer
from torchsmith._check.registry import register_check
from torchsmith._check.report import Finding
from torchsmith._check.runtime import TORCH_DIR, outputs_close
from torchsmith.contract import InputSpec, input_spec, learned_positions, output_tensors
from torchsmith.errors import TorchsmithError, describe_error, format_size

__all__ = ["check_input_sizes", "spatial_dims"]


_SPATIAL_TYPES: tuple[type, ...] = (
    nn.modules.conv._ConvNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)

_FIX = ("take sizes from the input instead of writing them in: x.flatten(1) or x.view(x.size(0), -1) for the "
        "batch, a global or adaptive pool (nn.AdaptiveAvgPool2d(1)) before the classifier, or nn.LazyLinear; "
        "if the model supports one input size only, declare it (self.default_input_size = (C, H, W)) and raise "
        "a torchsmith ShapeError that names the size")


def spatial_dims(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """How many trailing input dims are spatial: the conv/pool dimensionality if it fits the input, else 0."""
    dims = set()
    for m in model.modules():
        if isinstance(m, _SPATIAL_TYPES):
            name = type(m).__name__
            for d in (1, 2, 3):
                if name.endswith(f"{d}d"):
                    dims.add(d)
    if len(dims) != 1:
        return 0
    d = dims.pop()
    return d if len(input_size) == d + 1 else 0


def _declares_size(model: nn.Module) -> bool:
    return any(hasattr(model, a) for a in ("input_size", "default_input_size"))


def _declared_fixed(ctx: Context) -> InputSpec | None:
    """The contract's input spec when the model declares the probe size as the one size it supports.

    That is a ViT's ``config.image_size`` with learned position embeddings, timm's ``patch_embed.img_size`` or
    ``pretrained_cfg`` (see :func:`torchsmith.contract.input_spec`).
    """
    spec = ctx.spec
    if spec is None:
        try:
            spec = input_spec(ctx.model, ctx.input_size)  # the copy: its hooks are stripped
        except TorchsmithError:
            return None
    return spec if spec.fixed and tuple(spec.size) == tuple(ctx.input_size) else None


# A torchvision source ("torchvision weights' crop size", "torchvision MaxVit.input_size") declares a size too.
_DECLARING_SOURCES = ("config.image_size", "pretrained_cfg", "patch_embed.img_size")


def _declared_by_library(ctx: Context) -> InputSpec | None:
    """The contract's spec when the model's own config (transformers ``image_size``, timm's ``pretrained_cfg``)
    names the probe size: a library model built for one resolution (LeViT's attention biases are computed for
    it) says so there. Asked only after another size failed; a hand-written model has no such record."""
    try:
        spec = input_spec(ctx.model)
    except TorchsmithError:
        return None
    declared = spec.source in _DECLARING_SOURCES or spec.source.startswith("torchvision ")
    if declared and tuple(spec.size) == tuple(ctx.input_size):
        return spec
    return None


def _declared_source(ctx: Context) -> str:
    try:
        return input_spec(ctx.model).source
    except TorchsmithError:
        return "its config"


def _rejected_on_purpose(error: BaseException) -> bool:
    """The model's own code refused the size (a ValueError or assert naming it), not a torch op that broke.

    transformers' ViT raises ``ValueError: Input image size (64*64) doesn't match model (32*32)``, timm's
    patch embedding asserts the size, torchvision's ViT calls ``torch._assert``: the model states its one size
    and checks it. A Linear whose
    in_features were computed for one size fails inside torch (a RuntimeError from the matmul or a view).
    """
    if isinstance(error, RuntimeError) or not isinstance(error, (ValueError, AssertionError)):
        return False
    tb, code = error.__traceback__, None
    while tb is not None:
        code = tb.tb_frame.f_code
        tb = tb.tb_next
    if code is None:
        return False
    if code.co_name == "_assert" and code.co_filename.startswith(TORCH_DIR):
        return True  # torch._assert called by the model (torchvision's ViT: "Wrong image height! Expected 224")
    return not code.co_filename.startswith(TORCH_DIR)


def _spec_built(model: nn.Module) -> bool:
    """A spec states its input shape, and its forward has no control flow to raise a friendlier error."""
    arch = getattr(model, "torchsmith_arch", None)
    return isinstance(arch, dict) and "spec" in arch


def _run(ctx: Context, x: torch.Tensor) -> tuple[CheckTracer, Any, BaseException | None]:
    tracer = ctx.tracer(x)
    try:
        with torch.no_grad():
            return tracer, ctx.call(ctx.model, x, tracer), None
    except Exception as e:
        return tracer, None, e


def _why(ctx: Context, tracer: CheckTracer, error: BaseException, base: CheckTracer,
         where_text: str) -> tuple[str, dict]:
    """Explain a failure at another size; for a Linear, say what its in_features was computed for."""
    path = tracer.failed_in or ""
    modules = dict(ctx.model.named_modules())
    module = modules.get(path)
    observed: dict[str, Any] = {"error": describe_error(error, QUOTE_LIMIT)}
    if isinstance(module, nn.Linear) and tracer.failed_shapes:
        got = tracer.failed_shapes[0]
        base_call = base.first_call(path)
        base_in = base_call.in_shapes[0] if base_call is not None and base_call.in_shapes else None
        observed.update(in_features=module.in_features, got=list(got), base_input=base_in)
        was = _flattened_from(base.calls, module.in_features)
        now = _flattened_from(tracer.calls, got[-1] if got else -1)
        text = (f"{path} (Linear) expects {module.in_features} input features"
                + (f" = {format_size(was[1])} flattened from the output of {was[0] or '(model)'}" if was else "")
                + f" at {format_size(ctx.input_size)} input; {where_text} it gets {got[-1] if got else '?'}"
                + (f" = {format_size(now[1])}" if now else f" (shape {format_size(got)})")
                + ": in_features was computed for one input size")
        return text, observed
    kind = f" ({type(module).__name__})" if module is not None else ""
    cause = describe_error(error, QUOTE_LIMIT)
    return f"{where_text} the forward fails in {path or '(model)'}{kind}: {cause}", observed


def _flattened_from(calls: list[Any], features: int) -> tuple[str, tuple[int, ...]] | None:
    """The last module output (C, H, W...) per sample whose size is ``features``: what a flatten consumed."""
    for call in reversed(calls):
        shape = call.out_shape
        if shape and len(shape) > 2 and math.prod(shape[1:]) == features:
            return call.path, tuple(shape[1:])
    return None


def _wrong_batch(base: CheckTracer, tracer: CheckTracer, base_batch: int, batch: int) -> str | None:
    """First module whose output's batch dimension is not the input's batch (a reshape that folds samples)."""
    for cb, ct in zip(base.calls, tracer.calls):
        if cb.path != ct.path:
            return None
        if (cb.out_shape and ct.out_shape and cb.out_shape[0] == base_batch and ct.out_shape[0] != batch):
            if ct.in_shapes and ct.in_shapes[0] and ct.in_shapes[0][0] != batch:
                return ct.path.rpartition(".")[0]  # it got the folded batch: the reshape is in its caller
            return ct.path
    return None


@register_check(
    "input-sizes",
    "other input sizes (2x the spatial size, batch of 1) work, and samples do not mix in eval",
    {
        "hard-coded-size": ("error", "the model breaks at an input size it should accept"),
        "fixed-input-size": ("info", "the model declares one input size and rejects others clearly"),
        "batch-mixing": ("error", "in eval mode one sample's output depends on the other samples"),
    },
    order=110,
)
def check_input_sizes(ctx: Context) -> list[Finding]:
    """Batch of 1, batch independence in eval, and 2x the spatial size for conv models."""
    ctx.train_run()
    (base, base_out), (_, again) = ctx.eval_runs()
    deterministic = outputs_close(base_out, again)  # if not, sample mixing cannot be told from noise
    ctx.model.eval()
    try:
        findings, out1 = _batch_of_one(ctx, base, base_out, deterministic)
        # Several inputs: their sizes may depend on each other (lengths, a mask), so only the batch is varied.
        nd = spatial_dims(ctx.model, ctx.input_size) if ctx.inputs is None or ctx.inputs.single else 0
        if nd and not any(f.id == "hard-coded-size" for f in findings):
            findings += _twice_the_size(ctx, base, base_out, out1)
    finally:
        ctx.model.train()
    return findings


def _batch_of_one(ctx: Context, base: CheckTracer, base_out: Any,
                  deterministic: bool) -> tuple[list[Finding], Any]:
    """A batch of one: sizes tied to the batch, and samples mixing in eval. Returns the findings and the
    output at batch 1 (None when that forward failed)."""
    x = ctx.x
    batch = x.shape[0]
    x1 = x[:1].clone()
    tracer, out1, err = _run(ctx, x1)
    if err is not None:
        text, observed = _why(ctx, tracer, err, base, "with a batch of 1")
        return [make_finding("hard-coded-size", tracer.failed_in or "", text, _FIX, batch=1, **observed)], out1
    dims, wrong = _batch_dims(base_out, out1, batch)
    if wrong:
        module = _wrong_batch(base, tracer, batch, 1) or ""
        return [make_finding(
            "hard-coded-size", module,
            f"with a batch of 1 the model's output has shape {format_size(wrong[0])}, not batch 1; the first "
            f"module whose output has the wrong batch is {module or '(model)'}: a reshape fixes the batch",
            _FIX, batch=1, shapes=[list(w) for w in wrong])], out1
    reduced = _reduced_away(base_out, out1, dims) if deterministic else None
    if reduced is not None:
        module = _wrong_batch(base, tracer, batch, 1) or ""
        return [make_finding(
            "batch-mixing", module,
            f"the model's output has shape {format_size(reduced)} for a batch of {batch} and for a batch of 1, "
            "and its values change with the other samples: the batch was reduced away (a sum, mean or "
            "reshape across samples), so no sample gets an output of its own",
            "keep the batch dimension: reduce over the features (dim=1...), not over dim 0, and flatten with "
            "x.flatten(1)", shape=list(reduced))], out1
    pairs = _batch_pairs(base_out, out1, dims)
    full, one = [a for a, _ in pairs], [b for _, b in pairs]
    mixed = _mixing(full, one) if deterministic else None
    if mixed is None:
        return [], out1
    # Fingerprinted reruns of both batches name the first module where sample 0 changes.
    module = _first_sample_divergence(ctx.fingerprinted(x.clone()), ctx.fingerprinted(x1.clone())) or ""
    return [make_finding(
        "batch-mixing", module,
        f"in eval mode the first sample's output changes by up to {mixed:.3g} when the other "
        f"samples of its batch are removed; the first module where it changes is "
        f"{module or '(model)'}: its output mixes samples (a reshape/view across the batch "
        "dimension, or statistics over the batch)",
        "keep the batch dimension apart: flatten with x.flatten(1) or x.view(x.size(0), -1), "
        "transpose/permute instead of view to reorder dimensions, and compute statistics per "
        "sample (dim=1...) in eval mode",
        max_change=mixed)], out1


def _twice_the_size(ctx: Context, base: CheckTracer, base_out: Any, out1: Any) -> list[Finding]:
    """Twice the spatial size (a model that declares its one size is not probed): it must run, and keep
    the batch."""
    fixed = _declared_fixed(ctx)
    if fixed is not None:
        source = fixed.source if fixed.source != "given" else _declared_source(ctx)
        return [make_finding(
            "fixed-input-size", "",
            f"the model declares that it supports {format_size(fixed.size)} input only ({source}); other spatial "
            "sizes are not probed",
            "nothing to fix if one input size is intended; build the model for another size to use one",
            size=list(fixed.size), source=source)]
    # A batch of one: 2x the spatial size already costs 2**nd times the base sample.
    size2 = (ctx.input_size[0], *(2 * s for s in ctx.input_size[1:]))
    tracer, out2, err = _run(ctx, ctx.make_input(size2, batch=1, seed=7))
    where = f"at {format_size(size2)} input (the model works at {format_size(ctx.input_size)})"
    if err is not None:
        return [_failed_at_twice(ctx, tracer, err, base, size2, where)]
    batch = ctx.x.shape[0]
    base_dims = _batch_dims(base_out, out1, batch)[0] if out1 is not None else []
    wrong = _lost_batch(out2, base_dims)
    folded = (_wrong_batch(base, tracer, batch, 1) or "") if wrong else None
    if folded is None:
        return []
    call = tracer.first_call(folded)
    shape = format_size(call.out_shape) if call is not None and call.out_shape else format_size(wrong[0])
    return [make_finding(
        "hard-coded-size", folded,
        f"{where} the output of {folded or '(model)'} has shape {shape}: its batch dimension is "
        "no longer 1 (the batch given), so a reshape with a fixed size folds spatial positions "
        "into the batch",
        _FIX, size=list(size2))]


def _failed_at_twice(ctx: Context, tracer: CheckTracer, err: BaseException, base: CheckTracer,
                     size2: tuple[int, ...], where: str) -> Finding:
    """Why the forward failed at twice the size, as a finding: a size the model owns on purpose (a lazy layer,
    a learned position table, its own error, a library's or a spec's declared input) is ``fixed-input-size``;
    anything else is ``hard-coded-size``. The rule table of this check: first match wins."""
    model = ctx.model
    text, observed = _why(ctx, tracer, err, base, where)
    failed_in = tracer.failed_in or ""
    if failed_in in ctx.lazy_modules:
        return make_finding(
            "fixed-input-size", failed_in,
            f"{tracer.failed_in} is a lazy layer: it took its size from the first batch "
            f"({format_size(ctx.input_size)}), so this instance accepts that size only; {text}",
            "nothing to fix: a freshly built model sizes itself on whatever input it first sees",
            size=list(size2), **observed)
    if (positions := learned_positions(model)) is not None:
        table, table_shape = positions
        return make_finding(
            "fixed-input-size", failed_in,
            f"the model's learned position embedding {table} ({format_size(table_shape)}) has one row per "
            f"position of a {format_size(ctx.input_size)} input, so that size is the model's own; {text}",
            "nothing to fix if one input size is intended; declare it (self.default_input_size = "
            f"{tuple(ctx.input_size)}), or interpolate the position table to accept others",
            size=list(size2), position_table=table, **observed)
    if (isinstance(err, TorchsmithError) and _declares_size(model)) or _rejected_on_purpose(err):
        return make_finding(
            "fixed-input-size", failed_in,
            f"the model accepts only the input size it was built for; {where} it raises "
            f"{describe_error(err, QUOTE_LIMIT)}",
            "nothing to fix if one input size is intended; rebuild the model for another size",
            size=list(size2), **observed)
    if (declared := _declared_by_library(ctx)) is not None:
        return make_finding(
            "fixed-input-size", failed_in,
            f"the model declares its input as {format_size(declared.size)} ({declared.source}); {text}",
            "nothing to fix if one input size is intended; build the model for another size (its "
            "config's image_size) to use one",
            size=list(size2), source=declared.source, **observed)
    if _spec_built(model):
        return make_finding(
            "fixed-input-size", failed_in,
            f"the spec declares its input as {format_size(ctx.input_size)} and its sizes were inferred "
            f"from it; {where}: {text}",
            "nothing to fix if one input size is intended; change the spec's `input`, or put "
            "`adaptive_avgpool: 1` before `flatten` to accept any size",
            size=list(size2), **observed)
    return make_finding("hard-coded-size", failed_in, text, _FIX, size=list(size2), **observed)


def _batch_dims(base_out: Any, out1: Any, batch: int) -> tuple[list[int | None], list[tuple[int, ...]]]:
    """Which dimension of each output follows the batch, found by comparing a batch of ``batch`` with one of 1.

    The batch dimension is the one that is ``batch`` in the base run and 1 in the other while every other
    dimension stays: dim 0 for most outputs, dim 1 for an RNN's ``(h, c)`` (``(layers, B, hidden)``) or a
    ``batch_first=False`` sequence. An output whose shape does not change has no batch dimension (None). One
    whose shape changes otherwise lost its batch (a reshape with a fixed size folded samples together): those
    shapes are returned second.
    """
    base_ts, other_ts = output_tensors(base_out), output_tensors(out1)
    if len(base_ts) != len(other_ts):
        return [], [tuple(t.shape) for t in other_ts[:1]]
    dims: list[int | None] = []
    wrong: list[tuple[int, ...]] = []
    for a, b in zip(base_ts, other_ts):
        if a.shape == b.shape:
            dims.append(None)
            continue
        found = [d for d in range(a.dim()) if a.dim() == b.dim() and a.shape[d] == batch and b.shape[d] == 1
                 and all(a.shape[e] == b.shape[e] for e in range(a.dim()) if e != d)]
        dims.append(found[0] if found else None)
        if not found and not _batch_by_batch(a, b, batch):
            wrong.append(tuple(b.shape))
    return dims, wrong


def _reduced_away(base_out: Any, out1: Any, dims: list[int | None]) -> tuple[int, ...] | None:
    """The shape of the first output when no output follows the batch, the first is not a scalar (a loss) and
    its values differ between the batch and its first sample alone: samples folded into one output."""
    base_ts, one_ts = output_tensors(base_out), output_tensors(out1)
    if not dims or any(d is not None for d in dims) or not base_ts or len(base_ts) != len(one_ts):
        return None
    a, b = base_ts[0], one_ts[0]
    if a.dim() == 0 or a.shape != b.shape or not a.is_floating_point() or not a.numel():
        return None
    diff = float((a.double() - b.double()).abs().max())
    return tuple(a.shape) if diff > 1e-4 * float(a.double().abs().max()) + 1e-5 else None


def _batch_by_batch(a: torch.Tensor, b: torch.Tensor, batch: int) -> bool:
    """Whether every dimension that changed is the batch: a similarity of each sample with each (CLIP's
    ``logits_per_image``, ``(B, B)``) pairs samples by design and follows the batch in two dimensions."""
    changed = [d for d in range(a.dim()) if a.dim() == b.dim() and a.shape[d] != b.shape[d]]
    return a.dim() == b.dim() and len(changed) > 1 and all(a.shape[d] == batch and b.shape[d] == 1 for d in changed)


def _batch_pairs(base_out: Any, out: Any, dims: list[int | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(base, other) output tensors that have a batch dimension, each with that dimension moved first."""
    base_ts, other_ts = output_tensors(base_out), output_tensors(out)
    if len(base_ts) != len(other_ts) or len(dims) != len(base_ts):
        return []
    return [(a.movedim(d, 0), b.movedim(d, 0)) for a, b, d in zip(base_ts, other_ts, dims) if d is not None]


def _lost_batch(out: Any, dims: list[int | None]) -> list[tuple[int, ...]]:
    """Shapes of outputs (of a batch-of-1 run) whose batch dimension is no longer 1."""
    ts = output_tensors(out)
    if len(ts) != len(dims):
        return []
    return [tuple(t.shape) for t, d in zip(ts, dims) if d is not None and (t.dim() <= d or t.shape[d] != 1)]


def _mixing(full: list[torch.Tensor], one: list[torch.Tensor]) -> float | None:
    """Largest change of sample 0 between the full batch and a batch of one, if beyond float noise."""
    worst: float | None = None
    for a, b in zip(full, one):
        if not (a.is_floating_point() and b.is_floating_point()) or a.shape[1:] != b.shape[1:]:
            continue
        a0, b0 = a[:1].double(), b.double()
        scale = float(a0.abs().max()) if a0.numel() else 0.0
        diff = float((a0 - b0).abs().max()) if a0.numel() else 0.0
        if diff > 1e-4 * scale + 1e-5:
            worst = max(worst or 0.0, diff)
    return worst


def _first_sample_divergence(base: CheckTracer, one: CheckTracer) -> str | None:
    for cb, c1 in zip(base.calls, one.calls):
        if cb.path != c1.path:
            return cb.path
        a, b = cb.fingerprint0, c1.fingerprint0
        if a is None or b is None:
            continue
        scale = max(abs(a[1]), abs(b[1]), 1e-12)
        if abs(a[0] - b[0]) > 1e-4 * scale or abs(a[1] - b[1]) > 1e-4 * scale:
            return cb.path
    return None

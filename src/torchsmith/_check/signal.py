"""The model at initialisation: symmetric units, and the scale of activations and gradients.

Both read the shared train-mode forward+backward (random input, a random
projection of the outputs as the loss), so they measure the initialisation the
user actually has, not the code that produced it.

Thresholds (documented in the README, not tuned per model):

* symmetric units: rows of a weight (output units, conv filters) that are
  bit-identical *and* got gradients equal to ``SAME_GRAD`` (1e-4) relative: gradient
  descent can never tell them apart. Identical rows whose gradients differ (a
  zero-init classifier head, ConvNeXt's layer scale set to one constant) learn
  apart; an all-zero one is only noted (``zero-init``, info).
* activations: a weighted layer (one with parameters) whose output std falls
  below ``VANISH`` or rises above ``EXPLODE`` times the input's std.
* gradients: a weighted layer whose output-gradient std is below ``GRAD_VANISH``
  or above ``GRAD_EXPLODE`` times that of the last layer that got one. These are
  wide on purpose: BatchNorm ResNets at init legitimately reach ~1e3-1e4 (their
  gradient grows towards the input), a 12-layer sigmoid stack falls to ~1e-9.
* dead ReLU: at least ``DEAD`` of a ReLU's outputs are exactly zero (half is
  normal); saturated: at least ``SATURATED`` of a sigmoid/tanh's outputs are
  within 0.01 of its limits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from torchsmith._check._context import Context, SkipCheck, make_finding
from torchsmith._check._tracer import Call
from torchsmith._check.registry import register_check
from torchsmith._check.report import Finding, LayerStat
from torchsmith.errors import format_size

__all__ = ["check_init_symmetry", "check_signal", "layer_stats", "VANISH", "EXPLODE", "DEAD", "SATURATED"]

VANISH = 1e-3
EXPLODE = 1e3
GRAD_VANISH = 1e-5
GRAD_EXPLODE = 1e5
DEAD = 0.9
SATURATED = 0.5
MIN_NUMEL = 32  # fewer outputs than this say nothing about a unit's fate
SAME_GRAD = 1e-4  # gradients this close (relative to the largest) are the same: float noise, not learning
MIN_BN_VALUES = 16  # a batch norm over fewer values per channel makes the probe's statistics meaningless
MIN_ROW = 4  # a unit's gradient row must have this many entries to be matched pairwise (see _stuck_units)


def _owner(name: str) -> tuple[str, str]:
    mod, _, local = name.rpartition(".")
    return mod, local


# --------------------------------------------------------------------------- symmetry
def _stuck_units(w: torch.Tensor, g: torch.Tensor) -> int:
    """How many units (rows of ``w``) start identical to another unit and get the same gradient as it.

    Units are grouped by bit-identical rows of ``w``. A whole group is stuck when every member's gradient
    row equals the group's first within ``SAME_GRAD`` of the group's largest gradient entry: gradient
    descent can then never tell them apart. Inside a group that is not stuck as a whole, two members are
    also stuck together when their gradient rows agree, but only for rows of at least ``MIN_ROW`` entries:
    a single number per unit (a layer scale of shape (C, 1, 1)) matches another unit's by chance
    once there are hundreds of units, and chance is not symmetry.
    """
    uniq, inverse, counts = torch.unique(w, dim=0, return_inverse=True, return_counts=True)
    if uniq.shape[0] == w.shape[0]:
        return 0
    stuck = 0
    for gi in torch.nonzero(counts > 1).flatten().tolist():
        rows = g[torch.nonzero(inverse == gi).flatten()]
        tol = SAME_GRAD * float(rows.abs().max()) if rows.numel() else 0.0
        spread = (rows - rows[0]).abs().amax(dim=1)
        if bool((spread <= tol).all()):
            stuck += rows.shape[0]
        elif rows.shape[1] >= MIN_ROW:
            stuck += _matching_rows(rows, tol)
    return stuck


def _matching_rows(rows: torch.Tensor, tol: float) -> int:
    """How many rows equal another row within ``tol`` (max-norm), in O(n log n) instead of all pairs.

    Rows are sorted by a random projection; equal rows project within ``tol * |r|_1`` of each other, so they
    sit next to each other in that order, and only neighbours are compared in full.
    """
    r = torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(0), dtype=rows.dtype).to(rows.device)
    proj, order = torch.sort(rows @ r)
    close = (proj[1:] - proj[:-1]).abs() <= tol * float(r.abs().sum())
    pairs = torch.nonzero(close).flatten()
    if not pairs.numel():
        return 0
    a, b = rows[order[pairs]], rows[order[pairs + 1]]
    same = (a - b).abs().amax(dim=1) <= tol
    matched = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    matched[order[pairs[same]]] = True
    matched[order[pairs[same] + 1]] = True
    return int(matched.sum())


def _learns_after_a_step(ctx: Context, name: str) -> bool:
    """Whether parameter ``name``, whose gradient is all zero at initialisation, gets gradients that tell its
    identical units apart after one small step of every parameter.

    A zero-initialised gate downstream (a norm scale of 0 closing a residual branch, as in LeViT's attention
    projection) holds back every gradient inside the branch at step 0, identical units included; the first
    step opens the gate and the units learn apart. Weights that are zero all the way down (no gate opens)
    stay stuck, and stay reported. Any failure of this second run keeps the finding.
    """
    if ctx.after_a_step is None:
        ctx.after_a_step = _gradients_after_a_step(ctx)
    grad = ctx.after_a_step.get(name)
    if grad is None or not bool(grad.any()):
        return False
    w = dict(ctx.model.named_parameters())[name].detach()
    return _stuck_units(w.reshape(w.shape[0], -1), grad.reshape(w.shape[0], -1).double()) == 0


def _gradients_after_a_step(ctx: Context) -> dict[str, torch.Tensor | None]:
    """Every parameter's gradient (None if none) after one step of size 1e-2 (relative) on a copy."""
    try:
        model = copy.deepcopy(ctx.model)
        with torch.no_grad():  # the step uses the gradients of the shared train run (deepcopy drops .grad)
            for p, q in zip(model.parameters(), ctx.model.parameters()):
                if q.grad is not None and bool(q.grad.any()):
                    p.sub_(1e-2 * q.grad / q.grad.abs().max())
        model.zero_grad(set_to_none=True)
        model.train()
        loss = ctx.probe_loss(ctx.call(model, ctx.train_input.clone()))
        if loss is None:
            return {}
        loss.backward()
    except Exception:
        return {}
    return {n: (None if p.grad is None else p.grad.detach()) for n, p in model.named_parameters()}


@register_check(
    "init-symmetry",
    "no layer starts with identical units (constant, zero or copied rows) that stay identical",
    {
        "symmetric-init": ("error", "units start identical and get identical gradients"),
        "zero-init": ("info", "a weight starts all zero but its gradient breaks the symmetry"),
    },
    order=70,
)
def check_init_symmetry(ctx: Context) -> list[Finding]:
    """Units that start identical and receive identical gradients stay identical forever.

    Reads the gradients of the shared train-mode backward. Identical units whose gradients differ
    (a zero-initialised head, a layer scale set to one constant: each channel multiplies a different
    input) learn apart; only an all-zero weight of that kind is noted, as ``zero-init``.
    """
    ctx.train_run()
    modules = dict(ctx.model.named_modules())
    findings: list[Finding] = []
    for name, p in ctx.model.named_parameters():
        mod, local = _owner(name)
        owner = modules.get(mod)
        if (p.dim() < 2 or p.shape[0] < 2 or p[0].numel() < 2 or not p.is_floating_point() or p.grad is None
                or isinstance(owner, (nn.Embedding, nn.EmbeddingBag))):
            # Vectors start equal on purpose: biases, norm scales, and per-unit scales shaped (C, 1, 1) (a
            # layer scale) or (heads, 1) (LeViT's attention biases at a 1x1 resolution); embeddings are
            # tables, not units.
            continue
        w = p.detach().reshape(p.shape[0], -1)
        # Cheap screen first: rows that differ in sum or sum of squares cannot be identical,
        # so the exact (sorting) comparison only runs on weights with a candidate pair.
        key = torch.stack([w.sum(1, dtype=torch.float64), torch.linalg.vector_norm(w, dim=1, dtype=torch.float64)],
                          dim=1)
        if torch.unique(key, dim=0).shape[0] == w.shape[0]:
            continue
        grad = p.grad.detach().reshape(p.shape[0], -1).double()
        stuck = _stuck_units(w, grad)
        if stuck and not bool(grad.any()) and _learns_after_a_step(ctx, name):
            continue  # a zero-initialised gate after it held its gradient back; the first step opens it
        all_zero = not bool(w.any())
        constant = bool((w == w.flatten()[0]).all())
        what = "all zero" if all_zero else f"all {float(w.flatten()[0]):.4g}" if constant else "copies of each other"
        unit = "filters" if p.dim() > 2 else "rows (output units)"
        kind = type(owner).__name__ if owner is not None else "?"
        if stuck:
            findings.append(make_finding(
                "symmetric-init", mod,
                f"{stuck} of {p.shape[0]} {unit} of {name} ({kind}, {format_size(p.shape)}) start "
                f"identical ({what}) and receive identical gradients, so training can never make them differ",
                "initialise weights randomly (torchsmith.init_weights(model, 'kaiming'), or the layer's own "
                "reset_parameters); zeros or a constant are only safe for biases and norm scales",
                parameter=local, identical_units=stuck, units=int(p.shape[0]), all_zero=all_zero, constant=constant))
        elif all_zero:
            findings.append(make_finding(
                "zero-init", mod,
                f"{name} ({kind}) starts all zero; its gradient differs between units, so it learns "
                "(fine for a last layer or a residual branch, on purpose)",
                "nothing to fix if intended (zero-initialised head or residual branch)",
                parameter=local, units=int(p.shape[0])))
    return findings


# --------------------------------------------------------------------------- signal
def layer_stats(calls: list[Call]) -> list[LayerStat]:
    """Per-layer statistics of the leaf modules, in the order they ran."""
    return [LayerStat(module=c.path, type=c.type, shape=c.out_shape or (), act_mean=float(c.act_mean),
                      act_std=float(c.act_std), zero_frac=float(c.zero_frac or 0.0), grad_std=c.grad_std)
            for c in calls if c.leaf and c.act_std is not None and c.act_mean is not None]


@register_check(
    "signal",
    "activation and gradient scale at initialisation: vanishing, exploding, dead or saturated units",
    {
        "vanishing-activations": ("warning", "activations shrink towards zero through the layers"),
        "exploding-activations": ("warning", "activations grow without bound through the layers"),
        "vanishing-gradients": ("warning", "early layers get far smaller gradients than late ones"),
        "exploding-gradients": ("warning", "early layers get far larger gradients than late ones"),
        "dead-relu": ("warning", "a ReLU outputs zero almost everywhere at initialisation"),
        "saturated-activations": ("warning", "a sigmoid/tanh is saturated for most inputs at initialisation"),
    },
    order=80,
)
def check_signal(ctx: Context) -> list[Finding]:
    """Vanishing/exploding activations and gradients, dead ReLUs, saturated sigmoids/tanhs."""
    tracer = ctx.train_run()
    stats = layer_stats(tracer.calls)
    ctx.layer_stats = stats
    modules = dict(ctx.model.named_modules())
    weighted = [s for s in stats if s.module in modules and any(True for _ in modules[s.module].parameters(False))]
    ref = 1.0 if ctx.token_range is not None else (float(ctx.x.double().std()) or 1.0)
    findings: list[Finding] = []
    stds = [s.act_std for s in weighted]
    findings += _activation_scale(weighted, ref, stds)
    if _degenerate_batch_norm(tracer.calls, modules) is None:
        # The gradient reaching the first layer flows back through every batch norm: through one that
        # normalised a handful of values it is the probe's artefact, not the model's.
        findings += _gradient_scale([s for s in weighted if s.grad_std is not None and math.isfinite(s.grad_std)])
    reported: set[tuple[str, str]] = set()
    for a in tracer.activations:
        if a.numel < MIN_NUMEL:
            continue
        if a.func == "relu" and a.zero_frac >= DEAD and (a.module, "dead") not in reported:
            reported.add((a.module, "dead"))
            findings.append(make_finding(
                "dead-relu", a.module,
                f"a ReLU in {a.module or '(model)'} outputs exactly zero for {a.zero_frac:.0%} of its {a.numel} "
                "values at initialisation: those units pass no gradient and may never recover",
                "check the layer before it (a large negative bias, a badly scaled init); use Kaiming init, "
                "zero biases, or LeakyReLU/GELU",
                zero_fraction=a.zero_frac, numel=a.numel))
        if a.func in ("sigmoid", "tanh") and a.saturated_frac >= SATURATED and (a.module, "sat") not in reported:
            reported.add((a.module, "sat"))
            findings.append(make_finding(
                "saturated-activations", a.module,
                f"a {a.func} in {a.module or '(model)'} is saturated for {a.saturated_frac:.0%} of its {a.numel} "
                "values at initialisation: its gradient there is close to zero",
                "scale the layer before it down: Xavier init with the activation's gain, or normalisation",
                saturated_fraction=a.saturated_frac, numel=a.numel, function=a.func))
    if not stats:
        raise SkipCheck("no layer produced a floating-point output to measure")
    return findings


def _trailing_run(ratios: list[float], out_of_range: Callable[[float], bool]) -> int | None:
    """Index where the run of out-of-range ratios that reaches the end begins, or None if the last is in range."""
    i = len(ratios)
    while i > 0 and out_of_range(ratios[i - 1]):
        i -= 1
    return None if i == len(ratios) else i


def _activation_scale(weighted: list[LayerStat], ref: float, stds: list[float]) -> list[Finding]:
    """The signal vanishes or explodes when it does so at the last weighted layer and stays so up to it.

    A layer whose output is small only inside a residual branch (a Llama MLP's down projection at std 0.02,
    a ConvNeXt block before its layer scale) is not a vanishing signal: the skip path carries the signal on,
    and the layers after it are back in range. Layers with an all-zero output (a zero-initialised head) are
    left out; ``zero-init`` covers them.
    """
    seq = []
    for s in weighted:
        r = s.act_std / ref
        if not math.isfinite(r):
            break  # non-finite outputs are their own finding
        if r > 0:
            seq.append((s, r))
    for fid, out in (("vanishing-activations", lambda r: r < VANISH), ("exploding-activations", lambda r: r > EXPLODE)):
        start = _trailing_run([r for _, r in seq], out)
        if start is None:
            continue
        s, r = seq[start]
        verb = "vanishes" if fid.startswith("vanishing") else "explodes"
        return [make_finding(
            fid, s.module,
            f"the output std of {s.module} ({s.type}) is {s.act_std:.3g}, {r:.3g}x the input's, and stays out of "
            f"range up to the last layer ({seq[-1][0].module}, {seq[-1][1]:.3g}x): the signal {verb} at "
            "initialisation (output stds layer by layer: "
            + ", ".join(f"{v:.2g}" for v in stds[:12]) + (" ..." if len(stds) > 12 else "") + ")",
            "use an initialisation matched to the activation (torchsmith.init_weights(model, 'kaiming') for "
            "ReLU, 'xavier' with the gain for tanh/sigmoid) or add normalisation layers",
            std=s.act_std, ratio_to_input=r)]
    return []


def _gradient_scale(with_grad: list[LayerStat]) -> list[Finding]:
    """Early layers barely learn (or take huge steps) when the gradient reaching the *first* weighted layer is out
    of range against the last layer's. A branch whose gradient is scaled down on purpose (a layer scale of 1e-6,
    a zero-initialised residual) does not count: the first layer still gets its gradient through the skip path.
    """
    if len(with_grad) < 2 or not with_grad[-1].grad_std:
        return []
    gref = with_grad[-1].grad_std
    ratios = [float(s.grad_std) / gref for s in with_grad[:-1]]  # type: ignore[arg-type]
    for fid, out in (("vanishing-gradients", lambda r: 0 < r < GRAD_VANISH),
                     ("exploding-gradients", lambda r: r > GRAD_EXPLODE)):
        if not out(ratios[0]):
            continue
        s, r = with_grad[0], ratios[0]
        return [make_finding(
            fid, s.module,
            f"the gradient reaching {s.module} ({s.type}), the first weighted layer, has std {s.grad_std:.3g}, "
            f"{r:.3g}x that at the last layer ({with_grad[-1].module}): early layers would "
            f"{'barely learn' if fid.startswith('vanishing') else 'take huge steps'}",
            "use a variance-preserving initialisation (Kaiming for ReLU, Xavier for tanh), "
            "normalisation layers or residual connections; avoid stacks of saturating activations",
            grad_std=s.grad_std, ratio_to_last=r)]
    return []


def _degenerate_batch_norm(calls: list[Call], modules: dict[str, nn.Module]) -> str | None:
    """The first batch norm that, in the train-mode probe, normalised fewer than ``MIN_BN_VALUES`` values per
    channel (a batch of 2 at a 1x1 resolution: LeViT's last stage, a ResNet at 32x32). Its output is then
    about +-1 whatever its input, and the gradient through it is the probe's artefact, not the model's."""
    for c in calls:
        module = modules.get(c.path)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training and c.in_shapes:
            shape = c.in_shapes[0]
            if len(shape) >= 2 and shape[1] and math.prod(shape) // shape[1] < MIN_BN_VALUES:
                return c.path
    return None

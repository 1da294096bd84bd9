"""FLOPs of one aten op, forward and backward, with torch's own formulas.

Forward counts come from ``torch.utils.flop_counter``'s table, so they equal its
counter's. Backward counts are worked out at forward time from which inputs
require grad (``x @ W`` costs one matmul per input that needs a gradient, convs
and attention use torch's backward formulas), so no backward pass has to run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter

__all__ = ["FLOP_FORMULAS", "op_flops"]

aten = torch.ops.aten

#: torch's formulas keyed by overload packet, plus CPU's fused attention kernels, which take the
#: same arguments as the CUDA ones but are missing from torch's table.
FLOP_FORMULAS: dict[Any, Any] = dict(flop_counter.flop_registry)
for _cpu, _cuda in (("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention"),
                    ("_scaled_dot_product_flash_attention_for_cpu_backward",
                     "_scaled_dot_product_flash_attention_backward")):
    if hasattr(aten, _cpu) and getattr(aten, _cuda) in FLOP_FORMULAS:
        FLOP_FORMULAS[getattr(aten, _cpu)] = FLOP_FORMULAS[getattr(aten, _cuda)]

_MATMULS = {aten.mm: (0, 1), aten.bmm: (0, 1), aten.addmm: (1, 2), aten.baddbmm: (1, 2)}
_CONVS = {aten.convolution, aten._convolution, aten.convolution_overrideable}
_SDPA = {getattr(aten, n) for n in (
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu") if hasattr(aten, n)}


def _rg(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.requires_grad


def op_flops(packet: Any, args: Any, kwargs: Any, out: Any) -> tuple[Any, Any] | None:
    """(forward, backward) FLOPs of one op, or None when torch has no formula for it."""
    formula = FLOP_FORMULAS.get(packet)
    if formula is None:
        return None
    fwd = formula(*args, **kwargs, out_val=out)
    if packet in _MATMULS:
        i, j = _MATMULS[packet]
        return fwd, fwd * (int(_rg(args[i])) + int(_rg(args[j])))
    if packet in _CONVS and aten.convolution_backward in FLOP_FORMULAS:
        x, w, bias = args[0], args[1], args[2]
        mask = [_rg(x), _rg(w), _rg(bias)]
        if not any(mask):
            return fwd, 0
        out0 = out[0] if isinstance(out, (tuple, list)) else out
        # out_val: the gradients' shapes (input, weight, bias), which the formula reads.
        bwd = FLOP_FORMULAS[aten.convolution_backward](out0, x, w, None, *args[3:9], mask, out_val=(x, w, bias))
        return fwd, bwd
    if packet in _SDPA and hasattr(flop_counter, "sdpa_backward_flop_count"):
        q, k, v = args[0], args[1], args[2]
        if not (_rg(q) or _rg(k) or _rg(v)):
            return fwd, 0
        out0 = out[0] if isinstance(out, (tuple, list)) else out
        return fwd, flop_counter.sdpa_backward_flop_count(out0.shape, q.shape, k.shape, v.shape)
    # Anything else (fused attention variants, scaled mm): the usual rule, backward = 2x forward.
    needs = any(_rg(a) for a in args if isinstance(a, torch.Tensor))
    return fwd, 2 * fwd if needs else 0

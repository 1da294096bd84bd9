"""The arithmetic of each layer type: output shape and parameter count, with the layer's own numbers.

One rule per family, registered by the ``torch.nn`` class names it covers (``@rule("Conv1d",
"Conv2d", "Conv3d")``), so a user's subclass of ``nn.Conv2d`` is explained as a conv. A rule
reads only plain data the summary recorded (the module's hyperparameters, its parameter
shapes, the traced input and output shapes) and returns the formulas and what they compute;
the caller checks the computed shape against the traced one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Layer", "Worked", "Window", "rule", "explain_layer", "explain_pool_op", "explain_view_op",
           "generic_params", "dims_text"]

_SPATIAL = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass
class Layer:
    """What a rule may read: plain numbers, no module."""

    name: str
    type: str
    base: str
    attrs: dict[str, Any]
    param_shapes: dict[str, Any]
    in_shape: tuple[Any, ...] | None
    out_shape: tuple[Any, ...] | None
    params: int


@dataclass
class Window:
    """A sliding window per spatial dim (for the receptive field): kernel, stride, padding, dilation."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[float, ...]
    dilation: tuple[int, ...]


@dataclass
class Worked:
    """A layer's arithmetic: what it is, the formulas, and the shape and count they give."""

    what: str = ""  # "Conv2d 3→6, kernel 5x5, stride 1, padding 0, dilation 1, groups 1, bias"
    shape: list[str] = field(default_factory=list)  # "H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28"
    computed: tuple[Any, ...] | None = None  # the output shape the formulas give (None: no formula)
    params: list[str] = field(default_factory=list)  # "params = 3*6*5*5 + 6 = 456"
    computed_params: int | None = None
    window: Window | None = None  # for the receptive field
    notes: list[str] = field(default_factory=list)


Rule = Callable[[Layer], Worked]
_RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the rule for the ``torch.nn`` classes ``names``."""
    def register(fn: Rule) -> Rule:
        for n in names:
            if n in _RULES:
                raise ValueError(f"two explain rules for {n}")
            _RULES[n] = fn
        return fn

    return register


def explain_layer(layer: Layer) -> Worked:
    """The rule for the layer's class, else its parameters counted from their shapes."""
    fn = _RULES.get(layer.base) or _RULES.get(layer.type)
    if fn is not None:
        try:
            return fn(layer)
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            pass  # an attribute of an unexpected kind (a subclass that changed it): fall back to the counts
    worked = Worked(what=layer.type)
    if layer.in_shape is not None and layer.in_shape == layer.out_shape:
        worked.shape.append("shape unchanged")
    worked.params, worked.computed_params = generic_params(layer)
    if not worked.params and worked.computed_params == 0:
        worked.params = ["params = 0"]
    return worked


# --------------------------------------------------------------------------- helpers
def _tup(v: Any, n: int) -> tuple[Any, ...]:
    if isinstance(v, (tuple, list)):
        if len(v) == n:
            return tuple(v)
        if len(v) == 1:
            return tuple(v) * n
        raise ValueError(f"expected {n} values, got {v!r}")
    return (v,) * n


def _is_int(*vals: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in vals)


def dims_text(dims: Sequence[Any]) -> str:
    """(5, 5) -> "5x5"."""
    return "x".join(str(d) for d in dims)


def _one(dims: Sequence[Any]) -> str:
    """A stride or padding: (2, 2) -> "2", (1, 2) -> "1x2"."""
    return str(dims[0]) if len(set(dims)) == 1 else dims_text(dims)


def _numel(shape: Any) -> int:
    return math.prod(shape) if shape else 1


def generic_params(layer: Layer) -> tuple[list[str], int | None]:
    """Each parameter's shape multiplied out: "weight 6x3x5x5 = 450, bias 6 = 6; params = 456"."""
    shapes = {k: v for k, v in layer.param_shapes.items() if v is not None}
    if not shapes:
        return ([], 0) if layer.params == 0 else ([], None)
    parts = [f"{k} {dims_text(v) or 'scalar'} = {_numel(v)}" for k, v in shapes.items()]
    total = sum(_numel(v) for v in shapes.values())
    return [", ".join(parts) + (f"; params = {total}" if len(parts) > 1 else "")], total


def _window_line(dim: str, size: Any, k: int, s: int, p: int, d: int, ceil_mode: bool = False,
                 show_dilation: bool = True) -> tuple[str, Any]:
    """One spatial dim of a conv or pool: the formula text and its value (PyTorch's formula)."""
    inner = f"{size} + 2*{p} - {d}*({k}-1) - 1" if show_dilation else f"{size} + 2*{p} - {k}"
    if not _is_int(size):
        return f"{dim}_out = floor(({inner})/{s}) + 1", None
    num = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        out = -(-num // s) + 1
        text = f"{dim}_out = ceil(({inner})/{s}) + 1"
        if (out - 1) * s >= size + p:  # the last window would start in the right padding: PyTorch drops it
            out -= 1
            text += f" - 1 (the last window would start in the padding) = {out}"
            return text, out
        return f"{text} = {out}", out
    out = num // s + 1
    if num % s == 0:
        return f"{dim}_out = ({inner})/{s} + 1 = {out}", out
    return f"{dim}_out = floor(({inner})/{s}) + 1 = {out}", out


# --------------------------------------------------------------------------- convolutions
@rule("Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d")
def _conv(layer: Layer) -> Worked:
    a = layer.attrs
    n = len(a["kernel_size"]) if isinstance(a["kernel_size"], tuple) else int((layer.base or layer.type)[-2])
    k, s, d = (_tup(a[x], n) for x in ("kernel_size", "stride", "dilation"))
    cin, cout, groups = a["in_channels"], a["out_channels"], a.get("groups", 1)
    bias = layer.param_shapes.get("bias") is not None
    pad = a.get("padding", 0)
    w = Worked()
    pad_text = repr(pad) if isinstance(pad, str) else _one(_tup(pad, n))
    w.what = (f"{layer.type} {cin}→{cout}, kernel {dims_text(k)}, stride {_one(s)}, padding {pad_text}, "
              f"dilation {_one(d)}, groups {groups}, {'bias' if bias else 'no bias'}")
    x = layer.in_shape or ()
    spatial = list(x[-n:]) if len(x) >= n + 1 else []
    out_sp: list[Any] = []
    if isinstance(pad, str):  # 'same' or 'valid'
        if pad == "same":
            for name, size, kk, dd in zip(_SPATIAL[n], spatial, k, d):
                w.shape.append(f"{name}_out = {name}_in = {size} (padding='same' adds {dd}*({kk}-1) = {dd * (kk - 1)}"
                               f" in total, split {dd * (kk - 1) // 2} / {dd * (kk - 1) - dd * (kk - 1) // 2})")
                out_sp.append(size)
            pads = tuple(dd * (kk - 1) / 2 for kk, dd in zip(k, d))
        else:
            pads = (0,) * n
    else:
        pads = _tup(pad, n)
    if not out_sp:
        for name, size, kk, ss, pp, dd in zip(_SPATIAL[n], spatial, k, s, pads, d):
            text, val = _window_line(name, size, kk, ss, int(pp), dd)
            w.shape.append(text)
            out_sp.append(val)
    w.shape.insert(0, f"C_out = out_channels = {cout}")
    if len(spatial) == n and all(v is not None for v in out_sp):
        w.computed = (*x[:-n - 1], cout, *out_sp)
    ks = "*".join(str(v) for v in k)
    cin_text = f"({cin}/{groups})" if groups != 1 else str(cin)
    weight = cin // groups * cout * math.prod(k)
    total = weight + (cout if bias else 0)
    w.params = [f"params = {cin_text}*{cout}*{ks}" + (f" + {cout}" if bias else "") + f" = {total}"
                + ("" if bias else " (no bias)")]
    if groups != 1:
        w.notes.append(f"groups={groups}: each filter sees {cin}/{groups} = {cin // groups} input channels")
    w.computed_params = total
    w.window = Window(kernel=tuple(k), stride=tuple(s), padding=tuple(pads), dilation=tuple(d))
    return w


@rule("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
def _conv_transpose(layer: Layer) -> Worked:
    a = layer.attrs
    n = len(a["kernel_size"])
    k, s, p, d, op = (_tup(a[x], n) for x in ("kernel_size", "stride", "padding", "dilation", "output_padding"))
    cin, cout, groups = a["in_channels"], a["out_channels"], a.get("groups", 1)
    bias = layer.param_shapes.get("bias") is not None
    w = Worked(what=f"{layer.type} {cin}→{cout}, kernel {dims_text(k)}, stride {dims_text(s)}, "
                    f"padding {dims_text(p)}, output_padding {dims_text(op)}, dilation {dims_text(d)}")
    x = layer.in_shape or ()
    spatial = list(x[-n:]) if len(x) >= n + 1 else []
    out_sp = []
    w.shape.append(f"C_out = out_channels = {cout}")
    for name, size, kk, ss, pp, dd, oo in zip(_SPATIAL[n], spatial, k, s, p, d, op):
        text = f"{name}_out = ({size}-1)*{ss} - 2*{pp} + {dd}*({kk}-1) + {oo} + 1"
        val = (size - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1 if _is_int(size) else None
        w.shape.append(text + ("" if val is None else f" = {val}"))
        out_sp.append(val)
    if len(spatial) == n and all(v is not None for v in out_sp):
        w.computed = (*x[:-n - 1], cout, *out_sp)
    total = cin * (cout // groups) * math.prod(k) + (cout if bias else 0)
    w.params = [f"params = {cin}*{cout // groups}*{'*'.join(map(str, k))}" + (f" + {cout}" if bias else "")
                + f" = {total}"]
    w.computed_params = total
    return w


# --------------------------------------------------------------------------- pooling
@rule("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d")
def _pool(layer: Layer) -> Worked:
    a = layer.attrs
    kind = layer.base or layer.type
    n = int(kind[-2])
    is_max = "Max" in kind
    return pool_arithmetic(layer.type, n, layer.in_shape, a["kernel_size"], a.get("stride"), a.get("padding", 0),
                           a.get("dilation", 1) if is_max else 1, bool(a.get("ceil_mode", False)), is_max)


def pool_arithmetic(what: str, n: int, in_shape: tuple[Any, ...] | None, kernel: Any, stride: Any, padding: Any,
                    dilation: Any, ceil_mode: bool, show_dilation: bool) -> Worked:
    """A max or average pool's output size (stride defaults to the kernel)."""
    k = _tup(kernel, n)
    s = k if stride in (None, (), []) else _tup(stride, n)
    p, d = _tup(padding, n), _tup(dilation, n)
    w = Worked(what=f"{what}, kernel {dims_text(k)}, stride {_one(s)}, padding {_one(p)}"
                    + (f", dilation {_one(d)}" if show_dilation else "") + (", ceil_mode" if ceil_mode else ""))
    x = in_shape or ()
    spatial = list(x[-n:]) if len(x) >= n + 1 else []
    out_sp = []
    for name, size, kk, ss, pp, dd in zip(_SPATIAL[n], spatial, k, s, p, d):
        text, val = _window_line(name, size, kk, ss, pp, dd, ceil_mode, show_dilation)
        w.shape.append(text)
        out_sp.append(val)
    w.shape.insert(0, "C_out = C_in" + (f" = {x[-n - 1]}" if len(x) >= n + 1 else "") + " (each channel pooled alone)")
    if len(spatial) == n and all(v is not None for v in out_sp):
        w.computed = (*x[:-n], *out_sp)
    w.params, w.computed_params = ["params = 0 (pooling has no weights)"], 0
    w.window = Window(kernel=tuple(k), stride=tuple(s), padding=tuple(p), dilation=tuple(d))
    return w


@rule("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
      "AdaptiveMaxPool3d")
def _adaptive_pool(layer: Layer) -> Worked:
    n = int((layer.base or layer.type)[-2])
    target = _tup(layer.attrs["output_size"], n)
    x = layer.in_shape or ()
    spatial = list(x[-n:]) if len(x) >= n + 1 else []
    w = Worked(what=f"{layer.type}, output_size {dims_text(target)}")
    out_sp = []
    kernels, strides = [], []
    for name, size, t in zip(_SPATIAL[n], spatial, target):
        if t is None:
            w.shape.append(f"{name}_out = {name}_in = {size} (output_size None keeps it)")
            out_sp.append(size)
            kernels.append(1)
            strides.append(1)
            continue
        out_sp.append(t)
        if _is_int(size):
            kk = -(-size // t)
            w.shape.append(f"{name}_out = output_size = {t} (windows of about ceil({size}/{t}) = {kk})")
            kernels.append(kk)
            strides.append(max(size // t, 1))
        else:
            w.shape.append(f"{name}_out = output_size = {t}")
    w.shape.insert(0, "C_out = C_in" + (f" = {x[-n - 1]}" if len(x) >= n + 1 else ""))
    if len(spatial) == n:
        w.computed = (*x[:-n], *out_sp)
    w.params, w.computed_params = ["params = 0 (pooling has no weights)"], 0
    if len(kernels) == n:
        w.window = Window(kernel=tuple(kernels), stride=tuple(strides), padding=(0,) * n, dilation=(1,) * n)
    return w


# --------------------------------------------------------------------------- dense, reshape, norm, embed
@rule("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear")
def _linear(layer: Layer) -> Worked:
    fin, fout = layer.attrs["in_features"], layer.attrs["out_features"]
    bias = layer.param_shapes.get("bias") is not None
    w = Worked(what=f"Linear {fin}→{fout}, {'bias' if bias else 'no bias'}")
    x = layer.in_shape or ()
    if x:
        w.shape.append(f"last dim: {x[-1]} -> out_features = {fout} (y = x W^T + b, W is {fout}x{fin})")
        w.computed = (*x[:-1], fout)
        if _is_int(x[-1]) and x[-1] != fin:
            w.notes.append(f"the input has {x[-1]} features but in_features is {fin}")
    total = fin * fout + (fout if bias else 0)
    w.params = [f"params = {fin}*{fout}" + (f" + {fout}" if bias else "") + f" = {total}"]
    w.computed_params = total
    return w


@rule("Conv1D")
def _hf_conv1d(layer: Layer) -> Worked:
    """Hugging Face's Conv1D (GPT-2): a Linear whose weight is stored transposed, nx x nf."""
    nx, nf = layer.param_shapes["weight"]
    bias = layer.param_shapes.get("bias") is not None
    w = Worked(what=f"Conv1D (a Linear with its weight stored {nx}x{nf}) {nx}→{nf}")
    x = layer.in_shape or ()
    if x:
        w.shape.append(f"last dim: {x[-1]} -> nf = {nf} (y = x W + b, W is {nx}x{nf})")
        w.computed = (*x[:-1], nf)
    total = nx * nf + (nf if bias else 0)
    w.params = [f"params = {nx}*{nf}" + (f" + {nf}" if bias else "") + f" = {total}"]
    w.computed_params = total
    return w


@rule("Flatten")
def _flatten(layer: Layer) -> Worked:
    start, end = layer.attrs.get("start_dim", 1), layer.attrs.get("end_dim", -1)
    x = layer.in_shape or ()
    w = Worked(what=f"Flatten start_dim={start}, end_dim={end}")
    if x:
        rank = len(x)
        s, e = start % rank, end % rank
        merged = x[s:e + 1]
        if _is_int(*merged):
            size = math.prod(merged)
            w.shape.append(f"dims {s}..{e} merged: {'*'.join(map(str, merged))} = {size}")
            w.computed = (*x[:s], size, *x[e + 1:])
    w.params, w.computed_params = ["params = 0"], 0
    return w


def _norm_params(layer: Layer, what: str) -> tuple[list[str], int]:
    shapes = {k: v for k, v in layer.param_shapes.items() if v is not None}
    if not shapes:
        return [f"params = 0 ({what} without affine weights)"], 0
    parts = [f"{k} {dims_text(v)}" for k, v in shapes.items()]
    total = sum(_numel(v) for v in shapes.values())
    counts = " + ".join(str(_numel(v)) for v in shapes.values())
    return [f"params = {counts} = {total} ({', '.join(parts)}: a scale and a shift per feature)"], total


@rule("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm2d", "InstanceNorm1d",
      "InstanceNorm2d", "InstanceNorm3d")
def _batch_norm(layer: Layer) -> Worked:
    c = layer.attrs["num_features"]
    w = Worked(what=f"{layer.type} {c} channels, eps {layer.attrs.get('eps')}, "
                    f"affine {bool(layer.attrs.get('affine', True))}")
    w.shape.append(f"shape unchanged: (x - mean) / sqrt(var + eps) per channel, over {c} channels in dim 1")
    w.computed = layer.in_shape
    w.params, w.computed_params = _norm_params(layer, layer.type)
    if layer.attrs.get("track_running_stats"):
        w.notes.append(f"buffers running_mean and running_var ({c} each) are state, not parameters")
    return w


@rule("LayerNorm", "RMSNorm")
def _layer_norm(layer: Layer) -> Worked:
    shape = layer.attrs.get("normalized_shape", ())
    w = Worked(what=f"{layer.type} over the last dims {dims_text(shape)}")
    w.shape.append(f"shape unchanged: each position normalised over its last {len(shape)} dim(s) "
                   f"({dims_text(shape)} values)")
    w.computed = layer.in_shape
    w.params, w.computed_params = _norm_params(layer, layer.type)
    return w


@rule("GroupNorm")
def _group_norm(layer: Layer) -> Worked:
    g, c = layer.attrs["num_groups"], layer.attrs["num_channels"]
    w = Worked(what=f"GroupNorm {g} groups over {c} channels")
    w.shape.append(f"shape unchanged: {c} channels in {g} groups of {c}/{g} = {c // g}, each normalised alone")
    w.computed = layer.in_shape
    w.params, w.computed_params = _norm_params(layer, "GroupNorm")
    return w


@rule("Embedding")
def _embedding(layer: Layer) -> Worked:
    n, dim = layer.attrs["num_embeddings"], layer.attrs["embedding_dim"]
    w = Worked(what=f"Embedding {n} rows of {dim}")
    x = layer.in_shape or ()
    w.shape.append(f"each integer index picks one row of the {n}x{dim} table: {dims_text(x[1:]) or 'index'} "
                   f"indices -> a {dim}-vector each")
    w.computed = (*x, dim)
    w.params = [f"params = {n}*{dim} = {n * dim}"]
    w.computed_params = n * dim
    if layer.attrs.get("padding_idx") is not None:
        w.notes.append(f"row {layer.attrs['padding_idx']} (padding_idx) gets no gradient")
    return w


_ELEMENTWISE = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid",
                "Tanh", "Hardtanh", "Hardswish", "Hardsigmoid", "Softplus", "Softsign", "Tanhshrink", "Threshold",
                "LogSigmoid", "Softmax", "LogSoftmax", "Softmin", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
                "AlphaDropout", "Identity")


@rule(*_ELEMENTWISE)
def _elementwise(layer: Layer) -> Worked:
    w = Worked(what=layer.type)
    inplace = " (in place)" if layer.attrs.get("inplace") else ""
    w.shape.append(f"shape unchanged{inplace}: applied to each value" if "max" not in layer.type.lower()
                   else "shape unchanged")
    w.computed = layer.in_shape
    w.params, w.computed_params = generic_params(layer)
    if not w.params:
        w.params = ["params = 0"]
    if "Dropout" in layer.type:
        p = layer.attrs.get("p", 0.5)
        w.notes.append(f"training: each value zeroed with probability {p}, the rest scaled by 1/(1-{p}); "
                       "evaluation: passes values through")
    return w


@rule("MultiheadAttention")
def _mha(layer: Layer) -> Worked:
    a = layer.attrs
    e, h = a["embed_dim"], a["num_heads"]
    hd = e // h
    x = layer.in_shape or ()
    batch_first = bool(a.get("batch_first", False))
    w = Worked(what=f"MultiheadAttention embed_dim {e}, {h} heads" + (", batch_first" if batch_first else ""))
    if len(x) == 3:
        b, t = (x[0], x[1]) if batch_first else (x[1], x[0])
        w.shape += attention_lines(b, t, t, e, h, hd)
        w.computed = (b, t, e) if batch_first else (t, b, e)
    else:
        w.shape.append(f"head_dim = {e}/{h} = {hd}")
    shapes = {k: v for k, v in layer.param_shapes.items() if v is not None}
    parts = [f"{k} {dims_text(v)} = {_numel(v)}" for k, v in shapes.items()]
    own = sum(_numel(v) for v in shapes.values())
    out_proj = e * e + e if a.get("bias", True) is not False else e * e
    w.params = [", ".join(parts) + f"; out_proj {e}*{e} + {e} = {e * e + e}",
                f"params = {own} + {e * e + e} = {own + e * e + e}"]
    w.computed_params = own + out_proj
    return w


def attention_lines(b: Any, t: Any, s: Any, e: Any, h: int, hd: int) -> list[str]:
    """The shape flow of scaled dot-product attention with ``h`` heads of ``hd`` dims."""
    del b
    return [f"head_dim = {e}/{h} = {hd}",
            f"Q, K, V = x W_q, x W_k, x W_v: ({t}, {e}) each, split into {h} heads: ({h}, {t}, {hd})",
            f"scores = softmax(Q K^T / sqrt({hd})): ({h}, {t}, {hd}) x ({h}, {hd}, {s}) -> ({h}, {t}, {s})",
            f"out = scores V: ({h}, {t}, {s}) x ({h}, {s}, {hd}) -> ({h}, {t}, {hd}); heads concatenated: "
            f"({t}, {h}*{hd}) = ({t}, {h * hd}), then the output projection"]


# --------------------------------------------------------------------------- functional ops
_POOL_OPS = {"max_pool1d_with_indices": (1, True), "max_pool2d_with_indices": (2, True),
             "max_pool3d_with_indices": (3, True), "max_pool1d": (1, True), "max_pool2d": (2, True),
             "max_pool3d": (3, True), "avg_pool1d": (1, False), "avg_pool2d": (2, False), "avg_pool3d": (3, False)}


def explain_pool_op(name: str, args: tuple[Any, ...], in_shape: tuple[Any, ...] | None) -> Worked | None:
    """``F.max_pool2d(x, 2)`` and friends, from the aten op's arguments."""
    if name not in _POOL_OPS:
        return None
    n, is_max = _POOL_OPS[name]
    pos = [a for a in args if not isinstance(a, tuple) or len(a) != 2 or not isinstance(a[0], str)]
    kw = {a[0]: a[1] for a in args if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str)}
    names = ["self", "kernel_size", "stride", "padding"] + (["dilation", "ceil_mode"] if is_max else ["ceil_mode"])
    vals = dict(zip(names, pos))
    vals.update(kw)
    label = f"F.{'max' if is_max else 'avg'}_pool{n}d"
    return pool_arithmetic(label, n, in_shape, vals["kernel_size"], vals.get("stride"), vals.get("padding", 0),
                           vals.get("dilation", 1) if is_max else 1, bool(vals.get("ceil_mode", False)), is_max)


def explain_view_op(name: str, args: tuple[Any, ...], in_shape: tuple[Any, ...] | None,
                    out_shape: tuple[Any, ...] | None) -> Worked | None:
    """``x.view(-1, 16*5*5)``, ``torch.flatten(x, 1)``, ``reshape``: the element count is kept."""
    if name not in ("view", "_unsafe_view", "reshape", "_reshape_alias") or not in_shape or out_shape is None:
        return None
    w = Worked(what=f"{'view' if 'view' in name else 'reshape'}")
    target = args[1] if len(args) > 1 and isinstance(args[1], tuple) else None
    if not _is_int(*in_shape):
        return w
    total = math.prod(in_shape)
    per = "*".join(map(str, in_shape))
    w.shape.append(f"elements kept: {per} = {total}")
    if target is not None and _is_int(*target):
        w.what = f"view({', '.join(map(str, target))})"
        known = math.prod(t for t in target if t != -1)
        resolved = tuple(total // known if t == -1 else t for t in target) if known else tuple(target)
        if -1 in target:
            w.shape.append(f"-1 = {total}/{known} = {total // known if known else '?'}")
        w.computed = resolved
        if len(in_shape) > 2 and len(resolved) == 2:
            feats = "*".join(map(str, in_shape[1:]))
            w.notes.append(f"flattens each sample's {feats} = {math.prod(in_shape[1:])} values into one vector"
                           + (f"; a hard-coded {target[-1]} only fits this input size" if target[-1] != -1 else ""))
    else:
        w.computed = out_shape if math.prod(out_shape) == total else None
    w.params, w.computed_params = ["params = 0"], 0
    return w

"""Inputs for a summary run: parse sizes, name symbolic dims, build meta / fake / real tensors.

``input_size`` is one sample's shape without the batch dimension, as in every torchsmith function:
``(3, 32, 32)``; ``batch_size`` (1 by default) is its own argument. Without one, the size and dtype come
from :func:`torchsmith.contract.input_spec` (``default_input_size``, a transformers or timm config, the
first layer); token-id models get integer inputs. A dimension, the batch included, may be a name
(``"B"``) or a name with the value used to trace it (``"T=128"``); such dims stay symbolic (torch's
ShapeEnv) and shapes and FLOPs come out as formulas in them. Several inputs are given as a list of sizes,
each without the batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchsmith.contract import forward_inputs, input_spec, is_length_name, model_inputs
from torchsmith.errors import ConfigError

__all__ = ["TracedInputs", "Namer", "parse_dim", "declared_size", "meta_like"]

#: Value a symbolic dim takes while tracing when none is given (``"B"``): not 0 or 1,
#: which torch would specialise on, and small enough to pass checks like ``T <= block_size``.
DEFAULT_HINT = 8

_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*(\d+))?$")

Dim = int | tuple[str, int]  # a fixed size, or (symbol name, tracing value)


def meta_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(t, device="meta")``, through the C++ kernel where the result is the same.

    ``empty_like`` of a meta tensor runs torch's Python reference (``torch._refs.empty_like``), whose stride
    logic imports sympy and torch's symbolic shapes (about half a second) the first time; for a dense tensor
    (every parameter and input in practice) it keeps the strides, which ``empty_strided`` gives directly.
    """
    if t.layout == torch.strided and (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
        return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="meta")
    return torch.empty_like(t, device="meta")


def parse_dim(d: Any) -> Dim:
    """``3`` -> 3; ``"B"`` -> ("B", 8); ``"T=128"`` -> ("T", 128); anything else is an error."""
    if isinstance(d, bool):
        raise ConfigError(f"input dimension {d!r} is not a size; use a positive int or a name like 'B'")
    if isinstance(d, int):
        if d <= 0:
            raise ConfigError(f"input dimension {d} must be positive")
        return d
    if isinstance(d, str):
        if d.strip().isdigit():
            return parse_dim(int(d))
        m = _NAME.match(d.strip())
        if not m:
            raise ConfigError(f"input dimension {d!r} is neither a positive int nor a name like 'B' or 'T=128'")
        hint = int(m.group(2)) if m.group(2) else DEFAULT_HINT
        if hint < 2:
            raise ConfigError(f"symbolic dimension {d!r} needs a tracing value of at least 2 (torch fixes 0 and 1)")
        return (m.group(1), hint)
    raise ConfigError(f"input dimension {d!r} must be an int or a name like 'B', not {type(d).__name__}")


class Namer:
    """Turns SymInts (or plain ints) into ints or formula strings in the user's names."""

    def __init__(self, symbols: Mapping[Any, str] | None = None) -> None:
        self.symbols = dict(symbols or {})  # sympy.Symbol -> "B"

    @property
    def symbolic(self) -> bool:
        return bool(self.symbols)

    def value(self, v: Any) -> int | str:
        """An int, or a formula string such as ``"18816*B"``."""
        if isinstance(v, (torch.SymInt, torch.SymFloat)):
            expr = v.node.expr
            if getattr(expr, "is_number", False) and float(expr).is_integer():
                return int(expr)
            return self.formula(expr)
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return str(v)

    def formula(self, expr: Any) -> str:
        import sympy  # heavy (~0.3 s), and only symbolic dims need it

        renamed = expr.xreplace({s: sympy.Symbol(n, positive=True, integer=True) for s, n in self.symbols.items()})
        return str(sympy.expand(renamed)) if isinstance(renamed, sympy.Add) else str(renamed)


@dataclass
class TracedInputs:
    """What to feed the model: sizes (with dtypes) or given data."""

    sizes: list[tuple[Dim, ...]] = field(default_factory=list)
    dtypes: list[torch.dtype] = field(default_factory=list)
    data: Any = None  # user's input_data (tensor, tuple of args, or dict of kwargs)
    keywords: tuple[str, ...] = ()  # the inputs' names when they are passed by keyword (a dict of sizes)
    model: nn.Module | None = field(default=None, repr=False)  # whose forward names the inputs

    @property
    def symbolic(self) -> bool:
        return any(not isinstance(d, int) for size in self.sizes for d in size)

    @classmethod
    def build(cls, model: nn.Module, input_size: Any, input_data: Any,
              input_dtype: Any, batch_size: Any = 1) -> TracedInputs:
        if input_data is not None:
            if input_size is not None:
                raise ConfigError("give input_size or input_data, not both")
            return cls(data=input_data)
        batch = parse_dim(batch_size)
        if input_size is None:
            try:
                contract = model_inputs(model, input_dtype=input_dtype if isinstance(input_dtype, Mapping) else None)
            except ConfigError as e:
                raise ConfigError(f"{e}; pass one sample's size without the batch: input_size=(3, 32, 32)") from None
            input_size = contract.sizes()  # one size; or, for an encoder-decoder, input_ids and decoder_input_ids
            if input_dtype is None:
                input_dtype = contract.primary.dtype if contract.single else {
                    n: s.dtype for n, s in zip(contract.names, contract.specs)}
        keywords: tuple[str, ...] = ()
        if isinstance(input_size, Mapping) or isinstance(input_dtype, Mapping):
            # Keyword inputs ({"image": (3, 224, 224), "meta": (10,)}) or dtypes by name: the contract reads them.
            plain = {k: tuple(_hint(parse_dim(d)) for d in v) for k, v in input_size.items()} if isinstance(
                input_size, Mapping) else input_size
            contract_inputs = model_inputs(model, plain, input_dtype=input_dtype)
            if contract_inputs.keyword:
                keywords = contract_inputs.names
                input_size = list(input_size.values())  # type: ignore[union-attr]
            input_dtype = [s.dtype for s in contract_inputs.specs]
        # Several inputs: a list or a tuple of sizes, ((16,), (16,)), each without the batch.
        nested = isinstance(input_size, (list, tuple)) and bool(input_size) and all(
            isinstance(s, (list, tuple)) for s in input_size)
        if nested:
            raw_sizes = [tuple(s) for s in input_size]
        elif isinstance(input_size, (torch.Size, tuple, list)) and not any(
                isinstance(s, (list, tuple)) for s in input_size):
            raw_sizes = [tuple(input_size)]  # () is one number per sample: a batch of shape (batch_size,)
        else:
            raise ConfigError(f"input_size {input_size!r} must be one sample's shape such as (3, 32, 32) "
                              "(without the batch) or a list of such tuples, one per input")
        sizes = [(batch, *(parse_dim(d) for d in s)) for s in raw_sizes]
        if input_dtype is None:
            dtypes = [_default_dtype(model, sizes[0]) if len(sizes) == 1 else torch.get_default_dtype()] * len(sizes)
        elif isinstance(input_dtype, torch.dtype):
            dtypes = [input_dtype] * len(sizes)
        else:
            dtypes = list(input_dtype)
            if len(dtypes) != len(sizes):
                raise ConfigError(f"{len(dtypes)} input dtypes for {len(sizes)} inputs; give one per input")
        return cls(sizes=sizes, dtypes=dtypes, keywords=keywords, model=model)

    def _pack(self, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return ((), dict(zip(self.keywords, args))) if self.keywords else (args, {})

    def describe(self) -> str:
        if self.data is not None:
            return "given data"
        return ", ".join("(" + ", ".join(_dim_text(d) for d in s) + ")" for s in self.sizes)

    # ------------------------------------------------------------------ tensors
    def meta_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Inputs on the meta device: shapes and dtypes only, no storage."""
        if self.data is not None:
            return _split(_map_tensors(self.data, meta_like))
        args = tuple(torch.empty(tuple(_hint(d) for d in s), dtype=dt, device="meta")
                     for s, dt in zip(self.sizes, self.dtypes))
        return self._pack(args)

    def fake_args(self, fake_mode: Any, shape_env: Any) -> tuple[tuple[Any, ...], dict[str, Any], Namer]:
        """Fake tensors on meta whose named dims are SymInts of ``shape_env``."""
        symbols: dict[str, Any] = {}
        names: dict[Any, str] = {}

        def dim(d: Dim) -> Any:
            if isinstance(d, int):
                return d
            name, hint = d
            if name not in symbols:
                # Heavy (torch._dynamo, ~1 s): imported only when a dim is symbolic.
                from torch._dynamo.source import ConstantSource
                from torch.fx.experimental.symbolic_shapes import DimDynamic

                sym = shape_env.create_symbol(hint, ConstantSource(f"torchsmith_{name}"),
                                              dynamic_dim=DimDynamic.DYNAMIC)
                names[sym] = name
                symbols[name] = shape_env.create_symintnode(sym, hint=hint)
            return symbols[name]

        with fake_mode:
            if self.data is not None:
                args, kwargs = _split(_map_tensors(self.data, meta_like))
            else:
                args, kwargs = self._pack(tuple(torch.empty(tuple(dim(d) for d in s), dtype=dt, device="meta")
                                                for s, dt in zip(self.sizes, self.dtypes)))
        return args, kwargs, Namer(names)

    def real_args(self, device: torch.device | str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Real tensors at batch 1 (the first dim), seeded; integer inputs are zeros (valid indices)."""
        if self.data is not None:
            # Copies: an in-place op in the model's forward (x.mul_()) must not change the caller's data.
            return _split(_map_tensors(self.data, lambda t: t.to(device, copy=True)))
        gen = torch.Generator().manual_seed(0)
        args = []
        names = self.keywords or (tuple(n for n, _ in forward_inputs(self.model)) if self.model is not None else ())
        for i, (s, dt) in enumerate(zip(self.sizes, self.dtypes)):
            shape = (1, *(_hint(d) for d in s[1:]))
            if (len(s) == 1 and not (dt.is_floating_point or dt.is_complex) and i < len(names)
                    and is_length_name(names[i]) and len(self.sizes[0]) > 1):
                args.append(torch.full(shape, _hint(self.sizes[0][1]), dtype=dt, device=device))  # full lengths
            elif dt.is_floating_point or dt.is_complex:
                args.append(torch.randn(shape, generator=gen).to(device=device, dtype=dt))
            else:
                args.append(torch.zeros(shape, dtype=dt, device=device))
        return self._pack(tuple(args))


def _default_dtype(model: nn.Module, size: tuple[Dim, ...]) -> torch.dtype:
    """Token ids (long) for a model whose input goes into an Embedding, else the default float dtype."""
    if len(size) < 2:
        return torch.get_default_dtype()
    try:
        return input_spec(model, tuple(_hint(d) for d in size[1:])).dtype  # the contract's size has no batch
    except ConfigError:
        return torch.get_default_dtype()


def declared_size(model: nn.Module) -> tuple[Any, ...]:
    """``model.default_input_size`` (the input without its batch dim) as a tuple, checked."""
    default = getattr(model, "default_input_size", None)
    if isinstance(default, (str, bytes)) or not isinstance(default, (tuple, list, torch.Size)) or not default:
        raise ConfigError(f"{type(model).__name__}.default_input_size is {default!r}; it should be a non-empty tuple "
                          "of the input's dims without the batch dim, e.g. (3, 32, 32)")
    return tuple(default)


def _hint(d: Dim) -> int:
    return d if isinstance(d, int) else d[1]


def _dim_text(d: Dim) -> str:
    return str(d) if isinstance(d, int) else d[0]


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, list):
        return [_map_tensors(o, fn) for o in obj]
    if isinstance(obj, Mapping):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _split(data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A tensor is one argument, a tuple/list is the positional arguments, a dict the keyword arguments."""
    if isinstance(data, Mapping):
        return (), dict(data)
    if isinstance(data, (tuple, list)):
        return tuple(data), {}
    return (data,), {}

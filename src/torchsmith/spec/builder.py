"""Spec -> ``nn.Module``: walk the layers, propagate the input shape, size every layer from it.

Each entry is built for the shape that reaches it, so no size is ever written
twice and no lazy module is left behind. Names are stable and readable: an
entry is called by its ``name`` if the spec gives one, else by its type and a
counter within its container (``conv1``, ``relu2``, ``basic3``).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from torchsmith.errors import SpecError, TorchsmithError, did_you_mean
from torchsmith.init import init_weights, resolve_policy
from torchsmith.registry import ARCH_ATTR
from torchsmith.sizes import parse_input_size
from torchsmith.spec.loader import LineDict, LineList, Where, line_of, plain
from torchsmith.spec.modules import Residual, SpecModel, SpecPadShortcut, SpecSequential
from torchsmith.spec.registry import (
    CONTAINER_TYPES,
    REQUIRED,
    Shape,
    fmt_shape,
    get_layer_type,
    layer_types,
)
from torchsmith.spec.report import SpecRow

__all__ = ["SpecBuilder", "TOP_KEYS", "build_model", "default_init"]

TOP_KEYS = ("input", "layers", "blocks", "init", "name", "description")
_CONTAINER_ARGS: dict[str, dict[str, Any]] = {
    "sequential": {"layers": REQUIRED},
    "repeat": {"times": REQUIRED, "body": REQUIRED},
    "residual": {"body": REQUIRED, "shortcut": "auto", "act": None},
}
# The argument a bare list fills: `sequential: [...]`, `residual: [...]`.
_LIST_SHORTHAND = {"sequential": "layers", "residual": "body"}
_MAX_BLOCK_DEPTH = 32
#: More entries than any real spec builds (ResNet-152 has about 550): `repeat` and blocks that use blocks
#: multiply, and `times: 1000000000` or ten nested doubling blocks would otherwise build for hours.
MAX_ENTRIES = 50_000
# Names a child cannot take: attributes of every spec container (`training`, `forward`, `spec_name`) and
# those build() sets on the model; nn.Module refuses the first, the second would hide the child.
_RESERVED_NAMES = frozenset(dir(SpecModel)) | frozenset(vars(SpecModel(OrderedDict()))) | {
    "init_policy", "default_input_size", "num_classes", ARCH_ATTR}


def _suggest(name: str, choices: list[str]) -> str:
    close = did_you_mean(name, choices)
    if close:
        return "; did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    return ""


class _BlockDef:
    """A named block from the spec's ``blocks`` section: arguments with defaults and a body."""

    def __init__(self, name: str, args: dict[str, Any], layers: Any, where: Where) -> None:
        self.name, self.args, self.layers, self.where = name, args, layers, where


class SpecBuilder:
    """Builds one spec. ``rows`` collects the shape trace; ``activations`` the nonlinearities met, in order."""

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, Mapping):
            raise SpecError(f"a spec is a mapping with `input` and `layers`, not a {type(spec).__name__}")
        self.spec = spec
        self.source = getattr(spec, "source", None)
        self.root = Where("", getattr(spec, "line", None), self.source)
        self.rows: list[SpecRow] = []
        self.output: Shape = ()
        self.init_policy: dict[str, Any] = {}  # set by torchsmith.spec once the model is initialised
        self.activations: list[str] = []
        for key in spec:
            if key not in TOP_KEYS:
                raise self._top(key).error(f"unknown top-level key {key!r}{_suggest(str(key), list(TOP_KEYS))} "
                                           f"(a spec has {', '.join(TOP_KEYS)})")
        self.input = self._input()
        self.blocks = self._blocks()
        if "layers" not in spec:
            raise self.root.error("a spec needs `layers`, a list of layer entries such as `- conv: {out: 6, "
                                  "kernel: 5}`")
        if "name" in spec and not isinstance(spec["name"], str):
            raise self._top("name").error(f"`name` must be a string, got {spec['name']!r}")

    def _top(self, key: str) -> Where:
        return Where(key, line_of(self.spec, key), self.source)

    def _input(self) -> Shape:
        where = self._top("input")
        if "input" not in self.spec:
            raise self.root.error("a spec needs `input`, the shape of one example without the batch dimension, "
                                  "e.g. `input: [3, 32, 32]`")
        value = self.spec["input"]
        if isinstance(value, str):
            try:
                return parse_input_size(value)
            except TorchsmithError as e:
                raise where.error(str(e)) from None
        if (not isinstance(value, list) or not 1 <= len(value) <= 4
                or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value)):
            raise where.error(f"`input` must be 1 to 4 positive integers without the batch dimension, e.g. "
                              f"[3, 32, 32] or \"3x32x32\"; got {value!r}")
        return tuple(value)

    def _blocks(self) -> dict[str, _BlockDef]:
        raw = self.spec.get("blocks")
        if raw is None:
            return {}
        where = self._top("blocks")
        if not isinstance(raw, Mapping):
            raise where.error("`blocks` maps block names to their definitions ({args: {...}, layers: [...]})")
        out: dict[str, _BlockDef] = {}
        for name, body in raw.items():
            w = Where(f"blocks.{name}", line_of(raw, name), self.source)
            if not isinstance(name, str) or not name.isidentifier():
                raise w.error("a block name must be an identifier like `basic` or `stage_a`")
            if name in layer_types():
                raise w.error(f"block name {name!r} is already a layer type; rename the block")
            if isinstance(body, list):
                out[name] = _BlockDef(name, {}, body, w)
                continue
            if not isinstance(body, Mapping) or "layers" not in body:
                raise w.error("a block is a list of layers or a mapping {args: {...}, layers: [...]}")
            for key in body:
                if key not in ("args", "layers"):
                    raise w.error(f"unknown block key {key!r}{_suggest(str(key), ['args', 'layers'])} "
                                  f"(a block has args and layers)")
            args = body.get("args") or {}
            if not isinstance(args, Mapping) or not all(isinstance(k, str) and k != "name" for k in args):
                raise w.child(".args", line_of(body, "args")).error(
                    "`args` maps argument names (not `name`, which names each use) to defaults (null: required), "
                    "e.g. {out: null, stride: 1}")
            out[name] = _BlockDef(name, {k: REQUIRED if v is None else v for k, v in args.items()},
                               body["layers"], w.child(".layers", line_of(body, "layers")))
        return out

    # ------------------------------------------------------------------ lists and entries
    def build_root(self) -> tuple[OrderedDict[str, nn.Module], Shape]:
        children, self.output = self.build_list(self.spec["layers"], self.input, self._top("layers"), "", ())
        return children, self.output

    def build_list(self, entries: Any, shape: Shape, where: Where, mpath: str,
                   stack: tuple[str, ...]) -> tuple[OrderedDict[str, nn.Module], Shape]:
        """Build a list of entries in order; the children get unique names within this container."""
        if not isinstance(entries, list) or not entries:
            raise where.error("expected a non-empty list of layer entries (each line `- type: args`)")
        children: OrderedDict[str, nn.Module] = OrderedDict()
        counters: dict[str, int] = {}
        out = self._extend(entries, shape, where, mpath, stack, children, counters)
        return children, out

    def _extend(self, entries: list[Any], shape: Shape, where: Where, mpath: str, stack: tuple[str, ...],
                children: OrderedDict[str, nn.Module], counters: dict[str, int]) -> Shape:
        for i, entry in enumerate(entries):
            w = where.child(f"[{i}]", line_of(entries, i))
            kind, args, name = self._parse_entry(entry, w)
            if kind == "repeat" and name is None:
                # An unnamed repeat is inlined: its repetitions join this container (conv1, conv2, conv3).
                times, body = self._repeat_args(args, w)
                for _ in range(times):
                    shape = self._extend(body, shape, w.child(".body", line_of(_args_of(entry), "body")), mpath,
                                         stack, children, counters)
                continue
            if name is None:
                counters[kind] = counters.get(kind, 0) + 1
                name = f"{kind}{counters[kind]}"
                if name in children:
                    raise w.error(f"its automatic name {name!r} is already taken in this list; give it a `name`",
                                  kind)
            elif name in children:
                raise w.error(f"name {name!r} is used twice in this list; names must be unique", kind)
            child_path = f"{mpath}.{name}" if mpath else name
            module, shape = self.build_entry(kind, args, entry, shape, w, child_path, stack)
            if children and _fresh_output(next(reversed(children.values()))):
                _in_place(module)
            children[name] = module
        return shape

    def _parse_entry(self, entry: Any, where: Where) -> tuple[str, dict[str, Any], str | None]:
        """``relu`` / ``{linear: 120}`` / ``{conv: {out: 6, kernel: 5, name: c1}}`` -> (type, args, name)."""
        if isinstance(entry, str):
            kind, value = entry, None
        elif isinstance(entry, Mapping) and len(entry) == 1:
            kind, value = next(iter(entry.items()))
        elif isinstance(entry, Mapping) and entry:
            keys = [str(k) for k in entry]
            known = [k for k in keys if self._known(k)]
            hint = (f"indent the arguments under `{known[0]}:` or write `{known[0]}: {{...}}`" if len(known) == 1
                    else "put each layer on its own `- ` line")
            raise where.error(f"an entry is one layer type with its arguments, but it has the keys "
                              f"{', '.join(keys)}; {hint}")
        else:
            raise where.error(f"an entry is a layer type (`relu`) or a mapping (`conv: {{out: 6, kernel: 5}}`), "
                              f"not {entry!r}")
        if not isinstance(kind, str) or not self._known(kind):
            choices = layer_types() + list(self.blocks)
            raise where.error(f"unknown layer type {kind!r}{_suggest(str(kind), choices)} (known: "
                              f"{', '.join(choices)}; register your own with @torchsmith.register_layer)")
        arg_names = self._arg_spec(kind)
        if value is None:
            args: dict[str, Any] = {}
        elif isinstance(value, Mapping):
            args = dict(value)
        elif isinstance(value, list) and kind in _LIST_SHORTHAND:
            args = {_LIST_SHORTHAND[kind]: value}
        else:
            short = self._shorthand(kind)
            if short is None:
                raise where.error(f"takes no single value; write it as `{kind}: {{{', '.join(arg_names)}}}` "
                                  f"with named arguments", kind)
            args = {short: value}
        name = args.pop("name", None)
        if name is not None:
            if isinstance(name, bool) or not isinstance(name, (str, int)) or "." in str(name) or not str(name):
                raise where.error(f"`name` must be a word without dots (or an index), got {name!r}", kind)
            name = str(name)
            if name in _RESERVED_NAMES:
                raise where.error(f"`name` {name!r} is taken by an attribute of the model itself "
                                  f"(model.{name}); choose another name", kind)
        for key in args:
            if key not in arg_names:
                raise where.child("", line_of(value, key)).error(
                    f"unknown argument {key!r}{_suggest(str(key), list(arg_names))} ({kind} takes "
                    f"{', '.join(arg_names) or 'no arguments'}, and `name`)", kind)
        for key, default in arg_names.items():
            if default is REQUIRED and key not in args:
                raise where.error(f"needs the argument `{key}` (it takes {', '.join(arg_names)})", kind)
        return kind, args, name

    def _known(self, kind: str) -> bool:
        return kind in CONTAINER_TYPES or kind in self.blocks or get_layer_type(kind) is not None

    def _arg_spec(self, kind: str) -> dict[str, Any]:
        if kind in _CONTAINER_ARGS:
            return _CONTAINER_ARGS[kind]
        if kind in self.blocks:
            return self.blocks[kind].args
        lt = get_layer_type(kind)
        return dict(lt.args) if lt is not None else {}

    def _shorthand(self, kind: str) -> str | None:
        if kind in self.blocks:
            args = list(self.blocks[kind].args)
            return args[0] if args else None
        if kind == "repeat":
            return None
        lt = get_layer_type(kind)
        return lt.shorthand if lt is not None else None

    # ------------------------------------------------------------------ one entry
    def build_entry(self, kind: str, args: dict[str, Any], entry: Any, shape: Shape, where: Where, mpath: str,
                    stack: tuple[str, ...]) -> tuple[nn.Module, Shape]:
        """Build one entry (a container, a block use or a registered layer) for the incoming ``shape``."""
        raw = _args_of(entry)
        if kind in _CONTAINER_ARGS:
            args = {**{k: v for k, v in _CONTAINER_ARGS[kind].items() if v is not REQUIRED}, **args}
        if len(self.rows) >= MAX_ENTRIES:
            raise where.error(f"the spec expands to more than {MAX_ENTRIES:,} entries (through `repeat` and blocks "
                              f"that use blocks); no real network has that many: check the `times` values", kind)
        row = SpecRow(where.path, kind, mpath, shape, shape, 0, where.line, len(stack))
        self.rows.append(row)  # before the children: the trace reads in model order
        module, out = self._entry(kind, args, raw, shape, where, mpath, stack)
        row.out_shape, row.params = out, _count(module)
        return module, out

    def _entry(self, kind: str, args: dict[str, Any], raw: Any, shape: Shape, where: Where, mpath: str,
               stack: tuple[str, ...]) -> tuple[nn.Module, Shape]:
        if kind == "sequential":
            children, out = self.build_list(args["layers"], shape, where.child(".layers", line_of(raw, "layers")),
                                            mpath, stack)
            module: nn.Module = SpecSequential(children)
        elif kind == "repeat":
            times, body = self._repeat_args(args, where)
            reps: OrderedDict[str, nn.Module] = OrderedDict()
            out = shape
            for r in range(times):
                start = len(self.rows)
                children, out = self.build_list(body, out, where.child(".body", line_of(raw, "body")),
                                                f"{mpath}.{r}", stack)
                reps[str(r)] = self._single(children, f"{mpath}.{r}", start)
            module = SpecSequential(reps)
        elif kind == "residual":
            module, out = self._residual(args, raw, shape, where, mpath, stack)
        elif kind in self.blocks:
            module, out = self._block(self.blocks[kind], args, shape, where, mpath, stack)
        else:
            module, out = self._leaf(kind, args, shape, where)
        return module, out

    def _leaf(self, kind: str, args: dict[str, Any], shape: Shape, where: Where) -> tuple[nn.Module, Shape]:
        lt = get_layer_type(kind)
        assert lt is not None  # _parse_entry checked the type
        try:
            module, out = lt.make(shape, args)
        except SpecError as e:
            raise where.error(str(e), kind) from e
        except TorchsmithError as e:
            raise where.error(str(e), kind) from e
        except Exception as e:  # a user factory or torch itself refused the arguments
            raise where.error(f"input is {fmt_shape(shape)} and building it failed: {type(e).__name__}: {e}",
                              kind) from e
        if lt.activation:
            self.activations.append(lt.activation)
        return module, out

    def _repeat_args(self, args: dict[str, Any], where: Where) -> tuple[int, list[Any]]:
        times = args["times"]
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise where.error(f"`times` must be a positive integer, got {times!r}", "repeat")
        if times > MAX_ENTRIES:
            raise where.error(f"`times` is {times:,}, more than the {MAX_ENTRIES:,} entries a spec may build; "
                              f"no real network repeats a block that often", "repeat")
        body = args["body"]
        if not isinstance(body, list) or not body:
            raise where.error("`body` must be a non-empty list of layer entries", "repeat")
        return times, body

    def _residual(self, args: dict[str, Any], raw: Any, shape: Shape, where: Where, mpath: str,
                  stack: tuple[str, ...]) -> tuple[nn.Module, Shape]:
        children, out = self.build_list(args["body"], shape, where.child(".body", line_of(raw, "body")),
                                        f"{mpath}.body", stack)
        body = SpecSequential(children)
        sc = args["shortcut"]
        sw = where.child(".shortcut", line_of(raw, "shortcut"))
        if sc == "identity" or (sc == "auto" and out == shape):
            if out != shape:
                raise sw.error(f"identity: the body maps {fmt_shape(shape)} to {fmt_shape(out)}, so the input "
                               f"cannot be added as it is; use `shortcut: auto` (a 1x1 conv + batchnorm) or give "
                               f"the shortcut layers", "residual")
            shortcut: nn.Module = nn.Identity()
        elif sc == "auto":
            shortcut = self._projection(shape, out, sw)
        elif sc == "pad":
            shortcut = self._pad(shape, out, sw)
        elif isinstance(sc, list):
            sc_children, sc_out = self.build_list(sc, shape, sw, f"{mpath}.shortcut", stack)
            if sc_out != out:
                raise sw.error(f"the shortcut gives {fmt_shape(sc_out)} but the body gives {fmt_shape(out)}; "
                               f"they must match to be added", "residual")
            shortcut = SpecSequential(sc_children)
        else:
            raise sw.error(f"`shortcut` is auto, identity, pad or a list of layers, not {sc!r}", "residual")
        act = None
        if args["act"] is not None:
            aw = where.child(".act", line_of(raw, "act"))
            kind, act_args, _ = self._parse_entry(args["act"], aw)
            if kind in CONTAINER_TYPES or kind in self.blocks:
                raise aw.error("`act` is one layer such as relu, applied after the sum", "residual")
            act, act_out = self._leaf(kind, act_args, out, aw)
            if act_out != out:
                raise aw.error(f"`act` must keep the shape {fmt_shape(out)}, but gives {fmt_shape(act_out)}", kind)
            _in_place(act)  # it only ever sees the fresh sum
        return Residual(body, shortcut, act), out

    def _projection(self, shape: Shape, out: Shape, where: Where) -> nn.Module:
        """The automatic shortcut when the body changes the shape: He et al.'s option B projection."""
        if len(shape) == 1 and len(out) == 1:
            return SpecSequential(OrderedDict(linear1=nn.Linear(shape[0], out[0], bias=False)))
        if len(shape) == len(out) and 2 <= len(shape) <= 4:
            stride = max(-(-i // o) for i, o in zip(shape[1:], out[1:]))
            if all((i - 1) // stride + 1 == o for i, o in zip(shape[1:], out[1:])):
                conv = {2: nn.Conv1d, 3: nn.Conv2d, 4: nn.Conv3d}[len(shape)]
                bn = {2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}[len(shape)]
                return SpecSequential(OrderedDict(
                    conv1=conv(shape[0], out[0], kernel_size=1, stride=stride, bias=False), batchnorm1=bn(out[0])))
        raise where.error(f"auto: the body maps {fmt_shape(shape)} to {fmt_shape(out)}, which a strided 1x1 "
                          f"projection cannot match; give the shortcut layers yourself", "residual")

    def _pad(self, shape: Shape, out: Shape, where: Where) -> nn.Module:
        """Option A: subsample and zero-pad channels (no parameters); identity when the shape is kept."""
        if out == shape:
            return nn.Identity()
        if len(shape) == 3 and len(out) == 3 and out[0] >= shape[0]:
            stride = max(-(-i // o) for i, o in zip(shape[1:], out[1:]))
            if all((i - 1) // stride + 1 == o for i, o in zip(shape[1:], out[1:])):
                return SpecPadShortcut(stride, out[0] - shape[0])
        raise where.error(f"pad: the body maps {fmt_shape(shape)} to {fmt_shape(out)}; a padding shortcut needs a "
                          f"feature map whose channels grow and whose size shrinks by a whole stride; use "
                          f"`shortcut: auto` or give the shortcut layers", "residual")

    def _block(self, block: _BlockDef, args: dict[str, Any], shape: Shape, where: Where, mpath: str,
               stack: tuple[str, ...]) -> tuple[nn.Module, Shape]:
        if block.name in stack or len(stack) >= _MAX_BLOCK_DEPTH:
            raise where.error(f"block {block.name!r} uses itself ({' -> '.join([*stack, block.name])}); "
                              f"a block cannot contain itself", block.name)
        values = {k: v for k, v in block.args.items() if v is not REQUIRED}
        values.update(args)
        body = _substitute(block.layers, values, block.where)
        inner = Where(block.where.path, block.where.line, self.source, (*where.via, _at(where)))
        start = len(self.rows)
        children, out = self.build_list(body, shape, inner, mpath, (*stack, block.name))
        return self._single(children, mpath, start), out

    def _single(self, children: OrderedDict[str, nn.Module], mpath: str, start: int) -> nn.Module:
        """One child stands for itself (one name level fewer); several become a SpecSequential."""
        if len(children) != 1:
            return SpecSequential(children)
        old = f"{mpath}.{next(iter(children))}"
        for row in self.rows[start:]:  # the trace names modules by where they end up
            if row.module == old or row.module.startswith(old + "."):
                row.module = mpath + row.module[len(old):]
        return next(iter(children.values()))


# Layers whose output is always a new tensor that nothing else holds and whose backward does not need
# it: an activation right after one may work in place (as torchvision's ResNet does), saving a copy of
# the feature map; never after the model's input, an identity, dropout, a view or another activation
# (ReLU's backward needs its own result).
_FRESH_OUTPUT = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                 nn.GroupNorm, nn.LayerNorm)


def _fresh_output(module: nn.Module) -> bool:
    if isinstance(module, Residual):
        return isinstance(module.act, nn.Identity)  # the bare sum; an activation after it keeps its result
    return type(module) in _FRESH_OUTPUT


def _in_place(module: nn.Module) -> None:
    if type(module) in (nn.ReLU, nn.LeakyReLU):  # their backward needs only the result, which they keep
        module.inplace = True  # type: ignore[assignment]


def _at(where: Where) -> str:
    return f"{where.path} (line {where.line})" if where.line else where.path


def _args_of(entry: Any) -> Any:
    """The argument mapping of an entry as written (for line numbers), if any."""
    if isinstance(entry, Mapping) and len(entry) == 1:
        value = next(iter(entry.values()))
        return value if isinstance(value, Mapping) else None
    return None


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _substitute(value: Any, values: Mapping[str, Any], where: Where) -> Any:
    """Replace every ``"$arg"`` in a block body by the argument's value; keep line numbers."""
    if isinstance(value, str) and value.startswith("$"):
        key = value[1:]
        if key not in values:
            raise where.error(f"{value!r} names no argument of the block{_suggest(key, list(values))} "
                              f"(arguments: {', '.join(values) or 'none'}; a required one must be given at each use)")
        return values[key]
    if isinstance(value, Mapping):
        out = LineDict({k: _substitute(v, values, where.child("", line_of(value, k))) for k, v in value.items()})
        if isinstance(value, LineDict):
            out.line, out.key_lines = value.line, dict(value.key_lines)
        return out
    if isinstance(value, list):
        seq = LineList([_substitute(v, values, where.child("", line_of(value, i))) for i, v in enumerate(value)])
        if isinstance(value, LineList):
            seq.line, seq.item_lines = value.line, list(value.item_lines)
        return seq
    return value


def default_init(activations: list[str]) -> dict[str, Any]:
    """The init policy for a spec without `init`: Kaiming for ReLU-like nets, Xavier for sigmoid/tanh ones."""
    first = activations[0] if activations else None
    if first in ("sigmoid", "tanh"):
        return {"preset": "xavier", "nonlinearity": first}
    if first is None:
        return {"preset": "xavier"}
    if first in ("relu", "leaky_relu"):
        return {"preset": "kaiming", "nonlinearity": first}
    return {"preset": "kaiming"}


def build_model(spec: Mapping[str, Any], *, generator: torch.Generator | None,
                meta: bool) -> tuple[SpecModel, SpecBuilder]:
    """Build ``spec`` (on the meta device when ``meta``) and initialise it; the model and the builder that traced it."""
    builder = SpecBuilder(spec)
    try:
        canonical = plain(spec)  # refuses anything a checkpoint could not store as JSON
    except SpecError as e:
        raise SpecError(f"{builder.source}: {e}" if builder.source else str(e)) from None
    init_where = Where("init", line_of(spec, "init"), builder.source)
    policy = spec.get("init")
    if policy is not None:
        try:
            resolve_policy(policy)  # a bad policy fails before any layer is built
        except TorchsmithError as e:
            raise init_where.error(str(e)) from e
    with torch.device("meta") if meta else contextlib.nullcontext():
        children, _ = builder.build_root()
        model = SpecModel(children, name=spec.get("name"))
    policy = plain(policy, "init") if policy is not None else default_init(builder.activations)
    try:
        init_weights(model, policy, generator=generator)  # on meta it only checks the policy against the model
    except TorchsmithError as e:
        raise init_where.error(str(e)) from e
    # Plain attributes (not class annotations, which TorchScript would try to compile).
    builder.init_policy = policy
    object.__setattr__(model, "init_policy", policy)
    object.__setattr__(model, "default_input_size", builder.input)
    if len(builder.output) == 1:  # outputs per example, as zoo classifiers say it (the trainer checks it)
        object.__setattr__(model, "num_classes", builder.output[0])
    object.__setattr__(model, ARCH_ATTR, {"spec": canonical})
    return model, builder

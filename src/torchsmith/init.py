"""Initialisation policies and the :class:`InitReport`.

A policy is plain data (a dict that YAML can hold) mapping layer types and
parameter-name globs to initialisers::

    {
        "preset": "kaiming",                       # optional starting point
        "types": {"Linear": {"scheme": "xavier_uniform", "gain": "tanh"}},
        "names": {"fc3.weight": {"scheme": "normal", "std": 0.01}, "*.bias": "zeros"},
    }

Rules, from strongest to weakest:

1. ``names``: globs over full tensor names (``fc3.weight``, ``*.bias``); the
   last matching glob wins.
2. ``types``: a class name in the module's MRO (``Conv2d``, ``MyBlock``), most
   derived first; then a family (``Conv``, ``Linear``, ``BatchNorm``,
   ``GroupNorm``, ``LayerNorm``, ``InstanceNorm``, ``Norm``, ``Embedding``);
   then ``*`` (any module that owns tensors). A type rule is either an
   initialiser, which sets ``weight`` and zeroes ``bias``, or a dict from
   tensor names to initialisers (``{"weight": ..., "bias": ...}``).

An initialiser is a scheme name (``"zeros"``) or a dict ``{"scheme": ..., **args}``.
Norm layers matched by a type rule also get their running statistics reset.
Every tensor the policy does not cover is listed in ``InitReport.uncovered``:
nothing is left at whatever it was without saying so.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from torchsmith._meta import check_materialized
from torchsmith.errors import InitError, UnknownNameError, format_size
from torchsmith.html.weights import init_html

__all__ = ["init_weights", "InitReport", "InitRecord", "PRESETS", "SCHEMES", "resolve_policy", "Policy"]

Policy = str | Mapping[str, Any]


# --------------------------------------------------------------------------- schemes
@dataclass(frozen=True)
class _Scheme:
    fn: Callable[..., None]
    defaults: dict[str, Any]
    fan_based: bool = False
    random: bool = True
    required: tuple[str, ...] = ()


def _gain(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(nn.init.calculate_gain(value))  # type: ignore[arg-type]
        except ValueError:
            raise UnknownNameError(
                "nonlinearity for gain", value,
                ["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"],
            ) from None
    raise InitError(f"gain must be a number or a nonlinearity name, not {value!r}")


def _xavier_uniform(t: torch.Tensor, g: torch.Generator | None, gain: Any) -> None:
    nn.init.xavier_uniform_(t, gain=_gain(gain), generator=g)


def _xavier_normal(t: torch.Tensor, g: torch.Generator | None, gain: Any) -> None:
    nn.init.xavier_normal_(t, gain=_gain(gain), generator=g)


def _check_mode(mode: str) -> None:
    if mode not in ("fan_in", "fan_out"):
        raise UnknownNameError("kaiming mode", mode, ["fan_in", "fan_out"])


def _kaiming_uniform(t: torch.Tensor, g: torch.Generator | None, a: float, mode: str, nonlinearity: str) -> None:
    _check_mode(mode)
    _gain(nonlinearity if nonlinearity != "leaky_relu" else 1.0)  # validates the name
    nn.init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity, generator=g)  # type: ignore[arg-type]


def _kaiming_normal(t: torch.Tensor, g: torch.Generator | None, a: float, mode: str, nonlinearity: str) -> None:
    _check_mode(mode)
    _gain(nonlinearity if nonlinearity != "leaky_relu" else 1.0)
    nn.init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity, generator=g)  # type: ignore[arg-type]


def _uniform(t: torch.Tensor, g: torch.Generator | None, a: float, b: float) -> None:
    if not a < b:
        raise InitError(f"uniform needs a < b, got a={a}, b={b}")
    nn.init.uniform_(t, a=a, b=b, generator=g)


def _normal(t: torch.Tensor, g: torch.Generator | None, mean: float, std: float) -> None:
    if std < 0:
        raise InitError(f"normal needs std >= 0, got {std}")
    nn.init.normal_(t, mean=mean, std=std, generator=g)


def _trunc_normal(t: torch.Tensor, g: torch.Generator | None, mean: float, std: float, a: float, b: float) -> None:
    nn.init.trunc_normal_(t, mean=mean, std=std, a=a, b=b, generator=g)


def _orthogonal(t: torch.Tensor, g: torch.Generator | None, gain: Any) -> None:
    nn.init.orthogonal_(t, gain=_gain(gain), generator=g)


def _constant(t: torch.Tensor, g: torch.Generator | None, val: float) -> None:
    nn.init.constant_(t, val)


def _zeros(t: torch.Tensor, g: torch.Generator | None) -> None:
    nn.init.zeros_(t)


def _ones(t: torch.Tensor, g: torch.Generator | None) -> None:
    nn.init.ones_(t)


SCHEMES: dict[str, _Scheme] = {
    "xavier_uniform": _Scheme(_xavier_uniform, {"gain": 1.0}, fan_based=True),
    "xavier_normal": _Scheme(_xavier_normal, {"gain": 1.0}, fan_based=True),
    "kaiming_uniform": _Scheme(_kaiming_uniform, {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}, fan_based=True),
    "kaiming_normal": _Scheme(_kaiming_normal, {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}, fan_based=True),
    "uniform": _Scheme(_uniform, {"a": 0.0, "b": 1.0}),
    "normal": _Scheme(_normal, {"mean": 0.0, "std": 1.0}),
    "trunc_normal": _Scheme(_trunc_normal, {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}),
    "orthogonal": _Scheme(_orthogonal, {"gain": 1.0}, fan_based=True),
    "constant": _Scheme(_constant, {}, random=False, required=("val",)),
    "zeros": _Scheme(_zeros, {}, random=False),
    "ones": _Scheme(_ones, {}, random=False),
    # "default" calls the module's own reset_parameters(); handled per module.
    "default": _Scheme(lambda t, g: None, {}),
}


# --------------------------------------------------------------------------- families
def _norm_types() -> tuple[type, ...]:
    types: list[type] = [
        nn.modules.batchnorm._BatchNorm,
        nn.modules.instancenorm._InstanceNorm,
        nn.GroupNorm,
        nn.LayerNorm,
    ]
    if hasattr(nn, "RMSNorm"):  # torch >= 2.4
        types.append(nn.RMSNorm)
    return tuple(types)


FAMILIES: dict[str, tuple[type, ...]] = {
    "Conv": (nn.modules.conv._ConvNd,),
    "Linear": (nn.Linear, nn.Bilinear),
    "BatchNorm": (nn.modules.batchnorm._BatchNorm,),
    "InstanceNorm": (nn.modules.instancenorm._InstanceNorm,),
    "GroupNorm": (nn.GroupNorm,),
    "LayerNorm": (nn.LayerNorm,),
    "Norm": _norm_types(),
    "Embedding": (nn.Embedding, nn.EmbeddingBag),
}
# Families are tried in this order after exact class names.
_FAMILY_ORDER = ("Conv", "Linear", "BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm", "Norm", "Embedding")

_NORM_RULE = {"weight": "ones", "bias": "zeros"}

PRESETS: dict[str, Callable[[str | None], dict[str, Any]]] = {
    # He et al. 2015: keeps activation variance through ReLU layers.
    "kaiming": lambda nl: {
        "types": {
            "Conv": {"weight": {"scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": nl or "relu"},
                     "bias": "zeros"},
            "Linear": {"weight": {"scheme": "kaiming_normal", "mode": "fan_in", "nonlinearity": nl or "relu"},
                       "bias": "zeros"},
            "Norm": dict(_NORM_RULE),
            "Embedding": {"weight": {"scheme": "normal", "std": 1.0}},
        }
    },
    # Glorot & Bengio 2010: for saturating activations (tanh, sigmoid).
    "xavier": lambda nl: {
        "types": {
            "Conv": {"weight": {"scheme": "xavier_uniform", "gain": nl or 1.0}, "bias": "zeros"},
            "Linear": {"weight": {"scheme": "xavier_uniform", "gain": nl or 1.0}, "bias": "zeros"},
            "Norm": dict(_NORM_RULE),
            "Embedding": {"weight": {"scheme": "normal", "std": 1.0}},
        }
    },
    # Each layer's own reset_parameters(), made explicit.
    "torch_default": lambda nl: {"types": {"*": "default"}},
}


# --------------------------------------------------------------------------- report
@dataclass
class InitRecord:
    """How one tensor was initialised.

    Attributes:
        name: The tensor's name in the model (``"fc1.weight"``).
        kind: ``"parameter"`` or ``"buffer"``.
        shape: The tensor's shape.
        scheme: The initialiser that set it (``"kaiming_normal"``).
        args: The initialiser's arguments.
        rule: Which rule chose it, e.g. ``"names['*.bias']"`` or ``"types['Conv']"``.
        module_type: The class name of the module holding it.
        std: The standard deviation it was drawn with, where the scheme has one.
    """

    name: str
    kind: str  # "parameter" or "buffer"
    shape: tuple[int, ...]
    scheme: str
    args: dict[str, Any]
    rule: str  # which rule chose it, e.g. "names['*.bias']" or "types['Conv']"
    module_type: str
    std: float | None = None


@dataclass
class InitReport:
    """Every parameter and buffer, with the initialiser that set it; and what no rule covered.

    ``report["fc1.weight"]`` is one tensor's :class:`InitRecord`; ``str()`` renders the table.

    Attributes:
        policy: The policy as applied (the preset expanded).
        records: One :class:`InitRecord` per tensor initialised.
        uncovered: ``(tensor name, why)`` for each tensor no rule covered.
    """

    policy: dict[str, Any]
    records: list[InitRecord] = field(default_factory=list)
    uncovered: list[tuple[str, str]] = field(default_factory=list)  # (tensor name, why)

    def __getitem__(self, name: str) -> InitRecord:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def complete(self) -> bool:
        """True when the policy covered every parameter (buffers may legitimately be kept)."""
        return not any(kind == "parameter" for kind, _ in self._uncovered_kinds())

    def _uncovered_kinds(self) -> Iterator[tuple[str, str]]:
        for name, why in self.uncovered:
            yield ("buffer" if why.startswith("buffer") else "parameter"), name

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "records": [asdict(r) for r in self.records],
            "uncovered": [{"name": n, "why": w} for n, w in self.uncovered],
        }

    def __str__(self) -> str:
        rows = [("tensor", "shape", "initialiser", "rule")]
        for r in self.records:
            args = ", ".join(f"{k}={v}" for k, v in r.args.items())
            rows.append((r.name, format_size(r.shape),
                         f"{r.scheme}({args})" if args else r.scheme, r.rule))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        if self.uncovered:
            lines.append("not covered by any rule (left as they were):")
            lines += [f"  {n}: {w}" for n, w in self.uncovered]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return init_html(self)


# --------------------------------------------------------------------------- policy
def resolve_policy(policy: Policy) -> dict[str, Any]:
    """Expand a policy (preset name or dict) into ``{"types": ..., "names": ...}``, validated."""
    if isinstance(policy, str):
        policy = {"preset": policy}
    if not isinstance(policy, Mapping):
        raise InitError(f"an init policy is a preset name or a dict, not {type(policy).__name__}")
    unknown = set(policy) - {"preset", "nonlinearity", "types", "names"}
    for key in unknown:
        raise UnknownNameError("init policy key", key, ["preset", "nonlinearity", "types", "names"])
    types: dict[str, Any] = {}
    names: dict[str, Any] = {}
    preset = policy.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise UnknownNameError("init preset", str(preset), PRESETS)
        base = PRESETS[preset](policy.get("nonlinearity"))
        types.update(copy.deepcopy(base.get("types", {})))
    for section, target in (("types", types), ("names", names)):
        value = policy.get(section) or {}
        if not isinstance(value, Mapping):
            raise InitError(f"init policy {section!r} must be a mapping, not {type(value).__name__}")
        target.update(copy.deepcopy(dict(value)))
    for key, rule in types.items():
        if isinstance(rule, Mapping) and "scheme" not in rule:
            for tensor_name, spec in rule.items():
                _parse_spec(spec, where=f"types[{key!r}][{tensor_name!r}]")
        else:
            _parse_spec(rule, where=f"types[{key!r}]")
    for key, spec in names.items():
        _parse_spec(spec, where=f"names[{key!r}]")
    out: dict[str, Any] = {"types": types, "names": names}
    if preset is not None:
        out["preset"] = preset
    if policy.get("nonlinearity") is not None:
        out["nonlinearity"] = policy["nonlinearity"]
    return out


def _parse_spec(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    """Validate an initialiser and return (scheme, full args with defaults)."""
    if isinstance(spec, str):
        scheme, args = spec, {}
    elif isinstance(spec, Mapping) and "scheme" in spec:
        scheme = spec["scheme"]
        args = {k: v for k, v in spec.items() if k != "scheme"}
    else:
        raise InitError(f"{where}: an initialiser is a scheme name or a dict with 'scheme', not {spec!r}")
    if scheme not in SCHEMES:
        raise UnknownNameError("init scheme", str(scheme), SCHEMES, hint=where)
    info = SCHEMES[scheme]
    for key in args:
        if key not in info.defaults and key not in info.required:
            raise UnknownNameError(f"argument for {scheme}", key, list(info.defaults) + list(info.required), hint=where)
    for key in info.required:
        if key not in args:
            raise InitError(f"{where}: {scheme} needs the argument {key!r}")
    full = {**info.defaults, **args}
    _check_values(scheme, full, where)
    return scheme, full


_NUMERIC_ARGS = ("a", "b", "mean", "std", "val")


def _check_values(scheme: str, args: Mapping[str, Any], where: str) -> None:
    """Refuse bad argument values while planning: an error raised while applying would leave
    the tensors initialised before it changed and the rest not."""
    for key in _NUMERIC_ARGS:
        if key in args and (isinstance(args[key], bool) or not isinstance(args[key], (int, float))):
            raise InitError(f"{where}: {scheme} argument {key}={args[key]!r} must be a number")
    if "gain" in args:
        _gain(args["gain"])
    if "mode" in args:
        _check_mode(args["mode"])
    if "nonlinearity" in args and args["nonlinearity"] != "leaky_relu":
        _gain(args["nonlinearity"])
    if scheme in ("uniform", "trunc_normal") and not args["a"] < args["b"]:
        raise InitError(f"{where}: {scheme} needs a < b, got a={args['a']}, b={args['b']}")
    if "std" in args and args["std"] < 0:
        raise InitError(f"{where}: {scheme} needs std >= 0, got {args['std']}")


def _type_rule(module: nn.Module, types: Mapping[str, Any]) -> tuple[str, Any] | None:
    for cls in type(module).__mro__:
        if cls.__name__ in types and cls.__name__ not in FAMILIES:
            return cls.__name__, types[cls.__name__]
    for fam in _FAMILY_ORDER:
        if fam in types and isinstance(module, FAMILIES[fam]):
            return fam, types[fam]
    if "*" in types:
        return "*", types["*"]
    return None


def _spec_for(tensor_name: str, rule: Any) -> Any | None:
    if isinstance(rule, Mapping) and "scheme" not in rule:
        return rule.get(tensor_name)
    # Shorthand: the initialiser sets the weight; the bias starts at zero.
    if tensor_name == "weight":
        return rule
    if tensor_name == "bias":
        return "zeros" if rule != "default" else "default"
    return None


@contextmanager
def _seeded_from(generator: torch.Generator | None) -> Iterator[None]:
    """Run a module's own reset_parameters() reproducibly when a generator is given."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- main entry
# (full name, tensor, "parameter"/"buffer", scheme, args, rule that chose it)
_Plan = tuple[str, torch.Tensor, str, str, dict[str, Any], str]


def init_weights(model: nn.Module, policy: Policy = "kaiming", *,
                 generator: torch.Generator | None = None,
                 only: Iterable[str] | None = None) -> InitReport:
    """Initialise ``model`` in place according to ``policy``; return what was done.

    Same ``generator`` seed, same weights, bit for bit. Shared (tied) tensors are initialised once, under the
    first name they are reached by.

    Args:
        model: The module to initialise (in place).
        policy: A preset name (``"kaiming"``, ``"xavier"``, ``"torch_default"``) or a policy dict:
            ``{"preset": ..., "types": {"Linear": scheme}, "names": {"fc3.weight": scheme}}``, where a scheme
            is a name (``"xavier_uniform"``) or a dict with ``"scheme"`` and its arguments.
        generator: The random generator to draw from (``torch.Generator().manual_seed(0)``); default torch's
            global one.
        only: Limit the work to these tensor names (e.g. the ones a checkpoint could not fill).

    Returns:
        The :class:`InitReport`: every tensor, the initialiser that set it and the rule that chose it;
        ``uncovered`` lists what no rule covered.

    Raises:
        UnknownNameError: An unknown preset, scheme, argument, layer type or tensor name (with close matches).
        InitError: A scheme that cannot apply to a tensor (fan-in of a 1-d bias), bad arguments, or a generator
            on another device.
    """
    only_set = set(only) if only is not None else None
    if not isinstance(model, nn.Module):
        raise InitError(f"init_weights needs an nn.Module, not {type(model).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InitError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
                        f"not {type(generator).__name__}")
    check_materialized(model, InitError, "initialising it", only=only_set)
    resolved = resolve_policy(policy)
    _validate_type_keys(model, resolved["types"])
    report = InitReport(policy=resolved)
    # Plan everything first and validate it, so a refused policy leaves the model untouched.
    work = _plan(model, resolved, generator, only_set, report)
    with torch.no_grad():
        for module, plans in work:
            _apply(module, plans, generator, report)
    return report


def _plan(model: nn.Module, resolved: Mapping[str, Any], generator: torch.Generator | None,
          only_set: set[str] | None, report: InitReport) -> list[tuple[nn.Module, list[_Plan]]]:
    """What each module's tensors get, validated; a tensor no rule covers goes to ``report.uncovered``."""
    types, names = resolved["types"], resolved["names"]
    used_globs: set[str] = set()
    seen: set[int] = set()
    work: list[tuple[nn.Module, list[_Plan]]] = []
    for mod_name, module in model.named_modules():
        tensors = [(n, t, "parameter") for n, t in module.named_parameters(recurse=False)]
        tensors += [(n, t, "buffer") for n, t in module.named_buffers(recurse=False)]
        tensors = [(n, t, k) for n, t, k in tensors if t is not None and id(t) not in seen
                   and (only_set is None or (f"{mod_name}.{n}" if mod_name else n) in only_set)]
        if not tensors:
            continue
        type_match = _type_rule(module, types)
        plans: list[_Plan] = []
        for local, tensor, kind in tensors:
            seen.add(id(tensor))
            full = f"{mod_name}.{local}" if mod_name else local
            plan = _plan_tensor(module, full, local, tensor, kind, names, type_match, used_globs, generator)
            if isinstance(plan, str):
                report.uncovered.append((full, plan))
            else:
                plans.append(plan)
        work.append((module, plans))
    unused = [g for g in names if g not in used_globs]
    if unused and only_set is None:
        all_names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
        raise UnknownNameError("tensor name in init policy", unused[0], all_names,
                               hint="names rules are globs over names like 'fc1.weight' or '*.bias'")
    return work


def _plan_tensor(module: nn.Module, full: str, local: str, tensor: torch.Tensor, kind: str,
                 names: Mapping[str, Any], type_match: tuple[str, Any] | None, used_globs: set[str],
                 generator: torch.Generator | None) -> _Plan | str:
    """One tensor's plan (the last matching ``names`` glob, else its module's type rule), or why it has none."""
    spec, rule_name = None, ""
    for glob, glob_spec in names.items():
        if fnmatch.fnmatchcase(full, glob):
            spec, rule_name = glob_spec, f"names[{glob!r}]"
            used_globs.add(glob)
    if spec is None and type_match is not None and kind == "parameter":
        spec = _spec_for(local, type_match[1])
        rule_name = f"types[{type_match[0]!r}]"
    if spec is None:
        if kind == "buffer" and type_match is not None and _is_running_stat(module, local):
            return (full, tensor, kind, "reset_running_stats", {}, f"types[{type_match[0]!r}]")
        return "buffer kept as computed by the module" if kind == "buffer" else "no rule matches"
    scheme, args = _parse_spec(spec, where=rule_name)
    info = SCHEMES[scheme]
    if info.fan_based and tensor.dim() < 2:
        raise InitError(
            f"{scheme} computes fan-in/fan-out and needs a tensor with at least 2 dimensions, "
            f"but {full!r} has shape {tuple(tensor.shape)}; use zeros, constant, normal or uniform for it"
        )
    if info.random and generator is not None and not tensor.is_meta and generator.device != tensor.device:
        raise InitError(f"the generator is on {generator.device} but {full!r} is on {tensor.device}")
    return (full, tensor, kind, scheme, args, rule_name)


def _is_running_stat(module: nn.Module, local: str) -> bool:
    return hasattr(module, "reset_running_stats") and local in ("running_mean", "running_var", "num_batches_tracked")


def _validate_type_keys(model: nn.Module, types: Mapping[str, Any]) -> None:
    class_names = {cls.__name__ for m in model.modules() for cls in type(m).__mro__}
    for key in types:
        if key != "*" and key not in FAMILIES and key not in class_names:
            raise UnknownNameError("layer type in init policy", key, list(FAMILIES) + sorted(class_names))


def _apply(module: nn.Module, plans: list[_Plan],
           generator: torch.Generator | None, report: InitReport) -> None:
    # The module's own reset_parameters() first, so explicit schemes on its other tensors win.
    if any(p[3] == "default" for p in plans):
        reset = getattr(module, "reset_parameters", None)
        if reset is None:
            for full, _, _kind, scheme, _, _ in plans:
                if scheme == "default":
                    report.uncovered.append((full, f"{type(module).__name__} has no reset_parameters() for 'default'"))
            plans = [p for p in plans if p[3] != "default"]
        elif not _is_meta(module):
            with _seeded_from(generator):
                reset()
    if any(p[3] == "reset_running_stats" for p in plans) and not _is_meta(module):
        module.reset_running_stats()  # type: ignore[operator]
    for full, tensor, kind, scheme, args, rule in plans:
        info = SCHEMES.get(scheme)
        if info is not None and scheme != "default" and not tensor.is_meta:
            info.fn(tensor, generator if info.random else None, **args)
        std = None
        if not tensor.is_meta and tensor.is_floating_point() and tensor.numel() > 1:
            std = float(tensor.float().std())
            if math.isnan(std):
                std = None
        report.records.append(InitRecord(
            name=full, kind=kind, shape=tuple(tensor.shape), scheme=scheme,
            args={k: v for k, v in args.items()}, rule=rule, module_type=type(module).__name__, std=std,
        ))


def _is_meta(module: nn.Module) -> bool:
    return any(t.is_meta for t in module.parameters(recurse=False))

"""Registration and state: modules and tensors the model holds but does not own, and the
state_dict round trip (a fresh instance loaded with the state_dict must compute the same)."""

from __future__ import annotations

import copy
import inspect
import io
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from torchsmith._check._context import QUOTE_LIMIT, Context, SkipCheck, make_finding
from torchsmith._check.registry import register_check
from torchsmith._check.report import Finding
from torchsmith._check.runtime import describe_divergence, outputs_close
from torchsmith.contract import MODULE_ATTRS as _MODULE_ATTRS
from torchsmith.contract import rebuild, rebuild_source, scan_unregistered, walk_held
from torchsmith.errors import TorchsmithError, describe_error, format_size

__all__ = ["check_registration", "check_state_dict", "scan_unregistered"]

_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def _stateful(m: nn.Module) -> bool:
    """What registration would change for ``m``: parameters, buffers or tensor attributes (.to(), state_dict),
    or a layer whose forward depends on .train()/.eval() (dropout, batch norm).

    A module without any of these (transformers' kernel ``Func`` wrappers, an activation) behaves the same
    registered or not, so holding it in a plain dict is not worth a finding.
    """
    if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
        return True
    if any(isinstance(sub, _MODE_DEPENDENT) for sub in m.modules()):
        return True
    return any(isinstance(obj, torch.Tensor) for sub in m.modules() for _, obj in _attributes(sub))


def _attributes(module: nn.Module) -> Iterator[tuple[str, Any]]:
    for attr, value in vars(module).items():
        if attr not in _MODULE_ATTRS:
            yield from walk_held(value, attr)


@register_check(
    "registration",
    "every submodule and tensor the model holds is registered (modules, parameters, buffers)",
    {
        "unregistered-submodule": (
            "error",
            "a module held in a plain list/dict/attribute container is invisible to the model",
        ),
        "unregistered-tensor": ("error", "a plain tensor attribute is neither a parameter nor a buffer"),
    },
    order=30,
)
def check_registration(ctx: Context) -> list[Finding]:
    """Modules in plain lists/dicts, tensors as plain attributes, layers created inside forward."""
    held = ctx.unregistered_at_start  # before any run, so state forward caches is not counted
    tracer = ctx.train_run()
    called = {id(m): caller for m, caller in tracer.unregistered.values()}
    findings: list[Finding] = []
    for path, owner, obj in held:
        if isinstance(obj, nn.Module):
            if not _stateful(obj):
                continue  # a function in module clothing (a table of kernels, an activation): nothing is lost
            ran = id(obj) in called
            n = sum(p.numel() for p in obj.parameters())
            findings.append(make_finding(
                "unregistered-submodule", path,
                f"{path} ({type(obj).__name__}, {n:,} parameters) is held in a plain Python container or attribute "
                f"of {owner or '(model)'}{' and runs in forward' if ran else ''}: model.parameters(), .to(), "
                ".train()/.eval() and state_dict do not see it",
                "hold submodules in nn.ModuleList / nn.ModuleDict / nn.Sequential (or assign them as attributes)",
                type=type(obj).__name__, parameters=n, called=ran,
            ))
        else:
            used = id(obj) in tracer.tensors_seen
            learnable = obj.requires_grad or isinstance(obj, nn.Parameter)
            kind = "parameter" if learnable else "buffer"
            severe = learnable or (used and obj.dim() > 0)
            findings.append(make_finding(
                "unregistered-tensor", path,
                f"{path} is a {'learnable ' if learnable else ''}tensor {format_size(obj.shape)} "
                f"({obj.dtype}, {obj.device}) "
                f"held as a plain attribute of {owner or '(model)'}{', read by forward' if used else ''}: "
                ".parameters(), .to() and state_dict do not see it"
                + (", so an optimiser never updates it" if learnable else ""),
                ("make it an nn.Parameter (or put it in nn.ParameterList/ParameterDict)" if learnable else
                 f"register it: self.register_buffer({path.rsplit('.', 1)[-1]!r}, tensor)"
                 " (persistent=False if it should not be saved)"),
                severity=None if severe else "warning", shape=list(obj.shape), used_in_forward=used, should_be=kind,
            ))
    listed = {id(obj) for _, _, obj in held}
    for mid, (module, caller) in tracer.unregistered.items():
        if mid in listed or not _stateful(module):
            continue
        n = sum(p.numel() for p in module.parameters())
        findings.append(make_finding(
            "unregistered-submodule", caller,
            f"{caller or '(model)'} calls a {type(module).__name__} ({n:,} parameters) that it does not own: "
            "it is created inside forward (a fresh, untrained layer on every call) or borrowed from elsewhere",
            "create layers once in __init__ and assign them as attributes (self.fc = nn.Linear(...))",
            type=type(module).__name__, parameters=n,
        ))
    return findings


# --------------------------------------------------------------------------- state_dict round trip
def _fresh_instance(ctx: Context) -> tuple[nn.Module, str]:
    """A newly built model of the same architecture, randomly initialised with another seed; and how it was built.

    The contract's :func:`~torchsmith.contract.rebuild` (zoo or spec record, ``type(model)(model.config)``,
    timm's builder). Where that can only re-initialise a deep copy, a class whose constructor takes no
    arguments is constructed instead when it holds tensors of the same shapes: a copy would carry over
    exactly the state outside the state_dict that this check exists to find.
    """
    original = ctx.original
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed + 1234)
        how = rebuild_source(original)
        if how.startswith("deep copy"):
            fresh = _default_constructed(ctx)
            if fresh is not None:
                return fresh, f"{type(original).__name__}()"
        try:
            try:
                with _SkipRandomFills():
                    return rebuild(original), how
            except Exception:  # an init that computes on its random draws (orthogonal_'s QR): draw them after all
                return rebuild(original), how
        except TorchsmithError:
            raise
        except Exception as e:
            raise SkipCheck(f"cannot build a fresh instance ({how}): {describe_error(e, QUOTE_LIMIT)}") from e


class _SkipRandomFills(TorchDispatchMode):
    """Fill with the distribution's centre where the constructor draws random numbers (nn.init's normal_,
    uniform_, kaiming_uniform_, trunc_normal_ ...): one constant fill instead of a random draw.

    The fresh instance's parameters and persistent buffers are all overwritten by ``load_state_dict(strict=True)``,
    so drawing them is wasted: on a 60M-parameter transformer it was half the round trip. The centre (the mean,
    the middle of the range) lies inside any truncation bounds, so torch's rejection loop in ``trunc_normal_``
    ends at once. Deterministic fills (arange, copy_, zeros, a rotary table) run as usual, so non-persistent
    buffers get their constructor values; one drawn at random gets a constant, which differs from the model's
    just as a new draw would.
    """

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten.normal_.default:
            return args[0].fill_(args[1] if len(args) > 1 else kwargs.get("mean", 0.0))
        if func is torch.ops.aten.uniform_.default:
            low = args[1] if len(args) > 1 else kwargs.get("from", 0.0)
            high = args[2] if len(args) > 2 else kwargs.get("to", 1.0)
            return args[0].fill_((low + high) / 2)
        return func(*args, **kwargs)


def _default_constructed(ctx: Context) -> nn.Module | None:
    """``type(model)()`` when that needs no arguments and holds tensors of this model's shapes, else None."""
    cls = type(ctx.original)
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None
    try:
        fresh = cls()
    except Exception:
        return None
    shapes = sorted(tuple(t.shape) for t in ctx.original.state_dict().values() if isinstance(t, torch.Tensor))
    if sorted(tuple(t.shape) for t in fresh.state_dict().values() if isinstance(t, torch.Tensor)) != shapes:
        return None  # built with other arguments than the defaults
    dtypes = {t.dtype for t in ctx.original.parameters() if t.is_floating_point()}
    try:
        return fresh.to(device=ctx.device, dtype=dtypes.pop() if len(dtypes) == 1 else None)
    except Exception:
        return None


def _saved_and_loaded(sd: dict[str, Any]) -> dict[str, Any]:
    """The state_dict after torch.save / torch.load(weights_only=True), its ``_metadata`` kept.

    Plain dense tensors always survive that unchanged, so only the other entries (extra state, tensor
    subclasses, quantised tensors) go through the serialiser: writing a large model's weights to memory
    and back cost more than a forward pass and could not fail. ``torch.save`` keeps the per-module versions
    (``state_dict._metadata``) that ``_load_from_state_dict`` reads (torchvision's MNASNet refuses a state
    dict without them), so the copy keeps them too.
    """
    plain = {k: v for k, v in sd.items()
             if type(v) in (torch.Tensor, nn.Parameter) and v.layout == torch.strided and not v.is_quantized}
    other = {k: v for k, v in sd.items() if k not in plain}
    if other:
        buf = io.BytesIO()
        torch.save(other, buf)
        buf.seek(0)
        other = torch.load(buf, weights_only=True)
    out: dict[str, Any] = OrderedDict((k, plain[k] if k in plain else other[k]) for k in sd)
    metadata = getattr(sd, "_metadata", None)
    if metadata is not None:
        out._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
    return out


@register_check(
    "state-dict",
    "a fresh instance loaded with the state_dict computes the same outputs",
    {
        "state-dict-roundtrip": ("error", "a fresh instance loaded with the state_dict differs"),
    },
    order=100,
)
def check_state_dict(ctx: Context) -> list[Finding]:
    """Save the state_dict, load it into a fresh instance, and compare eval outputs module by module."""
    (_, out_a), (_, out_b) = ctx.eval_runs()
    if not outputs_close(out_a, out_b):
        raise SkipCheck("eval-mode output is not deterministic (see nondeterministic-eval)")
    fresh, how = _fresh_instance(ctx)
    try:
        sd = _saved_and_loaded(ctx.model.state_dict())
    except Exception as e:
        return [make_finding(
            "state-dict-roundtrip", "",
            "the state_dict does not survive torch.save / torch.load(weights_only=True): "
            f"{describe_error(e, QUOTE_LIMIT)}",
            "keep only tensors (and plain numbers/strings) in state_dict; return plain data from get_extra_state")]
    fresh_sd = fresh.state_dict()
    if set(fresh_sd) != set(sd):
        missing, unexpected = sorted(set(fresh_sd) - set(sd)), sorted(set(sd) - set(fresh_sd))
        return [make_finding(
            "state-dict-roundtrip", "",
            f"a fresh {type(fresh).__name__} ({how}) has other state_dict keys: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; names that differ between instances break save/load",
            "derive module and parameter names from the architecture only (no counters, ids or random names)",
            missing=missing, unexpected=unexpected, built_with=how)]
    try:
        fresh.load_state_dict(sd, strict=True)
    except Exception as e:
        return [make_finding(
            "state-dict-roundtrip", "",
            f"load_state_dict into a fresh {type(fresh).__name__} ({how}) failed: {describe_error(e, QUOTE_LIMIT)}",
            "keep tensor names and shapes a function of the constructor arguments only", built_with=how)]
    fresh.eval()
    x = ctx.x.clone()
    try:
        with torch.no_grad():
            out_f = ctx.call(fresh, x)
    except TorchsmithError:
        raise
    except Exception as e:
        raise SkipCheck(f"the fresh instance's forward failed: {describe_error(e, QUOTE_LIMIT)}") from e
    if outputs_close(out_a, out_f):
        return []
    # Fingerprinted reruns of both name the first module whose output differs.
    ta, tf = ctx.fingerprinted(x.clone()), ctx.fingerprinted(x.clone(), fresh)
    module, kind, diff, diff_text = describe_divergence(ta, tf, out_a, out_f)
    return [make_finding(
        "state-dict-roundtrip", module,
        f"a fresh {type(fresh).__name__} ({how}) loaded with this model's state_dict computes different "
        f"outputs (largest difference {diff_text}); the first module that "
        f"differs is {module or '(model)'}{kind}: it keeps state outside its parameters and buffers",
        "register that state with register_buffer (or as an nn.Parameter if it is learned), "
        "or save it through get_extra_state/set_extra_state",
        max_output_diff=diff, built_with=how)]

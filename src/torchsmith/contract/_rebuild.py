"""A fresh instance of a model's architecture (:func:`rebuild`), and where a model lives (:func:`device_dtype`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from torchsmith.contract._input import _hf_config
from torchsmith.registry import ARCH_ATTR, create_model
from torchsmith.spec import build as build_spec

# ---- rebuilding --------------------------------------------------------------------------------------------


def rebuild_source(model: nn.Module) -> str:
    """How :func:`rebuild` makes a fresh instance of ``model``, in words, for reports."""
    return _rebuild_plan(model)[0]


def rebuild(model: nn.Module) -> nn.Module:
    """A fresh, freshly initialised instance of ``model``'s architecture with the same ``state_dict`` keys.

    In order: the zoo or spec record torchsmith put on the model (``create_model`` / ``spec.build``, which
    also covers ``hf:``, ``timm:`` and ``torchvision:`` models built by name), ``type(model)(model.config)``
    for transformers, ``timm.create_model`` for timm, and otherwise a deep copy whose parameters are
    re-initialised (``reset_parameters`` where a module has one; other non-constant tensors redrawn from
    their own mean and spread). Built on the model's device and in its dtype; the model is not changed.
    """
    how, build = _rebuild_plan(model)
    fresh = build()
    device, dtype = device_dtype(model)
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(floats) == 1 and dtype != torch.float32 and dtype.is_floating_point:
        fresh = fresh.to(dtype)
    if device.type != "meta" and device_dtype(fresh)[0] != device:
        fresh = fresh.to(device)
    return fresh.train(model.training)


def _rebuild_plan(model: nn.Module) -> tuple[str, Any]:
    arch = getattr(model, ARCH_ATTR, None)
    if isinstance(arch, Mapping) and isinstance(arch.get("name"), str):
        name, kwargs = arch["name"], dict(arch.get("kwargs") or {})

        def from_zoo() -> nn.Module:
            with _on_device_of(model):
                return create_model(name, **kwargs)
        kind = "library record" if ":" in name else "zoo record"
        return f"{kind}: create_model({name!r})", from_zoo
    if isinstance(arch, Mapping) and isinstance(arch.get("spec"), Mapping):
        spec = arch["spec"]

        def from_spec() -> nn.Module:
            with _on_device_of(model):
                return build_spec(spec)
        return "spec record", from_spec
    config = _hf_config(model)
    if config is not None:
        def from_config() -> nn.Module:
            with _on_device_of(model):
                return type(model)(copy.deepcopy(config))
        return f"transformers {type(model).__name__}(config)", from_config
    timm_name = _timm_name(model)
    if timm_name is not None:
        def from_timm() -> nn.Module:
            import timm

            kwargs = {"num_classes": getattr(model, "num_classes", None), "in_chans": getattr(model, "in_chans", None)}
            with _on_device_of(model):
                fresh = timm.create_model(timm_name, pretrained=False,
                                          **{k: v for k, v in kwargs.items() if isinstance(v, int)})
            return fresh if _same_layout(model, fresh) else _reinit_copy(model)
        return f"timm.create_model({timm_name!r})", from_timm
    return "deep copy, re-initialised", lambda: _reinit_copy(model)


def _timm_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, Mapping) or not type(model).__module__.startswith("timm."):
        return None
    name = cfg.get("architecture")
    if not isinstance(name, str):
        return None
    try:
        import timm  # noqa: F401
    except Exception:
        return None
    return name


def _same_layout(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(sa[k].shape == sb[k].shape for k in sa)


class _on_device_of:
    """Build on meta when the model is on meta (no memory); elsewhere build normally and move afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.meta = device_dtype(model)[0].type == "meta"
        self.ctx: Any = None

    def __enter__(self) -> None:
        if self.meta:
            self.ctx = torch.device("meta")
            self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def _reinit_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every module's ``reset_parameters`` run and other varied tensors redrawn."""
    fresh = copy.deepcopy(model)
    covered: set[int] = set()
    with torch.no_grad():
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                try:
                    reset()
                except Exception:  # a custom reset that needs arguments or state: its tensors are redrawn below
                    continue
                covered.update(id(p) for p in m.parameters())
        for p in fresh.parameters():
            if id(p) in covered or p.is_meta or not p.is_floating_point() or p.numel() < 2:
                continue
            flat = p.detach().float()
            std = float(flat.std())
            if std == 0.0 or not torch.isfinite(flat).all():  # a constant init (ones, a layer scale): keep it
                continue
            p.normal_(float(flat.mean()), std)
    return fresh


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where ``model`` lives: the device of its first parameter (or buffer) and the first floating dtype.

    The one rule every command asks (the doctor, export, training, rebuilding): the *first* tensor, because
    the first layer is the one that meets the input, so the input must be made on its device and in its
    dtype (the most common device would put the input of a model split across devices on the wrong one).
    Tensors on the meta device are skipped while the model holds real ones (a half-materialised model lives
    where its values are); a model all on meta lives on meta. cpu and float32 for a model with no tensors.
    """
    tensors = [*model.parameters(), *model.buffers()]
    real = [t for t in tensors if not t.is_meta] or tensors
    device = real[0].device if real else torch.device("cpu")
    dtype = next((t.dtype for t in real if t.is_floating_point()), torch.float32)
    return device, dtype

"""What torchsmith knows about any model: its input, how to rebuild it, its device and dtype, its outputs.

Every command asks this module, never re-derives it with ``getattr`` in its own package:

* :func:`input_spec` -- what one sample looks like (shape without the batch, dtype, token ids or images,
  whether the model supports that one size only) and where that came from: the caller, torchsmith's
  ``default_input_size``, a transformers ``config``, timm's ``pretrained_cfg``, or the first layer.
* :func:`rebuild` / :func:`rebuild_source` -- a fresh, freshly initialised instance of the same architecture
  with the same ``state_dict`` keys: from the zoo or spec record, ``type(model)(model.config)`` for
  transformers, timm's builder, and otherwise a deep copy whose tensors are re-initialised.
* :func:`device_dtype` -- where the model lives.
* :func:`output_tensors` / :func:`primary_output` -- the tensors of any output structure (tensor, tuple,
  named tuple, dict, dataclass, transformers ``ModelOutput``), skipping caches and other non-tensors.

``input_size`` always means one sample *without* the batch dimension: ``(3, 32, 32)`` for images,
``(16,)`` for 16 token ids. The batch is its own argument (:meth:`InputSpec.example`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from torchsmith._format import parse_dtype
from torchsmith.errors import ConfigError, DeclaredSizeError, ShapeError
from torchsmith.registry import ARCH_ATTR, create_model
from torchsmith.sizes import int_dims, parse_input_size
from torchsmith.spec import build as build_spec

__all__ = ["InputSpec", "input_spec", "rebuild", "rebuild_source", "device_dtype", "output_tensors",
           "primary_output", "is_token_dtype", "lazy_tensors", "copy_model", "materialise_lazy", "ModelInputs",
           "model_inputs", "forward_inputs", "is_several", "parse_inputs", "is_length_name",
           "scan_unregistered", "walk_held", "unregistered_layers", "MODULE_ATTRS", "fresh_lazy",
           "learned_positions"]

#: Token-id models get a sequence this long when nothing says otherwise (capped by the model's maximum).
DEFAULT_SEQ_LEN = 32
#: The spatial size tried first for a CNN that declares none; checked by a meta-device forward.
_PROBE_SIDES = {1: (28, 32, 64), 3: (32, 64, 224)}
_POS_EMBED = re.compile(
    r"(^|\.)(pos_embed|pos_embedding|pos_emb|position_embeddings?|positional_embeddings?|absolute_pos_embed)(\.|$)")

HOW_TO_GIVE = "input_size=(3, 32, 32) in Python (one sample, without the batch), --input 3x32x32 at the command line"


# ---- input sizes ---------------------------------------------------------------------------------------------


def _checked_size(input_size: Any) -> tuple[int, ...]:
    if isinstance(input_size, str):
        return parse_input_size(input_size)
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size,)
    dims = int_dims(input_size) if isinstance(input_size, (tuple, list, torch.Size)) else None
    if dims is None:
        raise ConfigError(f"input_size must be a sequence of positive integers like (3, 32, 32) (one sample, "
                          f"without the batch), not {input_size!r}")
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"input_size must be positive integers like (3, 32, 32), not {input_size!r}")
    return dims


def is_token_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


@dataclass(frozen=True)
class InputSpec:
    """One sample of a model's input, without the batch dimension, and where that knowledge came from."""

    size: tuple[int, ...]  # (3, 32, 32) for images, (16,) for 16 token ids
    dtype: torch.dtype  # torch.float32 for images and tensors; torch.long for token ids
    kind: str  # "image" | "tokens" | "tensor"
    vocab_size: int | None = None  # tokens: ids are drawn from [0, vocab_size)
    fixed: bool = False  # the model declares it supports this one size only
    source: str = ""  # "given", "default_input_size", "config.image_size", "pretrained_cfg", "first layer (...)"

    def example(self, batch: int = 2, *, seed: int = 0, device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
        """A reproducible batch ``(batch, *size)``: standard normal floats, or token ids in ``[0, vocab_size)``.

        ``dtype`` overrides the float dtype (a model in bfloat16); token ids stay integers. Drawn on the CPU
        from a generator seeded with ``seed``, then moved, so every device gets the same values.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch must be a positive integer, not {batch!r}")
        g = torch.Generator().manual_seed(seed)
        shape = (batch, *self.size)
        if is_token_dtype(self.dtype):
            if self.vocab_size:
                x = torch.randint(0, self.vocab_size, shape, generator=g, dtype=self.dtype)
            else:  # integers with no known range: zeros are a valid index everywhere
                x = torch.zeros(shape, dtype=self.dtype)
        else:
            x = torch.randn(shape, generator=g, dtype=torch.float32).to(dtype or self.dtype)
        return x if device is None else x.to(device)

    def describe(self) -> str:
        """``"3x32x32 image (config.image_size, fixed)"``, for reports."""
        text = "x".join(map(str, self.size)) + (" token ids" if self.kind == "tokens" else f" {self.kind}")
        if self.kind == "tokens" and self.vocab_size:
            text += f" < {self.vocab_size}"
        extras = [s for s in (self.source, "fixed" if self.fixed else "") if s]
        return text + (f" ({', '.join(extras)})" if extras else "")


def input_spec(model: nn.Module, input_size: Any = None, *, input_dtype: torch.dtype | None = None) -> InputSpec:
    """What one sample of ``model``'s input looks like (see :class:`InputSpec`).

    ``input_size`` (without the batch; a tuple, or text such as ``"3x32x32"``) is used as given; whether the
    model takes token ids, and their range, is still read from the model. Without it the size comes from
    ``model.default_input_size``, a transformers config (``image_size``, ``num_channels``, ``vocab_size``,
    ``max_position_embeddings``), timm's ``pretrained_cfg``, or the first layer (``Linear`` -> its
    ``in_features``; ``Conv2d`` -> the first of a few square sizes a meta-device forward accepts;
    ``Embedding`` -> a short sequence of ids). Raises :class:`ConfigError` saying how to give the size when
    nothing is known.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"input_spec needs an nn.Module, not {type(model).__name__}")
    if input_dtype is not None and not isinstance(input_dtype, torch.dtype):
        raise ConfigError(f"input_dtype must be a torch.dtype such as torch.float32, not {input_dtype!r}")
    declared = _declared(model)  # (size, kind, vocab, fixed, source) or None
    if input_size is not None:
        size = _checked_size(input_size)
        vocab = _token_vocab(model, size, declared)
        fixed = bool(declared and declared[3] and declared[0] == size)
        return _finish(size, vocab, input_dtype, fixed, "given")
    if declared is None:
        raise ConfigError(f"the input size of {type(model).__name__} is not known (it has no default_input_size, "
                          f"no config with an image_size or vocab_size, and its first layer does not tell); "
                          f"give it: {HOW_TO_GIVE}")
    size, kind, vocab, fixed, source = declared
    if kind != "image" and vocab is None:
        vocab = _token_vocab(model, size, declared)
    return _finish(size, vocab, input_dtype, fixed, source, kind)


def _finish(size: tuple[int, ...], vocab: int | None, input_dtype: torch.dtype | None, fixed: bool, source: str,
            kind: str | None = None) -> InputSpec:
    if input_dtype is not None and not is_token_dtype(input_dtype):
        vocab = None  # the caller asked for floats: no ids
    if vocab is not None:
        return InputSpec(size, input_dtype or torch.long, "tokens", vocab, fixed, source)
    dtype = input_dtype or torch.get_default_dtype()
    if not kind or kind == "tokens":
        kind = "image" if len(size) == 3 and size[0] in (1, 3, 4) else "tensor"
    return InputSpec(size, dtype, kind, None, fixed, source)


def _declared(model: nn.Module) -> tuple[tuple[int, ...], str, int | None, bool, str] | None:
    """What the model says about its input: (size, kind, vocab, fixed, source), or None."""
    default = getattr(model, "default_input_size", None)
    if default is not None:
        dims = int_dims(default) if isinstance(default, (tuple, list, torch.Size)) else None
        if not dims or any(d <= 0 for d in dims):
            raise DeclaredSizeError(f"{type(model).__name__}.default_input_size is {default!r}; it should be a "
                                    "non-empty tuple of the input's dims without the batch dim, e.g. (3, 32, 32)")
        return dims, "", None, False, "default_input_size"
    for find in (_from_hf_config, _from_timm, _from_torchvision):
        found = find(model)
        if found is not None:
            return found
    return _from_first_layer(model)


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    dims = int_dims(value) if isinstance(value, (tuple, list)) else None
    return (dims[-2], dims[-1]) if dims and len(dims) >= 2 else None


def learned_positions(model: nn.Module) -> tuple[str, tuple[int, ...]] | None:
    """The name and shape of a learned position table (a ViT's ``pos_embedding``), or None.

    Such a table holds one row per patch of the input size the model was built for, so that size is the
    model's by construction, not by accident.
    """
    for name, p in model.named_parameters():
        if _POS_EMBED.search(name) and p.dim() >= 2:
            return name, tuple(p.shape)
    return None


def _has_pos_embed(model: nn.Module) -> bool:
    """A learned position embedding: a vision model built with one supports the size it was built for only."""
    if getattr(model, "dynamic_img_size", False):  # timm: interpolates its position embedding
        return False
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_modules()]
    return any(_POS_EMBED.search(n) for n in names)


def _hf_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None or type(config).__module__.split(".")[0] != "transformers":
        return None
    return config


def _from_hf_config(model: nn.Module) -> tuple[tuple[int, ...], str, int | None, bool, str] | None:
    config = _hf_config(model)
    if config is None:
        return None
    main = getattr(model, "main_input_name", "input_ids")
    vision = getattr(config, "vision_config", None)
    if main == "pixel_values":
        cfg = config if getattr(config, "image_size", None) is not None or vision is None else vision
        channels = getattr(cfg, "num_channels", 3)
        channels = channels if isinstance(channels, int) and channels > 0 else 3
        side = _pair(getattr(cfg, "image_size", None))
        if side is None:
            return None  # a CNN without a declared size: the first layer and a meta probe decide
        return (channels, *side), "image", None, _has_pos_embed(model), "config.image_size"
    if main == "input_ids":
        vocab = getattr(config, "vocab_size", None)
        vocab = vocab if isinstance(vocab, int) and vocab > 0 else None
        max_pos = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        seq = min(max_pos, DEFAULT_SEQ_LEN) if isinstance(max_pos, int) and max_pos > 0 else DEFAULT_SEQ_LEN
        source = "config.vocab_size" + (", max_position_embeddings" if max_pos else "")
        return (seq,), "tokens", vocab, False, source
    if main == "input_values":  # raw audio (wav2vec2, HuBERT): one second at the usual 16 kHz
        rate = getattr(config, "sampling_rate", 16000)
        return (rate if isinstance(rate, int) and rate > 0 else 16000,), "tensor", None, False, "audio input_values"
    return None


def _from_timm(model: nn.Module) -> tuple[tuple[int, ...], str, int | None, bool, str] | None:
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, Mapping):
        return None
    patch = getattr(model, "patch_embed", None)
    img = getattr(patch, "img_size", None) if patch is not None else None
    chans = getattr(model, "in_chans", None)
    size = int_dims(cfg.get("input_size") or ()) or None
    side = _pair(img)
    if side is not None and getattr(patch, "strict_img_size", True) and not getattr(model, "dynamic_img_size", False):
        c = chans if isinstance(chans, int) else (size[0] if size else 3)
        return (c, *side), "image", None, True, "patch_embed.img_size"
    if size is None or len(size) != 3:
        return None
    if isinstance(chans, int) and chans != size[0]:  # built with in_chans=1: the config's 3 does not apply
        size = (chans, *size[1:])
    return size, "image", None, _has_pos_embed(model), "pretrained_cfg"


def _from_torchvision(model: nn.Module) -> tuple[tuple[int, ...], str, int | None, bool, str] | None:
    """The size torchvision publishes for the architecture: the crop size of its weights' transforms.

    For a model built by name (``torchvision:inception_v3``) the builder's default weights say it (299 for
    Inception v3, whose auxiliary head needs it in train mode; 224 for most); for an instance, the weights of
    its class's module, when they all agree. A size given to the constructor (``image_size``, ``input_size``)
    wins. Nothing is downloaded: only the weights' metadata is read.
    """
    module = type(model).__module__
    models = sys.modules.get("torchvision.models")
    if not module.startswith("torchvision.models") or models is None:
        return None
    record = getattr(model, ARCH_ATTR, None)
    name = record.get("name") if isinstance(record, dict) else None
    kwargs = record.get("kwargs", {}) if isinstance(record, dict) else {}
    fixed = _has_pos_embed(model)
    for key in ("image_size", "input_size"):
        side = _pair(kwargs.get(key)) or _pair(getattr(model, key, None))
        if side is not None:
            return (3, *side), "image", None, fixed, f"torchvision {type(model).__name__}.{key}"
    try:
        from torchvision.models._api import WeightsEnum

        if isinstance(name, str) and name.startswith("torchvision:"):
            enums = [models.get_model_weights(name.split(":", 1)[1])]
        else:
            enums = [v for v in vars(sys.modules[module]).values()
                     if isinstance(v, type) and issubclass(v, WeightsEnum) and v is not WeightsEnum]
        crops = set()
        for enum in enums:
            weights = getattr(enum, "DEFAULT", None) or next(iter(enum))
            crop = _pair(getattr(weights.transforms, "keywords", {}).get("crop_size"))
            if crop is not None:
                crops.add(crop)
    except Exception:  # a torchvision without this API, or weights of another kind
        return None
    if len(crops) != 1:
        return None
    return (3, *crops.pop()), "image", None, fixed, "torchvision weights' crop size"


def _first_leaf(model: nn.Module) -> nn.Module | None:
    """The first module (in registration order) that holds parameters of its own and has no children."""
    for m in model.modules():
        if not any(True for _ in m.children()) and any(True for _ in m.parameters(recurse=False)):
            return m
    return None


def _from_first_layer(model: nn.Module) -> tuple[tuple[int, ...], str, int | None, bool, str] | None:
    first = _first_leaf(model)
    if isinstance(first, LazyModuleMixin):  # a LazyLinear's in_features is 0 until its first forward
        return None
    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        seq = _max_len(model) or 16
        return (min(seq, 16),), "tokens", int(first.num_embeddings), False, "first layer (Embedding)"
    if not isinstance(first, (nn.Linear, nn.Conv1d, nn.Conv2d)) and any(
            isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules()):
        seq = min(_max_len(model) or 16, 16)
        vocab = _embedding_fed(model, (seq,))
        if vocab is not None:
            return (seq,), "tokens", vocab, False, "the Embedding that takes the input"
    if isinstance(first, nn.Linear):
        return (int(first.in_features),), "tensor", None, False, "first layer (Linear)"
    if isinstance(first, nn.LayerNorm) and len(first.normalized_shape) == 1:
        return (int(first.normalized_shape[0]),), "tensor", None, False, "first layer (LayerNorm)"
    if isinstance(first, nn.Conv1d):
        return _probe(model, [(first.in_channels, n) for n in (32, 64, 224)], "tensor", "first layer (Conv1d)")
    if isinstance(first, nn.Conv2d):
        c = int(first.in_channels)
        sides = _PROBE_SIDES.get(c, (32, 64, 224))
        return _probe(model, [(c, s, s) for s in sides], "image", "first layer (Conv2d)")
    return None


def _max_len(model: nn.Module) -> int | None:
    for attr in ("block_size", "max_seq_len", "max_len", "max_length", "context_length"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _probe(model: nn.Module, sizes: list[tuple[int, ...]], kind: str,
           source: str) -> tuple[tuple[int, ...], str, int | None, bool, str] | None:
    """The first size a forward on meta tensors accepts (no weight memory; the model is not changed)."""
    for size in sizes:
        if _runs_on_meta(model, size, torch.float32):
            return size, kind, None, False, source
    return None


def _runs_on_meta(model: nn.Module, size: tuple[int, ...], dtype: torch.dtype) -> bool:
    return _meta_forward(model, torch.empty((2, *size), dtype=dtype, device="meta"))


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


def _meta_forward(model: nn.Module, x: torch.Tensor, pre_hook: Any = None, hooked: tuple[type, ...] = ()) -> bool:
    """Run ``model`` in eval mode on meta tensors (its own weights are not read): whether the forward succeeds.

    The user's forward hooks are set aside meanwhile (a probe must not feed their recorders) and every module's
    mode flag and hooks are put back afterwards, so the model is left exactly as it was.
    """
    tensors = {n: torch.empty_like(t, device="meta") for n, t in model.named_parameters(remove_duplicate=False)}
    tensors.update({n: torch.empty_like(t, device="meta") for n, t in model.named_buffers(remove_duplicate=False)})
    modules = list(model.modules())
    saved = [(m, m.training, {a: getattr(m, a) for a in _HOOK_DICTS if hasattr(m, a)}) for m in modules]
    try:
        for m, _, hooks in saved:
            m.training = False  # the flag itself: train() would run user overrides
            for a, d in hooks.items():
                setattr(m, a, type(d)())
            if pre_hook is not None and isinstance(m, hooked):
                m.register_forward_pre_hook(pre_hook)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # a layer built in forward draws its init
            torch.func.functional_call(model, tensors, (x,), tie_weights=False, strict=False)
        return True
    except Exception:
        return False
    finally:
        for m, training, hooks in saved:
            m.training = training
            for a, d in hooks.items():
                setattr(m, a, d)


def _token_vocab(model: nn.Module, size: tuple[int, ...],
                 declared: tuple[tuple[int, ...], str, int | None, bool, str] | None) -> int | None:
    """The number of token ids when the model's input goes straight into an Embedding; else None."""
    if declared is not None and declared[1] == "tokens":
        if declared[2] is not None:
            return declared[2]
    elif declared is not None and declared[1] == "image":
        return None
    embeddings = [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    if not embeddings:
        return None
    first = _first_leaf(model)
    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        return int(first.num_embeddings)
    # An Embedding registered after other layers (a norm declared first) may still be the one that meets the
    # input: ask a forward on meta tensors which Embedding receives the input tensor itself.
    return _embedding_fed(model, size)


class _Found(Exception):
    """Stops the probe forward once the Embedding that takes the input is known."""


def _embedding_fed(model: nn.Module, size: tuple[int, ...]) -> int | None:
    x = torch.zeros((1, *size), dtype=torch.long, device="meta")
    found: list[int] = []

    def pre(module: nn.Module, args: tuple) -> None:
        if args and args[0] is x and not found:
            found.append(int(module.num_embeddings))  # type: ignore[arg-type]
            raise _Found

    _meta_forward(model, x, pre, (nn.Embedding, nn.EmbeddingBag))
    return found[0] if found else None


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
    """The device of the first parameter (or buffer) and the first floating dtype; cpu/float32 if none."""
    device: torch.device | None = None
    dtype: torch.dtype | None = None
    for t in (*model.parameters(), *model.buffers()):
        if device is None:
            device = t.device
        if dtype is None and t.is_floating_point():
            dtype = t.dtype
        if device is not None and dtype is not None:
            break
    return device or torch.device("cpu"), dtype or torch.float32


# ---- outputs -----------------------------------------------------------------------------------------------


def output_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model output, in order: tensors, tuples and named tuples, lists, dicts (insertion order,
    which is a transformers ``ModelOutput``'s), dataclasses. None and non-tensors (a ``DynamicCache``) are skipped.
    """
    found: list[torch.Tensor] = []
    _collect(out, found, 0)
    return found


def _collect(obj: Any, found: list[torch.Tensor], depth: int) -> None:
    if depth > 32:
        return
    if isinstance(obj, torch.Tensor):
        found.append(obj)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            _collect(value, found, depth + 1)
    elif isinstance(obj, (tuple, list)):
        for value in obj:
            _collect(value, found, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _collect(getattr(obj, f.name, None), found, depth + 1)


_PRIMARY = ("logits", "last_hidden_state", "prediction_logits", "start_logits", "pooler_output", "image_embeds",
            "text_embeds")


def primary_output(out: Any) -> torch.Tensor:
    """The output a loss or a shape report is about: ``logits``, else ``last_hidden_state``, else the first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    for key in _PRIMARY:
        value = out.get(key) if isinstance(out, Mapping) else (
            getattr(out, key, None) if dataclasses.is_dataclass(out) else None)
        if isinstance(value, torch.Tensor):
            return value
    tensors = output_tensors(out)
    if not tensors:
        raise ShapeError(f"the model's output ({type(out).__name__}) holds no tensor; return a tensor, or a tuple, "
                         "dict or dataclass holding one")
    return tensors[0]


# ---- modules and tensors held outside registration ------------------------------------------------------

MODULE_ATTRS = frozenset(nn.Module().__dict__)  # _parameters, _buffers, _modules, hook dicts, training


def walk_held(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Modules and tensors inside plain containers, with the dotted path they would have if registered."""
    if isinstance(value, (nn.Module, torch.Tensor)):
        yield path, value
    elif depth < 4 and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from walk_held(v, f"{path}.{i}", depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            yield from walk_held(v, f"{path}.{k}", depth + 1)


def scan_unregistered(model: nn.Module) -> list[tuple[str, str, Any]]:
    """(would-be path, owner path, object) for every module/tensor held outside the registration dicts."""
    registered_modules = {id(m) for m in model.modules()}
    registered_tensors = {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
    found: list[tuple[str, str, Any]] = []
    seen: set[int] = set()
    for owner, module in model.named_modules():
        managed = _hook_managed(module)
        for attr, value in vars(module).items():
            if attr in MODULE_ATTRS or attr in managed:
                continue
            base = f"{owner}.{attr}" if owner else attr
            for path, obj in walk_held(value, base):
                if id(obj) in seen:
                    continue
                if isinstance(obj, nn.Module) and id(obj) not in registered_modules:
                    seen.add(id(obj))
                    found.append((path, owner, obj))
                elif isinstance(obj, torch.Tensor) and id(obj) not in registered_tensors:
                    seen.add(id(obj))
                    found.append((path, owner, obj))
    return found


def _hook_managed(module: nn.Module) -> set[str]:
    """Attributes that torch's own hooks recompute before every forward from registered parameters:
    ``nn.utils.spectral_norm``'s and ``weight_norm``'s ``weight`` (from ``weight_orig``, or ``weight_g`` and
    ``weight_v``)."""
    names = set()
    for hook in getattr(module, "_forward_pre_hooks", {}).values():
        if type(hook).__module__.startswith("torch.nn.utils") and isinstance(getattr(hook, "name", None), str):
            names.add(hook.name)
    return names


def unregistered_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with parameters held in plain lists, dicts or attributes the model does not register.

    Their parameters are not the model's (``parameters()``, ``state_dict``, ``.to()`` miss them).
    """
    return [(path, obj) for path, _, obj in scan_unregistered(model)
            if isinstance(obj, nn.Module) and any(True for _ in obj.parameters())]


# ---- lazy modules ------------------------------------------------------------------------------------------


def lazy_tensors(model: nn.Module) -> list[str]:
    """The names of ``model``'s parameters and buffers whose shape is not known yet (``nn.Lazy*`` modules)."""
    return [n for n, t in (*model.named_parameters(), *model.named_buffers()) if is_lazy(t)]


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, also for a model with uninitialised lazy tensors (plain deepcopy refuses them).

    Each lazy tensor becomes a fresh uninitialised one of the same kind, device and dtype in the copy; the
    copy's lazy modules are materialised by its own first forward (:func:`materialise_lazy`).
    """
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        if is_lazy(t) and id(t) not in memo:
            memo[id(t)] = fresh_lazy(t)
    return copy.deepcopy(model, memo)


def fresh_lazy(t: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A new uninitialised tensor of ``t``'s kind (parameter or buffer) and dtype, on ``device`` or ``t``'s."""
    kind = UninitializedParameter if isinstance(t, UninitializedParameter) else UninitializedBuffer
    # torch's stubs omit the device/dtype keywords its constructors take
    return kind(requires_grad=t.requires_grad, device=device or t.device, dtype=t.dtype)  # type: ignore[call-arg]


def materialise_lazy(model: nn.Module, input_size: Any = None, *,
                     input_dtype: torch.dtype | None = None) -> str | None:
    """Give ``model``'s ``nn.Lazy*`` modules their shapes with one dry forward at the contract's input.

    The dry run is what the d2l book does by hand (``net(X)`` on a sample batch): an eval-mode forward under
    ``no_grad`` on a batch of 2, on the model's own device (meta for a meta model: no memory). The user's
    hooks do not see it, every module's mode is put back, and the global RNG is left as it was (the new
    weights are drawn from a fork of it). Returns what was done, such as ``"materialised 10 lazy tensors at
    1x28x28"``, or None when the model has no lazy tensor. Raises :class:`ConfigError` when the input size is
    not known or the dry run fails.
    """
    lazy = lazy_tensors(model)
    if not lazy:
        return None
    try:
        spec = input_spec(model, input_size, input_dtype=input_dtype)
    except ConfigError as e:
        raise ConfigError(f"{type(model).__name__} has lazy (nn.Lazy*) layers whose sizes come from the first "
                          f"batch, and its input size is not known: give it ({HOW_TO_GIVE})") from e
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    x = spec.example(2, device=device) if device.type != "meta" else torch.empty(
        (2, *spec.size), dtype=spec.dtype, device="meta")
    error = _dry_run(model, x)
    left = lazy_tensors(model)
    if error is not None or left:
        why = f": {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}" if error else (
            f"; {', '.join(left[:3])} stayed uninitialised (the forward does not use them)")
        raise ConfigError(f"the dry run that sizes {type(model).__name__}'s lazy layers failed at input "
                          f"{'x'.join(map(str, spec.size))}{why}; give the input size the model takes "
                          f"({HOW_TO_GIVE})") from error
    return f"materialised {len(lazy)} lazy tensors at {'x'.join(map(str, spec.size))}"


def _dry_run(model: nn.Module, x: torch.Tensor) -> BaseException | None:
    modules = list(model.modules())
    saved = [(m, m.training, {a: getattr(m, a) for a in _HOOK_DICTS if hasattr(m, a)}) for m in modules]
    try:
        for m, _, hooks in saved:
            m.training = False
            for a, d in hooks.items():
                if not (isinstance(m, LazyModuleMixin) and a.startswith("_forward_pre_hooks")):
                    setattr(m, a, type(d)())  # a lazy module sizes itself in a pre-hook of its own: keep it
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
        return None
    except Exception as e:
        return e
    finally:
        for m, training, hooks in saved:
            m.training = training
            for a, d in hooks.items():
                if getattr(m, a) is not d:
                    setattr(m, a, d)


# ---- several inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInputs:
    """Every input of a model's forward: one :class:`InputSpec` per argument, passed by position or by name.

    ``input_size`` may name one input (a shape), several positional inputs (a list of shapes) or keyword
    inputs (a dict of shapes); see :func:`model_inputs`. ``names`` are the forward's parameter names (or the
    dict's keys), ``keyword`` whether the inputs are passed by name.
    """

    specs: tuple[InputSpec, ...]
    names: tuple[str, ...]
    keyword: bool = False

    @property
    def single(self) -> bool:
        return len(self.specs) == 1 and not self.keyword

    @property
    def primary(self) -> InputSpec:
        return self.specs[0]

    def example(self, batch: int = 2, *, seed: int = 0, device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        """``(args, kwargs)`` for ``model(*args, **kwargs)``: a reproducible batch of every input.

        Each input is drawn from its own seed (``seed + i``). An integer input that is one number per sample
        and whose name says it is a length (``lengths``, ``seq_len``) gets the first input's sequence length,
        the value every padded batch starts from; other integers are ids below the vocabulary, or zeros.
        """
        tensors = []
        for i, (name, spec) in enumerate(zip(self.names, self.specs)):
            if is_token_dtype(spec.dtype) and spec.size == () and is_length_name(name) and self.specs[0].size:
                x = torch.full((batch,), self.specs[0].size[0], dtype=spec.dtype)
                tensors.append(x if device is None else x.to(device))
            else:
                tensors.append(spec.example(batch, seed=seed + i, device=device, dtype=dtype))
        if self.keyword:
            return (), dict(zip(self.names, tensors))
        return tuple(tensors), {}

    def sizes(self) -> Any:
        """The sizes in the form they were given: one shape, a list of shapes or a dict of shapes."""
        if self.keyword:
            return {n: s.size for n, s in zip(self.names, self.specs)}
        return self.specs[0].size if self.single else [s.size for s in self.specs]

    def describe(self) -> str:
        if self.single:
            return self.specs[0].describe()
        return ", ".join(f"{n}: {s.describe()}" for n, s in zip(self.names, self.specs))


def is_length_name(name: str) -> bool:
    """Whether an input's name says it holds sequence lengths (``lengths``, ``seq_len``, ``x_lens``)."""
    return bool(re.fullmatch(r"(seq_?)?(len|lens|length|lengths)|.*_(len|lens|lengths?)", name))


def forward_inputs(model: nn.Module) -> list[tuple[str, bool]]:
    """The forward's parameters that take inputs, in order: (name, required), without ``*args``/``**kwargs``."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [(p.name, p.default is p.empty) for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def is_several(input_size: Any) -> bool:
    """Whether ``input_size`` names several inputs: a dict, or a list/tuple whose items are shapes."""
    if isinstance(input_size, Mapping):
        return True
    return (isinstance(input_size, (list, tuple)) and bool(input_size)
            and all(isinstance(s, (list, tuple, torch.Size)) for s in input_size))


def model_inputs(model: nn.Module, input_size: Any = None, *, input_dtype: Any = None) -> ModelInputs:
    """Every input ``model`` takes: what :func:`input_spec` says for one, and the same for each of several.

    ``input_size`` is one shape (``(3, 32, 32)``), a list of shapes (positional inputs: a Siamese net's two
    images) or a dict of shapes (keyword inputs: ``{"image": (3, 224, 224), "meta": (10,)}``), each without
    the batch; ``()`` is one number per sample. ``input_dtype`` is one dtype, a list (one per input) or a
    dict by name or position (``{"lengths": torch.long}``); the first input's token-ness is read from the
    model as for one input, the others are float unless a dtype says otherwise. Without ``input_size``, a
    transformers encoder-decoder (T5, BART) gets ``input_ids`` and ``decoder_input_ids``, and every other
    model the one input the contract finds. Raises :class:`ConfigError` for sizes or dtypes that do not fit.
    """
    params = forward_inputs(model)
    required = [n for n, needed in params if needed]
    if input_size is None:
        spec = input_spec(model, input_dtype=_dtype_for(input_dtype, 0, None))
        config = _hf_config(model)
        if config is not None and getattr(config, "is_encoder_decoder", False) and spec.kind == "tokens" and \
                any(n == "decoder_input_ids" for n, _ in params):
            names: tuple[str, ...] = (str(getattr(model, "main_input_name", "input_ids")), "decoder_input_ids")
            return ModelInputs((spec, spec), names, keyword=True)
        if len(required) > 1:
            raise ConfigError(f"{type(model).__name__}.forward requires {len(required)} inputs "
                              f"({', '.join(required)}); give a size for each: input_size=[(...), (...)] in Python, "
                              "--input SIZE once per input at the command line")
        return ModelInputs((spec,), (params[0][0] if params else "input",))
    if not is_several(input_size):
        if len(required) > 1:
            raise ConfigError(f"{type(model).__name__}.forward requires {len(required)} inputs ({', '.join(required)}) "
                              f"but one size was given; give one per input: input_size=[(...), (...)] or "
                              f"{{'{required[0]}': (...), ...}} in Python, --input SIZE once per input (or "
                              f"--input {required[0]}=SIZE) at the command line")
        spec = input_spec(model, input_size, input_dtype=_dtype_for(input_dtype, 0, params[0][0] if params else None))
        return ModelInputs((spec,), (params[0][0] if params else "input",))
    if isinstance(input_size, Mapping):
        names = tuple(str(k) for k in input_size)
        known = {n for n, _ in params}
        takes_kwargs = _takes(model, inspect.Parameter.VAR_KEYWORD)
        unknown = [n for n in names if n not in known]
        if unknown and not takes_kwargs and params:
            raise ConfigError(f"{type(model).__name__}.forward has no input named {unknown[0]!r}; its inputs are "
                              f"{', '.join(n for n, _ in params)}")
        sizes = list(input_size.values())
        keyword = True
    else:
        sizes = list(input_size)
        if params and len(sizes) > len(params) and not _takes(model, inspect.Parameter.VAR_POSITIONAL):
            raise ConfigError(f"{len(sizes)} input sizes for {type(model).__name__}.forward, which takes "
                              f"{len(params)} ({', '.join(n for n, _ in params)})")
        names = tuple(params[i][0] if i < len(params) else f"input{i}" for i in range(len(sizes)))
        keyword = False
    specs = []
    for i, (name, size) in enumerate(zip(names, sizes)):
        dims = () if isinstance(size, (list, tuple)) and len(size) == 0 else _checked_size(size)
        dtype = _dtype_for(input_dtype, i, name)
        if i == 0 and dims:
            specs.append(input_spec(model, dims, input_dtype=dtype))
        else:
            dt = dtype or torch.get_default_dtype()
            kind = "tokens" if is_token_dtype(dt) else ("image" if len(dims) == 3 and dims[0] in (1, 3, 4)
                                                         else "tensor")
            specs.append(InputSpec(dims, dt, kind, None, False, "given"))
    missing = [n for n, required in params if required and n not in names]
    if missing and keyword:
        raise ConfigError(f"{type(model).__name__}.forward requires {', '.join(missing)}; give a size for each "
                          f"(e.g. input_size={{'{missing[0]}': (16,)}}, --input {missing[0]}=16)")
    return ModelInputs(tuple(specs), names, keyword)


def _takes(model: nn.Module, kind: inspect._ParameterKind) -> bool:
    """Whether forward has a ``*args`` (VAR_POSITIONAL) or ``**kwargs`` (VAR_KEYWORD) parameter; True when its
    signature cannot be read (a builtin forward may take anything)."""
    try:
        return any(p.kind == kind for p in inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return True


def _dtype_for(input_dtype: Any, index: int, name: str | None) -> torch.dtype | None:
    """The dtype asked for one input: one dtype for all, a list by position, or a dict by name or position."""
    if input_dtype is None or isinstance(input_dtype, torch.dtype):
        return input_dtype
    if isinstance(input_dtype, Mapping):
        for key in (name, index, str(index)):
            if key is not None and key in input_dtype:
                value = input_dtype[key]
                return _as_dtype(value)
        return None
    if isinstance(input_dtype, (list, tuple)):
        return _as_dtype(input_dtype[index]) if index < len(input_dtype) else None
    return _as_dtype(input_dtype)


def _as_dtype(value: Any) -> torch.dtype | None:
    return parse_dtype(value.strip() if isinstance(value, str) else value)


def parse_inputs(texts: Sequence[str], dtype_texts: Sequence[str] = (), *, symbolic: bool = False,
                 input_names: Sequence[str] | None = None) -> tuple[Any, Any]:
    """The command line's ``--input`` and ``--input-dtype`` options as ``(input_size, input_dtype)``.

    ``--input 3x32x32`` is one input; ``--input 3x32x32 --input 3x32x32`` two positional ones;
    ``--input x=3x224x224 --input meta=10`` keyword inputs (``lengths=()`` or ``lengths=scalar`` for one
    number per sample). ``--input-dtype long`` applies to every input, ``--input-dtype lengths=long`` to one.
    With ``symbolic``, a dim may be a name that the summary keeps symbolic (``3xHxW``, ``T=128``); ``T=128``
    is a named dim, not an input named T, unless ``T`` is one of ``input_names`` (the forward's inputs).
    """
    texts = [t for t in texts if t is not None]
    if not texts:
        size: Any = None
    else:
        named = ["=" in t and not (symbolic and _is_symbol_dim(t, input_names)) for t in texts]
        if any(named) and not all(named):
            raise ConfigError(f"--input values {list(texts)} mix named (x=3x32x32) and unnamed sizes; name all "
                              "or none")
        if all(named):
            size = {}
            for t in texts:
                key, _, value = t.partition("=")
                if not key.strip().isidentifier():
                    raise ConfigError(f"--input {t!r}: {key!r} is not an input name; write NAME=3x32x32")
                if key.strip() in size:
                    raise ConfigError(f"--input names {key.strip()!r} twice")
                size[key.strip()] = _parse_one(value, symbolic)
        elif len(texts) == 1:
            size = _parse_one(texts[0], symbolic)
        else:
            size = [_parse_one(t, symbolic) for t in texts]
    dtypes: Any = None
    if dtype_texts:
        named = ["=" in t for t in dtype_texts]
        if all(named):
            dtypes = {k.strip(): _as_dtype(v) for k, _, v in (t.partition("=") for t in dtype_texts)}
        elif len(dtype_texts) == 1:
            dtypes = _as_dtype(dtype_texts[0])
        else:
            dtypes = [_as_dtype(t) for t in dtype_texts]
    return size, dtypes


def _is_symbol_dim(text: str, input_names: Sequence[str] | None) -> bool:
    """``T=128``: a symbolic dim with its tracing value, unless T names one of the model's inputs."""
    key, _, value = text.partition("=")
    return value.strip().isdigit() and (input_names is None or key.strip() not in input_names)


_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\s*=\s*\d+)?$")


def _parse_one(text: str, symbolic: bool = False) -> tuple[Any, ...]:
    if text.strip() in ("()", "scalar", ""):
        return ()
    if not symbolic or "=" not in text and all(p.strip().isdigit() for p in re.split(r"[xX,]", text)):
        return parse_input_size(text)
    # Names stay names ("3xHxW", "T=128"); a lone "x" or "X" between dims is the separator.
    parts = [p.strip() for p in re.split(r"(?<=[0-9A-Za-z_])[xX,](?=[0-9A-Za-z_])", text.strip())]
    if not parts or any(not (p.isdigit() or _SYMBOL.match(p)) for p in parts):
        raise ConfigError(f"--input {text!r} is not a size like 3x32x32 (names such as T=128 or 3xHxW are allowed)")
    dims = tuple(int(p) if p.isdigit() else p for p in parts)
    if any(isinstance(d, int) and d <= 0 for d in dims):
        raise ConfigError(f"input size {text!r} must be positive integers like 3x32x32")
    return dims

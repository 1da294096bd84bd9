"""What one sample of a model's input looks like (:func:`input_spec`) and where that came from."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

from torchsmith.contract._guard import hooks_set_aside
from torchsmith.errors import ConfigError, DeclaredSizeError, format_size
from torchsmith.registry import ARCH_ATTR
from torchsmith.sizes import int_dims, parse_input_size

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
        text = format_size(self.size) + (" token ids" if self.kind == "tokens" else f" {self.kind}")
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
    """The first size a forward on meta tensors accepts (no weight memory; the model is not changed).

    A model whose forward cannot run on meta at all (``.item()``, a data-dependent shape: DETR's masks) and
    whose weights are real and small is asked again with real zeros, under ``no_grad`` with its hooks set aside.
    """
    for size in sizes:
        if _runs_on_meta(model, size, torch.float32):
            return size, kind, None, False, source
    if not cheap_to_run(model):
        return None
    for size in sizes[:2]:  # the smaller sizes: a real forward costs time
        if _runs_real(model, size):
            return size, kind, None, False, source
    return None


#: A model with real weights under this many bytes may run on real CPU tensors where meta and fake tensors
#: cannot (the input probe, the summary's fallback, the memory plan's real step).
REAL_FALLBACK_BYTES = 1 << 30


def cheap_to_run(model: nn.Module) -> bool:
    """Whether ``model``'s weights are real (not meta, not lazy) and under :data:`REAL_FALLBACK_BYTES`."""
    tensors = [*model.parameters(), *model.buffers()]
    return not any(t.is_meta or is_lazy(t) for t in tensors) and \
        sum(t.numel() * t.element_size() for t in tensors) < REAL_FALLBACK_BYTES


def _runs_real(model: nn.Module, size: tuple[int, ...]) -> bool:
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    try:
        with hooks_set_aside(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(torch.zeros((2, *size), device=device))
        return True
    except Exception:
        return False


def _runs_on_meta(model: nn.Module, size: tuple[int, ...], dtype: torch.dtype) -> bool:
    return _meta_forward(model, torch.empty((2, *size), dtype=dtype, device="meta"))


def _meta_forward(model: nn.Module, x: torch.Tensor, pre_hook: Any = None, hooked: tuple[type, ...] = ()) -> bool:
    """Run ``model`` in eval mode on meta tensors (its own weights are not read): whether the forward succeeds.

    The model's hooks are set aside meanwhile and it is left exactly as it was (:func:`hooks_set_aside`).
    """
    tensors = {n: torch.empty_like(t, device="meta") for n, t in model.named_parameters(remove_duplicate=False)}
    tensors.update({n: torch.empty_like(t, device="meta") for n, t in model.named_buffers(remove_duplicate=False)})
    try:
        with hooks_set_aside(model):
            if pre_hook is not None:
                for m in model.modules():
                    if isinstance(m, hooked):
                        m.register_forward_pre_hook(pre_hook)
            with torch.no_grad(), torch.random.fork_rng(devices=[]):  # a layer built in forward draws its init
                torch.func.functional_call(model, tensors, (x,), tie_weights=False, strict=False)
        return True
    except Exception:
        return False


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

"""Every input of a model's forward (:class:`ModelInputs`, :func:`model_inputs`) and the command line's
``--input`` / ``--input-dtype`` (:func:`parse_inputs`)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchsmith._format import parse_dtype
from torchsmith.contract._input import (
    DEFAULT_SEQ_LEN,
    InputSpec,
    _checked_size,
    _hf_config,
    input_spec,
    is_token_dtype,
)
from torchsmith.errors import ConfigError
from torchsmith.sizes import parse_input_size

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
        config = _hf_config(model)
        encoder_decoder = _encoder_decoder_inputs(model, config, params)
        if encoder_decoder is not None:
            return encoder_decoder
        spec = input_spec(model, input_dtype=_dtype_for(input_dtype, 0, None))
        if config is not None and getattr(config, "is_encoder_decoder", False) and spec.kind == "tokens" and \
                any(n == "decoder_input_ids" for n, _ in params):
            names: tuple[str, ...] = (str(getattr(model, "main_input_name", "input_ids")), "decoder_input_ids")
            return ModelInputs((spec, spec), names, keyword=True)
        both = _vision_text(model, config, params, spec)
        if both is not None:
            return both
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
    specs: list[InputSpec] = []
    for i, (name, size) in enumerate(zip(names, sizes)):
        dims = () if isinstance(size, (list, tuple)) and len(size) == 0 else _checked_size(size)
        dtype = _dtype_for(input_dtype, i, name)
        if i == 0 and dims:
            specs.append(input_spec(model, dims, input_dtype=dtype))
        elif dtype is None and name.endswith("_ids") and dims:  # transformers' names: ids below the vocabulary
            vocab = next((s.vocab_size for s in specs if s.kind == "tokens"), None) or _vocab(model)
            specs.append(InputSpec(dims, torch.long, "tokens", vocab, False, "given"))
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


def _vision_text(model: nn.Module, config: Any, params: list[tuple[str, bool]],
                 spec: InputSpec) -> ModelInputs | None:
    """A transformers vision-text model (CLIP, SigLIP, BLIP): token ids and pixels, sized from its two configs."""
    names = {n for n, _ in params}
    text, vision = getattr(config, "text_config", None), getattr(config, "vision_config", None)
    if text is None or vision is None or not {"input_ids", "pixel_values"} <= names:
        return None
    side = getattr(vision, "image_size", None)
    side = side[0] if isinstance(side, (list, tuple)) else side
    if not isinstance(side, int) or side < 1:
        return None
    pixels = InputSpec((int(getattr(vision, "num_channels", 3)), side, side), torch.float32, "image", None,
                       True, "config.vision_config.image_size")
    vocab = getattr(text, "vocab_size", None)
    ids = spec if spec.kind == "tokens" else InputSpec(
        (DEFAULT_SEQ_LEN,), torch.long, "tokens", vocab if isinstance(vocab, int) else None, False,
        "config.text_config")
    return ModelInputs((ids, pixels), ("input_ids", "pixel_values"), keyword=True)


def _encoder_decoder_inputs(model: nn.Module, config: Any, params: list[tuple[str, bool]]) -> ModelInputs | None:
    """A transformers encoder-decoder whose encoder does not read token ids, with ``decoder_input_ids``:

    * speech (Whisper): log-mel ``input_features`` of the length its encoder's positions fix (two frames per
      position: the first convolution keeps the length, the second halves it);
    * images (``VisionEncoderDecoderModel``: TrOCR, Donut): ``pixel_values`` of its encoder's image size.
    """
    main = getattr(model, "main_input_name", None)
    if "decoder_input_ids" not in {n for n, _ in params} or main not in ("input_features", "pixel_values"):
        return None
    if main == "input_features":
        mels, positions = getattr(config, "num_mel_bins", None), getattr(config, "max_source_positions", None)
        if not isinstance(mels, int) or not isinstance(positions, int):
            return None
        first = InputSpec((mels, 2 * positions), torch.float32, "tensor", None, True,
                          "config.num_mel_bins and max_source_positions")
        decoder = config
    else:
        encoder, decoder = getattr(config, "encoder", None), getattr(config, "decoder", None)
        side = getattr(encoder, "image_size", None)
        side = side[0] if isinstance(side, (list, tuple)) else side
        if not isinstance(side, int) or decoder is None:
            return None
        first = InputSpec((int(getattr(encoder, "num_channels", 3)), side, side), torch.float32, "image", None,
                          True, "config.encoder.image_size")
    vocab = getattr(decoder, "vocab_size", None)
    longest = getattr(decoder, "max_target_positions", None) or getattr(decoder, "max_position_embeddings", None)
    ids = InputSpec((min(DEFAULT_SEQ_LEN, longest) if isinstance(longest, int) else DEFAULT_SEQ_LEN,),
                    torch.long, "tokens", vocab if isinstance(vocab, int) else None, False, "config.vocab_size")
    return ModelInputs((first, ids), (main, "decoder_input_ids"), keyword=True)


def _vocab(model: nn.Module) -> int | None:
    config = _hf_config(model)
    vocab = getattr(config, "vocab_size", None) if config is not None else None
    if not isinstance(vocab, int):
        vocab = getattr(getattr(config, "text_config", None), "vocab_size", None)
    return vocab if isinstance(vocab, int) and vocab > 0 else None


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

"""Token streams for language models: a flat token file, a text file, the shipped corpus, or random ids.

* ``tokens:PATH.bin`` -- a flat file of uint16 ids (uint32 where the vocabulary needs more than 65,536), as
  nanoGPT's ``prepare.py`` writes it; memory-mapped, never read whole. A ``val.bin`` beside a ``train.bin``
  is the test split; otherwise the last tenth of the file is.
* ``text:PATH.txt`` -- the file's UTF-8 bytes as ids (a vocabulary of 256; nothing else needed), or ids from
  a transformers tokenizer named with ``tokenizer`` that is already on this machine (nothing is downloaded).
* ``text:corpus`` -- :data:`CORPUS`, a small public-domain text shipped with torchsmith for tests and demos.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from torchsmith.errors import DataError

__all__ = ["TokenStream", "load_token_file", "load_text", "synthetic_stream", "corpus_path", "BYTE_VOCAB"]

#: Ids of ``text:`` data read as bytes.
BYTE_VOCAB = 256
_CORPUS = "corpus.txt"


@dataclass
class TokenStream:
    """A 1-D array of token ids (a ``numpy.memmap`` for token files) and the vocabulary they come from."""

    ids: np.ndarray
    vocab_size: int
    name: str = "tokens"
    kind: str = "stream"

    def __post_init__(self) -> None:
        if self.ids.ndim != 1 or not np.issubdtype(self.ids.dtype, np.integer):
            raise DataError(f"{self.name}: token ids must be a flat integer array, got {self.ids.dtype} "
                            f"{self.ids.shape}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def is_tokens(self) -> bool:
        return True

    @property
    def classes(self) -> tuple[str, ...]:
        return ()

    @property
    def num_classes(self) -> int:
        return self.vocab_size

    @property
    def input_size(self) -> tuple[int, ...]:
        return ()

    def max_id(self, chunk: int = 1 << 24) -> int:
        """The largest id in the stream, read in chunks (a memory map is never loaded whole)."""
        return max((int(self.ids[i:i + chunk].max()) for i in range(0, len(self), chunk)), default=0)


def corpus_path() -> Path:
    """The shipped corpus: original public-domain (CC0) prose, a few tens of KB."""
    return Path(str(resources.files("torchsmith.data").joinpath(_CORPUS)))


def _split(ids: np.ndarray, vocab: int, name: str) -> tuple[TokenStream, TokenStream]:
    n = len(ids)
    cut = int(n * 0.9)
    if n < 20:
        raise DataError(f"{name} holds {n} tokens; a language model needs at least a few hundred")
    return TokenStream(ids[:cut], vocab, name), TokenStream(ids[cut:], vocab, name)


def _check_vocab(train: TokenStream, test: TokenStream, vocab: int, where: str) -> None:
    top = max(train.max_id(), test.max_id())
    if top >= vocab:
        raise DataError(f"{where} holds token id {top} but the model's vocabulary has {vocab} ids (0..{vocab - 1}); "
                        f"tokenise with the model's own tokenizer or build it with vocab_size >= {top + 1}")


def load_token_file(path: str | Path, vocab_size: int, *, dtype: str | None = None) -> tuple[TokenStream, TokenStream]:
    """Memory-map the flat token file ``path`` (uint16, or uint32 for a vocabulary over 65,536 ids)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"tokens:{path}: no such file; give a flat file of uint16 token ids (nanoGPT's train.bin)")
    kind = np.dtype(dtype) if dtype else np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    if p.stat().st_size % kind.itemsize:
        raise DataError(f"tokens:{path} is {p.stat().st_size} bytes, not a whole number of {kind.name} ids")

    def mapped(f: Path) -> np.ndarray:
        return np.memmap(f, dtype=kind, mode="r")

    val = p.with_name("val.bin")
    if p.name == "train.bin" and val.is_file():
        train, test = TokenStream(mapped(p), vocab_size, p.name), TokenStream(mapped(val), vocab_size, p.name)
    else:
        train, test = _split(mapped(p), vocab_size, p.name)
    _check_vocab(train, test, vocab_size, f"tokens:{path}")
    return train, test


def load_text(path: str | Path, vocab_size: int, *, tokenizer: str | None = None) -> tuple[TokenStream, TokenStream]:
    """The text at ``path`` as ids: its bytes (vocabulary 256), or ``tokenizer``'s ids when one is named."""
    p = corpus_path() if str(path) == "corpus" else Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"text:{path}: no such file; give a text file (or text:corpus, the shipped one)")
    if tokenizer is None:
        if vocab_size < BYTE_VOCAB:
            raise DataError(f"text:{path} is read as bytes (ids 0..255) but the model's vocabulary has {vocab_size} "
                            f"ids; build it with vocab_size=256, or name a tokenizer (--tokenizer NAME)")
        ids = np.frombuffer(p.read_bytes(), dtype=np.uint8)
        return _split(ids, vocab_size, p.name)
    ids = _tokenize(p, tokenizer)
    train, test = _split(ids, vocab_size, p.name)
    _check_vocab(train, test, vocab_size, f"text:{path} tokenised by {tokenizer}")
    return train, test


def _tokenize(p: Path, name: str) -> np.ndarray:
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise DataError(f"--tokenizer {name} needs transformers (pip install transformers)") from e
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception as e:  # not on this machine: nothing is downloaded
        raise DataError(f"--tokenizer {name}: no such tokenizer on this machine ({type(e).__name__}); torchsmith "
                        f"downloads nothing: give a local tokenizer folder, or leave --tokenizer out to train on "
                        f"bytes") from e
    ids = tok(p.read_text(encoding="utf-8", errors="replace"))["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def synthetic_stream(vocab_size: int, num_tokens: int, seed: int = 0) -> tuple[TokenStream, TokenStream]:
    """Random ids in ``[0, vocab_size)``: nothing to learn, only throughput to measure."""
    if vocab_size < 1 or num_tokens < 20:
        raise DataError(f"synthetic tokens need a vocabulary and at least 20 tokens, got vocab_size={vocab_size}, "
                        f"num_tokens={num_tokens}")
    ids = np.random.default_rng(seed).integers(0, vocab_size, num_tokens, dtype=np.int64)
    return _split(ids, vocab_size, "synthetic")

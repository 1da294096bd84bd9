"""The safetensors file format, written and read by torchsmith itself.

Layout (https://github.com/huggingface/safetensors): 8 bytes little-endian
header length ``N``, ``N`` bytes of JSON header, then the tensor data. The
header maps each tensor name to ``{"dtype", "shape", "data_offsets"}`` and may
hold ``"__metadata__"``, a flat ``str -> str`` dict.

Why our own reader and writer rather than ``safetensors.torch``:

* writing streams each tensor's bytes straight from its memory to the file
  while a second thread hashes the same bytes (no serialised copy of the whole
  model in memory, one pass for write + sha256);
* reading validates every header field first, so a malformed file of any kind
  is one :class:`CheckpointError` naming the file, and maps the data with
  ``mmap`` (copy-on-write) so tensors are views of the page cache: no copy.

The files are plain safetensors; ``safetensors.safe_open`` reads them too.
Tensors are stored in order of decreasing element size, so every tensor starts
at an offset aligned to its element size (the header is padded to 8 bytes).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchsmith.checkpoint import _sniff
from torchsmith.checkpoint._atomic import atomic_fd, write_all
from torchsmith.errors import CheckpointError

__all__ = ["DTYPES", "TensorEntry", "Header", "write_safetensors", "read_header", "open_tensors",
           "data_sha256", "index_sha256", "HASH_KEY", "INDEX_HASH_KEY", "MAX_HEADER"]

HASH_KEY = "sha256"              # sha256 of the data region (all tensor bytes, in file order)
INDEX_HASH_KEY = "index_sha256"  # sha256 of the tensor table (names, dtypes, shapes, offsets)
_PLACEHOLDER = "f" * 64          # same length as a hex digest; overwritten in place after the data
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
#: The data is hashed in pieces of at most this many bytes (each tensor split on its own), and ``sha256``
#: is the sha256 of the concatenated piece digests (a hash list, as BitTorrent's): pieces are hashed on
#: all cores at once, on save while the file is written and on load, and one flipped byte anywhere in the
#: data still changes it. ``sha256_scheme`` names this so a later format can change it.
PIECE = 16 * 1024 * 1024
HASH_SCHEME = "sha256-of-16MiB-pieces-v1"
_PARALLEL_MIN = 4 * 1024 * 1024  # below this, threads cost more than they save


def _dtype_table() -> dict[str, torch.dtype]:
    table = {
        "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
        "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
        "U8": torch.uint8, "BOOL": torch.bool,
    }
    optional = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                "U16": "uint16", "U32": "uint32", "U64": "uint64"}
    for code, attr in optional.items():  # newer torch only
        if hasattr(torch, attr):
            table[code] = getattr(torch, attr)
    return table


#: safetensors dtype code -> torch dtype
DTYPES: dict[str, torch.dtype] = _dtype_table()
_CODES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the header: where its bytes lie in the data region."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class Header:
    """A validated safetensors header."""

    path: Path
    entries: dict[str, TensorEntry]
    metadata: dict[str, str] = field(default_factory=dict)
    data_start: int = 0   # file offset of the data region
    file_size: int = 0


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a CPU contiguous tensor, without a copy."""
    if t.numel() == 0:
        return memoryview(b"")
    flat = t.reshape(-1).view(torch.uint8)  # (numel * itemsize,) sharing t's memory
    return memoryview(flat.numpy()).cast("B")  # type: ignore[arg-type]


def prepare_tensor(name: str, t: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous, little-endian CPU tensor of a storable dtype, or a CheckpointError."""
    if not isinstance(t, torch.Tensor):
        extra = (" (a module's get_extra_state(), which a pickle-free checkpoint cannot store; keep that "
                 "state in tensor buffers instead)") if name.rpartition(".")[2] == "_extra_state" else ""
        raise CheckpointError(f"state entry {name!r} is a {type(t).__name__}, not a tensor{extra}")
    if t.is_meta:
        raise CheckpointError(f"tensor {name!r} is on the meta device and has no data; materialise the model "
                              "(e.g. model.to_empty(device='cpu') and load weights) before saving")
    if t.layout != torch.strided:
        raise CheckpointError(f"tensor {name!r} has layout {t.layout}; safetensors stores dense tensors only, "
                              "convert it with .to_dense()")
    if t.dtype not in _CODES:
        hint = " (store torch.view_as_real(t) instead)" if t.is_complex() else ""
        raise CheckpointError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store{hint}; "
                              f"storable: {', '.join(str(d) for d in _CODES)}")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t.contiguous()


def index_sha256(entries: Iterable[TensorEntry], metadata: dict[str, str]) -> str:
    """Hash of the rest of the header: the tensor table and the metadata (except the two hashes).

    So a renamed tensor, a changed shape or an edited architecture is detected like changed data.
    """
    table = sorted([e.name, e.dtype, list(e.shape), e.begin, e.end] for e in entries)
    meta = sorted((k, v) for k, v in metadata.items() if k not in (HASH_KEY, INDEX_HASH_KEY))
    payload = json.dumps({"tensors": table, "metadata": meta}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], *,
                      durable: bool = True, deferred: list[tuple[Path, Path]] | None = None) -> str:
    """Write ``tensors`` (already prepared) and ``metadata`` to ``path`` atomically; return the data sha256.

    ``metadata`` gets ``sha256`` and ``index_sha256`` added. The hash is computed
    while writing: the header carries a placeholder that is overwritten in place
    (same length) once the data is written, so the data is read from memory once.
    """
    if sys.byteorder != "little":  # safetensors is little-endian; we never byte-swap silently
        raise CheckpointError("saving safetensors on a big-endian machine is not supported")
    # Decreasing element size: each tensor's offset is then a multiple of its element size.
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    entries, offset = [], 0
    for name in order:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        entries.append(TensorEntry(name, _CODES[t.dtype], tuple(t.shape), offset, offset + nbytes))
        offset += nbytes
    meta = dict(metadata)
    meta["sha256_scheme"] = HASH_SCHEME
    meta[INDEX_HASH_KEY] = index_sha256(entries, meta)
    meta[HASH_KEY] = _PLACEHOLDER
    header: dict[str, Any] = {"__metadata__": meta}
    by_name = {e.name: e for e in entries}
    for name in tensors:  # the header lists tensors in the caller's (state dict) order; the data is by size
        e = by_name[name]
        header[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.begin, e.end]}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True)
    text += " " * (-(len(text)) % 8)  # pad: the data region starts 8-aligned
    marker = f'"{HASH_KEY}":"{_PLACEHOLDER}"'
    if text.count(marker) != 1:  # cannot happen: keys and values are JSON-escaped
        raise CheckpointError("internal error: hash placeholder is not unique in the header")
    hash_pos = 8 + text.index(marker) + len(marker) - 65  # file offset of the placeholder's first char
    raw_header = len(text).to_bytes(8, "little") + text.encode("ascii")

    with atomic_fd(path, durable=durable, deferred=deferred) as fd:
        write_all(fd, raw_header)
        digests = _write_and_hash(fd, [tensors[n] for n in order], parallel=offset >= _PARALLEL_MIN)
        hexdigest = _combine(digests)
        os.pwrite(fd, hexdigest.encode("ascii"), hash_pos)
    return hexdigest


def _piece_digest(data: memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _combine(digests: Iterable[bytes]) -> str:
    return hashlib.sha256(b"".join(digests)).hexdigest()


def _write_and_hash(fd: int, tensors: list[torch.Tensor], parallel: bool) -> list[bytes]:
    """Write each tensor's bytes and return the sha256 digest of every piece, in data order.

    Both os.write and hashlib release the GIL on large buffers, so pieces are
    hashed on other cores while the main thread writes them: one pass over
    memory, and the hash costs no wall time when a core is free.
    """
    pieces = [data[start:start + PIECE] for t in tensors for data in [_tensor_bytes(t)]
              for start in range(0, len(data), PIECE)]
    if not parallel:
        out = []
        for piece in pieces:
            out.append(_piece_digest(piece))
            write_all(fd, piece)
        return out
    with ThreadPoolExecutor(max_workers=_hash_workers(), thread_name_prefix="torchsmith-sha256") as pool:
        futures = []
        for piece in pieces:
            futures.append(pool.submit(_piece_digest, piece))
            write_all(fd, piece)
        return [f.result() for f in futures]


def _hash_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


# --------------------------------------------------------------------------- reading
def _bad(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid safetensors checkpoint: {why}")


def _nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_header(path: str | os.PathLike[str]) -> Header:
    """Read and validate the header of ``path``; every defect is one CheckpointError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise _bad(path, f"the file has {size} bytes, fewer than the 8-byte header length")
            first = f.read(8)
            n = int.from_bytes(first, "little")
            if n < 2 or n > MAX_HEADER or n > size - 8:
                head = first + f.read(_sniff.HEAD_BYTES - 8)
                if _sniff.torch_kind(head):  # what torch.save writes, told by its structure (not by 0x80 alone)
                    raise _bad(path, "it is a PyTorch (torch.save) file; torchsmith.load_into(model, path) reads "
                                     "it safely, and `torchsmith ckpt convert` turns it into a safetensors checkpoint")
                raise _bad(path, f"the header length does not fit the file (truncated, or not a safetensors file): "
                                 f"{_sniff.describe(head, size)}")
            raw = f.read(n)
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except PermissionError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from e
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if len(raw) != n:
        raise _bad(path, "the file changed while it was read")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"the header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise _bad(path, "__metadata__ must map strings to strings")
    data_len = size - 8 - n
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        entries[name] = _entry(path, name, info)
    spans = sorted((e.begin, e.end, e.name) for e in entries.values())
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise _bad(path, f"tensor {name!r} starts at byte {begin} of the data but {pos} was expected "
                             "(overlapping tensors or a hole)")
        pos = end
    if pos != data_len:
        raise _bad(path, f"the tensors cover {pos} bytes of data but the file holds {data_len} "
                         f"({'truncated' if pos > data_len else 'trailing bytes'})")
    return Header(path=path, entries=entries, metadata=metadata, data_start=8 + n, file_size=size)


def _entry(path: Path, name: str, info: Any) -> TensorEntry:
    if not isinstance(info, dict):
        raise _bad(path, f"entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _bad(path, f"tensor {name!r} has unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > 64 or not all(_nonneg_int(d) for d in shape):
        raise _bad(path, f"tensor {name!r} has shape {shape!r}; expected a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_nonneg_int(o) for o in offsets)
            or offsets[0] > offsets[1]):
        raise _bad(path, f"tensor {name!r} has data_offsets {offsets!r}; expected [begin, end] with begin <= end")
    entry = TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])
    expected = entry.numel * DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != expected:
        raise _bad(path, f"tensor {name!r} of dtype {dtype} and shape {list(shape)} needs {expected} bytes "
                         f"but its data_offsets span {offsets[1] - offsets[0]}")
    return entry


Buffer = mmap.mmap | bytearray


def _map(header: Header) -> Buffer | None:
    """The whole file as a writable buffer: a copy-on-write memory map, or (where mapping fails) its bytes."""
    if header.file_size == header.data_start:  # no data at all: nothing to map
        return None
    try:
        with open(header.path, "rb") as f:
            try:
                # ACCESS_COPY (MAP_PRIVATE): tensors may be written to; the writes never reach the file.
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError):  # a file system without mmap: read it instead (one copy)
                return bytearray(f.read())
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {header.path}: {e}") from e


def data_sha256(header: Header, mapped: Buffer | None = None) -> str:
    """The hash of the data region of the file ``header`` was read from (see :data:`PIECE`)."""
    mm = mapped if mapped is not None else _map(header)
    if mm is None:
        return _combine([])
    if len(mm) != header.file_size:
        raise _bad(header.path, "the file changed size while it was read")
    view = memoryview(mm)
    try:
        base = header.data_start
        pieces = [view[base + start: base + min(e.end, start + PIECE)]
                  for e in sorted(header.entries.values(), key=lambda e: e.begin)
                  for start in range(e.begin, e.end, PIECE)]
        # Reads the page cache in place (no copy); pieces are hashed on all cores.
        if header.file_size - base >= _PARALLEL_MIN and len(pieces) > 1:
            with ThreadPoolExecutor(max_workers=_hash_workers(), thread_name_prefix="torchsmith-sha256") as pool:
                digests = list(pool.map(_piece_digest, pieces))
        else:
            digests = [_piece_digest(p) for p in pieces]
        for p in pieces:
            p.release()
        return _combine(digests)
    finally:
        view.release()


def verify(header: Header, mapped: Buffer | None = None) -> bool | None:
    """Check the recorded hashes: True if both match, None if the file records none, else a CheckpointError."""
    recorded = header.metadata.get(HASH_KEY)
    if recorded is None:
        return None
    scheme = header.metadata.get("sha256_scheme")
    if scheme != HASH_SCHEME:
        raise CheckpointError(f"{header.path} records its hash with scheme {scheme!r}, which this torchsmith "
                              f"does not know (it knows {HASH_SCHEME!r}); upgrade torchsmith, or load with "
                              "verify=False if you trust the file")
    if header.metadata.get(INDEX_HASH_KEY) != index_sha256(header.entries.values(), header.metadata):
        raise CheckpointError(f"{header.path} failed verification: its tensor table or metadata (names, shapes, "
                              "dtypes, architecture) does not match the recorded index_sha256; the file was "
                              "modified or corrupted")
    actual = data_sha256(header, mapped)
    if actual != recorded:
        raise CheckpointError(f"{header.path} failed verification: the sha256 of its tensor data is {actual[:16]}... "
                              f"but the file records {recorded[:16]}...; the file is corrupted (re-save or "
                              "re-download it)")
    return True


def _aliases(header: Header) -> dict[str, str]:
    raw = header.metadata.get("aliases")
    if raw is None:
        return {}
    try:
        aliases = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad(header.path, "metadata 'aliases' is not JSON") from None
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) and v in header.entries
                                                for k, v in aliases.items()):
        raise _bad(header.path, "metadata 'aliases' must map names to stored tensor names")
    return aliases


def open_tensors(header: Header, *, verify_hash: bool = True) -> tuple[dict[str, torch.Tensor], bool | None]:
    """All tensors of the file as copy-on-write views of a memory map, aliases expanded.

    Returns ``(tensors, verified)``, ``verified`` as :func:`verify` (``False``
    when ``verify_hash`` is off). Tied names map to the same tensor object.
    """
    aliases = _aliases(header)
    mm = _map(header)
    verified: bool | None = verify(header, mm) if verify_hash else False
    out: dict[str, torch.Tensor] = {}
    for name, e in header.entries.items():
        if e.numel == 0 or mm is None:
            out[name] = torch.empty(e.shape, dtype=e.torch_dtype)
            continue
        try:
            flat = torch.frombuffer(mm, dtype=e.torch_dtype, count=e.numel, offset=header.data_start + e.begin)
        except (ValueError, RuntimeError) as exc:
            raise _bad(header.path, f"tensor {name!r} cannot be read: {exc}") from None
        out[name] = flat.view(e.shape)
    for alias, target in aliases.items():
        out[alias] = out[target]
    return out, verified

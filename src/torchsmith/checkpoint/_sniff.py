"""What a checkpoint file is, told by its structure rather than by one byte or by its name.

A safetensors file starts with its header length, 8 bytes little-endian, so its
first byte is any value at all: 1 file in 32 that torchsmith writes (the header
is padded to 8 bytes) starts with ``0x80``, which is also the first byte of a
pickle (the PROTO opcode). A byte is never enough. The readers therefore ask, in
this order:

1. is it a safetensors file: a header length that fits the file, then a JSON
   object whose entries are the ``{"dtype", "shape", "data_offsets"}`` table
   (validated in full by :func:`torchsmith.checkpoint._format.read_header`);
2. is it a ``torch.save`` zip: the zip local-file signature ``PK\\x03\\x04``;
3. is it a pickle: PROTO ``0x80`` with a protocol torch writes (2 to 5) and the
   opcodes after it parsing as a pickle stream. A safetensors length field can
   never pass this: its upper bytes are ``0x00``, which is no pickle opcode.

This module only looks at bytes; it reads no file and imports nothing of torchsmith.
"""

from __future__ import annotations

import io
import pickletools

__all__ = ["HEAD_BYTES", "safetensors_shaped", "torch_kind", "describe"]

#: How many bytes of a file the pickle test and the error messages look at.
HEAD_BYTES = 64
_MIN_OPCODES = 3  # PROTO, one value, STOP: the shortest pickle of protocol 2 and up


def safetensors_shaped(head: bytes, size: int, max_header: int) -> bool:
    """The first 9 bytes could start a safetensors file of ``size`` bytes: a length that fits, then ``{``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(max_header, size - 8)


def _pickle_stream(head: bytes) -> bool:
    """PROTO 2..5 and at least the shortest pickle's worth of valid opcodes after it."""
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    count = 0
    try:
        for op, _, _ in pickletools.genops(io.BytesIO(head)):
            count += 1
            if count >= _MIN_OPCODES or op.name == "STOP":
                break
    except Exception:  # an unknown opcode, or the sample ended inside an argument
        pass
    return count >= _MIN_OPCODES


def torch_kind(head: bytes) -> str | None:
    """``"zip"`` (torch.save's default format), ``"pickle"`` (legacy or raw pickle) or None."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if _pickle_stream(head):
        return "pickle"
    return None


def describe(head: bytes, size: int) -> str:
    """What a file that is neither format holds, for an error message: its size, first bytes, and how they
    read as a safetensors length or a pickle."""
    if size == 0:
        return "it is empty (0 bytes)"
    shown = " ".join(f"{b:02x}" for b in head[:16])
    text = f"it has {size:,} bytes and starts with {shown}{' ...' if size > 16 else ''}"
    if len(head) >= 8:
        n = int.from_bytes(head[:8], "little")
        if n > size - 8:
            text += f"; as a safetensors header length these bytes say {n:,}, more than the file holds"
        elif head[8:9] != b"{":
            text += "; a safetensors JSON header would start with '{' after the 8-byte length"
    if head[:1] == b"\x80":
        text += "; 0x80 starts a pickle too, but the bytes after it are not a pickle stream"
    return text

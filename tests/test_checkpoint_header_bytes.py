"""A checkpoint always loads, whatever the first byte of its header length (issue 15).

A safetensors file starts with its header length, 8 bytes little-endian. When that
length's first byte was 0x80 (pickle's PROTO opcode) the file was taken for a pickle
and refused. Here every one of the 256 first-byte values is written (by ``ts.save``
where it can write it: its header is padded to 8 bytes, so the 32 multiples of 8; by
re-padding the header, as another writer may, for the rest) and read back through
every checkpoint path: ``load_into``, ``load``, ``checkpoint_info``, ``diff``,
``convert`` both ways, and ``torchsmith ckpt info|diff|load-report``. Each must give
back bit-identical tensors, verify the sha256, hand every module its saved version,
and raise nothing but TorchsmithError.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from torch import nn

import torchsmith as ts
from torchsmith.checkpoint import checkpoint_info, convert_checkpoint, diff_checkpoints, load_into
from torchsmith.checkpoint._format import DTYPES
from torchsmith.checkpoint._sources import read_state_dict
from torchsmith.checkpoint._versions import KEY
from torchsmith.cli import main

SYNTH = "_ckpt_test_synth"
STORABLE = sorted(DTYPES.values(), key=str)


class Node(nn.Module):
    """A module with a version of its own that, like torchvision's and timm's, refuses to load without one."""

    def __init__(self, version: int) -> None:
        super().__init__()
        self._version = version  # what state_dict() records for this module
        self.seen_version: int | None = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):  # type: ignore[no-untyped-def]
        version = local_metadata.get("version")
        if version is None:
            raise ValueError(f"version should be set to 1 or 2 instead of {version}")
        self.seen_version = version
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)


class Synth(Node):
    """Buffers named, typed and shaped as ``entries`` says, in Node modules of the given versions.

    ``entries``: ``[[dotted name, dtype name, shape], ...]``; ``versions``: ``{module name: version}``;
    ``bn``: a BatchNorm1d too (version 2, num_batches_tracked); ``pad``: unused text that lengthens
    the architecture recorded in the header, to steer its length.
    """

    def __init__(self, entries: list[list[Any]], versions: dict[str, int], bn: bool, pad: str) -> None:
        super().__init__(versions.get("", 1))
        for name, dtype, shape in entries:
            owner: nn.Module = self
            parts = name.split(".")
            for i, part in enumerate(parts[:-1]):
                if part not in owner._modules:
                    owner.add_module(part, Node(versions.get(".".join(parts[:i + 1]), 1)))
                owner = owner._modules[part]  # type: ignore[assignment]
            owner.register_buffer(parts[-1], torch.zeros(shape, dtype=getattr(torch, dtype)))
        if bn:
            self.bn = nn.BatchNorm1d(3)


def _synth(*, entries: list[list[Any]], versions: dict[str, int], bn: bool = False, pad: str = "") -> Synth:
    return Synth(entries, versions, bn, pad)


@pytest.fixture(scope="module", autouse=True)
def synth_registered() -> Iterator[None]:
    """The synthetic model as a zoo name for this module only, so ``load`` and the CLI can rebuild it."""
    from torchsmith import registry

    ts.register_model(name=SYNTH)(_synth)
    try:
        yield
    finally:
        registry._MODELS.pop(SYNTH, None)


def _fill(model: nn.Module, seed: int) -> None:
    """Every tensor gets random bits (NaN and infinity patterns included): a round trip must keep them all."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.dtype == torch.bool:
                t.copy_(torch.randint(0, 2, t.shape, generator=gen).bool())
            elif t.numel():
                raw = t.view(-1).view(torch.uint8) if t.dim() else t.view(1).view(torch.uint8)
                raw.copy_(torch.randint(0, 256, raw.shape, dtype=torch.uint8, generator=gen))


def _bits(t: torch.Tensor) -> bytes:
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _same_bits(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and _bits(a[k]) == _bits(b[k]) for k in a)


def _versions(model: nn.Module) -> dict[str, Any]:
    return {k: dict(v) for k, v in model.state_dict()._metadata.items()}  # type: ignore[attr-defined]


def _seen(model: nn.Module) -> dict[str, int | None]:
    return {name: m.seen_version for name, m in model.named_modules() if isinstance(m, Node)}


def _header_length(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def save_with_first_byte(kwargs: dict[str, Any], seed: int, path: Path, first: int) -> nn.Module:
    """``ts.save`` a Synth model whose header length starts with byte ``first`` (a multiple of 8), steered
    by the ``pad`` option, which the architecture in the header records: one trial save, then the real one."""
    assert first % 8 == 0
    model = ts.create_model(SYNTH, **kwargs, pad="")
    ts.save(model, path)
    data = path.read_bytes()
    unpadded = len(data[8:8 + _header_length(path)].rstrip(b" "))
    model = ts.create_model(SYNTH, **kwargs, pad="p" * ((first - unpadded) % 256))
    _fill(model, seed)
    ts.save(model, path)
    assert path.read_bytes()[0] == first
    return model


def repad(path: Path, first: int) -> None:
    """Lengthen the header with spaces (JSON allows them) until its length starts with byte ``first``: a valid
    safetensors file with the same tensors, metadata and hashes, as a writer that pads otherwise writes it."""
    data = path.read_bytes()
    n = _header_length(path)
    extra = (first - n) % 256
    path.write_bytes((n + extra).to_bytes(8, "little") + data[8:8 + n] + b" " * extra + data[8 + n:])
    assert path.read_bytes()[0] == first


def _cli(*args: str) -> Any:
    # catch_exceptions=False: anything but a TorchsmithError (which the CLI turns into exit 1) fails the test
    return CliRunner().invoke(main, ["ckpt", *args], catch_exceptions=False)


def check_every_reader(path: Path, model: nn.Module, kwargs: dict[str, Any], tmp: Path) -> None:
    """Read ``path`` (``ts.save`` of ``model``, built by the Synth builder from ``kwargs``) every way there is."""
    expected, versions = model.state_dict(), _versions(model)
    first = path.read_bytes()[0]
    where = f"header length starting with 0x{first:02x}"

    # load_into a model whose own versions differ from the file's: the file's must be what the modules see
    other = {name: v + 7 for name, v in kwargs["versions"].items()}
    target = ts.create_model(SYNTH, **{**kwargs, "versions": other})
    report = load_into(target, path)
    assert report.ok and report.loaded and report.verified is True, (where, str(report))
    assert _same_bits(target.state_dict(), expected), where
    assert _seen(target) == {name: v.get("version") for name, v in versions.items() if name in _seen(target)}, where

    loaded = ts.load(path)
    assert _same_bits(loaded.state_dict(), expected), where
    assert all(v is not None for v in _seen(loaded).values()), where

    info = checkpoint_info(path)
    assert info.verified is True and info.format == "safetensors (torchsmith format 1)", where
    assert info.metadata[KEY] == versions and len(info.tensors) == len(expected), where
    assert diff_checkpoints(path, path).identical, where

    # convert both ways: safetensors -> .pt -> safetensors keeps the bits and the versions
    pt, back = tmp / "c.pt", tmp / "c.safetensors"
    convert_checkpoint(path, pt)
    assert torch.load(pt, weights_only=True)._metadata == versions, where
    convert_checkpoint(pt, back)
    assert checkpoint_info(back).metadata[KEY] == versions, where
    assert _same_bits(read_state_dict(back).tensors, expected), where

    result = _cli("info", str(path), "--json")
    assert result.exit_code == 0 and json.loads(result.output)["verified"] is True, (where, result.output)
    result = _cli("diff", str(path), str(back), "--exit-code")
    assert result.exit_code == 0 and "identical" in result.output, (where, result.output)
    result = _cli("load-report", str(path), str(path), "--json")  # MODEL may be the checkpoint itself
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True, (where, result.output)


def _kwargs_for(rng: random.Random) -> dict[str, Any]:
    """A small random state dict description: names, dtypes, shapes, module versions."""
    entries, versions = [], {"": rng.randint(1, 9)}
    for i in range(rng.randint(1, 6)):
        depth = rng.randint(0, 2)
        mods = [f"m{rng.randint(0, 2)}" + "x" * rng.randint(0, 12) for _ in range(depth)]
        for d in range(depth):
            versions[".".join(mods[:d + 1])] = rng.randint(1, 9)
        shape = [rng.randint(0, 3) for _ in range(rng.randint(0, 3))]
        entries.append([".".join([*mods, f"t{i}" + "y" * rng.randint(0, 20)]),
                        str(rng.choice(STORABLE)).replace("torch.", ""), shape])
    return {"entries": entries, "versions": versions, "bn": rng.random() < 0.5}


@pytest.mark.parametrize("block", range(8))
def test_every_first_byte_of_the_header_length_loads_everywhere(tmp_path: Path, block: int) -> None:
    """All 256 first bytes, 32 per test: each multiple of 8 written by ts.save itself, the 7 bytes after
    it by re-padding that file. 0x80 is in block 4."""
    covered = set()
    for first in range(block * 32, block * 32 + 32, 8):
        rng = random.Random(first)
        kwargs = _kwargs_for(rng)
        path = tmp_path / "m.safetensors"
        model = save_with_first_byte(kwargs, first, path, first)
        with safe_open(str(path), "pt") as f:  # a standard reader agrees the file is valid safetensors
            assert set(f.keys()) == set(model.state_dict())
        for byte in range(first, first + 8):
            if byte != first:
                repad(path, byte)
            check_every_reader(path, model, kwargs, tmp_path)
            covered.add(byte)
    assert covered == set(range(block * 32, block * 32 + 32))


_names = st.text("abcxyz_0123456789", min_size=1, max_size=40)
_entry = st.tuples(st.lists(_names, min_size=0, max_size=2), _names,
                   st.sampled_from([str(d).replace("torch.", "") for d in STORABLE]),
                   st.lists(st.integers(0, 4), max_size=3))


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=st.lists(_entry, min_size=1, max_size=10), version_seed=st.integers(0, 2**16),
       bn=st.booleans(), first=st.sampled_from(range(0, 256, 8)), repadded=st.integers(0, 7))
def test_any_state_dict_round_trips_whatever_its_header_length(tmp_path: Path, entries: list[Any],
                                                               version_seed: int, bn: bool, first: int,
                                                               repadded: int) -> None:
    """Hypothesis for variety: key counts, name lengths, dtypes, shapes and versions it chooses."""
    rng = random.Random(version_seed)
    named, versions = [], {"": rng.randint(1, 5)}
    for i, (mods, leaf, dtype, shape) in enumerate(entries):
        mods = [f"m_{m}" for m in mods]  # module and tensor names never collide
        for d in range(len(mods)):
            versions[".".join(mods[:d + 1])] = rng.randint(1, 5)
        named.append([".".join([*mods, f"t{i}_{leaf}"]), dtype, shape])
    kwargs = {"entries": named, "versions": versions, "bn": bn}
    path = tmp_path / "h.safetensors"
    model = save_with_first_byte(kwargs, version_seed, path, first)
    if repadded:
        repad(path, first + repadded)
    check_every_reader(path, model, kwargs, tmp_path)


class _RegNetLike(nn.Module):
    """torchvision regnet_x_16gf's naming (trunk_output.blockN.blockN-M.f.{a,b,c}) with a Node that needs its
    version in every block, sized so that ``ts.save`` writes a header of exactly 0xbc80 bytes."""

    def __init__(self, blocks: int, pad: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
        self.trunk_output = nn.Sequential()
        for b in range(blocks):
            name = f"block{b % 4 + 1}"
            if name not in self.trunk_output._modules:
                self.trunk_output.add_module(name, nn.Sequential())
            stage = nn.Module()
            stage.f = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4), Node(2))
            stage.f[2].register_buffer("scale", torch.ones(1))
            self.trunk_output._modules[name].add_module(f"{name}-{b}", stage)
        self.fc = nn.Linear(4, 3)


def test_the_issues_own_case_header_80_bc(tmp_path: Path) -> None:
    """ts.save wrote a valid file whose first bytes are 80 bc 00 00 00 00 00 00, and load_into, ckpt info
    and ckpt load-report took it for a pickle. The same header, from a model with a regnet's naming."""
    from torchsmith import registry

    @ts.register_model(name="_ckpt_test_regnet_like")
    def _regnet_like(*, blocks: int = 48, pad: str = "") -> _RegNetLike:
        return _RegNetLike(blocks, pad)

    try:
        path = tmp_path / "rx.safetensors"
        ts.save(ts.create_model("_ckpt_test_regnet_like", pad=""), path)
        unpadded = len(path.read_bytes()[8:8 + _header_length(path)].rstrip(b" "))
        assert unpadded <= 0xBC80, unpadded
        model = ts.create_model("_ckpt_test_regnet_like", pad="p" * (0xBC80 - unpadded))
        ts.save(model, path)
        assert path.read_bytes()[:8] == bytes.fromhex("80bc000000000000")
        with safe_open(str(path), "pt") as f:
            assert len(list(f.keys())) == len(model.state_dict())
        target = _RegNetLike(48, "")
        report = load_into(target, path)
        assert report.ok and report.verified is True
        assert _same_bits(target.state_dict(), model.state_dict())
        assert all(m.seen_version == 2 for m in target.modules() if isinstance(m, Node))
        result = _cli("info", str(path))
        assert result.exit_code == 0 and "sha256 verified" in result.output and "Weights only" not in result.output
        result = _cli("load-report", "_ckpt_test_regnet_like", str(path))
        assert result.exit_code == 0 and "loaded" in result.output
        assert _same_bits(ts.load(path).state_dict(), model.state_dict())
    finally:
        registry._MODELS.pop("_ckpt_test_regnet_like", None)


def _every_reader(path: Path, tmp: Path) -> list[Any]:
    return [lambda: load_into(nn.Linear(2, 2), path), lambda: checkpoint_info(path),
            lambda: diff_checkpoints(path, path), lambda: convert_checkpoint(path, tmp / "out.safetensors"),
            lambda: ts.load(path)]


def test_a_file_that_is_neither_format_is_one_error_saying_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    path.write_bytes(b"\x80\x07hello, not a checkpoint")  # 0x80 but no pickle after it, and no safetensors length
    for read in _every_reader(path, tmp_path)[:4]:
        with pytest.raises(ts.CheckpointError) as info:
            read()
        text = str(info.value)
        # the facts: the file, both formats it is not, its size and first bytes, why 0x80 is not a pickle here
        assert str(path) in text and "safetensors" in text and "torch.save" in text
        assert "25 bytes" in text and "80 07 68 65 6c 6c 6f 2c" in text
        assert "0x80" in text and "not a pickle stream" in text
    with pytest.raises(ts.CheckpointError, match="starts with 80 07 68"):
        ts.load(path)
    result = CliRunner().invoke(main, ["ckpt", "info", str(path)])
    assert result.exit_code == 1 and result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "out.safetensors").exists()


def test_a_damaged_safetensors_starting_with_0x80_gets_the_safetensors_diagnosis(tmp_path: Path) -> None:
    path = ts.save(nn.Linear(2, 2), tmp_path / "m.safetensors")
    repad(path, 0x80)
    data = bytearray(path.read_bytes())
    data[9] = ord("[")  # the header is no JSON object any more
    path.write_bytes(bytes(data))
    for read in _every_reader(path, tmp_path):
        with pytest.raises(ts.CheckpointError, match="is not a valid safetensors checkpoint") as info:
            read()
        assert "weights_only" not in str(info.value) and "pickle" not in str(info.value)
    # The bytes of a pickle written over the length (80 02 ...): still not a pickle, as its opcodes show.
    data = bytearray(path.read_bytes())
    data[1] = 2
    path.write_bytes(bytes(data))
    with pytest.raises(ts.CheckpointError, match="not a valid safetensors checkpoint|neither a safetensors") as info:
        load_into(nn.Linear(2, 2), path)
    assert "weights_only" not in str(info.value)


def test_pickles_and_zips_are_still_told_by_their_structure(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    torch.save(model.state_dict(), tmp_path / "legacy.safetensors", _use_new_zipfile_serialization=False)
    torch.save(model.state_dict(), tmp_path / "zip.bin")
    assert (tmp_path / "legacy.safetensors").read_bytes()[:2] == b"\x80\x02"
    for name in ("legacy.safetensors", "zip.bin"):
        target = nn.Linear(2, 2)
        assert load_into(target, tmp_path / name).ok and torch.equal(target.weight, model.weight)
        assert checkpoint_info(tmp_path / name).format.startswith("PyTorch pickle")
    # A damaged pickle: what the safe unpickler stopped at, never torch's advice to load unsafely.
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02}q\x00<" + b"x" * 24)
    with pytest.raises(ts.CheckpointError, match="weights_only.*Unsupported operand 60"
                       ) as info:
        load_into(model, tmp_path / "bad.pt")
    assert "weights_only` set to `False" not in str(info.value)

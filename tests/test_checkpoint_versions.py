"""Module versions (``state_dict()._metadata``) survive every checkpoint path (issue 15).

``_load_from_state_dict`` reads each module's version: BatchNorm migrates version-1 state
dicts (no ``num_batches_tracked``), and library modules (torchvision's, timm's) refuse a
state dict without one. ``ts.save`` records them; ``load_into``, ``load``, ``ckpt convert``
(both ways) and the training-state pair give them back; a source without them gets the
model's own, with a note.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

import torchsmith as ts
from torchsmith.checkpoint import _format, checkpoint_info, convert_checkpoint, load_into, training_state_path
from torchsmith.checkpoint._versions import KEY
from torchsmith.cli import main

ZOO = "_ckpt_test_versioned"


class NeedsVersion(nn.Module):
    """Refuses to load without a version, as torchvision's and timm's versioned modules do; records the one it got."""

    _version = 2

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(3))
        self.seen: int | None = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):  # type: ignore[no-untyped-def]
        version = local_metadata.get("version")
        if version is None or version > 2:
            raise ValueError(f"version should be set to 1 or 2 instead of {version}")
        self.seen = version
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)


class Net(nn.Module):
    def __init__(self, *, version: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.frozen = NeedsVersion()
        self.frozen._version = version  # type: ignore[misc]  # what state_dict() records for it
        self.head = nn.Linear(4, 2)


@pytest.fixture(autouse=True)
def zoo_net() -> Iterator[None]:
    from torchsmith import registry

    ts.register_model(name=ZOO)(lambda *, version=2: Net(version=version))
    try:
        yield
    finally:
        registry._MODELS.pop(ZOO, None)


def _trained(version: int = 2) -> Net:
    model = ts.create_model(ZOO, version=version)
    with torch.no_grad():
        model.bn.num_batches_tracked.fill_(7)
        model.bn.running_mean.uniform_()
    return model


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_records_the_versions_and_every_reader_gives_them_back(tmp_path: Path) -> None:
    model = _trained(version=1)  # saved at version 1, loaded into models at version 2: the file's must win
    path = ts.save(model, tmp_path / "m.safetensors")
    recorded = json.loads(_format.read_header(path).metadata[KEY])
    assert recorded["frozen"] == {"version": 1} and recorded["bn"] == {"version": 2} and recorded[""] == {"version": 1}

    target = Net(version=2)
    report = load_into(target, path)
    assert report.ok and target.frozen.seen == 1 and _same(target, model)
    assert not any("version" in n for n in report.notes)
    assert ts.load(path).frozen.seen == 1
    assert checkpoint_info(path).metadata[KEY] == recorded
    assert "state_dict_metadata: 5 modules (version 1: 4, version 2: 1)" in str(checkpoint_info(path))

    # convert both ways, and through the CLI: the versions go along
    convert_checkpoint(path, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)._metadata["frozen"] == {"version": 1}
    result = CliRunner().invoke(main, ["ckpt", "convert", str(tmp_path / "m.pt"), str(tmp_path / "back.safetensors")],
                                catch_exceptions=False)
    assert result.exit_code == 0
    target = Net()
    assert load_into(target, tmp_path / "back.safetensors").ok and target.frozen.seen == 1 and _same(target, model)
    out = convert_checkpoint(tmp_path / "m.pt", tmp_path / "arch.safetensors", model=ts.create_model(ZOO))
    # the weights were loaded into a version-2 model, which migrated them: the file records its version 2
    assert ts.load(out).frozen.seen == 2
    assert json.loads(_format.read_header(out).metadata[KEY])["frozen"] == {"version": 2}
    result = CliRunner().invoke(main, ["ckpt", "load-report", ZOO, str(tmp_path / "back.safetensors")],
                                catch_exceptions=False)
    assert result.exit_code == 0 and "loaded; 10 matched" in result.output


def test_a_source_without_versions_gets_the_models_with_a_note(tmp_path: Path) -> None:
    model = _trained()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "hf.safetensors"))  # another tool: no _metadata anywhere
    torch.save(dict(state), tmp_path / "plain.pt")      # a plain dict: no _metadata either
    for source in (tmp_path / "hf.safetensors", tmp_path / "plain.pt", dict(state)):
        target = Net()
        report = load_into(target, source)
        assert report.ok and target.frozen.seen == 2 and _same(target, model), source
        note = next(n for n in report.notes if "module versions" in n)
        assert "given the version of the model they are loaded into" in note
        assert "frozen (NeedsVersion, version 2)" in note and "head" not in note  # Linear never reads it
        assert target.bn.num_batches_tracked.item() == 7
    # A torchsmith file written before the versions were kept: load rebuilds it all the same.
    header = _format.read_header(ts.save(model, tmp_path / "old.safetensors"))
    meta = {k: v for k, v in header.metadata.items() if k not in (KEY, "sha256", "index_sha256", "sha256_scheme")}
    _format.write_safetensors(tmp_path / "old.safetensors", {k: v.contiguous() for k, v in state.items()}, meta)
    assert KEY not in _format.read_header(tmp_path / "old.safetensors").metadata
    loaded = ts.load(tmp_path / "old.safetensors")
    assert loaded.frozen.seen == 2 and _same(loaded, model)


def test_batchnorm_version_1_state_dicts_migrate_num_batches_tracked(tmp_path: Path) -> None:
    model = _trained()
    old = model.state_dict()
    del old["bn.num_batches_tracked"]
    old._metadata["bn"]["version"] = 1  # type: ignore[attr-defined]  # BatchNorm before version 2
    torch.save(old, tmp_path / "old.pt")
    convert_checkpoint(tmp_path / "old.pt", tmp_path / "old.safetensors")
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "hf.safetensors"))  # no versions either
    for source in (old, tmp_path / "old.pt", tmp_path / "old.safetensors", tmp_path / "hf.safetensors"):
        target = Net()
        report = load_into(target, source, strict=True)
        assert report.ok and report.missing == [], source
        assert any("num_batches_tracked counter(s) absent from the source are filled by BatchNorm's own migration"
                   in n for n in report.notes), source
        assert target.bn.num_batches_tracked.item() == 0 and torch.equal(target.bn.running_mean, model.bn.running_mean)
        plain = Net()  # what torch itself does with the same state dict
        plain.load_state_dict(old, strict=True)
        assert _same(target, plain)
    # Saved at version 2, the counter is data: it comes back as saved, never reset.
    target = Net()
    assert load_into(target, ts.save(model, tmp_path / "v2.safetensors")).ok
    assert target.bn.num_batches_tracked.item() == 7
    # A version-2 state dict without the counter, or a BatchNorm absent altogether, is missing as before.
    v2 = model.state_dict()
    del v2["bn.num_batches_tracked"]
    with pytest.raises(ts.CheckpointError, match="missing bn.num_batches_tracked"):
        load_into(Net(), v2)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("bn.")}
    report = load_into(Net(), partial, strict=False)
    assert "bn.num_batches_tracked" in report.missing and len(report.missing) == 5


def test_versions_follow_prefixes_and_remaps(tmp_path: Path) -> None:
    model = _trained(version=1)
    wrapped = nn.DataParallel(model).state_dict()  # module.conv.weight ..., _metadata["module.frozen"]
    assert wrapped._metadata["module.frozen"] == {"version": 1}  # type: ignore[attr-defined]
    torch.save(wrapped, tmp_path / "ddp.pt")
    for source in (wrapped, tmp_path / "ddp.pt"):
        target = Net()
        report = load_into(target, source)
        assert report.ok and report.prefixes and target.frozen.seen == 1
    backbone = nn.Sequential(OrderedDict(backbone=model)).state_dict()
    target = Net()
    assert load_into(target, backbone, remap={"backbone.": ""}).ok and target.frozen.seen == 1
    target = Net()
    report = load_into(target, backbone, remap=lambda k: k.removeprefix("backbone."))
    assert report.ok and target.frozen.seen == 1
    renamed = {("frozen2." + k[7:] if k.startswith("frozen.") else k): v for k, v in model.state_dict().items()}
    renamed = OrderedDict(renamed)
    renamed._metadata = OrderedDict(model.state_dict()._metadata)  # type: ignore[attr-defined]
    renamed._metadata["frozen2"] = renamed._metadata.pop("frozen")  # type: ignore[attr-defined]
    target = Net()
    assert load_into(target, renamed, remap={"frozen2.": "frozen."}).ok and target.frozen.seen == 1


def test_a_load_hook_that_refuses_is_a_checkpoint_error_not_its_own(tmp_path: Path) -> None:
    model = _trained()
    model.frozen._version = 9  # type: ignore[misc]  # a version this NeedsVersion does not know
    path = ts.save(model, tmp_path / "future.safetensors")
    with pytest.raises(ts.CheckpointError, match=r"failed in a module's load hook \(ValueError: version should be "
                                                 r"set to 1 or 2 instead of 9\)"):
        load_into(Net(), path)
    with pytest.raises(ts.CheckpointError, match="metadata names.*ValueError"):
        ts.load(path)
    result = CliRunner().invoke(main, ["ckpt", "load-report", ZOO, str(path)])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "Traceback" not in result.output


def test_malformed_versions_are_one_checkpoint_error(tmp_path: Path) -> None:
    model = Net()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "bad.safetensors"
    for bad in ("{", "[]", '{"frozen": 2}', '{"frozen": {"version": "2"}}', '{"frozen": {"version": [2]}}'):
        _format.write_safetensors(path, tensors, {KEY: bad})  # hashes valid: only the content is wrong
        with pytest.raises(ts.CheckpointError, match=f"bad.safetensors: metadata '{KEY}'"):
            load_into(Net(), path)
        with pytest.raises(ts.CheckpointError, match=f"bad.safetensors: metadata '{KEY}'"):
            checkpoint_info(path)


def test_training_state_pair_keeps_the_versions(tmp_path: Path) -> None:
    model = _trained(version=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.head(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = ts.save(model, tmp_path / "last.safetensors", optimizer=opt, extra={"epoch": 1})
    assert json.loads(_format.read_header(path).metadata[KEY])["frozen"] == {"version": 1}
    resumed = Net()
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    # What the trainer's resume does: the weights through load_into, then the companion.
    from torchsmith.train.state import load_weights

    load_weights(resumed, path)
    assert ts.load_training_state(path, optimizer=resumed_opt, restore_rng=False) == {"epoch": 1}
    assert resumed.frozen.seen == 1 and _same(resumed, model)
    assert training_state_path(path).exists()

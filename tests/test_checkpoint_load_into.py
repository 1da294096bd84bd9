"""load_into and LoadReport: prefixes, remaps, suggestions, all-or-nothing, skip and reinit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import torchsmith as ts
from torchsmith.checkpoint import load_into


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


class _Compiled(nn.Module):
    """Holds the model as ``_orig_mod``, as torch.compile's OptimizedModule does (without importing dynamo)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model


def test_torch_compile_prefix_is_stripped_and_added_with_its_cause() -> None:
    source = ts.create_model("lenet")
    state = _Compiled(source).state_dict()
    assert next(iter(state)).startswith("_orig_mod.")
    target = ts.create_model("lenet")
    report = load_into(target, state)
    assert report.ok and report.prefixes == [("stripped '_orig_mod.' from every key", "torch.compile wrapper")]
    assert report.remapped[0].source == "_orig_mod.conv1.weight" and report.remapped[0].target == "conv1.weight"
    assert torch.equal(target.fc1.weight, source.fc1.weight)
    # The other way round: a clean state dict into a wrapped model.
    wrapped = _Compiled(ts.create_model("lenet"))
    report = load_into(wrapped, source.state_dict())
    assert report.ok and report.prefixes[0][0] == "added '_orig_mod.' to every key"


def test_ddp_and_compile_prefixes_together() -> None:
    source = ts.create_model("lenet")
    state = {"module._orig_mod." + k: v for k, v in source.state_dict().items()}
    report = load_into(ts.create_model("lenet"), state)
    assert report.ok and [p[1] for p in report.prefixes] == ["DistributedDataParallel/DataParallel wrapper",
                                                              "torch.compile wrapper"]
    assert "stripped 'module.'" in str(report) and len(report.remapped) == len(state)
    assert report.remapped[0].cause == ("stripped 'module.' (DistributedDataParallel/DataParallel wrapper); "
                                        "stripped '_orig_mod.' (torch.compile wrapper)")


def test_strict_mismatch_loads_nothing_and_suggests_fixes() -> None:
    source = ts.create_model("lenet").state_dict()
    state = {("classifier." + k[4:] if k.startswith("fc3.") else k): v for k, v in source.items()}
    state["extra.scale"] = torch.ones(1)
    model = ts.create_model("lenet")
    snap = _snapshot(model)
    with pytest.raises(ts.CheckpointError, match=r"missing fc3.weight \(closest: classifier.weight\).*nothing was "
                                                 r"loaded.*strict=False") as info:
        load_into(model, state)
    assert _unchanged(model, snap)
    report = info.value.report  # type: ignore[attr-defined]
    assert not report.loaded and set(report.missing) == {"fc3.weight", "fc3.bias"}
    assert report.suggestions["classifier.bias"] == "fc3.bias"
    # remap as a dict (prefix rule) fixes it; the leftover key is reported, not silently dropped.
    report = load_into(model, state, remap={"classifier.": "fc3."}, strict=False)
    assert report.loaded and report.unexpected == ["extra.scale"] and not report.missing
    assert any(r.cause == "remap 'classifier.' -> 'fc3.'" for r in report.remapped)
    assert torch.equal(model.fc3.weight, source["fc3.weight"])
    # remap as a function; None drops a key.
    report = load_into(ts.create_model("lenet"), state,
                       remap=lambda k: None if k == "extra.scale" else k.replace("classifier.", "fc3."))
    assert report.ok and "remap dropped 'extra.scale'" in report.notes


def test_backbone_prefix_gets_a_remap_hint() -> None:
    state = {"backbone." + k: v for k, v in ts.create_model("lenet").state_dict().items()}
    report = load_into(ts.create_model("lenet"), state, dry_run=True)
    assert not report.loaded and "pass remap={'backbone.': ''}" in " ".join(report.notes)
    assert load_into(ts.create_model("lenet"), state, remap={"backbone.": ""}).ok


def test_new_head_skip_and_reinit() -> None:
    source = ts.create_model("resnet20", num_classes=10)
    state = source.state_dict()
    model = ts.create_model("resnet20", num_classes=4)
    snap = _snapshot(model)
    with pytest.raises(ts.CheckpointError, match=r"shape of fc.weight: source \[10, 64\] vs model \[4, 64\]"):
        load_into(model, state)
    assert _unchanged(model, snap)
    report = load_into(model, state, on_mismatch="skip")
    assert report.skipped == ["fc.weight", "fc.bias"] and torch.equal(model.fc.weight, snap["fc.weight"])
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    with torch.no_grad():
        model.fc.weight.fill_(7.0)
        model.fc.bias.fill_(7.0)
    report = load_into(model, state, on_mismatch="reinit")
    assert report.reinitialised == ["fc.weight", "fc.bias"] and report.init_policy == "the model's init_policy"
    assert torch.all(model.fc.bias == 0) and model.fc.weight.std() > 0 and not torch.any(model.fc.weight == 7.0)


def test_reinit_without_policy_uses_kaiming_and_says_so() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    state = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5)).state_dict()
    with torch.no_grad():
        model[2].bias.fill_(1.0)
    report = load_into(model, state, on_mismatch="reinit")
    assert report.init_policy == "the 'kaiming' preset (the model has no init_policy)"
    assert torch.all(model[2].bias == 0)  # kaiming zeroes biases; torch's default would not


def test_wrapped_training_checkpoint_and_bad_arguments(tmp_path: Path) -> None:
    model = ts.create_model("lenet")
    torch.save({"epoch": 3, "state_dict": model.state_dict(), "optimizer": {"lr": 0.1}}, tmp_path / "train.pt")
    report = load_into(ts.create_model("lenet"), tmp_path / "train.pt")
    assert report.ok and report.notes[0].startswith("took the 'state_dict' entry")
    with pytest.raises(ts.UnknownNameError, match="unknown on_mismatch 'ignore'"):
        load_into(model, tmp_path / "train.pt", on_mismatch="ignore")
    with pytest.raises(ts.CheckpointError, match="does not exist"):
        load_into(model, tmp_path / "nope.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ts.CheckpointError, match="holds a list, not a state dict"):
        load_into(model, tmp_path / "list.pt")
    with pytest.raises(ts.CheckpointError, match="two source keys map to 'fc1.weight'"):
        load_into(model, {"a": torch.ones(1), "b": torch.ones(1)}, remap={"a": "fc1.weight", "b": "fc1.weight"})


def test_dtype_cast_is_reported_and_meta_models_are_assigned(tmp_path: Path) -> None:
    source = ts.create_model("lenet")
    half = {k: v.half() for k, v in source.state_dict().items()}
    model = ts.create_model("lenet")
    report = load_into(model, half)
    assert report.ok and ("fc1.weight", "float16", "float32") in report.cast
    assert model.fc1.weight.dtype == torch.float32
    with torch.device("meta"):
        meta_model = ts.create_model("lenet")
    path = ts.save(source, tmp_path / "m.safetensors")
    report = load_into(meta_model, path)
    assert report.ok and report.verified is True and not meta_model.fc1.weight.is_meta
    assert torch.equal(meta_model.fc1.weight, source.fc1.weight)


def test_lazy_modules_take_their_shapes_from_the_source(tmp_path: Path) -> None:
    source = nn.Sequential(nn.Linear(4, 3))
    ts.save(source, tmp_path / "lin.safetensors")
    lazy = nn.Sequential(nn.LazyLinear(3))
    report = load_into(lazy, tmp_path / "lin.safetensors")
    assert report.ok and "lazy tensor(s) take their shapes" in report.notes[0]
    assert torch.equal(lazy[0].weight, source[0].weight)
    assert lazy(torch.randn(2, 4)).shape == (2, 3)
    # A missing lazy tensor cannot be re-initialised before it has a shape: its module does that on first forward.
    partial = nn.Sequential(nn.Linear(4, 3), nn.LazyLinear(2))
    report = load_into(partial, tmp_path / "lin.safetensors", strict=False, on_mismatch="reinit")
    assert report.loaded and report.reinitialised == [] and "first forward" in report.notes[0]
    assert partial(torch.randn(2, 4)).shape == (2, 2)


def test_a_remap_function_that_raises_is_a_config_error() -> None:
    state = nn.Linear(2, 2).state_dict()
    with pytest.raises(ts.ConfigError, match="remap raised AttributeError for 'weight'"):
        load_into(nn.Linear(2, 2), state, remap=lambda k: k.foo)  # type: ignore[attr-defined]


def test_tied_model_given_different_values_for_each_name_says_which_it_kept() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    model = Tied()
    report = load_into(model, {"emb.weight": torch.zeros(10, 4), "head.weight": torch.ones(10, 4)})
    assert "emb.weight, head.weight are tied (one tensor) in the model but differ in the source; the model keeps " \
           "the values of head.weight" in report.notes[0]
    assert torch.equal(model.emb.weight, torch.ones(10, 4)) and model.head.weight is model.emb.weight
    same = load_into(Tied(), {"emb.weight": torch.ones(10, 4), "head.weight": torch.ones(10, 4)})
    assert same.notes == []


def test_a_load_that_torch_refuses_is_a_one_line_error() -> None:
    state = {"weight": torch.ones(2, 2).to_sparse(), "bias": torch.ones(2)}  # torch cannot copy sparse into dense
    with pytest.raises(ts.CheckpointError, match="loading state dict into Linear failed") as info:
        load_into(nn.Linear(2, 2), state)
    assert "\n" not in str(info.value) and "\t" not in str(info.value)
